// Scenario tests: real jobs through a real moatd, checked the way an operator
// or a script sees them (moatctl's exit status, stderr, and its --json output).
//
// Each test binary process starts its own moatd (fresh state dir, socket and
// cgroup parent) in SetUpTestSuite; gtest_discover_tests runs every test in
// its own process, so every test gets a fresh daemon. Tests that kill or stop
// the daemon start a private one.
//
// The job runs as an unprivileged uid under Landlock, so it cannot reach the
// build tree: moat-testprog (and moatctl, for the non-root client tests) are
// copied into a world-readable temp dir that the policies list in read_only.
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

struct Opts {
    std::vector<std::string> env;  // extra NAME=VALUE entries
    std::optional<Creds> as;       // switch to these credentials before exec
    std::string cwd;               // chdir before exec
    double timeout_s = 30;         // SIGKILL after this long
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
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
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
    bool open_out = true, open_err = true, killed = false;
    while (open_out || open_err) {
        pollfd fds[2] = {{open_out ? out[0] : -1, POLLIN, 0}, {open_err ? err[0] : -1, POLLIN, 0}};
        int r = poll(fds, 2, 200);
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

uint64_t count_sum(const std::vector<json>& ds) {
    uint64_t n = 0;
    for (const auto& d : ds) n += d.value("count", uint64_t(0));
    return n;
}

bool is_rfc3339_utc(const json& v) {
    static const std::regex re(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$)");
    return v.is_string() && std::regex_match(v.get<std::string>(), re);
}

// ---- the daemon ---------------------------------------------------------------

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

class Daemon {
public:
    // state_dir and socket live under dir; the cgroup parent is unique per
    // daemon so concurrent runs (other suites, other developers) never share one.
    Daemon(const std::string& dir, const std::string& name)
        : m_state(dir + "/" + name + "-state"),
          m_sock(dir + "/" + name + ".sock"),
          m_log(dir + "/" + name + ".log"),
          m_cgparent("moat-scn-" + std::to_string(getpid()) + "-" + name) {}
    ~Daemon() {
        if (m_pid > 0) {
            kill(m_pid, SIGKILL);
            waitpid(m_pid, nullptr, 0);
        }
        remove_cgroups();
    }

    const std::string& socket() const { return m_sock; }
    const std::string& state() const { return m_state; }
    pid_t pid() const { return m_pid; }
    std::string log() const { return read_text(m_log); }

    // Starts moatd and waits until its socket accepts connections.
    bool start(std::string* why) {
        int lf = open(m_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        Opts o;
        m_pid = spawn({MOATD_PATH, "--state-dir", m_state, "--socket", m_sock, "--cgroup-parent", m_cgparent}, o, lf,
                      lf);
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
    void remove_cgroups() {
        // Only our own per-daemon parent group, in every hierarchy (v1) or at
        // the root (v2); deepest first, as rmdir needs empty groups.
        std::error_code ec;
        std::vector<fs::path> parents = {fs::path("/sys/fs/cgroup") / m_cgparent};
        for (const auto& hier : fs::directory_iterator("/sys/fs/cgroup", ec))
            parents.push_back(hier.path() / m_cgparent);
        for (const auto& p : parents) {
            if (!fs::is_directory(p, ec)) continue;
            std::vector<fs::path> dirs;
            for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); ++it)
                if (it->is_directory(ec)) dirs.push_back(it->path());
            for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) rmdir(d->c_str());
            rmdir(p.c_str());
        }
    }

    std::string m_state, m_sock, m_log, m_cgparent;
    pid_t m_pid = -1;
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
        for (auto [src, dst] : {std::pair{TESTPROG_PATH, "moat-testprog"}, std::pair{MOATCTL_PATH, "moatctl"}}) {
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
        if (!s_daemon->start(&why)) s_fatal = why;
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
        for (auto [ph, val] : {std::pair<std::string, std::string>{"@TESTDIR@", s_root + "/bin"}, {"@RWDIR@", rw()}})
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

    // moatctl run --policy P --id-file F -- PROGRAM ARGS, in the foreground.
    static JobRun run_job(const Daemon& d, const std::string& policy_path, const std::vector<std::string>& prog,
                          Opts o = {}) {
        std::string idf = new_id_file();
        std::vector<std::string> args = {"run", "--policy", policy_path, "--id-file", idf, "--"};
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
    static inline Daemon* s_daemon = nullptr;
};

std::string describe(const JobRun& r) {
    return "status " + std::to_string(r.proc.status) + ", job " + std::to_string(r.id) + "\nstdout:\n" + r.proc.out +
           "\nstderr:\n" + r.proc.err;
}

// ---- 1. the issue's "done when" ------------------------------------------------

TEST_F(Scenario, DemoMkdirIsDeniedAndRecorded) {
    rmdir("/tmp/moat-demo");
    JobRun r = run_job(std::string(POLICY_DIR) + "/demo.toml", {"/bin/mkdir", "/tmp/moat-demo"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_NE(r.proc.err.find("Operation not permitted"), std::string::npos) << describe(r);
    EXPECT_FALSE(fs::exists("/tmp/moat-demo"));
    ASSERT_GT(r.id, 0) << describe(r);

    auto ev = events(r.id);
    for (const auto& e : ev) {
        EXPECT_TRUE(e.contains("time") && e.contains("job") && e.contains("kind")) << e.dump();
        EXPECT_EQ(e.value("job", int64_t(-1)), r.id) << e.dump();
    }
    auto ds = denials(ev, "mkdir");
    ASSERT_EQ(ds.size(), 1u) << "events:\n" << [&] { std::string s; for (auto& e : ev) s += e.dump() + "\n"; return s; }();
    const json& d = ds[0];
    EXPECT_EQ(d.value("decoded", json()), "/tmp/moat-demo") << d.dump();
    ASSERT_TRUE(d["module"].is_string()) << d.dump();
    EXPECT_EQ(d["module"].get<std::string>().rfind("libc.so.6+0x", 0), 0u) << d.dump();
    EXPECT_EQ(d.value("arch", ""), "x86_64") << d.dump();
    EXPECT_EQ(d.value("nr", -1), 83) << d.dump();
    ASSERT_TRUE(d["args"].is_array()) << d.dump();
    EXPECT_EQ(d["args"].size(), 6u) << d.dump();
    for (const auto& a : d["args"]) EXPECT_TRUE(a.is_number_integer()) << d.dump();
    EXPECT_EQ(d.value("action", ""), "errno:EPERM") << d.dump();
    EXPECT_EQ(d.value("count", -1), 1) << d.dump();
    EXPECT_TRUE(d["pid"].is_number_integer()) << d.dump();
    ASSERT_TRUE(d["ip"].is_string()) << d.dump();
    EXPECT_EQ(d["ip"].get<std::string>().rfind("0x", 0), 0u) << d.dump();

    json j = show(r.id);
    EXPECT_EQ(j.value("id", int64_t(-1)), r.id);
    EXPECT_EQ(j.value("tier", ""), "seccomp");
    EXPECT_EQ(j.value("argv", json()), json({"/bin/mkdir", "/tmp/moat-demo"}));
    ASSERT_TRUE(j["policy"].is_object()) << j.dump();
    EXPECT_EQ(j["policy"].value("name", ""), "demo");
    EXPECT_TRUE(j["policy"].contains("version")) << j.dump();
    ASSERT_TRUE(j["policy"]["sha256"].is_string()) << j.dump();
    EXPECT_TRUE(std::regex_match(j["policy"]["sha256"].get<std::string>(), std::regex("^[0-9a-f]{64}$"))) << j.dump();
    EXPECT_TRUE(is_rfc3339_utc(j["started_at"])) << j.dump();
    EXPECT_TRUE(is_rfc3339_utc(j["ended_at"])) << j.dump();
    EXPECT_EQ(j.value("state", ""), "finished");
    EXPECT_EQ(j.value("exit_code", json()), 1);
    EXPECT_TRUE(j.contains("signal") && j["signal"].is_null()) << j.dump();
    EXPECT_EQ(cause(j), "exited");
    EXPECT_TRUE(j["termination"].contains("detail")) << j.dump();
    ASSERT_TRUE(j["resources"].is_object()) << j.dump();
    for (const char* k : {"cpu_time_ns", "peak_memory_bytes", "peak_pids"})
        EXPECT_TRUE(j["resources"][k].is_number_integer()) << k << " in " << j.dump();
    EXPECT_EQ(j.value("denial_count", -1), 1) << j.dump();
}

// ---- 2. every termination cause ------------------------------------------------

TEST_F(Scenario, CauseExited) {
    JobRun r = run_tp("base", {"exit", "3"});
    EXPECT_EQ(r.proc.status, 3) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "exited") << j.dump();
    EXPECT_EQ(j.value("exit_code", json()), 3) << j.dump();
    EXPECT_TRUE(j["signal"].is_null()) << j.dump();
    EXPECT_EQ(j.value("state", ""), "finished");
}

TEST_F(Scenario, CauseSignaled) {
    JobRun r = run_tp("base", {"signal", std::to_string(SIGUSR1)});
    EXPECT_EQ(r.proc.status, 128 + SIGUSR1) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "signaled") << j.dump();
    EXPECT_EQ(j.value("signal", json()), SIGUSR1) << j.dump();
    EXPECT_TRUE(j["exit_code"].is_null()) << j.dump();

    JobRun a = run_tp("base", {"signal", std::to_string(SIGABRT)});
    EXPECT_EQ(a.proc.status, 128 + SIGABRT) << describe(a);
    EXPECT_EQ(cause(show(a.id)), "signaled");
}

TEST_F(Scenario, CauseSeccompKillProcess) {
    JobRun r = run_tp("kill", {"deny-loop", "5"});
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "calls"), std::nullopt) << "the job went on after the denied call: " << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "seccomp") << j.dump();
    EXPECT_NE(detail(j).find("rmdir"), std::string::npos) << j.dump();
    auto ds = denials(events(r.id), "rmdir");
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].value("action", ""), "kill-process") << ds[0].dump();
    EXPECT_EQ(ds[0].value("count", -1), 1) << ds[0].dump();
}

TEST_F(Scenario, CauseMemory) {
    JobRun r = run_tp("memory", {"alloc", "200"});
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "alloc"), std::nullopt) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "memory") << j.dump();
    EXPECT_LE(j["resources"].value("peak_memory_bytes", uint64_t(0)), uint64_t(40) << 20) << j.dump();
}

TEST_F(Scenario, CauseWallTime) {
    JobRun r = run_tp("wall", {"sleep", "10"});
    EXPECT_LT(r.proc.seconds, 5.0) << describe(r);
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "slept"), std::nullopt) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "wall-time") << j.dump();
}

TEST_F(Scenario, CauseCpuTime) {
    JobRun r = run_tp("cpu", {"spin", "30"});
    EXPECT_LT(r.proc.seconds, 10.0) << describe(r);
    EXPECT_GT(r.proc.status, 128) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "cpu-time") << j.dump();
    ASSERT_TRUE(j["signal"].is_number_integer()) << j.dump();
    EXPECT_EQ(r.proc.status, 128 + j["signal"].get<int>()) << j.dump();
    EXPECT_GE(j["resources"].value("cpu_time_ns", uint64_t(0)), 900'000'000u) << j.dump();
}

TEST_F(Scenario, CauseFileSize) {
    std::string out = rw() + "/big";
    JobRun r = run_tp("fsize", {"writefile", out, std::to_string(10 << 20)});
    EXPECT_EQ(r.proc.status, 128 + SIGXFSZ) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "file-size") << j.dump();
    EXPECT_EQ(j.value("signal", json()), SIGXFSZ) << j.dump();
    std::error_code ec;
    EXPECT_EQ(fs::file_size(out, ec), uint64_t(1) << 20) << ec.message();
}

TEST_F(Scenario, CauseStopped) {
    std::string idf = new_id_file();
    Bg job({s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy", policy("base"), "--id-file", idf,
            "--", testprog(), "sleep", "30"},
           s_root);
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << job.err();
    int64_t id = read_id(idf);
    auto t0 = Clock::now();
    Proc stop = ctl({"stop", std::to_string(id)});
    EXPECT_EQ(stop.status, 0) << stop.err;
    int st = job.wait(10);
    EXPECT_LT(since(t0), 5.0);
    EXPECT_GT(st, 128) << "moatctl run ended with " << st << "\n" << job.err();
    json j = show(id);
    EXPECT_EQ(cause(j), "stopped") << j.dump();
    EXPECT_EQ(j.value("state", ""), "finished") << j.dump();
    pid_t pid = running["pid"].get<pid_t>();
    EXPECT_TRUE(wait_for([&] { return kill(pid, 0) < 0 && errno == ESRCH; }, 2)) << "job pid " << pid << " still alive";
}

TEST_F(Scenario, CauseStoppedWhenClientDisconnects) {
    std::string idf = new_id_file();
    Bg job({s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy", policy("base"), "--id-file", idf,
            "--", testprog(), "sleep", "30"},
           s_root);
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump();
    int64_t id = read_id(idf);
    kill(job.pid(), SIGKILL);  // no chance to send "stop": moatd sees the connection drop
    job.wait(5);
    json j;
    wait_for([&] { j = show(id); return j.value("state", "") == "finished"; }, 5);
    EXPECT_EQ(cause(j), "stopped") << j.dump();
}

TEST_F(Scenario, CauseSupervisorLost) {
    Daemon d(s_root, "lost");
    std::string why;
    ASSERT_TRUE(d.start(&why)) << why;
    std::string idf = new_id_file();
    Bg job({s_root + "/bin/moatctl", "--socket", d.socket(), "run", "--policy", policy("base"), "--id-file", idf, "--",
            testprog(), "sleep", "30"},
           s_root);
    json running = wait_running(d, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << d.log();
    int64_t id = read_id(idf);
    pid_t pid = running["pid"].get<pid_t>();
    ASSERT_GT(pid, 0);

    d.kill9();
    bool gone = wait_for([&] { return kill(pid, 0) < 0 && errno == ESRCH; }, 2);
    EXPECT_TRUE(gone) << "job process " << pid << " outlived moatd by more than 2 s (moatd was SIGKILLed)";
    if (!gone) kill(pid, SIGKILL);  // do not leave it behind
    EXPECT_NE(job.wait(5), 0) << "moatctl run should fail when moatd dies";

    ASSERT_TRUE(d.start(&why)) << why;
    json j = show(d, id);
    EXPECT_EQ(j.value("state", ""), "finished") << j.dump();
    EXPECT_EQ(cause(j), "supervisor-lost") << j.dump();
    EXPECT_TRUE(is_rfc3339_utc(j["ended_at"])) << j.dump();
    EXPECT_EQ(d.terminate(), 0) << d.log();
    if (HasFailure()) std::cerr << "---- log of the killed and restarted moatd ----\n" << d.log();
}

TEST_F(Scenario, CauseSetupFailed) {
    JobRun r = run_job(policy("base"), {s_root + "/bin/no-such-program"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find("no-such-program"), std::string::npos) << describe(r);
    json j;
    if (r.id) {
        j = show(r.id);
    } else {
        Proc p = ctl({"jobs", "--json"});
        json arr = json::parse(p.out, nullptr, false);
        ASSERT_TRUE(arr.is_array() && !arr.empty()) << p.out;
        j = arr[0];
    }
    EXPECT_EQ(cause(j), "setup-failed") << j.dump();
    EXPECT_NE(detail(j).find("no-such-program"), std::string::npos) << j.dump();

    // A program that exists and is executable but lies outside filesystem.read_only
    // (base lists only s_root/bin; merged-/usr systems make /sbin part of /usr).
    std::string outside = s_root + "/moat-testprog-outside";
    std::error_code ec;
    fs::copy_file(testprog(), outside, fs::copy_options::overwrite_existing, ec);
    ASSERT_FALSE(ec) << ec.message();
    chmod(outside.c_str(), 0755);
    JobRun o = run_job(policy("base"), {outside, "exit", "0"});
    EXPECT_EQ(o.proc.status, 125) << describe(o);
    EXPECT_NE(o.proc.err.find("moat-testprog-outside"), std::string::npos) << describe(o);
    ASSERT_GT(o.id, 0) << describe(o);
    EXPECT_EQ(cause(show(o.id)), "setup-failed");
}

TEST_F(Scenario, PidsLimitStopsForkBomb) {
    JobRun r = run_tp("pids", {"forkbomb"});
    EXPECT_EQ(r.proc.status, 0) << describe(r);
    auto forked = kv(r.proc.out, "forked");
    ASSERT_TRUE(forked) << describe(r);
    EXPECT_LT(std::stoi(*forked), 8) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "EAGAIN") << describe(r);
    json j = show(r.id);
    EXPECT_LE(j["resources"].value("peak_pids", 0), 8) << j.dump();
}

// ---- 3. sandbox properties ------------------------------------------------------

TEST_F(Scenario, JobIdentityHasNoPrivileges) {
    JobRun r = run_tp("base", {"ids"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    auto num = [&](const char* k) { auto v = kv(r.proc.out, k); return v ? std::stoull(*v, nullptr, 0) : ~0ULL; };
    EXPECT_GE(num("uid"), 700000u) << r.proc.out;
    EXPECT_EQ(num("euid"), num("uid")) << r.proc.out;
    EXPECT_EQ(num("suid"), num("uid")) << r.proc.out;
    EXPECT_NE(num("gid"), 0u) << r.proc.out;
    EXPECT_EQ(num("egid"), num("gid")) << r.proc.out;
    EXPECT_EQ(num("groups"), 0u) << r.proc.out;
    EXPECT_EQ(kv(r.proc.out, "capget"), "ok") << r.proc.out;
    EXPECT_EQ(num("capeff"), 0u) << r.proc.out;
    EXPECT_EQ(num("capprm"), 0u) << r.proc.out;
    EXPECT_EQ(kv(r.proc.out, "capbnd_read"), "ok") << r.proc.out;
    EXPECT_EQ(num("capbnd"), 0u) << r.proc.out;
    EXPECT_EQ(num("nnp"), 1u) << r.proc.out;
    json j = show(r.id);
    EXPECT_EQ(j.value("uid", json()), num("uid")) << j.dump();
}

TEST_F(Scenario, JobHasOnlyStdioFds) {
    // Give moatctl an extra inheritable fd: it must not reach the job either.
    int extra = open("/dev/null", O_RDONLY);
    ASSERT_GE(extra, 3);
    JobRun r = run_tp("base", {"fds"});
    close(extra);
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "fds"), "0,1,2") << r.proc.out;
}

TEST_F(Scenario, EnvironmentIsOnlyWhatThePolicyLetsThrough) {
    Opts o;
    o.env = {"MOAT_SCN_SECRET=hunter2", "MOAT_SCN_PASSED=passed-value", "LD_PRELOAD=/nonexistent.so"};
    JobRun r = run_tp("env", {"env"}, o);
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    std::map<std::string, std::string> env;
    std::istringstream in(r.proc.out);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("env:", 0) == 0) {
            auto eq = line.find('=');
            env[line.substr(4, eq - 4)] = line.substr(eq + 1);
        }
    EXPECT_EQ(r.proc.out.find("hunter2"), std::string::npos) << r.proc.out;
    EXPECT_EQ(env.count("MOAT_SCN_SECRET"), 0u) << r.proc.out;
    EXPECT_EQ(env.count("LD_PRELOAD"), 0u) << r.proc.out;
    EXPECT_EQ(env["MOAT_SCN_PASSED"], "passed-value") << r.proc.out;
    EXPECT_EQ(env["MOAT_SCN_FIXED"], "fixed-value") << r.proc.out;
    EXPECT_EQ(env["PATH"], "/usr/bin:/bin") << r.proc.out;
    EXPECT_EQ(env.size(), 3u) << "unexpected variables:\n" << r.proc.out;
}

TEST_F(Scenario, LandlockLimitsReads) {
    JobRun ok = run_tp("base", {"read-file", "/etc/ld.so.cache"});
    EXPECT_EQ(ok.proc.status, 0) << "control: a read_only file must be readable\n" << describe(ok);
    ASSERT_TRUE(fs::exists("/etc/hostname"));
    JobRun r = run_tp("base", {"read-file", "/etc/hostname"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "EACCES") << describe(r);
}

TEST_F(Scenario, LandlockLimitsWrites) {
    std::string inside = rw() + "/inside";
    JobRun ok = run_tp("base", {"writefile", inside, "100"});
    EXPECT_EQ(ok.proc.status, 0) << "control: read_write must be writable\n" << describe(ok);
    EXPECT_TRUE(fs::exists(inside));

    // /tmp is world-writable, so only Landlock stands in the way.
    std::string outside = "/tmp/moat-scn-outside-" + std::to_string(getpid());
    unlink(outside.c_str());
    JobRun r = run_tp("base", {"writefile", outside, "100"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "EACCES") << describe(r);
    EXPECT_FALSE(fs::exists(outside));
    unlink(outside.c_str());

    // Nor may it change what is read-only.
    JobRun m = run_tp("base", {"mkdir", s_root + "/bin/new"});
    EXPECT_EQ(m.proc.status, 1) << describe(m);
    EXPECT_FALSE(fs::exists(s_root + "/bin/new"));
}

TEST_F(Scenario, JobCannotSignalHostProcesses) {
    Bg victim({"/bin/sleep", "30"}, s_root);
    ASSERT_TRUE(victim.running());
    JobRun r = run_tp("base", {"kill", std::to_string(victim.pid())});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "EPERM") << describe(r);
    EXPECT_TRUE(victim.running());

    JobRun d = run_tp("base", {"kill", std::to_string(s_daemon->pid())});
    EXPECT_EQ(d.proc.status, 1) << describe(d);
    EXPECT_EQ(kv(d.proc.out, "errno"), "EPERM") << describe(d);
    EXPECT_EQ(kill(s_daemon->pid(), 0), 0) << "moatd is gone";
    EXPECT_EQ(ctl({"jobs", "--json"}).status, 0);
}

// ---- 4. the filter ----------------------------------------------------------------

TEST_F(Scenario, I386SyscallsAreDeniedAndRecorded) {
    JobRun r = run_tp("base", {"i386"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "i386"), "fail") << describe(r);
    ASSERT_GT(r.id, 0);
    auto ev = events(r.id);
    bool found = false;
    for (const auto& d : denials(ev))
        if (d.value("arch", "") == "i386") found = true;
    EXPECT_TRUE(found) << "no denial with arch i386 among:\n"
                       << [&] { std::string s; for (auto& e : denials(ev)) s += e.dump() + "\n"; return s; }();
}

TEST_F(Scenario, X32SyscallsAreDeniedAndRecorded) {
    JobRun r = run_tp("base", {"x32"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "x32"), "fail") << describe(r);
    ASSERT_GT(r.id, 0);
    auto ev = events(r.id);
    bool found = false;
    for (const auto& d : denials(ev))
        if (d.value("arch", "") == "x32") found = true;
    EXPECT_TRUE(found) << "no denial with arch x32 among:\n"
                       << [&] { std::string s; for (auto& e : denials(ev)) s += e.dump() + "\n"; return s; }();
}

TEST_F(Scenario, Clone3ReturnsEnosys) {
    JobRun r = run_tp("base", {"clone3"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "ENOSYS") << describe(r);
}

TEST_F(Scenario, CloneNewUserIsDeniedEvenWithCloneAllowed) {
    JobRun r = run_tp("base", {"clone-newuser"});  // base allows clone through @default
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "clone_newuser"), "fail") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "EPERM") << describe(r);
    auto ds = denials(events(r.id), "clone");
    ASSERT_EQ(ds.size(), 1u);
    ASSERT_TRUE(ds[0]["args"].is_array());
    EXPECT_NE(ds[0]["args"][0].get<uint64_t>() & CLONE_NEWUSER, 0u) << ds[0].dump();
}

TEST_F(Scenario, LogActionLetsTheCallProceedAndRecordsIt) {
    std::string dir = rw() + "/logged";
    JobRun r = run_tp("log", {"mkdir", dir});
    EXPECT_EQ(r.proc.status, 0) << describe(r);
    EXPECT_TRUE(fs::is_directory(dir)) << "mkdir under default_action log did not happen";
    auto ds = denials(events(r.id), "mkdir");
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].value("action", ""), "log") << ds[0].dump();
    EXPECT_EQ(ds[0].value("decoded", json()), dir) << ds[0].dump();
}

TEST_F(Scenario, ArgumentRuleAllowsUnixSocketOnly) {
    JobRun u = run_tp("socket-rule", {"socket", "unix"});
    EXPECT_EQ(u.proc.status, 0) << describe(u);
    EXPECT_TRUE(denials(events(u.id), "socket").empty());

    JobRun i = run_tp("socket-rule", {"socket", "inet"});
    EXPECT_EQ(i.proc.status, 1) << describe(i);
    EXPECT_EQ(kv(i.proc.out, "errno"), "EPERM") << describe(i);
    auto ds = denials(events(i.id), "socket");
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0]["args"][0], AF_INET) << ds[0].dump();
    EXPECT_EQ(ds[0].value("action", ""), "errno:EPERM") << ds[0].dump();
}

// ---- 5. denial storm -------------------------------------------------------------

TEST_F(Scenario, DenialStormIsCountedExactlyAndCoalesced) {
    constexpr int kCalls = 200000;
    std::string idf = new_id_file();
    Bg job({s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy", policy("base"), "--id-file", idf,
            "--", testprog(), "deny-loop", std::to_string(kCalls)},
           s_root);
    // moatd keeps answering while the storm runs.
    int answered_during = 0;
    double slowest = 0;
    while (job.running()) {
        Proc p = ctl({"jobs", "--json"});
        EXPECT_EQ(p.status, 0) << p.err;
        slowest = std::max(slowest, p.seconds);
        if (job.running()) ++answered_during;
        if (answered_during >= 50) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    int st = job.wait(40);
    EXPECT_EQ(st, 0) << job.out() << job.err();
    EXPECT_LT(slowest, 2.0) << "moatd took " << slowest << " s to answer `jobs` during the storm";
    EXPECT_GE(answered_during, 1) << "the storm ended before `jobs` could be asked during it";
    RecordProperty("jobs_answered_during_storm", answered_during);
    std::string out = job.out();
    EXPECT_EQ(kv(out, "eperm"), std::to_string(kCalls)) << out;

    int64_t id = read_id(idf);
    ASSERT_GT(id, 0);
    auto ev = events(id);
    auto rm = denials(ev, "rmdir");
    auto all = denials(ev);
    EXPECT_EQ(count_sum(rm), uint64_t(kCalls));
    json j = show(id);
    EXPECT_EQ(j.value("denial_count", uint64_t(0)), count_sum(all)) << j.dump();
    EXPECT_EQ(j.value("denial_count", uint64_t(0)), uint64_t(kCalls)) << "denials other than the storm's rmdir";
    EXPECT_LT(rm.size(), 2000u) << "denials are not coalesced";
    RecordProperty("denial_rows", int(rm.size()));
    std::cout << "storm: " << rm.size() << " denial rows for " << kCalls << " calls; `jobs` answered "
              << answered_during << " times during it, slowest " << slowest << " s\n";
    for (const auto& d : rm) EXPECT_EQ(d.value("action", ""), "errno:EPERM") << d.dump();
    EXPECT_EQ(ctl({"jobs", "--json"}).status, 0);
}

// ---- 6. bad input -------------------------------------------------------------------

TEST_F(Scenario, PolicyCheckPointsAtMisspeltKey) {
    std::string file = std::string(POLICY_DIR) + "/misspelt.toml";
    Proc p = ctl({"policy", "check", file});
    EXPECT_EQ(p.status, 1) << p.err;
    EXPECT_NE(p.err.find(file + ":3:1:"), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("did you mean \"wall_time\""), std::string::npos) << p.err;

    Proc ok = ctl({"policy", "check", policy("base")});
    EXPECT_EQ(ok.status, 0) << "control: base policy must be valid\n" << ok.err;
}

TEST_F(Scenario, RunWithInvalidPolicyIsSetupFailure) {
    std::string file = std::string(POLICY_DIR) + "/invalid.toml";
    JobRun r = run_job(file, {testprog(), "exit", "0"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find("invalid.toml:3:"), std::string::npos) << describe(r);
    EXPECT_NE(r.proc.err.find("no unit"), std::string::npos) << describe(r);
}

// Sends raw bytes on a fresh connection; returns what came back before EOF.
std::string raw_exchange(const std::string& sock, const std::string& bytes, double timeout_s = 5) {
    int fd = connect_unix(sock);
    if (fd < 0) return "(connect failed)";
    (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    std::string got;
    auto t0 = Clock::now();
    while (since(t0) < timeout_s) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            // One answer frame is enough for the requests below.
            if (got.size() >= 4) {
                uint32_t len;
                memcpy(&len, got.data(), 4);
                if (got.size() >= 4 + ntohl(len)) break;
            }
            continue;
        }
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, size_t(n));
    }
    close(fd);
    return got;
}

json first_frame(const std::string& got) {
    if (got.size() < 4) return json();
    uint32_t len;
    memcpy(&len, got.data(), 4);
    len = ntohl(len);
    if (got.size() < 4 + size_t(len)) return json();
    return json::parse(got.substr(4, len), nullptr, false);
}

std::string frame(const std::string& payload) {
    uint32_t len = htonl(uint32_t(payload.size()));
    return std::string(reinterpret_cast<const char*>(&len), 4) + payload;
}

TEST_F(Scenario, GarbageClientsGetErrorsAndDaemonKeepsServing) {
    // A header announcing 1 GiB.
    uint32_t big = htonl(1u << 30);
    json a = first_frame(raw_exchange(s_daemon->socket(), std::string(reinterpret_cast<const char*>(&big), 4) + "xxxx"));
    ASSERT_TRUE(a.is_object()) << "no error answer to a 1 GiB header";
    EXPECT_EQ(a.value("ok", true), false) << a.dump();
    EXPECT_TRUE(a["error"].is_string()) << a.dump();

    json b = first_frame(raw_exchange(s_daemon->socket(), frame("{not json")));
    ASSERT_TRUE(b.is_object()) << "no error answer to invalid JSON";
    EXPECT_EQ(b.value("ok", true), false) << b.dump();
    EXPECT_TRUE(b["error"].is_string()) << b.dump();

    json c = first_frame(raw_exchange(s_daemon->socket(), frame(R"({"op":"no-such-op"})")));
    ASSERT_TRUE(c.is_object());
    EXPECT_EQ(c.value("ok", true), false) << c.dump();

    json d = first_frame(raw_exchange(s_daemon->socket(), frame(R"({"op":"show","job":"1; DROP TABLE jobs"})")));
    ASSERT_TRUE(d.is_object());
    EXPECT_EQ(d.value("ok", true), false) << d.dump();

    // Random bytes, then hang up mid-frame.
    std::string noise;
    srand(unsigned(getpid()));
    for (int i = 0; i < 4096; ++i) noise += char(rand());
    raw_exchange(s_daemon->socket(), noise, 0.5);

    Proc p = ctl({"jobs", "--json"});
    EXPECT_EQ(p.status, 0) << p.err;
    EXPECT_TRUE(json::parse(p.out, nullptr, false).is_array()) << p.out;
    JobRun r = run_tp("base", {"exit", "0"});
    EXPECT_EQ(r.proc.status, 0) << describe(r);
}

TEST_F(Scenario, ShowUnknownJobFails) {
    Proc p = ctl({"show", "999999", "--json"});
    EXPECT_EQ(p.status, 1) << p.out << p.err;
    EXPECT_NE(p.err.find("999999"), std::string::npos) << p.err;
}

// ---- 7. roles ------------------------------------------------------------------------

TEST_F(Scenario, StrangerIsRefusedWithGroupNames) {
    Opts o;
    o.as = Creds{65534, 65534, {}};
    Proc p = ctl({"jobs", "--json"}, o);
    EXPECT_NE(p.status, 0) << p.out;
    EXPECT_NE(p.err.find("permission denied"), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("moat-admin"), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("moat-viewer"), std::string::npos) << p.err;

    JobRun r = run_job(policy("base"), {testprog(), "exit", "0"}, o);
    EXPECT_NE(r.proc.status, 0) << describe(r);
    EXPECT_NE(r.proc.err.find("permission denied"), std::string::npos) << describe(r);
    EXPECT_EQ(r.id, 0);
}

TEST_F(Scenario, ViewerMayReadButNotRun) {
    if (!getgrnam("moat-viewer")) {
        Proc g = run_cmd({"/usr/sbin/groupadd", "--system", "moat-viewer"});
        if (g.status != 0 || !getgrnam("moat-viewer"))
            GTEST_SKIP() << "no group moat-viewer and groupadd failed: " << g.err;
    }
    gid_t viewer = getgrnam("moat-viewer")->gr_gid;
    JobRun first = run_tp("base", {"exit", "0"});
    ASSERT_EQ(first.proc.status, 0) << describe(first);

    Opts o;
    o.as = Creds{65534, 65534, {viewer}};
    Proc jobs = ctl({"jobs", "--json"}, o);
    EXPECT_EQ(jobs.status, 0) << jobs.err;
    json arr = json::parse(jobs.out, nullptr, false);
    ASSERT_TRUE(arr.is_array()) << jobs.out;
    ASSERT_FALSE(arr.empty());
    EXPECT_EQ(arr[0].value("id", int64_t(0)), first.id);
    EXPECT_EQ(ctl({"show", std::to_string(first.id), "--json"}, o).status, 0);

    JobRun r = run_job(policy("base"), {testprog(), "exit", "0"}, o);
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find("admin"), std::string::npos) << describe(r);
    EXPECT_EQ(r.id, 0);
    Proc stop = ctl({"stop", std::to_string(first.id)}, o);
    EXPECT_NE(stop.status, 0);
    EXPECT_NE(stop.err.find("admin"), std::string::npos) << stop.err;
}

// ---- 8. SIGTERM -----------------------------------------------------------------------

TEST_F(Scenario, SigtermStopsRunningJobsAndExitsZero) {
    Daemon d(s_root, "term");
    std::string why;
    ASSERT_TRUE(d.start(&why)) << why;
    std::string idf = new_id_file();
    Bg job({s_root + "/bin/moatctl", "--socket", d.socket(), "run", "--policy", policy("base"), "--id-file", idf, "--",
            testprog(), "sleep", "30"},
           s_root);
    json running = wait_running(d, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << d.log();
    int64_t id = read_id(idf);
    pid_t pid = running["pid"].get<pid_t>();

    auto t0 = Clock::now();
    EXPECT_EQ(d.terminate(10), 0) << d.log();
    EXPECT_LT(since(t0), 5.0);
    EXPECT_TRUE(kill(pid, 0) < 0 && errno == ESRCH) << "job " << pid << " outlived moatd";
    int st = job.wait(5);
    EXPECT_GT(st, 128) << "moatctl run: " << st << "\n" << job.err();

    ASSERT_TRUE(d.start(&why)) << why;
    json j = show(d, id);
    EXPECT_EQ(j.value("state", ""), "finished") << j.dump();
    EXPECT_EQ(cause(j), "stopped") << j.dump();
    EXPECT_EQ(d.terminate(), 0) << d.log();
}

}  // namespace
