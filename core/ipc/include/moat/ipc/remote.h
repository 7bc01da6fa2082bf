#pragma once
// Reaching a moatd on another host over SSH (docs/remote.md), the way
// virt-manager reaches libvirtd: the client runs
//   ssh -T ... [USER@]HOST moatctl [--socket PATH] proxy
// and speaks moatd's own frames over ssh's stdin/stdout. `moatctl proxy` on
// the far side connects to the local socket as the SSH user, so the remote
// host's SO_PEERCRED roles decide what that user may do.
//
// No fd crosses SSH. A `run` asks the proxy to relay instead
// ({"relay_stdio": true}): the proxy makes the job's stdio pipes, opens each
// --input with the SSH user's own rights, and multiplexes the pipes over the
// stream as binary frames. A frame's payload is JSON when it starts with '{';
// otherwise its first byte is a tag:
//   kRelayStdin  client -> proxy  bytes for the job's stdin; no bytes = EOF
//   kRelayStdout proxy -> client  the job's stdout;           no bytes = EOF
//   kRelayStderr proxy -> client  the job's stderr;           no bytes = EOF
//   kRelayAck    proxy -> client  4-byte big-endian count of stdin bytes the
//                                 proxy has passed on (or discarded because the
//                                 job closed its stdin)
// The client keeps at most kRelayWindow stdin bytes unacknowledged, so the
// proxy never stops reading the stream and a `stop` always gets through.
#include <sys/types.h>

#include <string>
#include <vector>

#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::ipc {

inline constexpr char kRelayStdin = 1;
inline constexpr char kRelayStdout = 2;
inline constexpr char kRelayStderr = 3;
inline constexpr char kRelayAck = 4;
inline constexpr size_t kRelayWindow = 256 * 1024;
inline constexpr size_t kRelayChunk = 64 * 1024;

std::string relay_frame(char tag, const char* data, size_t n);
std::string relay_ack_frame(uint32_t n);
// The count of a kRelayAck payload (tag included); -1 when malformed.
int64_t relay_ack_count(const std::string& payload);

// ssh://[USER@]HOST[:PORT][/REMOTE/SOCKET/PATH]
struct SshTarget {
    std::string user;    // "" = ssh's own default
    std::string host;
    int port = 0;        // 0 = ssh's own default
    std::string socket;  // the socket on the far side ("" = its moatctl's default)
    std::string display() const;  // "user@host:port", for the console's host column and messages
};

bool is_ssh_uri(const std::string& s);
Result<SshTarget> parse_ssh_uri(const std::string& uri);
// The address with a --socket for the far host filled in when the address
// names none (socket "" = none given). The socket must be absolute: it
// becomes the address's path, never part of the host name. The result is a
// valid address.
Result<std::string> with_far_socket(const std::string& uri, const std::string& socket);

// The ssh command: $MOAT_SSH (default "ssh"; a program, not a shell line),
// -T -e none, BatchMode, no agent/X11/port forwarding, no local command,
// keepalives, [-p PORT] [-l USER] -- HOST, then the remote
// command `$MOAT_REMOTE_MOATCTL [--socket PATH] proxy` (default "moatctl"),
// each word single-quoted for the remote shell.
Result<std::vector<std::string>> ssh_argv(const SshTarget& t);

// A child process that is waited for exactly once: the destructor closes
// nothing (the owner closes its end first) and reaps the child, killing it
// when it has not exited within a second.
class ChildProcess final {
public:
    ChildProcess() = default;
    explicit ChildProcess(pid_t pid) : m_pid(pid) {}
    ChildProcess(ChildProcess&& o) noexcept : m_pid(o.m_pid) { o.m_pid = -1; }
    ChildProcess& operator=(ChildProcess&& o) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess() { reap(); }
    pid_t pid() const { return m_pid; }
    void reap();
    // SIGKILL now and reap at once (for callers that must not wait, such as
    // the GUI thread closing a connection).
    void terminate();

private:
    pid_t m_pid = -1;
};

struct SshStream {
    UniqueFd fd;  // our end of a socketpair that is ssh's stdin and stdout
    ChildProcess child;
};

// Starts ssh in a process group of its own (a terminal's Ctrl-C reaches the
// client, which stops the job and waits for its record, not ssh). stderr_fd:
// ssh's stderr, -1 = ours.
Result<SshStream> spawn_ssh(const SshTarget& t, int stderr_fd = -1);

}  // namespace moat::ipc
