#include "backend/test_run.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <QTimer>

#include "backend/job_stream.h"

namespace moat::ui {

using nlohmann::json;

namespace {
QString sysError(const char* what) { return QStringLiteral("%1: %2").arg(QLatin1String(what), QString::fromLocal8Bit(strerror(errno))); }
}  // namespace

TestRun::TestRun(QObject* parent) : QObject(parent), m_stream(new JobStream(this)) {
    connect(m_stream, &JobStream::output, this, [this](int stream, const QByteArray& data) {
        QByteArray& dst = stream == 1 ? m_out : m_err;
        dst.append(data);
        if (dst.size() > kMaxOutput) dst.remove(0, dst.size() - kMaxOutput);
        emit outputChanged();
    });
    connect(m_stream, &JobStream::started, this, [this](qint64 job) {
        m_job = job;
        emit started(job);
    });
    connect(m_stream, &JobStream::failed, this, [this](const QString& code, const QString& why) {
        fail(code == QLatin1String("disconnected") || code == QLatin1String("cancelled") ? why : code + QStringLiteral(": ") + why);
    });
    connect(m_stream, &JobStream::finished, this, [this](const json& job) {
        // Drain what is left in the pipes before reporting.
        for (int i = 0; i < 2; ++i)
            if (m_pipe[i] >= 0) onPipe(i);
        m_finished = true;
        closePipes();
        emit finished(job);
    });
}

TestRun::~TestRun() { closePipes(); }

bool TestRun::running() const { return m_stream->running(); }

void TestRun::closePipes() {
    for (int i = 0; i < 2; ++i) {
        m_pipeN[i].reset();
        if (m_pipe[i] >= 0) ::close(m_pipe[i]);
        m_pipe[i] = -1;
    }
}

void TestRun::fail(const QString& why) {
    closePipes();
    if (!m_finished) {
        m_finished = true;
        emit failed(why);
    }
}

void TestRun::cancel() { m_stream->cancel(); }

bool TestRun::start(const QString& socketPath, const std::string& policyToml, const QStringList& argv) {
    closePipes();
    m_out.clear();
    m_err.clear();
    m_job = 0;
    m_finished = false;
    auto later = [this](const QString& why) {
        closePipes();
        QTimer::singleShot(0, this, [this, why] { fail(why); });
        return false;
    };
    // The job's stdio: /dev/null, and two pipes whose read ends we keep.
    const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int outp[2], errp[2];
    if (devnull < 0) return later(sysError("/dev/null"));
    if (::pipe2(outp, O_CLOEXEC) < 0) {
        ::close(devnull);
        return later(sysError("pipe"));
    }
    if (::pipe2(errp, O_CLOEXEC) < 0) {
        ::close(devnull);
        ::close(outp[0]);
        ::close(outp[1]);
        return later(sysError("pipe"));
    }
    m_pipe[0] = outp[0];
    m_pipe[1] = errp[0];
    for (int i = 0; i < 2; ++i) {
        ::fcntl(m_pipe[i], F_SETFL, ::fcntl(m_pipe[i], F_GETFL) | O_NONBLOCK);
        m_pipeN[i] = std::make_unique<QSocketNotifier>(m_pipe[i], QSocketNotifier::Read);
        connect(m_pipeN[i].get(), &QSocketNotifier::activated, this, [this, i] { onPipe(i); });
    }
    json req = {{"op", "run"}, {"policy_toml", policyToml}, {"policy_source", "moat-console test run"}, {"argv", json::array()}};
    for (const QString& a : argv) req["argv"].push_back(a.toStdString());
    // The stream closes our copies of the write ends once moatd has its own,
    // so the pipes see EOF when the job's output is delivered.
    m_stream->start(socketPath, req, {devnull, outp[1], errp[1]});
    return true;
}

void TestRun::onPipe(int which) {
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(m_pipe[which], buf, sizeof buf);
        if (n > 0) {
            QByteArray& dst = which == 0 ? m_out : m_err;
            dst.append(buf, n);
            if (dst.size() > kMaxOutput) dst.remove(0, dst.size() - kMaxOutput);
            emit outputChanged();
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        // EOF or error: this stream is done.
        m_pipeN[which].reset();
        ::close(m_pipe[which]);
        m_pipe[which] = -1;
        return;
    }
}

}  // namespace moat::ui
