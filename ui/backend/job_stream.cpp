#include "backend/job_stream.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <QTimer>

namespace moat::ui {

using nlohmann::json;

namespace {
QString sysError(const char* what) {
    return QStringLiteral("%1: %2").arg(QLatin1String(what), QString::fromLocal8Bit(strerror(errno)));
}
}  // namespace

JobStream::JobStream(QObject* parent) : QObject(parent) {}
JobStream::~JobStream() { closeSocket(); }

void JobStream::closeSocket() {
    m_readN.reset();
    m_writeN.reset();
    m_ep.close();
    m_sock = -1;
}

void JobStream::fail(const QString& code, const QString& why) {
    closeSocket();
    if (m_done) return;
    m_done = true;
    emit failed(code, why);
}

void JobStream::cancel() {
    fail(QStringLiteral("cancelled"), tr("cancelled: the connection was closed, so moatd stops the job"));
}

void JobStream::start(const QString& socketPath, const json& req, std::vector<int> fds) {
    closeSocket();
    m_job = 0;
    m_done = false;
    m_decoder = moat::ipc::FrameDecoder(moat::ipc::kMaxResponseBytes);
    auto later = [this, &fds](const QString& why) {
        for (int fd : fds) ::close(fd);
        closeSocket();
        QTimer::singleShot(0, this, [this, why] { fail(QStringLiteral("disconnected"), why); });
    };
    QString why;
    if (!openEndpoint(socketPath, &m_ep, &why)) return later(why);
    m_sock = m_ep.fd.get();
    if (m_ep.relayed && req.value("op", std::string()) == "run") {
        // No fd crosses ssh: the proxy makes the job's pipes and the output
        // comes back in the stream. The job's stdin is empty, like the
        // /dev/null a local run is given.
        for (int fd : fds) ::close(fd);
        fds.clear();
        json r = req;
        r["relay_stdio"] = true;
        m_out = moat::ipc::encode_frame(r.dump()) + moat::ipc::relay_frame(moat::ipc::kRelayStdin, nullptr, 0);
    } else {
        m_out = moat::ipc::encode_frame(req.dump());
    }
    if (!fds.empty()) {
        // The fds ride on the first byte; whatever the socket does not take
        // now is sent when it becomes writable.
        ssize_t n;
        do n = moat::ipc::send_with_fds(m_sock, m_out.data(), m_out.size(), fds.data(), fds.size(), MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        const int sendErrno = errno;
        // moatd holds its own copies now (or nothing was sent): ours close either way.
        for (int fd : fds) ::close(fd);
        fds.clear();
        if (n < 0) {
            errno = sendErrno;
            return later(sysError("sendmsg"));
        }
        m_out.erase(0, size_t(n));
    }
    m_readN = std::make_unique<QSocketNotifier>(m_sock, QSocketNotifier::Read);
    connect(m_readN.get(), &QSocketNotifier::activated, this, &JobStream::onReadable);
    m_writeN = std::make_unique<QSocketNotifier>(m_sock, QSocketNotifier::Write);
    m_writeN->setEnabled(!m_out.empty());
    connect(m_writeN.get(), &QSocketNotifier::activated, this, &JobStream::onWritable);
}

void JobStream::onWritable() {
    while (!m_out.empty()) {
        const ssize_t n = ::send(m_sock, m_out.data(), m_out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return fail(QStringLiteral("disconnected"), sysError("send to moatd"));
        }
        m_out.erase(0, size_t(n));
    }
    m_writeN->setEnabled(false);
}

void JobStream::onReadable() {
    char buf[65536];
    for (;;) {
        const ssize_t n = ::recv(m_sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0)
            return fail(QStringLiteral("disconnected"), n == 0 ? tr("moatd closed the connection") : sysError("recv from moatd"));
        if (auto r = m_decoder.feed(buf, size_t(n)); !r)
            return fail(QStringLiteral("disconnected"), QString::fromStdString(r.error().message));
    }
    while (auto frame = m_decoder.next()) {
        if (!frame->empty() && (*frame)[0] != '{') {
            const char tag = (*frame)[0];
            if ((tag == moat::ipc::kRelayStdout || tag == moat::ipc::kRelayStderr) && frame->size() > 1)
                emit output(tag == moat::ipc::kRelayStdout ? 1 : 2,
                            QByteArray(frame->data() + 1, qsizetype(frame->size() - 1)));
            continue;
        }
        try {
            const json a = json::parse(*frame, nullptr, false);
            if (!a.is_object()) return fail(QStringLiteral("disconnected"), tr("moatd sent something that is not JSON"));
            if (!a.value("ok", false)) {
                QString why = QString::fromStdString(a.value("error", std::string()));
                if (auto d = a.find("diagnostics"); d != a.end() && d->is_array())
                    for (const auto& x : *d) why += u'\n' + QString::fromStdString(x.is_string() ? x.get<std::string>() : x.dump());
                return fail(QString::fromStdString(a.value("code", std::string())), why);
            }
            if (auto f = a.find("finished"); f != a.end()) {
                const json job = *f;
                m_done = true;
                closeSocket();
                emit finished(job);
                return;
            }
            if (auto j = a.find("job"); j != a.end() && j->is_number_integer()) {
                m_job = j->get<int64_t>();
                emit started(m_job);
            }
        } catch (const std::exception& e) {  // a frame of an unexpected shape (cmake/json_assert.h)
            return fail(QStringLiteral("disconnected"), tr("moatd sent a malformed answer (%1)").arg(QString::fromUtf8(e.what())));
        }
    }
}

}  // namespace moat::ui
