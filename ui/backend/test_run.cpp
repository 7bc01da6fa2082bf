#include "backend/test_run.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <QTimer>

namespace moat::ui {

using nlohmann::json;

namespace {
QString sysError(const char* what) { return QStringLiteral("%1: %2").arg(QLatin1String(what), QString::fromLocal8Bit(strerror(errno))); }
}  // namespace

TestRun::TestRun(QObject* parent) : QObject(parent) {}
TestRun::~TestRun() { closeAll(); }

void TestRun::closeAll() {
    m_readN.reset();
    m_writeN.reset();
    for (int i = 0; i < 2; ++i) {
        m_pipeN[i].reset();
        if (m_pipe[i] >= 0) ::close(m_pipe[i]);
        m_pipe[i] = -1;
    }
    if (m_sock >= 0) ::close(m_sock);
    m_sock = -1;
}

void TestRun::fail(const QString& why) {
    closeAll();
    if (!m_finished) {
        m_finished = true;
        emit failed(why);
    }
}

void TestRun::cancel() { fail(tr("cancelled: the connection was closed, so moatd stops the job")); }

bool TestRun::start(const QString& socketPath, const std::string& policyToml, const QStringList& argv) {
    closeAll();
    m_out.clear();
    m_err.clear();
    m_job = 0;
    m_finished = false;
    m_decoder = moat::ipc::FrameDecoder(moat::ipc::kMaxResponseBytes);
    auto later = [this](const QString& why) {
        closeAll();
        QTimer::singleShot(0, this, [this, why] { fail(why); });
        return false;
    };
    const QByteArray path = socketPath.toLocal8Bit();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.isEmpty() || size_t(path.size()) >= sizeof addr.sun_path) return later(tr("no usable moatd socket path"));
    memcpy(addr.sun_path, path.constData(), size_t(path.size()));
    m_sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m_sock < 0) return later(sysError("socket"));
    if (::connect(m_sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return later(sysError("connect"));

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
    for (int fd : m_pipe) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

    json req = {{"op", "run"}, {"policy_toml", policyToml}, {"policy_source", "moat-console test run"}, {"argv", json::array()}};
    for (const QString& a : argv) req["argv"].push_back(a.toStdString());
    m_outBuf = moat::ipc::encode_frame(req.dump());

    // The fds ride on the first byte; whatever the socket does not take now is
    // sent when it becomes writable.
    iovec iov{m_outBuf.data(), m_outBuf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const int fds[3] = {devnull, outp[1], errp[1]};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)];
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t n;
    do n = ::sendmsg(m_sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    const int sendErrno = errno;
    // moatd holds its own copies now (or nothing was sent): ours close either way,
    // so the pipes see EOF when the job's processes are gone.
    for (int fd : fds) ::close(fd);
    if (n < 0) {
        errno = sendErrno;
        return later(sysError("sendmsg"));
    }
    m_outBuf.erase(0, size_t(n));

    m_readN = std::make_unique<QSocketNotifier>(m_sock, QSocketNotifier::Read);
    connect(m_readN.get(), &QSocketNotifier::activated, this, &TestRun::onSocketReadable);
    m_writeN = std::make_unique<QSocketNotifier>(m_sock, QSocketNotifier::Write);
    m_writeN->setEnabled(!m_outBuf.empty());
    connect(m_writeN.get(), &QSocketNotifier::activated, this, &TestRun::onSocketWritable);
    for (int i = 0; i < 2; ++i) {
        m_pipeN[i] = std::make_unique<QSocketNotifier>(m_pipe[i], QSocketNotifier::Read);
        connect(m_pipeN[i].get(), &QSocketNotifier::activated, this, [this, i] { onPipe(i); });
    }
    return true;
}

void TestRun::onSocketWritable() {
    while (!m_outBuf.empty()) {
        const ssize_t n = ::send(m_sock, m_outBuf.data(), m_outBuf.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return fail(sysError("send to moatd"));
        }
        m_outBuf.erase(0, size_t(n));
    }
    m_writeN->setEnabled(false);
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

void TestRun::onSocketReadable() {
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(m_sock, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) return fail(n == 0 ? tr("moatd closed the connection") : sysError("read from moatd"));
        if (auto r = m_decoder.feed(buf, size_t(n)); !r) return fail(tr("bad frame from moatd"));
    }
    while (auto frame = m_decoder.next()) {
        const json a = json::parse(*frame, nullptr, false);
        if (!a.is_object()) return fail(tr("moatd sent something that is not JSON"));
        if (!a.value("ok", false)) {
            QString why = QString::fromStdString(a.value("code", std::string())) + QStringLiteral(": ") +
                          QString::fromStdString(a.value("error", std::string()));
            if (auto d = a.find("diagnostics"); d != a.end() && d->is_array())
                for (const auto& x : *d) why += u'\n' + QString::fromStdString(x.is_string() ? x.get<std::string>() : x.dump());
            return fail(why);
        }
        if (a.contains("finished")) {
            // Drain what is left in the pipes before reporting.
            for (int i = 0; i < 2; ++i)
                if (m_pipe[i] >= 0) onPipe(i);
            m_finished = true;
            const json job = a["finished"];
            closeAll();
            emit finished(job);
            return;
        }
        if (a.contains("job")) {
            m_job = a.value("job", int64_t(0));
            emit started(m_job);
        }
    }
}

}  // namespace moat::ui
