// moat-agent in --test-mode: the test plays moatd on the other end of a
// socketpair (the virtio port in a real guest) and checks the whole exchange:
// Hello, Job, Started, a Notice decoded in the "guest", the Verdict applied,
// Output, Exit; plus inputs, stdin, Kill and a broken host stream.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moat/common/fd.h"
#include "moat/guest/protocol.h"
#include "moat/sandbox/container_plan.h"

namespace g = moat::guest;
using moat::UniqueFd;

namespace {

// Notify exec (the listener handoff needs the first execve to wait), mkdir,
// mkdirat and clone3 and every foreign-ABI call; allow the rest.
std::vector<sock_filter> test_filter() {
    std::vector<sock_filter> f;
    auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
    auto jeq = [&](uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf)); };
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
    jeq(AUDIT_ARCH_X86_64, 1, 0);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
    const uint32_t notify[] = {SYS_execve, SYS_execveat, SYS_mkdir, SYS_mkdirat, SYS_clone3};
    for (size_t i = 0; i < std::size(notify); ++i) jeq(notify[i], uint8_t(std::size(notify) - i), 0);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    return f;
}

std::string plan_json(std::vector<std::string> argv) {
    moat::sandbox::ContainerPlan p;
    p.hostname = "vmtest";
    p.newroot = "/nonexistent";  // the agent sets its own
    using K = moat::sandbox::MountSpec::Kind;
    p.mounts.push_back({K::BindRo, "/mnt/root/usr", "/usr"});
    for (const char* l : {"bin", "lib", "lib64", "sbin"})
        p.mounts.push_back({K::Symlink, std::string("usr/") + l, std::string("/") + l});
    p.mounts.push_back({K::Tmpfs, "", "/tmp", 1 << 20});
    p.rlimits = {1ull << 30, 1024, 8ull << 20, 0, 0};
    p.exe = argv[0];
    p.argv = std::move(argv);
    p.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
    p.cwd = "/";
    p.filter = test_filter();
    return p.to_json().dump();
}

struct Received {
    std::vector<g::GuestMessage> all;
    std::string out[2];
    bool eof[2] = {false, false};
    std::vector<g::Notice> notices;
    std::vector<g::SetupStatus> setup;
    std::vector<std::string> logs;
    int samples = 0;
    std::optional<g::Exit> exit;
    std::optional<g::Started> started;
};

class Agent : public ::testing::Test {
protected:
    // Each test process (ctest runs them in parallel) maps its job to uids of
    // its own, so counting the processes of a uid counts only this test's.
    static uid_t uid_base() {
        static const uid_t base = 690000 + uid_t(getpid() % 4096) * 4;  // the test process's, also in a fork
        return base;
    }

    void start() {
        (void)uid_base();  // fixed before the fork
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        m_host.reset(sv[0]);
        UniqueFd guest(sv[1]);
        m_pid = fork();
        ASSERT_GE(m_pid, 0);
        if (m_pid == 0) {
            dup2(guest.get(), 3);  // dup2 clears close-on-exec on the copy
            const std::string base = std::to_string(uid_base());
            execl(MOAT_AGENT_PATH, "moat-agent", "--test-mode", "--ctl-fd", "3", "--root-dir", "/", "--uid-base", base.c_str(), (char*)nullptr);
            _exit(127);
        }
        auto hello = next(10);
        ASSERT_TRUE(hello);
        auto* h = std::get_if<g::Hello>(&*hello);
        ASSERT_TRUE(h) << "the first message is not Hello";
        EXPECT_EQ(h->version, g::kProtocolVersion);
        EXPECT_FALSE(h->kernel_release.empty());
        EXPECT_GT(h->boot_time_ns, 0u);
    }

    void TearDown() override {
        if (m_pid > 0) {
            // The agent ends by itself after Exit; give it a moment, then make sure.
            for (int i = 0; i < 100 && waitpid(m_pid, &m_status, WNOHANG) == 0; ++i) usleep(50'000);
            if (waitpid(m_pid, &m_status, WNOHANG) == 0) {
                kill(m_pid, SIGKILL);
                waitpid(m_pid, &m_status, 0);
                ADD_FAILURE() << "moat-agent did not exit by itself";
            }
        }
    }

    template <class M>
    void send(const M& m) {
        auto f = g::encode(m);
        ASSERT_TRUE(f) << f.error().message;
        ASSERT_EQ(write(m_host.get(), f->data(), f->size()), ssize_t(f->size()));
    }
    void send_raw(const std::string& bytes) { ASSERT_EQ(write(m_host.get(), bytes.data(), bytes.size()), ssize_t(bytes.size())); }

    // The next guest message, or nullopt on timeout / EOF / a protocol error.
    std::optional<g::GuestMessage> next(double timeout_s) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (m_frames.empty()) {
            int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
            if (left <= 0) return std::nullopt;
            pollfd p{m_host.get(), POLLIN, 0};
            if (poll(&p, 1, left) <= 0) continue;
            char buf[65536];
            ssize_t n = read(m_host.get(), buf, sizeof buf);
            if (n <= 0) return std::nullopt;
            auto r = m_dec.feed(std::string_view(buf, size_t(n)), m_frames);
            if (!r) {
                ADD_FAILURE() << r.error().message;
                return std::nullopt;
            }
        }
        g::Frame f = std::move(m_frames.front());
        m_frames.erase(m_frames.begin());
        auto m = g::parse_guest(f);
        if (!m) {
            ADD_FAILURE() << m.error().message;
            return std::nullopt;
        }
        return *m;
    }

    // Plays moatd until Exit: answers every Notice with `decide`.
    Received run_until_exit(const std::function<g::Verdict(const g::Notice&)>& decide, double timeout_s = 30,
                            const std::function<void(Received&)>& on_started = {}) {
        Received r;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (!r.exit) {
            double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
            if (left <= 0) {
                ADD_FAILURE() << "no Exit in time";
                break;
            }
            auto m = next(left);
            if (!m) {
                ADD_FAILURE() << "the agent's stream ended before Exit";
                break;
            }
            r.all.push_back(*m);
            if (auto* n = std::get_if<g::Notice>(&*m)) {
                r.notices.push_back(*n);
                send(decide(*n));
            } else if (auto* o = std::get_if<g::Output>(&*m)) {
                EXPECT_FALSE(r.eof[o->stream - 1]) << "Output after OutputEof";
                r.out[o->stream - 1] += o->bytes;
            } else if (auto* e = std::get_if<g::OutputEof>(&*m)) {
                r.eof[e->stream - 1] = true;
            } else if (auto* s = std::get_if<g::SetupStatus>(&*m)) {
                r.setup.push_back(*s);
                if (s->fatal) ADD_FAILURE() << "fatal setup: " << s->step << ": " << s->detail;
            } else if (auto* l = std::get_if<g::Log>(&*m)) {
                r.logs.push_back(l->text);
            } else if (std::get_if<g::Sample>(&*m)) {
                ++r.samples;
            } else if (auto* st = std::get_if<g::Started>(&*m)) {
                r.started = *st;
                if (on_started) on_started(r);
            } else if (auto* x = std::get_if<g::Exit>(&*m)) {
                r.exit = *x;
            }
        }
        return r;
    }

    static g::Verdict continue_exec_deny_rest(const g::Notice& n) {
        if (n.nr == SYS_execve || n.nr == SYS_execveat) return g::Verdict{n.id, 0, g::Verdict::kContinue};
        return g::Verdict{n.id, EPERM, 0};
    }

    UniqueFd m_host;
    pid_t m_pid = -1;
    int m_status = 0;
    g::Decoder m_dec{g::Direction::GuestToHost};
    std::vector<g::Frame> m_frames;
};

TEST_F(Agent, RunsEnvDeniesMkdirOnTheHostsVerdict) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{plan_json({"/usr/bin/env", "MOATVAR=hello", "sh", "-c", "env; mkdir /tmp/moat-denied"}), 50'000'000,
                256ull << 20, 64});
    Received r = run_until_exit(continue_exec_deny_rest, 30, [this](Received&) { send(g::StdinEof{}); });
    ASSERT_TRUE(r.started);
    EXPECT_GT(r.started->pid, 0);
    // The exec of env, then sh, then mkdir, then the mkdir syscall.
    const g::Notice* mk = nullptr;
    std::vector<std::string> execs;
    for (const auto& n : r.notices) {
        EXPECT_EQ(n.arch, uint32_t(AUDIT_ARCH_X86_64));
        if (n.nr == SYS_mkdir || n.nr == SYS_mkdirat) mk = &n;
        if (n.nr == SYS_execve && n.decoded) execs.push_back(*n.decoded);
    }
    ASSERT_TRUE(mk) << "no Notice for mkdir";
    ASSERT_TRUE(mk->decoded);
    EXPECT_NE(mk->decoded->find("/tmp/moat-denied"), std::string::npos) << *mk->decoded;
    EXPECT_GT(mk->pid, 0);
    ASSERT_FALSE(execs.empty());
    EXPECT_EQ(execs.front(), "/usr/bin/env");
    EXPECT_NE(r.out[0].find("MOATVAR=hello"), std::string::npos) << r.out[0];
    EXPECT_NE(r.out[1].find("Operation not permitted"), std::string::npos) << r.out[1];
    EXPECT_TRUE(r.eof[0]);
    EXPECT_TRUE(r.eof[1]);
    ASSERT_TRUE(r.exit);
    EXPECT_TRUE(WIFEXITED(r.exit->wait_status));
    EXPECT_EQ(WEXITSTATUS(r.exit->wait_status), 1);  // mkdir's status, through sh
    EXPECT_FALSE(r.exit->killed_by_agent);
    // Samples come from the host's cgroups here (a guest cgroup in the VM);
    // without usable cgroups the agent says so.
    bool no_cgroup = false;
    for (const auto& l : r.logs) no_cgroup = no_cgroup || l.find("without a cgroup") != std::string::npos;
    EXPECT_TRUE(r.samples > 0 || no_cgroup);
    for (const auto& l : r.logs) fprintf(stderr, "agent log: %s\n", l.c_str());
    fprintf(stderr, "samples: %d, notices: %zu\n", r.samples, r.notices.size());
    // Every Output came before Exit, and Exit is the last message.
    EXPECT_TRUE(std::holds_alternative<g::Exit>(r.all.back()));
    EXPECT_FALSE(next(0.5));
}

TEST_F(Agent, InputsAndStdinReachTheJob) {
    ASSERT_NO_FATAL_FAILURE(start());
    const std::string greeting = "hello from the host\n";
    send(g::InputFile{"/input/greeting.txt", 0644, greeting.size()});
    send(g::InputData{greeting.substr(0, 5)});
    send(g::InputData{greeting.substr(5)});
    send(g::InputEnd{});
    send(g::Job{plan_json({"/bin/sh", "-c", "cat /input/greeting.txt; cat; echo x > /input/greeting.txt || exit 3"}),
                0, 0, 0});
    uint64_t consumed = 0;
    Received r = run_until_exit(continue_exec_deny_rest, 30, [this](Received&) {
        send(g::Stdin{"typed line\n"});
        send(g::StdinEof{});
    });
    for (const auto& m : r.all)
        if (auto* c = std::get_if<g::StdinConsumed>(&m)) consumed = c->total;
    EXPECT_EQ(r.out[0], greeting + "typed line\n");
    EXPECT_EQ(consumed, 11u);
    EXPECT_NE(r.out[1].find("Read-only file system"), std::string::npos) << r.out[1];
    ASSERT_TRUE(r.exit);
    EXPECT_TRUE(WIFEXITED(r.exit->wait_status));
    EXPECT_EQ(WEXITSTATUS(r.exit->wait_status), 3);
}

TEST_F(Agent, KillVerdictAndKillMessage) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{plan_json({"/bin/sh", "-c", "mkdir /tmp/x; echo survived"}), 0, 0, 0});
    // The host's verdict for mkdir is "kill the job".
    Received r = run_until_exit([](const g::Notice& n) {
        if (n.nr == SYS_mkdir || n.nr == SYS_mkdirat) return g::Verdict{n.id, 0, g::Verdict::kKill};
        return continue_exec_deny_rest(n);
    });
    ASSERT_TRUE(r.exit);
    EXPECT_TRUE(r.exit->killed_by_agent);
    EXPECT_TRUE(WIFSIGNALED(r.exit->wait_status));
    EXPECT_EQ(WTERMSIG(r.exit->wait_status), SIGKILL);
    EXPECT_EQ(r.out[0].find("survived"), std::string::npos);
}

TEST_F(Agent, KillMessageStopsALongJob) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{plan_json({"/bin/sh", "-c", "echo ready; exec sleep 30"}), 0, 0, 0});
    Received r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    bool sent_kill = false;
    while (!r.exit && std::chrono::steady_clock::now() < deadline) {
        auto m = next(20);
        if (!m) break;
        if (auto* n = std::get_if<g::Notice>(&*m)) send(continue_exec_deny_rest(*n));
        if (auto* o = std::get_if<g::Output>(&*m)) {
            r.out[o->stream - 1] += o->bytes;
            if (!sent_kill && r.out[0].find("ready") != std::string::npos) {
                send(g::Kill{});
                sent_kill = true;
            }
        }
        if (auto* x = std::get_if<g::Exit>(&*m)) r.exit = *x;
    }
    ASSERT_TRUE(sent_kill);
    ASSERT_TRUE(r.exit);
    EXPECT_TRUE(r.exit->killed_by_agent);
    EXPECT_TRUE(WIFSIGNALED(r.exit->wait_status));
    EXPECT_LT(std::chrono::steady_clock::now(), deadline);
}

long rss_kib(pid_t pid) {
    FILE* f = fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "re");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

TEST_F(Agent, ASlowHostSlowsTheJobInsteadOfGrowingTheAgent) {
    ASSERT_NO_FATAL_FAILURE(start());
    const long total = 16'000'000;
    send(g::Job{plan_json({"/bin/sh", "-c", "head -c " + std::to_string(total) + " /dev/zero; echo done >&2"}),
                10'000'000, 0, 0});
    // Answer the execs, then stop reading for a while: the agent may hold
    // only its bounded queue; the rest waits in the job's pipe.
    int execs = 0;
    long got = 0;
    while (execs < 2) {
        auto m = next(20);
        ASSERT_TRUE(m);
        if (auto* s = std::get_if<g::SetupStatus>(&*m)) ADD_FAILURE() << s->step << ": " << s->detail;
        if (auto* x = std::get_if<g::Exit>(&*m)) FAIL() << "early exit " << x->wait_status;
        if (auto* n = std::get_if<g::Notice>(&*m)) {
            send(continue_exec_deny_rest(*n));
            ++execs;
        }
        if (auto* o = std::get_if<g::Output>(&*m)) got += long(o->bytes.size());
    }
    const long rss_before = rss_kib(m_pid);
    usleep(1'500'000);
    const long rss_stalled = rss_kib(m_pid);
    EXPECT_GT(rss_stalled, 0);
    EXPECT_LT(rss_stalled - rss_before, 4096) << "the agent grew by " << (rss_stalled - rss_before) << " KiB";
    Received r = run_until_exit(continue_exec_deny_rest, 60);
    got += long(r.out[0].size());
    EXPECT_EQ(got, total);
    EXPECT_EQ(r.out[1], "done\n");
    ASSERT_TRUE(r.exit);
    EXPECT_EQ(r.exit->wait_status, 0);
}

// Processes of the job's host uid (the agent maps the job to uid-base + 1).
int processes_of(uid_t uid) {
    int n = 0;
    if (DIR* d = opendir("/proc")) {
        while (dirent* e = readdir(d)) {
            struct stat st{};
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9' && stat(("/proc/" + std::string(e->d_name)).c_str(), &st) == 0 &&
                st.st_uid == uid)
                ++n;
        }
        closedir(d);
    }
    return n;
}

TEST_F(Agent, LosingTheHostKillsTheJob) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{plan_json({"/bin/sh", "-c", "echo ready; exec sleep 30"}), 0, 0, 0});
    std::string out;
    while (out.find("ready") == std::string::npos) {
        auto m = next(20);
        ASSERT_TRUE(m);
        if (auto* n = std::get_if<g::Notice>(&*m)) send(continue_exec_deny_rest(*n));
        if (auto* o = std::get_if<g::Output>(&*m)) out += o->bytes;
    }
    EXPECT_GT(processes_of(uid_base() + 1), 0);
    m_host.reset();  // moatd is gone
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 100 && (w = waitpid(m_pid, &status, WNOHANG)) == 0; ++i) usleep(50'000);
    ASSERT_EQ(w, m_pid) << "the agent did not end when the host went away";
    m_pid = -1;
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1);
    EXPECT_EQ(processes_of(uid_base() + 1), 0);
    EXPECT_EQ(processes_of(uid_base()), 0);
}

TEST_F(Agent, ABrokenHostStreamIsAFatalSetupStatus) {
    ASSERT_NO_FATAL_FAILURE(start());
    std::string junk(4, '\xff');
    junk += char(64);  // a Job frame announcing 4 GiB
    send_raw(junk);
    auto m = next(10);
    ASSERT_TRUE(m);
    auto* s = std::get_if<g::SetupStatus>(&*m);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->fatal);
    EXPECT_EQ(s->step, "protocol");
    EXPECT_NE(s->detail.find("limit"), std::string::npos) << s->detail;
    EXPECT_FALSE(next(2));  // then the agent ends
}

TEST_F(Agent, ABadPlanIsAFatalSetupStatus) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{"{\"not\": \"a plan\"}", 0, 0, 0});
    auto m = next(10);
    ASSERT_TRUE(m);
    auto* s = std::get_if<g::SetupStatus>(&*m);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->fatal);
    EXPECT_EQ(s->step, "parse(plan)");
}

TEST_F(Agent, ARehearsalRunsNothingSaysNothingAndTheJobRunsAfterIt) {
    ASSERT_NO_FATAL_FAILURE(start());
    // moatd scrubs the program out of a rehearsal; the agent must not need
    // that: even an existing program is never executed (the agent answers
    // the exec notice itself). If `sleep 30` ran, the rehearsal would hold
    // the agent for its 10 s limit and the job below would start late.
    const auto t0 = std::chrono::steady_clock::now();
    send(g::Rehearse{g::Job{plan_json({"/usr/bin/sleep", "30"}), 0, 256ull << 20, 64}});
    send(g::Job{plan_json({"/bin/echo", "after the rehearsal"}), 0, 256ull << 20, 64});
    Received r = run_until_exit(continue_exec_deny_rest, 30, [this](Received&) { send(g::StdinEof{}); });
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(r.started);
    ASSERT_TRUE(r.exit);
    EXPECT_LT(took, 8.0) << "the rehearsal ran its program (or hung)";
    EXPECT_EQ(r.out[0], "after the rehearsal\n");
    // Nothing of the rehearsal reached the host: the first message is the job's.
    ASSERT_FALSE(r.all.empty());
    EXPECT_FALSE(std::holds_alternative<g::SetupStatus>(r.all.front()) &&
                 std::get<g::SetupStatus>(r.all.front()).fatal);
    for (const auto& n : r.notices) {
        if (n.decoded) {
            EXPECT_EQ(n.decoded->find("sleep"), std::string::npos) << "a rehearsal notice reached the host";
        }
    }
    EXPECT_TRUE(WIFEXITED(r.exit->wait_status));
    EXPECT_EQ(WEXITSTATUS(r.exit->wait_status), 0);
    EXPECT_EQ(processes_of(uid_base() + 1), 0);
}

TEST_F(Agent, ARehearsalAfterTheJobIsAProtocolError) {
    ASSERT_NO_FATAL_FAILURE(start());
    send(g::Job{plan_json({"/bin/sh", "-c", "exec sleep 30"}), 0, 0, 0});
    for (;;) {
        auto m = next(20);
        ASSERT_TRUE(m);
        if (auto* n = std::get_if<g::Notice>(&*m)) send(continue_exec_deny_rest(*n));
        if (std::holds_alternative<g::Started>(*m)) break;
    }
    send(g::Rehearse{g::Job{plan_json({"/bin/true"}), 0, 0, 0}});
    bool protocol = false, exited = false;
    for (int i = 0; i < 50 && !exited; ++i) {
        auto m = next(20);
        ASSERT_TRUE(m);
        if (auto* n = std::get_if<g::Notice>(&*m)) send(continue_exec_deny_rest(*n));
        if (auto* s = std::get_if<g::SetupStatus>(&*m)) protocol = protocol || (s->fatal && s->step == "protocol");
        if (auto* x = std::get_if<g::Exit>(&*m)) exited = x->killed_by_agent;
    }
    EXPECT_TRUE(protocol);
    EXPECT_TRUE(exited) << "the job was not killed";
}

}  // namespace
