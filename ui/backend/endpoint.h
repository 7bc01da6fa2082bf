#pragma once
// Where the console's connections go: a local socket path, or an ssh://
// address (docs/remote.md), for which ssh runs `moatctl proxy` on the far
// host. Every connection of the console (requests, the watch stream, test
// runs) opens one of these; the fd is non-blocking either way.
#include <QString>

#include "moat/common/fd.h"
#include "moat/ipc/remote.h"

namespace moat::ui {

struct Endpoint {
    moat::ipc::ChildProcess ssh;     // first: destroyed (reaped) after fd has closed
    moat::UniqueFd fd;               // ours; closing it ends ssh (and the proxy's connection)
    moat::UniqueFd sshErr;           // a memfd with ssh's stderr (why a connection failed)
    bool relayed = false;            // no fd passing: a run relays its stdio (remote.h)
    // Closes the connection; ssh is ended at once (SIGTERM), never waited on
    // for the far side: the GUI thread calls this.
    void close();
    // The tail of ssh's stderr, "" when none (local sockets have none).
    QString sshErrors() const;
};

bool isRemote(const QString& target);
// "user@host:port" for ssh:// targets, the path itself for sockets.
QString displayName(const QString& target);
// Opens a connection; on failure returns false with *why set.
bool openEndpoint(const QString& target, Endpoint* out, QString* why);

}  // namespace moat::ui
