#include "backend/endpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::ui {

namespace {
constexpr off_t kErrTail = 600;

QString sysText(const char* what) {
    return QStringLiteral("%1: %2").arg(QLatin1String(what), QString::fromLocal8Bit(strerror(errno)));
}
}  // namespace

void Endpoint::close() {
    fd.reset();
    ssh.terminate();
    relayed = false;
}

QString Endpoint::sshErrors() const {
    if (!sshErr) return {};
    const off_t end = lseek(sshErr.get(), 0, SEEK_END);
    if (end <= 0) return {};
    const off_t from = end > kErrTail ? end - kErrTail : 0;
    QByteArray b(int(end - from), '\0');
    const ssize_t n = pread(sshErr.get(), b.data(), size_t(b.size()), from);
    if (n <= 0) return {};
    b.truncate(int(n));
    return QString::fromUtf8(b).trimmed();
}

bool isRemote(const QString& target) { return moat::ipc::is_ssh_uri(target.toStdString()); }

QString displayName(const QString& target) {
    if (!isRemote(target)) return target;
    auto t = moat::ipc::parse_ssh_uri(target.toStdString());
    return t ? QString::fromStdString(t->display()) : target;
}

bool openEndpoint(const QString& target, Endpoint* out, QString* why) {
    *out = Endpoint{};
    if (isRemote(target)) {
        auto t = moat::ipc::parse_ssh_uri(target.toStdString());
        if (!t) {
            *why = QString::fromStdString(t.error().message);
            return false;
        }
        out->sshErr.reset(memfd_create("moat-console-ssh-stderr", MFD_CLOEXEC));
        auto s = moat::ipc::spawn_ssh(*t, out->sshErr.get());
        if (!s) {
            *why = QString::fromStdString(s.error().message);
            return false;
        }
        out->fd = std::move(s->fd);
        out->ssh = std::move(s->child);
        out->relayed = true;
        const int fl = fcntl(out->fd.get(), F_GETFL);
        fcntl(out->fd.get(), F_SETFL, fl | O_NONBLOCK);
        return true;
    }
    const QByteArray path = target.toLocal8Bit();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.isEmpty() || size_t(path.size()) >= sizeof addr.sun_path) {
        *why = QStringLiteral("no usable moatd socket path");
        return false;
    }
    memcpy(addr.sun_path, path.constData(), size_t(path.size()));
    out->fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!out->fd) {
        *why = sysText("socket");
        return false;
    }
    // A Unix stream connect() completes at once or fails at once (EAGAIN only
    // when the listen backlog is full), so there is no EINPROGRESS to wait for.
    if (::connect(out->fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        *why = QStringLiteral("connect(%1): %2").arg(target, QString::fromLocal8Bit(strerror(errno)));
        out->fd.reset();
        return false;
    }
    return true;
}

}  // namespace moat::ui
