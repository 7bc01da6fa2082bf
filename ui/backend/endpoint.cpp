#include "backend/endpoint.h"

#include "moat/ipc/frame.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::ui {

namespace {
constexpr off_t kErrTail = 600;

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
    auto fd = moat::ipc::connect_unix(target.toStdString(), true);
    if (!fd) {
        *why = QString::fromStdString(fd.error().message);
        return false;
    }
    out->fd = std::move(*fd);
    return true;
}

}  // namespace moat::ui
