#pragma once
// Op `replay` (docs/protocol.md) on a connection of its own: moatd answers it
// like `run`, first {"job":N} and, when the replay ends, {"finished":{...}},
// so it cannot share the main connection, which matches one answer to each
// request in order. Non-blocking, driven by QSocketNotifiers. Closing the
// connection (cancel(), or destroying this object) makes moatd stop the job.
#include <QObject>
#include <QSocketNotifier>
#include <QString>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "moat/ipc/frame.h"

namespace moat::ui {

class ReplayRun final : public QObject {
    Q_OBJECT
public:
    explicit ReplayRun(QObject* parent = nullptr);
    ~ReplayRun() override;

    // Sends `req` (an op `replay` object). Every outcome is reported through a
    // signal, never synchronously from inside start().
    void start(const QString& socketPath, const nlohmann::json& req);
    void cancel();
    bool running() const { return m_sock >= 0; }
    int64_t job() const { return m_job; }

signals:
    void started(qint64 job);
    // The `finished` job object (docs/protocol.md, `show`).
    void finished(const nlohmann::json& job);
    // `code` is moatd's error code ("refused", "not-replayable", ...), or
    // "disconnected" when the connection itself failed.
    void failed(const QString& code, const QString& why);

private:
    void onReadable();
    void onWritable();
    void fail(const QString& code, const QString& why);
    void closeSocket();

    int m_sock = -1;
    std::unique_ptr<QSocketNotifier> m_readN, m_writeN;
    std::string m_out;
    moat::ipc::FrameDecoder m_decoder{moat::ipc::kMaxResponseBytes};
    int64_t m_job = 0;
    bool m_done = false;
};

}  // namespace moat::ui
