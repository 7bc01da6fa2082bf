#pragma once
// `moatctl proxy`: the far end of a connection over SSH (remote.h has the
// protocol). It connects to the local moatd as the user it runs as and passes
// frames both ways; a `run` with "relay_stdio" gets its stdio pipes and its
// --input fds here, with this user's own rights.
#include <string>

namespace moat::ipc {

// Bridges one client stream (in, out: ssh's stdin and stdout, made
// non-blocking) to the moatd at socket_path until either side closes. When the
// client goes away, so does the proxy's connection, and moatd stops a job it
// ran as it does for a local client that disconnects. Returns 0 when the client or moatd closed the stream, 1 after an
// error (said on stderr and, while the client can hear it, as an
// {"ok":false,"code":"proxy"} frame).
int run_proxy(int in, int out, const std::string& socket_path);

}  // namespace moat::ipc
