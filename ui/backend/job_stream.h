#pragma once
// An op that starts a job (`run`, `replay`; docs/protocol.md) on a connection
// of its own: moatd answers first {"job":N} and, when the job ends,
// {"finished":{...}}, so it cannot share the main connection, which matches
// one answer to each request in order (and moatd allows one running job per
// connection). Non-blocking, driven by QSocketNotifiers. Closing the
// connection (cancel(), or destroying this object) makes moatd stop the job.
// Used by the policy editor's test run and the replay window.
#include <QObject>
#include <QSocketNotifier>
#include <QString>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/endpoint.h"
#include "moat/ipc/frame.h"

namespace moat::ui {

class JobStream final : public QObject {
    Q_OBJECT
public:
    explicit JobStream(QObject* parent = nullptr);
    ~JobStream() override;

    // Sends `req`; `fds` (op `run`: the job's stdin, stdout, stderr) ride on
    // its first byte as SCM_RIGHTS and are closed here whatever happens. Every
    // outcome is reported through a signal, never synchronously from inside start().
    void start(const QString& socketPath, const nlohmann::json& req, std::vector<int> fds = {});
    void cancel();
    bool running() const { return m_sock >= 0; }
    int64_t job() const { return m_job; }

signals:
    void started(qint64 job);
    // The `finished` job object (docs/protocol.md, `show`).
    void finished(const nlohmann::json& job);
    // `code` is moatd's error code ("refused", "bad-policy", ...), or
    // "disconnected" when the connection itself failed. `why` includes
    // moatd's diagnostics (one per line) when it sent any.
    void failed(const QString& code, const QString& why);
    // A run over ssh (docs/remote.md): the job's output comes in the stream,
    // not through the fds given to start() (stream 1 = stdout, 2 = stderr).
    void output(int stream, const QByteArray& data);

private:
    void onReadable();
    void onWritable();
    void fail(const QString& code, const QString& why);
    void closeSocket();

    Endpoint m_ep;
    int m_sock = -1;  // m_ep.fd, while open
    std::unique_ptr<QSocketNotifier> m_readN, m_writeN;
    std::string m_out;
    moat::ipc::FrameDecoder m_decoder{moat::ipc::kMaxResponseBytes};
    int64_t m_job = 0;
    bool m_done = false;
};

}  // namespace moat::ui
