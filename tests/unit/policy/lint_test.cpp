#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "moat/policy/lint.h"
#include "test_util.h"

namespace moat::policy {
namespace {

using test::dump;
using test::parse_ok;
using ::testing::HasSubstr;
using S = Diagnostic::Severity;

std::vector<Diagnostic> only(const std::vector<Diagnostic>& d, S sev) {
    std::vector<Diagnostic> out;
    for (const Diagnostic& x : d)
        if (x.severity == sev) out.push_back(x);
    return out;
}

const Diagnostic* find_msg(const std::vector<Diagnostic>& d, std::string_view needle) {
    for (const Diagnostic& x : d)
        if (x.message.find(needle) != std::string::npos) return &x;
    return nullptr;
}

TEST(PolicyLint, RiskList) {
    for (const char* n : {"ptrace", "process_vm_readv", "process_vm_writev", "bpf", "mount", "umount2", "pivot_root",
                          "chroot", "unshare", "setns", "io_uring_setup", "io_uring_enter", "io_uring_register",
                          "userfaultfd", "keyctl", "add_key", "request_key", "perf_event_open", "personality",
                          "kexec_load", "init_module", "finit_module", "open_by_handle_at", "name_to_handle_at",
                          "reboot", "swapon", "acct", "iopl", "ioperm", "modify_ldt"})
        EXPECT_FALSE(risk_of(n).empty()) << n;
    EXPECT_EQ(risk_of("read"), "");
    EXPECT_EQ(risk_of("openat"), "");
    EXPECT_THAT(risk_of("personality"), HasSubstr("without an argument rule"));
    EXPECT_THAT(risk_of("ioctl"), HasSubstr("without an argument rule"));
}

TEST(PolicyLint, DefaultPolicyIsCleanExceptTmpfsInSeccompTier) {
    Policy p = parse_ok("name = \"x\"\n[filesystem]\ntmpfs = []\n");
    EXPECT_TRUE(lint(p).empty()) << dump(lint(p));
    // With the default tmpfs in the seccomp tier: exactly the tmpfs warning.
    Policy q = parse_ok("name = \"x\"\n");
    std::vector<Diagnostic> d = lint(q);
    ASSERT_EQ(d.size(), 1u) << dump(d);
    EXPECT_THAT(d[0].message, HasSubstr("tmpfs mounts need a mount namespace; in the seccomp tier these paths are not created"));
    EXPECT_EQ(d[0].severity, S::Warning);
    // In the container tier tmpfs is fine.
    EXPECT_TRUE(lint(parse_ok("name = \"x\"\ntier = \"container\"\n")).empty());
}

TEST(PolicyLint, RiskySyscallsWarnWithReasonAtTheirEntry) {
    Policy p = parse_ok(
        "name = \"x\"\ntier = \"container\"\n[seccomp]\nallow = [\"@default\", \"ptrace\",\n  \"bpf\", \"@io-uring\"]\n",
        "r.toml");
    std::vector<Diagnostic> d = lint(p);
    EXPECT_TRUE(only(d, S::Error).empty()) << dump(d);
    const Diagnostic* ptrace = find_msg(d, "call ptrace unconditionally");
    ASSERT_NE(ptrace, nullptr) << dump(d);
    EXPECT_EQ(ptrace->severity, S::Warning);
    EXPECT_EQ(ptrace->str(), "r.toml:4:22: warning: seccomp.allow lets the job call ptrace unconditionally: " +
                                 risk_of("ptrace"));
    const Diagnostic* bpf = find_msg(d, "call bpf");
    ASSERT_NE(bpf, nullptr);
    EXPECT_EQ(bpf->line, 5);
    EXPECT_EQ(bpf->column, 3);
    const Diagnostic* uring = find_msg(d, "io_uring_setup (via @io-uring)");
    ASSERT_NE(uring, nullptr) << dump(d);
    EXPECT_EQ(uring->line, 5);
    EXPECT_EQ(uring->column, 10);
    EXPECT_EQ(only(d, S::Warning).size(), 5u) << dump(d);  // ptrace, bpf, 3x io_uring
}

TEST(PolicyLint, NarrowedRiskyRuleIsNotWarned) {
    Policy p = parse_ok(R"(name = "x"
tier = "container"
[seccomp]
allow = ["@default", "@basic-io"]
[[seccomp.rule]]
syscall = "ioctl"
args = [{ index = 1, op = "eq", value = "TCGETS" }]
[[seccomp.rule]]
syscall = "personality"
args = [{ index = 0, op = "eq", value = 0 }]
)");
    EXPECT_TRUE(lint(p).empty()) << dump(lint(p));
    // The same call allowed by a rule without conditions is warned about, at the rule.
    Policy q = parse_ok("name = \"x\"\ntier = \"container\"\n[[seccomp.rule]]\nsyscall = \"personality\"\n");
    std::vector<Diagnostic> d = lint(q);
    ASSERT_EQ(d.size(), 1u) << dump(d);
    EXPECT_EQ(d[0].line, 3);
    EXPECT_THAT(d[0].message, HasSubstr("allows personality with no argument conditions"));
    EXPECT_THAT(d[0].message, HasSubstr("without an argument rule"));
    // A @basic-io policy without the ioctl rule warns about ioctl.
    Policy r = parse_ok("name = \"x\"\ntier = \"container\"\n[seccomp]\nallow = [\"@default\", \"@basic-io\"]\n");
    ASSERT_NE(find_msg(lint(r), "ioctl (via @basic-io)"), nullptr) << dump(lint(r));
}

TEST(PolicyLint, MissingExecveOrExitGroupIsAnError) {
    Policy p = parse_ok("name = \"x\"\ntier = \"vm\"\n[seccomp]\nallow = [\"read\", \"write\", \"exit_group\"]\n");
    std::vector<Diagnostic> e = only(lint(p), S::Error);
    ASSERT_EQ(e.size(), 1u) << dump(lint(p));
    EXPECT_THAT(e[0].str(), HasSubstr("test.toml:4:1: error: execve is not allowed: the job cannot start its program"));
    Policy q = parse_ok("name = \"x\"\ntier = \"vm\"\n[seccomp]\nallow = [\"execve\"]\n");
    e = only(lint(q), S::Error);
    ASSERT_EQ(e.size(), 1u) << dump(lint(q));
    EXPECT_THAT(e[0].message, HasSubstr("exit_group is not allowed"));
    // A rule allowing execve counts.
    Policy r = parse_ok(
        "name = \"x\"\ntier = \"vm\"\n[seccomp]\nallow = [\"exit_group\"]\n[[seccomp.rule]]\nsyscall = \"execve\"\n");
    EXPECT_TRUE(only(lint(r), S::Error).empty()) << dump(lint(r));
    // ... but a rule denying it does not.
    Policy s = parse_ok(
        "name = \"x\"\ntier = \"vm\"\n[[seccomp.rule]]\nsyscall = \"execve\"\naction = \"kill-process\"\n");
    ASSERT_EQ(only(lint(s), S::Error).size(), 1u) << dump(lint(s));
}

TEST(PolicyLint, NetworkHostLandlockOffAndLogDefault) {
    Policy p = parse_ok(
        "name = \"x\"\n[network]\nmode = \"host\"\n[filesystem]\ntmpfs = []\nlandlock = \"off\"\n[seccomp]\n"
        "default_action = \"log\"\n");
    std::vector<Diagnostic> d = lint(p);
    ASSERT_EQ(d.size(), 3u) << dump(d);
    EXPECT_EQ(d[0].line, 3);  // network.mode
    EXPECT_THAT(d[0].message, HasSubstr("host"));
    EXPECT_EQ(d[1].line, 6);  // filesystem.landlock
    EXPECT_THAT(d[1].message, HasSubstr("landlock = \"off\""));
    EXPECT_EQ(d[2].line, 8);
    EXPECT_THAT(d[2].message, HasSubstr("lets every syscall through"));
    for (const Diagnostic& x : d) EXPECT_EQ(x.severity, S::Warning);
}

}  // namespace
}  // namespace moat::policy
