// The compiled filter, loaded for real in a child process: what the kernel
// does with each syscall class is what the policy promised.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "moat/compiler/seccomp_compiler.h"
#include "moat/policy/parser.h"

using namespace moat;

namespace {

policy::Policy parse(const std::string& text) {
    auto r = policy::parse_policy(text, "test.toml");
    for (auto& d : r.diagnostics) ADD_FAILURE() << d.str();
    EXPECT_TRUE(r.policy.has_value());
    return *r.policy;
}

const char* kBase = R"(
name = "t"
[seccomp]
default_action = "errno:EACCES"
allow = ["@default", "getpid", "clone", "socket"]
[[seccomp.rule]]
syscall = "kill"
action = "errno:ESRCH"
args = [{ index = 1, op = "eq", value = 9 }]
[[seccomp.rule]]
syscall = "socketpair"
action = "allow"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }]
)";

// Runs fn in a child under the filter with a listener; the parent answers every
// notification with ENOTSUP so "went to the supervisor" is observable.
int run_filtered(const compiler::CompiledFilter& f, int (*fn)()) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        sock_fprog prog{(unsigned short)f.program().size(), const_cast<sock_filter*>(f.program().data())};
        long lfd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (lfd < 0) _exit(200);
        // Hand the listener to the parent: write is allowed by @default.
        int v = int(lfd);
        if (write(pfd[1], &v, sizeof v) != sizeof v) _exit(201);
        _exit(fn());
    }
    close(pfd[1]);
    int child_lfd = -1;
    if (read(pfd[0], &child_lfd, sizeof child_lfd) != sizeof child_lfd) return -2;
    close(pfd[0]);
    int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
    int lfd = int(syscall(SYS_pidfd_getfd, pidfd, child_lfd, 0));
    // Answer notifications until the child exits.
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            close(lfd);
            close(pidfd);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        seccomp_notif req{};
        pollfd p{lfd, POLLIN, 0};
        if (poll(&p, 1, 10) <= 0 || !(p.revents & POLLIN)) continue;
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) continue;
        seccomp_notif_resp resp{};
        resp.id = req.id;
        resp.error = -ENOTSUP;
        ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

}  // namespace

TEST(Compiler, ProducesBpfAndCaches) {
    auto p = parse(kBase);
    compiler::FilterCache cache;
    auto a = cache.get(p);
    ASSERT_TRUE(a) << a.error().message;
    auto b = cache.get(p);
    ASSERT_TRUE(b);
    EXPECT_EQ(a->get(), b->get()) << "second lookup must hit the cache";
    EXPECT_EQ(cache.size(), 1u);
    EXPECT_GT((*a)->program().size(), 10u);
}

TEST(Compiler, DecideAppliesRulesThenDefault) {
    auto p = parse(kBase);
    auto f = compiler::compile(p);
    ASSERT_TRUE(f);
    uint64_t args[6] = {1234, 9, 0, 0, 0, 0};
    auto v = (*f)->decide(SYS_kill, AUDIT_ARCH_X86_64, args);
    EXPECT_EQ(v.action.str(), "errno:ESRCH");
    EXPECT_EQ(v.rule, "seccomp.rule[0]");
    args[1] = 15;
    v = (*f)->decide(SYS_kill, AUDIT_ARCH_X86_64, args);
    EXPECT_EQ(v.action.str(), "errno:EACCES");
    EXPECT_EQ(v.rule, "seccomp.default_action");
    v = (*f)->decide(SYS_getpid, AUDIT_ARCH_I386, args);
    EXPECT_EQ(v.rule, "abi");
}

TEST(Compiler, KernelEnforcesWhatThePolicySays) {
    auto p = parse(kBase);
    auto f = compiler::compile(p);
    ASSERT_TRUE(f);
    // Allowed outright.
    EXPECT_EQ(run_filtered(**f, [] { return syscall(SYS_getpid) > 0 ? 0 : 1; }), 0);
    // Not allowed: reaches the supervisor (our stand-in answers ENOTSUP).
    EXPECT_EQ(run_filtered(**f, [] { return (syscall(SYS_acct, nullptr) < 0 && errno == ENOTSUP) ? 0 : 1; }), 0);
    // clone3 is never allowed by the filter: it goes to the supervisor (which
    // answers ENOSYS, or records a denial when it asks for namespaces).
    EXPECT_EQ(run_filtered(**f, [] { return (syscall(SYS_clone3, nullptr, 0) < 0 && errno == ENOTSUP) ? 0 : 1; }), 0);
    // clone with a namespace flag is not allowed even though clone is.
    EXPECT_EQ(run_filtered(**f, [] {
                  long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
                  if (r == 0) _exit(0);
                  return (r < 0 && errno == ENOTSUP) ? 0 : 1;
              }),
              0);
    // Plain fork-style clone is allowed.
    EXPECT_EQ(run_filtered(**f, [] {
                  long r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
                  if (r == 0) _exit(0);
                  if (r < 0) return 1;
                  int st;
                  waitpid(pid_t(r), &st, 0);
                  return 0;
              }),
              0);
    // Argument rule: socketpair(AF_UNIX) allowed in the filter, AF_INET goes to the supervisor.
    EXPECT_EQ(run_filtered(**f, [] {
                  int sv[2];
                  return socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 ? 0 : 1;
              }),
              0);
    EXPECT_EQ(run_filtered(**f, [] {
                  int sv[2];
                  return (socketpair(AF_INET, SOCK_STREAM, 0, sv) < 0 && errno == ENOTSUP) ? 0 : 1;
              }),
              0);
    // x32 ABI numbers never match the allowlist.
    EXPECT_EQ(run_filtered(**f, [] { return (syscall(0x40000000 | SYS_getpid) < 0 && errno == ENOTSUP) ? 0 : 1; }), 0);
    // i386 int $0x80 (getpid is 20 there) goes to the supervisor too, where
    // the machine delivers it at all (PVM guests fault on int $0x80).
    pid_t probe = fork();
    if (probe == 0) {
        long ret;
        asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
        _exit(ret > 0 ? 0 : 1);
    }
    int ws = 0;
    waitpid(probe, &ws, 0);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) GTEST_SKIP() << "int $0x80 faults on this machine; i386 not checked";
    EXPECT_EQ(run_filtered(**f, [] {
                  long ret;
                  asm volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
                  return ret == -ENOTSUP ? 0 : 1;
              }),
              0);
}
