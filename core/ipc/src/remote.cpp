#include "moat/ipc/remote.h"

#include "moat/ipc/frame.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace moat::ipc {

namespace {

bool all_of(const std::string& s, const char* extra) {
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(extra, ch)))
            return false;
    }
    return true;
}

// A word for the remote shell: single-quoted. The callers allow no quote in
// the words they pass, but the quoting does not rely on that.
std::string sh_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

}  // namespace

std::string relay_frame(char tag, const char* data, size_t n) {
    std::string payload;
    payload.reserve(n + 1);
    payload += tag;
    payload.append(data, n);
    return encode_frame(payload);
}

std::string relay_ack_frame(uint32_t n) {
    const char b[4] = {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
    return relay_frame(kRelayAck, b, 4);
}

int64_t relay_ack_count(const std::string& p) {
    if (p.size() != 5 || p[0] != kRelayAck) return -1;
    return (int64_t(uint8_t(p[1])) << 24) | (int64_t(uint8_t(p[2])) << 16) | (int64_t(uint8_t(p[3])) << 8) |
           int64_t(uint8_t(p[4]));
}

std::string SshTarget::display() const {
    std::string s = user.empty() ? host : user + "@" + host;
    if (port) s += ":" + std::to_string(port);
    return s;
}

bool is_ssh_uri(const std::string& s) { return s.rfind("ssh://", 0) == 0; }

Result<SshTarget> parse_ssh_uri(const std::string& uri) {
    const std::string usage = "expected ssh://[USER@]HOST[:PORT][/REMOTE/SOCKET]";
    if (!is_ssh_uri(uri)) return fail("not an ssh:// address: " + uri + " (" + usage + ")");
    std::string rest = uri.substr(6);
    SshTarget t;
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        t.socket = rest.substr(slash);
        rest.resize(slash);
        if (t.socket == "/") t.socket.clear();
    }
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        t.user = rest.substr(0, at);
        rest = rest.substr(at + 1);
        if (t.user.empty() || t.user[0] == '-' || !all_of(t.user, "._-"))
            return fail("ssh address " + uri + ": the user name may hold only letters, digits, '.', '_' and '-'");
    }
    std::string port;
    if (!rest.empty() && rest[0] == '[') {  // [IPv6]
        auto close = rest.find(']');
        if (close == std::string::npos) return fail("ssh address " + uri + ": unclosed '['");
        t.host = rest.substr(1, close - 1);
        std::string after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return fail("ssh address " + uri + ": " + usage);
            port = after.substr(1);
        }
        if (t.host.empty() || !all_of(t.host, ":.")) return fail("ssh address " + uri + ": bad IPv6 address");
    } else {
        auto colon = rest.find(':');
        t.host = rest.substr(0, colon);
        if (colon != std::string::npos) port = rest.substr(colon + 1);
        // A leading '-' would be read by ssh as an option.
        if (t.host.empty() || t.host[0] == '-' || !all_of(t.host, ".-_"))
            return fail("ssh address " + uri + ": the host name may hold only letters, digits, '.', '-' and '_' (" +
                        usage + ")");
    }
    if (!port.empty() || rest.back() == ':') {
        if (port.empty() || port.size() > 5 || !all_of(port, "") || std::stoi(port) < 1 || std::stoi(port) > 65535)
            return fail("ssh address " + uri + ": the port must be a number from 1 to 65535");
        t.port = std::stoi(port);
    }
    if (!t.socket.empty() && (t.socket.size() > 107 || !all_of(t.socket, "/._-+@") || t.socket.find("//") != std::string::npos))
        return fail("ssh address " + uri + ": the remote socket path may hold only letters, digits and /._-+@ "
                    "and at most 107 bytes");
    return t;
}

Result<std::string> with_far_socket(const std::string& uri, const std::string& socket) {
    auto t = parse_ssh_uri(uri);
    if (!t) return std::unexpected(t.error());
    if (!t->socket.empty() || socket.empty()) return uri;
    if (socket[0] != '/')
        return fail("--socket with --connect names the far host's socket: give an absolute path, not " + socket);
    auto with = uri + socket;
    if (auto c = parse_ssh_uri(with); !c) return std::unexpected(c.error());
    return with;
}

Result<std::vector<std::string>> ssh_argv(const SshTarget& t) {
    const char* ssh = getenv("MOAT_SSH");
    const char* remote = getenv("MOAT_REMOTE_MOATCTL");
    std::string remote_cmd = remote && *remote ? remote : "moatctl";
    if (!all_of(remote_cmd, "/._-+"))
        return fail("MOAT_REMOTE_MOATCTL may hold only letters, digits and /._-+: " + remote_cmd);
    // This channel carries frames between two programs: whatever the user's
    // ssh config says, no agent, X11 or port forwarding (a hostile far host
    // must not get the user's agent through it), no local command, and a
    // dead link noticed within a minute.
    std::vector<std::string> argv = {ssh && *ssh ? ssh : "ssh",  "-T",
                                     "-e",                       "none",
                                     "-o",                       "BatchMode=yes",
                                     "-o",                       "ForwardAgent=no",
                                     "-o",                       "ForwardX11=no",
                                     "-o",                       "ClearAllForwardings=yes",
                                     "-o",                       "PermitLocalCommand=no",
                                     "-o",                       "ServerAliveInterval=15",
                                     "-o",                       "ServerAliveCountMax=4"};
    if (t.port) argv.insert(argv.end(), {"-p", std::to_string(t.port)});
    if (!t.user.empty()) argv.insert(argv.end(), {"-l", t.user});
    argv.insert(argv.end(), {"--", t.host});
    std::string line = sh_quote(remote_cmd);
    if (!t.socket.empty()) line += " --socket " + sh_quote(t.socket);
    line += " proxy";
    argv.push_back(line);
    return argv;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
    if (this != &o) {
        reap();
        m_pid = o.m_pid;
        o.m_pid = -1;
    }
    return *this;
}

void ChildProcess::reap() {
    if (m_pid <= 0) return;
    // ssh ends by itself once its stdin closes; give it a second.
    for (int i = 0; i < 100; ++i) {
        pid_t r = waitpid(m_pid, nullptr, WNOHANG);
        if (r == m_pid || (r < 0 && errno != EINTR)) {
            m_pid = -1;
            return;
        }
        timespec ts{0, 10'000'000};
        nanosleep(&ts, nullptr);
    }
    kill(m_pid, SIGKILL);
    while (waitpid(m_pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    m_pid = -1;
}

void ChildProcess::terminate() {
    if (m_pid <= 0) return;
    // SIGKILL, so the wait below returns at once: ssh keeps nothing worth a
    // clean exit, and the caller (the GUI thread) must not sleep on it.
    kill(m_pid, SIGKILL);
    while (waitpid(m_pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    m_pid = -1;
}

Result<SshStream> spawn_ssh(const SshTarget& t, int stderr_fd) {
    auto argv = ssh_argv(t);
    if (!argv) return std::unexpected(argv.error());
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return fail_sys("socketpair", errno);
    UniqueFd ours(sv[0]), theirs(sv[1]);
    std::vector<char*> cargv;
    for (auto& a : *argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    // Reported by the child through a close-on-exec pipe when exec fails.
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) return fail_sys("pipe2", errno);
    UniqueFd err_r(ep[0]), err_w(ep[1]);
    pid_t pid = fork();
    if (pid < 0) return fail_sys("fork", errno);
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(theirs.get(), 0) < 0 || dup2(theirs.get(), 1) < 0) _exit(127);
        if (stderr_fd >= 0 && dup2(stderr_fd, 2) < 0) _exit(127);
        execvp(cargv[0], cargv.data());
        int e = errno;
        (void)!write(err_w.get(), &e, sizeof e);
        _exit(127);
    }
    err_w.reset();
    theirs.reset();
    SshStream s{std::move(ours), ChildProcess(pid)};
    int e = 0;
    ssize_t n;
    while ((n = read(err_r.get(), &e, sizeof e)) < 0 && errno == EINTR) {
    }
    if (n == sizeof e) return fail_sys("exec " + (*argv)[0] + " (set MOAT_SSH to the ssh program)", e);
    return s;
}

}  // namespace moat::ipc
