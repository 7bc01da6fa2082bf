#pragma once
// "Test run" from the policy editor: runs one command under a policy text
// through op `run` on a JobStream (its own connection; the main connection
// keeps serving the views). The job's stdin is /dev/null and its
// stdout/stderr are pipes whose read ends are shown live. Cancelling (or
// destroying this object) closes the connection, and moatd stops the job.
#include <QObject>
#include <QSocketNotifier>
#include <QString>
#include <QStringList>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>


namespace moat::ui {

class JobStream;

class TestRun final : public QObject {
    Q_OBJECT
public:
    static constexpr qsizetype kMaxOutput = 256 * 1024;  // kept per stream

    explicit TestRun(QObject* parent = nullptr);
    ~TestRun() override;

    // Starts; false (and failed() emitted later) when it could not even connect.
    bool start(const QString& socketPath, const std::string& policyToml, const QStringList& argv);
    void cancel();
    bool running() const;
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
    void onPipe(int which);
    void fail(const QString& why);
    void closePipes();

    JobStream* m_stream;
    int m_pipe[2] = {-1, -1};  // read ends: stdout, stderr
    std::unique_ptr<QSocketNotifier> m_pipeN[2];
    QByteArray m_out, m_err;
    int64_t m_job = 0;
    bool m_finished = false;
};

}  // namespace moat::ui
