// Shared by the scenario suites (scenario_test, container_test): processes,
// output parsing, a private moatd per test binary process, and the Scenario
// fixture with its moatctl helpers.
//
// Each suite is a single translation unit, so everything here lives in an
// anonymous namespace like the tests that use it.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// ---- processes --------------------------------------------------------------

struct Creds {
    uid_t uid;
    gid_t gid;
    std::vector<gid_t> groups;
};

// Whether the kernel keeps pids.peak in a job's cgroup: a probe group is
// made (the v1 pids hierarchy, else the v2 root, where moatd enables pids),
// looked at and removed.
inline bool kernel_has_pids_peak() {
    for (const std::string root : {"/sys/fs/cgroup/pids", "/sys/fs/cgroup"}) {
        if (!fs::exists(root + "/cgroup.procs")) continue;
        const std::string probe = root + "/moat-peak-probe-" + std::to_string(getpid());
        if (mkdir(probe.c_str(), 0755) < 0 && errno != EEXIST) continue;
        const bool has = fs::exists(probe + "/pids.peak");
        rmdir(probe.c_str());
        if (has) return true;
    }
    return false;
}

struct Opts {
    std::vector<std::string> env;  // extra NAME=VALUE entries
    std::optional<Creds> as;       // switch to these credentials before exec
    std::string cwd;               // chdir before exec
    double timeout_s = 30;         // SIGKILL after this long
    int stdin_fd = -1;             // default /dev/null
    int extra_fd = -1;             // left open (inheritable) in the child as fd 7
    // Called with stdout so far while the process runs; return true once done.
    std::function<bool(const std::string&)> on_output;
};

struct Proc {
    int status = -1;  // exit code, 128+N for signal N, -1 when it could not run
    std::string out, err;
    double seconds = 0;
};

int decode_status(int ws) {
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
    return -1;
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// fork + exec with stdin from /dev/null and stdout/stderr to out_fd/err_fd.
pid_t spawn(const std::vector<std::string>& argv, const Opts& o, int out_fd, int err_fd) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (const auto& e : o.env) env.push_back(e);
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    pid_t pid = fork();
    if (pid != 0) return pid;
    // Child: the test binary is single-threaded here, so plain calls are fine.
    int in = o.stdin_fd >= 0 ? o.stdin_fd : open("/dev/null", O_RDONLY);
    if (o.extra_fd >= 0) dup2(o.extra_fd, 7);  // dup2 clears FD_CLOEXEC
    dup2(in, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    if (!o.cwd.empty() && chdir(o.cwd.c_str()) < 0) _exit(126);
    if (o.as) {
        if (setgroups(o.as->groups.size(), o.as->groups.data()) < 0 || setresgid(o.as->gid, o.as->gid, o.as->gid) < 0 ||
            setresuid(o.as->uid, o.as->uid, o.as->uid) < 0)
            _exit(126);
    }
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
}

Proc run_cmd(const std::vector<std::string>& argv, const Opts& o = {}) {
    Proc p;
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) return p;
    auto t0 = Clock::now();
    pid_t pid = spawn(argv, o, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    bool open_out = true, open_err = true, killed = false, hooked = !o.on_output;
    while (open_out || open_err) {
        pollfd fds[2] = {{open_out ? out[0] : -1, POLLIN, 0}, {open_err ? err[0] : -1, POLLIN, 0}};
        int r = poll(fds, 2, hooked ? 200 : 100);
        if (r < 0 && errno != EINTR) break;
        if (since(t0) > o.timeout_s) {
            // A job that outlives moatctl may hold the pipes open: stop reading.
            if (!killed) kill(pid, SIGKILL);
            killed = true;
            break;
        }
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[65536];
            ssize_t n = read(i == 0 ? out[0] : err[0], buf, sizeof buf);
            if (n <= 0) (i == 0 ? open_out : open_err) = false;
            else (i == 0 ? p.out : p.err).append(buf, size_t(n));
        }
        if (!hooked) hooked = o.on_output(p.out);
    }
    close(out[0]);
    close(err[0]);
    int ws = 0;
    if (waitpid(pid, &ws, 0) == pid) p.status = decode_status(ws);
    p.seconds = since(t0);
    if (killed) p.err += "\n[scenario_test: killed after " + std::to_string(o.timeout_s) + " s]";
    return p;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_text(const std::string& path, const std::string& text, mode_t mode = 0644) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    chmod(path.c_str(), mode);
}

bool wait_for(const std::function<bool()>& pred, double timeout_s, double step_s = 0.05) {
    auto t0 = Clock::now();
    for (;;) {
        if (pred()) return true;
        if (since(t0) > timeout_s) return false;
        std::this_thread::sleep_for(std::chrono::duration<double>(step_s));
    }
}

// A process running in the background with its output in files.
class Bg {
public:
    Bg(const std::vector<std::string>& argv, const std::string& dir, const Opts& o = {}) {
        static int n = 0;
        m_out = dir + "/bg" + std::to_string(getpid()) + "-" + std::to_string(++n) + ".out";
        m_err = m_out + ".err";
        int of = open(m_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int ef = open(m_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        m_pid = spawn(argv, o, of, ef);
        close(of);
        close(ef);
    }
    ~Bg() {
        if (m_pid > 0 && m_status < 0) {
            kill(m_pid, SIGKILL);
            waitpid(m_pid, nullptr, 0);
        }
    }
    Bg(const Bg&) = delete;
    Bg& operator=(const Bg&) = delete;
    pid_t pid() const { return m_pid; }
    bool running() {
        if (m_status >= 0) return false;
        int ws = 0;
        if (waitpid(m_pid, &ws, WNOHANG) == m_pid) {
            m_status = decode_status(ws);
            return false;
        }
        return true;
    }
    // Exit status, or -1 when it is still running after timeout_s.
    int wait(double timeout_s) {
        wait_for([&] { return !running(); }, timeout_s, 0.02);
        return m_status;
    }
    std::string out() const { return read_text(m_out); }
    std::string err() const { return read_text(m_err); }

private:
    pid_t m_pid = -1;
    int m_status = -1;
    std::string m_out, m_err;
};


// A TCP listener on the host's 127.0.0.1 (the test's network namespace).
class HostListener {
public:
    HostListener() {
        m_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (m_fd < 0 || bind(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(m_fd, 8) < 0 ||
            getsockname(m_fd, reinterpret_cast<sockaddr*>(&a), &len) < 0)
            return;
        m_port = ntohs(a.sin_port);
    }
    ~HostListener() {
        if (m_fd >= 0) close(m_fd);
    }
    HostListener(const HostListener&) = delete;
    HostListener& operator=(const HostListener&) = delete;
    int port() const { return m_port; }
    // How many connections are waiting to be accepted (all of them are accepted).
    int accepted() {
        int n = 0;
        for (int c; (c = accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) close(c);
        return n;
    }

private:
    int m_fd = -1;
    int m_port = 0;
};

// ---- output parsing -----------------------------------------------------------

// The value of the first `key=value` token in moat-testprog's output.
std::optional<std::string> kv(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string tok;
    while (in >> tok)
        if (tok.rfind(key + "=", 0) == 0) return tok.substr(key.size() + 1);
    return std::nullopt;
}

std::vector<json> json_lines(const std::string& text) {
    std::vector<json> v;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded()) ADD_FAILURE() << "not a JSON line: " << line;
        else v.push_back(std::move(j));
    }
    return v;
}

std::vector<json> denials(const std::vector<json>& events, const std::string& syscall = "") {
    std::vector<json> v;
    for (const auto& e : events)
        if (e.value("kind", "") == "denial" && (syscall.empty() || e.value("syscall", "") == syscall)) v.push_back(e);
    return v;
}

inline uint64_t count_sum(const std::vector<json>& ds) {
    uint64_t n = 0;
    for (const auto& d : ds) n += d.value("count", uint64_t(0));
    return n;
}

inline bool is_rfc3339_utc(const json& v) {
    static const std::regex re(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$)");
    return v.is_string() && std::regex_match(v.get<std::string>(), re);
}

// ---- the daemon ---------------------------------------------------------------

// Whether this machine delivers i386 syscalls (`int $0x80`) at all. Some
// hypervisors (PVM guests) do not: the instruction faults with SIGSEGV even
// outside any sandbox, so a test of how Moat handles the i386 ABI has nothing
// to observe there.
inline bool int80_available() {
    pid_t pid = fork();
    if (pid == 0) {
        long ret;
        asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");  // i386 getpid
        _exit(ret > 0 ? 0 : 1);
    }
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) != pid) return true;  // cannot tell: run the test
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

// Runs fn in a forked child under the credentials `as` (before it connects
// anywhere) and returns fn's result; {"child_error": ...} when the child failed.
// The test process must have no other threads when this is called.
inline json as_user(const Creds& as, const std::function<json()>& fn, double timeout_s = 60) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return {{"child_error", "pipe2"}};
    pid_t pid = fork();
    if (pid == 0) {
        ::close(p[0]);
        json r;
        if (setgroups(as.groups.size(), as.groups.data()) < 0 || setresgid(as.gid, as.gid, as.gid) < 0 ||
            setresuid(as.uid, as.uid, as.uid) < 0)
            r = {{"child_error", std::string("switching credentials: ") + strerror(errno)}};
        else
            r = fn();
        std::string s = r.dump();
        for (size_t off = 0; off < s.size();) {
            ssize_t n = write(p[1], s.data() + off, s.size() - off);
            if (n <= 0) break;
            off += size_t(n);
        }
        _exit(0);
    }
    ::close(p[1]);
    std::string out;
    auto t0 = Clock::now();
    for (;;) {
        pollfd pf{p[0], POLLIN, 0};
        if (since(t0) > timeout_s) break;
        if (poll(&pf, 1, 200) <= 0) continue;
        char buf[4096];
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, size_t(n));
    }
    ::close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    json j = json::parse(out, nullptr, false);
    return j.is_discarded() ? json{{"child_error", "no result; child wrote: " + out}} : j;
}

int connect_unix(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

std::string frame_of(const std::string& payload) {
    uint32_t len = htonl(uint32_t(payload.size()));
    return std::string(reinterpret_cast<const char*>(&len), 4) + payload;
}

constexpr size_t kScmMaxFd = 253;  // the kernel's SCM_MAX_FD: fds one sendmsg may carry

// A raw protocol client: frames out (optionally with SCM_RIGHTS), frames in.
class RawConn {
public:
    explicit RawConn(const std::string& sock) : m_fd(connect_unix(sock)) {}
    ~RawConn() { close(); }
    RawConn(const RawConn&) = delete;
    RawConn& operator=(const RawConn&) = delete;

    bool ok() const { return m_fd >= 0; }
    int fd() const { return m_fd; }
    void close() {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = -1;
    }

    // Sends every byte (blocking); fds go with the first sendmsg.
    bool send_all(const std::string& bytes, const std::vector<int>& fds = {}) {
        size_t off = 0;
        bool first = true;
        while (off < bytes.size()) {
            iovec iov{const_cast<char*>(bytes.data() + off), bytes.size() - off};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kScmMaxFd)] = {};
            if (first && !fds.empty()) {
                if (fds.size() > kScmMaxFd) return false;
                msg.msg_control = cbuf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
                cmsghdr* h = CMSG_FIRSTHDR(&msg);
                h->cmsg_level = SOL_SOCKET;
                h->cmsg_type = SCM_RIGHTS;
                h->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
                memcpy(CMSG_DATA(h), fds.data(), sizeof(int) * fds.size());
            }
            ssize_t n = sendmsg(m_fd, &msg, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            off += size_t(n);
            first = false;
        }
        return true;
    }
    bool send_frame(const std::string& payload, const std::vector<int>& fds = {}) {
        return send_all(frame_of(payload), fds);
    }

    // The next answer frame, or nullopt at EOF, on error or after timeout_s.
    std::optional<std::string> recv_frame(double timeout_s) {
        auto t0 = Clock::now();
        for (;;) {
            if (m_in.size() >= 4) {
                uint32_t len;
                memcpy(&len, m_in.data(), 4);
                len = ntohl(len);
                if (m_in.size() >= 4 + size_t(len)) {
                    std::string p = m_in.substr(4, len);
                    m_in.erase(0, 4 + size_t(len));
                    return p;
                }
            }
            if (m_eof || m_fd < 0) return std::nullopt;
            double left = timeout_s - since(t0);
            if (left <= 0) return std::nullopt;
            if (!fill(left)) continue;
        }
    }

    // One request, one answer; null json when nothing (parseable) came back.
    json request(const json& req, double timeout_s = 20.0, const std::vector<int>& fds = {}) {
        return request_text(req.dump(), timeout_s, fds);
    }
    json request_text(const std::string& payload, double timeout_s = 20.0, const std::vector<int>& fds = {}) {
        if (!send_frame(payload, fds)) return json();
        auto f = recv_frame(timeout_s);
        if (!f) return json();
        json j = json::parse(*f, nullptr, false);
        return j.is_discarded() ? json() : j;
    }

    // True when the server closes the connection (EOF or reset) within
    // timeout_s; whatever arrives meanwhile is discarded.
    bool wait_eof(double timeout_s) {
        auto t0 = Clock::now();
        while (!m_eof && m_fd >= 0) {
            double left = timeout_s - since(t0);
            if (left <= 0) return false;
            fill(left);
            m_in.clear();
        }
        return true;
    }

private:
    // Waits up to timeout_s for input; false when none came.
    bool fill(double timeout_s) {
        pollfd p{m_fd, POLLIN, 0};
        int r = poll(&p, 1, std::max(1, int(timeout_s * 1000)));
        if (r <= 0) return false;
        char buf[65536];
        ssize_t n = recv(m_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
        if (n <= 0) {
            m_eof = true;
            return false;
        }
        m_in.append(buf, size_t(n));
        return true;
    }

    int m_fd = -1;
    std::string m_in;
    bool m_eof = false;
};

class Daemon {
public:
    // state_dir and socket live under dir; the cgroup parent is unique per
    // daemon so concurrent runs (other suites, other developers) never share one.
    // The parent also carries the start time: a pid the kernel hands out again
    // (a later test process) never meets groups an earlier one left behind.
    Daemon(const std::string& dir, const std::string& name)
        : Daemon(dir, name, "moat-scn-" + std::to_string(getpid()) + "-" + std::to_string(start_stamp()) + "-" + name) {}
    // With an explicit cgroup parent (tests of moatd's hold on it).
    Daemon(const std::string& dir, const std::string& name, std::string cgparent)
        : m_state(dir + "/" + name + "-state"),
          m_sock(dir + "/" + name + ".sock"),
          m_log(dir + "/" + name + ".log"),
          m_cgparent(std::move(cgparent)) {}
    ~Daemon() {
        if (m_pid > 0) {
            kill(m_pid, SIGKILL);
            waitpid(m_pid, nullptr, 0);
        }
        remove_cgroups();
    }

    const std::string& socket() const { return m_sock; }
    const std::string& state() const { return m_state; }
    const std::string& cgroup_parent() const { return m_cgparent; }
    pid_t pid() const { return m_pid; }
    std::string log() const { return read_text(m_log); }

    // The job uid range: moatd refuses to start on a range another running
    // moatd holds (docs/cli.md, --uid-lock-dir), and test processes run in
    // parallel, so each daemon takes its own kUidSlot-sized slot above the
    // default range, starting from one derived from the test process and
    // trying the next while moatd says the range is in use.
    static constexpr uint32_t kUidFirst = 800000, kUidSlot = 2048, kUidSlots = 4096;
    uint32_t uid_base() const { return m_uid_base; }

    // Starts moatd (with extra flags, if any) and waits until its socket
    // accepts connections.
    bool start(std::string* why, const std::vector<std::string>& more = {}) {
        static uint32_t next = uint32_t(getpid()) * 7;
        for (int attempt = 0;; ++attempt) {
            m_uid_base = kUidFirst + (next++ % kUidSlots) * kUidSlot;
            size_t log_before = log().size();
            std::vector<std::string> args = {"--uid-base", std::to_string(m_uid_base), "--uid-count",
                                             std::to_string(kUidSlot)};
            args.insert(args.end(), more.begin(), more.end());
            if (start_with(args, why)) return true;
            if (attempt >= 50 || log().find("give each moatd its own", log_before) == std::string::npos) return false;
        }
    }

    // Starts moatd with these extra arguments (a uid range among them).
    bool start_with(const std::vector<std::string>& extra, std::string* why) {
        int lf = open(m_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        Opts o;
        std::vector<std::string> argv = {MOATD_PATH, "--state-dir", m_state, "--socket", m_sock, "--cgroup-parent",
                                         m_cgparent};
        argv.insert(argv.end(), extra.begin(), extra.end());
        m_pid = spawn(argv, o, lf, lf);
        close(lf);
        bool up = wait_for(
            [&] {
                int ws;
                if (waitpid(m_pid, &ws, WNOHANG) == m_pid) {
                    m_pid = -1;
                    return true;
                }
                int fd = connect_unix(m_sock);
                if (fd < 0) return false;
                close(fd);
                return true;
            },
            10);
        if (m_pid < 0 || !up) {
            *why = "moatd did not come up; its log:\n" + log();
            return false;
        }
        return true;
    }

    // SIGTERM; returns moatd's exit status (-1: still running after timeout).
    int terminate(double timeout_s = 15) {
        if (m_pid <= 0) return -1;
        kill(m_pid, SIGTERM);
        int status = -1;
        wait_for(
            [&] {
                int ws;
                if (waitpid(m_pid, &ws, WNOHANG) != m_pid) return false;
                status = decode_status(ws);
                return true;
            },
            timeout_s);
        if (status >= 0) m_pid = -1;
        return status;
    }

    void kill9() {
        if (m_pid <= 0) return;
        kill(m_pid, SIGKILL);
        waitpid(m_pid, nullptr, 0);
        m_pid = -1;
    }

private:
    static long long start_stamp() {
        static const long long t = std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count() %
                                   100000000;
        return t;
    }

    void remove_cgroups() {
        // Only our own per-daemon parent group, in every hierarchy (v1) or at
        // the root (v2); deepest first, as rmdir needs empty groups. A killed
        // moatd's orphan reaper may still be emptying job groups: retry a while.
        std::error_code ec;
        std::vector<fs::path> parents = {fs::path("/sys/fs/cgroup") / m_cgparent};
        for (const auto& hier : fs::directory_iterator("/sys/fs/cgroup", ec))
            parents.push_back(hier.path() / m_cgparent);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        for (;;) {
            bool left = false;
            for (const auto& p : parents) {
                if (!fs::is_directory(p, ec)) continue;
                std::vector<fs::path> dirs;
                for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); ++it)
                    if (it->is_directory(ec)) dirs.push_back(it->path());
                for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) rmdir(d->c_str());
                if (rmdir(p.c_str()) < 0 && errno != ENOENT) left = true;
            }
            if (!left || std::chrono::steady_clock::now() > until) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    std::string m_state, m_sock, m_log, m_cgparent;
    pid_t m_pid = -1;
    uint32_t m_uid_base = 0;
};

// ---- the fixture --------------------------------------------------------------

struct JobRun {
    Proc proc;
    int64_t id = 0;  // 0: no id file written
};

class Scenario : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        s_skip.clear();
        if (geteuid() != 0) {
            s_skip = "scenario tests need root (moatd uses cgroups, job uids and seccomp notification)";
            return;
        }
        char tmpl[] = "/tmp/moat-scn-XXXXXX";
        if (!mkdtemp(tmpl)) {
            s_skip = std::string("mkdtemp: ") + strerror(errno);
            return;
        }
        s_root = tmpl;
        // The job's uid must be able to traverse to and execute moat-testprog.
        chmod(s_root.c_str(), 0755);
        mkdir((s_root + "/bin").c_str(), 0755);
        mkdir((s_root + "/policies").c_str(), 0755);
        mkdir((s_root + "/rw").c_str(), 0777);
        chmod((s_root + "/rw").c_str(), 0777);  // umask
        // moatctl (the front) runs moatctl-light (next to it) for all but the
        // plain run, which runs moatctl-full for replay, output and the policy tools.
        for (auto [src, dst] : {std::pair{TESTPROG_PATH, "moat-testprog"}, std::pair{MOATCTL_PATH, "moatctl"},
                                std::pair{MOATCTL_LIGHT_PATH, "moatctl-light"},
                                std::pair{MOATCTL_FULL_PATH, "moatctl-full"}}) {
            std::string to = s_root + "/bin/" + dst;
            std::error_code ec;
            fs::copy_file(src, to, fs::copy_options::overwrite_existing, ec);
            if (ec) {
                s_fatal = std::string("copying ") + src + ": " + ec.message();
                return;
            }
            chmod(to.c_str(), 0755);
        }
        s_daemon = new Daemon(s_root, "moatd");
        std::string why;
        std::vector<std::string> args = s_daemon_args;
        for (auto& a : args)
            for (size_t p; (p = a.find("@ROOT@")) != std::string::npos;) a.replace(p, 6, s_root);
        if (!s_daemon->start(&why, args)) s_fatal = why;
    }

    static void TearDownTestSuite() {
        if (s_daemon) {
            int st = s_daemon->terminate();
            EXPECT_EQ(st, 0) << "moatd did not exit 0 on SIGTERM; its log:\n" << s_daemon->log();
            delete s_daemon;
            s_daemon = nullptr;
        }
        if (!s_root.empty()) {
            std::error_code ec;
            fs::remove_all(s_root, ec);
            s_root.clear();
        }
    }

    void SetUp() override {
        if (!s_skip.empty()) GTEST_SKIP() << s_skip;
        ASSERT_TRUE(s_fatal.empty()) << s_fatal;
    }

    void TearDown() override {
        if (HasFailure() && s_daemon) std::cerr << "---- moatd log ----\n" << s_daemon->log() << "-------------------\n";
    }

    static std::string testprog() { return s_root + "/bin/moat-testprog"; }
    static std::string rw() { return s_root + "/rw"; }

    // A policy from tests/scenario/policies with @TESTDIR@ and @RWDIR@ filled in.
    static std::string policy(const std::string& name) {
        std::string text = read_text(std::string(POLICY_DIR) + "/" + name + ".toml");
        EXPECT_FALSE(text.empty()) << "no policy " << name;
        return write_policy(name, text);
    }

    // Policy text written by a test (same placeholders, plus @ROOT@ for the
    // suite's temp dir); returns the file's path.
    static std::string write_policy(const std::string& name, std::string text) {
        for (auto [ph, val] : {std::pair<std::string, std::string>{"@TESTDIR@", s_root + "/bin"},
                               {"@RWDIR@", rw()},
                               {"@ROOT@", s_root}})
            for (size_t p; (p = text.find(ph)) != std::string::npos;) text.replace(p, ph.size(), val);
        std::string path = s_root + "/policies/" + name + ".toml";
        write_text(path, text);
        return path;
    }

    static Proc ctl(const Daemon& d, std::vector<std::string> args, Opts o = {}) {
        args.insert(args.begin(), {s_root + "/bin/moatctl", "--socket", d.socket()});
        if (o.cwd.empty()) o.cwd = s_root;
        return run_cmd(args, o);
    }
    static Proc ctl(std::vector<std::string> args, Opts o = {}) { return ctl(*s_daemon, std::move(args), std::move(o)); }

    static std::string new_id_file() {
        static int n = 0;
        std::string f = s_root + "/id-" + std::to_string(++n);
        unlink(f.c_str());
        return f;
    }

    static int64_t read_id(const std::string& id_file) {
        std::string s = read_text(id_file);
        if (s.empty() || s.back() != '\n') return 0;
        return std::stoll(s);
    }

    // moatctl run --policy P --id-file F [RUN_OPTS] -- PROGRAM ARGS, in the foreground.
    static JobRun run_job(const Daemon& d, const std::string& policy_path, const std::vector<std::string>& prog,
                          Opts o = {}, const std::vector<std::string>& run_opts = {}) {
        std::string idf = new_id_file();
        std::vector<std::string> args = {"run", "--policy", policy_path, "--id-file", idf};
        args.insert(args.end(), run_opts.begin(), run_opts.end());
        args.push_back("--");
        args.insert(args.end(), prog.begin(), prog.end());
        JobRun r;
        r.proc = ctl(d, args, o);
        r.id = read_id(idf);
        return r;
    }
    static JobRun run_job(const std::string& policy_path, const std::vector<std::string>& prog, Opts o = {}) {
        return run_job(*s_daemon, policy_path, prog, std::move(o));
    }
    // The same with moat-testprog as the program.
    static JobRun run_tp(const std::string& policy_name, const std::vector<std::string>& args, Opts o = {}) {
        std::vector<std::string> prog = {testprog()};
        prog.insert(prog.end(), args.begin(), args.end());
        return run_job(policy(policy_name), prog, std::move(o));
    }

    static json show(const Daemon& d, int64_t id) {
        Proc p = ctl(d, {"show", std::to_string(id), "--json"});
        EXPECT_EQ(p.status, 0) << "moatctl show " << id << ": " << p.err;
        json j = json::parse(p.out, nullptr, false);
        EXPECT_TRUE(j.is_object()) << "show --json printed: " << p.out;
        return j.is_object() ? j : json::object();
    }
    static json show(int64_t id) { return show(*s_daemon, id); }

    static std::vector<json> events(int64_t id) {
        Proc p = ctl({"events", std::to_string(id), "--json"});
        EXPECT_EQ(p.status, 0) << "moatctl events " << id << ": " << p.err;
        return json_lines(p.out);
    }

    static std::string cause(const json& job) {
        const json& t = job.value("termination", json::object());
        auto it = t.find("cause");
        return it != t.end() && it->is_string() ? it->get<std::string>() : "(none)";
    }
    static std::string detail(const json& job) {
        const json& t = job.value("termination", json::object());
        auto it = t.find("detail");
        return it != t.end() && it->is_string() ? it->get<std::string>() : "";
    }

    // Waits until the background job with this id file is running and has a pid.
    // moatctl run --policy POLICY -- PROG... in the background (into `bg`);
    // returns the job's id once it runs (0 if it did not).
    static int64_t run_in_background(std::unique_ptr<Bg>& bg, const std::string& policy_path,
                                     const std::vector<std::string>& prog) {
        std::string idf = new_id_file();
        std::vector<std::string> argv = {s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy",
                                         policy_path, "--id-file", idf, "--"};
        argv.insert(argv.end(), prog.begin(), prog.end());
        bg = std::make_unique<Bg>(argv, s_root);
        json running = wait_running(*s_daemon, idf);
        return running.value("state", "") == "running" ? read_id(idf) : 0;
    }

    static json wait_running(const Daemon& d, const std::string& idf, double timeout_s = 10) {
        json j;
        wait_for(
            [&] {
                int64_t id = read_id(idf);
                if (!id) return false;
                Proc p = ctl(d, {"show", std::to_string(id), "--json"});
                j = json::parse(p.out, nullptr, false);
                return j.is_object() && j.value("state", "") == "running" && j["pid"].is_number_integer();
            },
            timeout_s);
        return j;
    }

    static inline std::string s_skip, s_fatal, s_root;
    // Extra moatd flags for a suite ("@ROOT@" becomes the suite's temp dir);
    // set before Scenario::SetUpTestSuite().
    static inline std::vector<std::string> s_daemon_args;
    static inline Daemon* s_daemon = nullptr;
};

std::string describe(const JobRun& r) {
    return "status " + std::to_string(r.proc.status) + ", job " + std::to_string(r.id) + "\nstdout:\n" + r.proc.out +
           "\nstderr:\n" + r.proc.err;
}

}  // namespace
