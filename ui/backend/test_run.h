#pragma once
// "Test run" from the policy editor: runs one command under a policy text
// through op `run` on a connection of its own (the main connection keeps
// serving the views; moatd allows one running job per connection). The job's
// stdin is /dev/null and its stdout/stderr are pipes, passed as SCM_RIGHTS
// in the same sendmsg as the frame's first byte. Everything is non-blocking
// and driven by QSocketNotifiers. Closing the connection (cancel(), or
// destroying this object) makes moatd stop the job.
#include <QObject>
#include <QSocketNotifier>
#include <QString>
#include <QStringList>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "moat/ipc/frame.h"

namespace moat::ui {

class TestRun final : public QObject {
    Q_OBJECT
public:
    static constexpr qsizetype kMaxOutput = 256 * 1024;  // kept per stream

    explicit TestRun(QObject* parent = nullptr);
    ~TestRun() override;

    // Starts; false (and failed() emitted later) when it could not even connect.
    bool start(const QString& socketPath, const std::string& policyToml, const QStringList& argv);
    void cancel();
    bool running() const { return m_sock >= 0; }
    int64_t job() const { return m_job; }
    const QByteArray& out() const { return m_out; }
    const QByteArray& err() const { return m_err; }

signals:
    void started(qint64 job);
    void outputChanged();
    // The `finished` job object (docs/protocol.md, `show`).
    void finished(const nlohmann::json& job);
    void failed(const QString& why);

private:
    void onSocketReadable();
    void onSocketWritable();
    void onPipe(int which);
    void fail(const QString& why);
    void closeAll();

    int m_sock = -1;
    int m_pipe[2] = {-1, -1};  // read ends: stdout, stderr
    std::unique_ptr<QSocketNotifier> m_readN, m_writeN, m_pipeN[2];
    std::string m_outBuf;  // rest of the request frame
    moat::ipc::FrameDecoder m_decoder{moat::ipc::kMaxResponseBytes};
    QByteArray m_out, m_err;
    int64_t m_job = 0;
    bool m_finished = false;
};

}  // namespace moat::ui
