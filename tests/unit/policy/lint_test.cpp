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

// Issue 11: Landlock grants the union of the rules along a path, so in the
// seccomp tier a read_only entry inside a read_write one would be writable.
TEST(PolicyLint, ReadOnlyInsideReadWriteIsASeccompTierErrorAtTheNestedEntry) {
    const std::string text = R"(name = "x"
[filesystem]
read_write = ["/srv/data"]
read_only = ["/usr", "/lib",
    "/srv/data/bin/"]
tmpfs = []
)";
    std::vector<Diagnostic> d = lint(parse_ok(text, "n.toml"));
    std::vector<Diagnostic> e = only(d, S::Error);
    ASSERT_EQ(e.size(), 1u) << dump(d);
    EXPECT_EQ(e[0].line, 5) << dump(d);
    EXPECT_EQ(e[0].column, 5) << dump(d);
    EXPECT_THAT(e[0].str(), HasSubstr("n.toml:5:5: error: in the seccomp tier, \"/srv/data/bin\" in "
                                      "filesystem.read_only is inside \"/srv/data\" in filesystem.read_write"));
    EXPECT_THAT(e[0].message, HasSubstr("grants the union of the rules"));  // the reason
    EXPECT_THAT(e[0].message, HasSubstr("could write it"));
    EXPECT_THAT(e[0].message, HasSubstr("Move it out of the read_write path"));  // way out 1
    EXPECT_THAT(e[0].message, HasSubstr("tier = \"container\""));               // way out 2

    // The same file in the container tier is fine: bind mounts keep it read-only.
    EXPECT_TRUE(only(lint(parse_ok("tier = \"container\"\n" + text)), S::Error).empty());

    // "//", "/./" and trailing slashes do not hide it; a sibling that merely
    // shares a prefix is not inside.
    Policy q = parse_ok(R"(name = "x"
[filesystem]
read_write = ["//srv/./data/", "/opt/a"]
read_only = ["/usr", "/srv//data/./x", "/opt/ab", "/opt/a/b/c"]
tmpfs = []
)");
    std::vector<Diagnostic> qe = only(lint(q), S::Error);
    ASSERT_EQ(qe.size(), 2u) << dump(lint(q));
    EXPECT_THAT(qe[0].message, HasSubstr("\"/srv/data/x\" in filesystem.read_only is inside \"/srv/data\""));
    EXPECT_EQ(qe[0].column, 22);
    EXPECT_THAT(qe[1].message, HasSubstr("\"/opt/a/b/c\" in filesystem.read_only is inside \"/opt/a\""));
}

TEST(PolicyLint, ReadOnlyInsideReadWriteFunctionFindsEveryPair) {
    auto n = read_only_inside_read_write({"/a/b", "/c", "/ab", "/a", "/x/y/"}, {"/a", "/x//"});
    ASSERT_EQ(n.size(), 3u);
    EXPECT_EQ(n[0].read_only, "/a/b");
    EXPECT_EQ(n[0].read_only_index, 0u);
    EXPECT_EQ(n[0].read_write, "/a");
    EXPECT_EQ(n[1].read_only, "/a");  // the same path in both (the parser already refuses it in a file)
    EXPECT_EQ(n[2].read_only, "/x/y/");
    EXPECT_EQ(n[2].read_write_index, 1u);
    EXPECT_TRUE(read_only_inside_read_write({"/usr", "/lib"}, {"/srv"}).empty());
    // read_only around read_write is the useful case and stays allowed.
    EXPECT_TRUE(read_only_inside_read_write({"/srv"}, {"/srv/data"}).empty());
    EXPECT_EQ(read_only_inside_read_write({"/usr", "/etc"}, {"/"}).size(), 2u);
}

TEST(PolicyLint, ReadWriteRootWarnsAtTheEntry) {
    Policy p = parse_ok(R"(name = "x"
tier = "container"
[filesystem]
read_write = ["/tmp/a",
  "/"]
)", "rw.toml");
    std::vector<Diagnostic> d = lint(p);
    const Diagnostic* w = find_msg(d, "filesystem.read_write contains \"/\"");
    ASSERT_NE(w, nullptr) << dump(d);
    EXPECT_EQ(w->severity, S::Warning);
    EXPECT_EQ(w->line, 5);
    EXPECT_EQ(w->column, 3);
    // "//" is "/" too; in the seccomp tier the default read_only entries are
    // inside it, reported at the read_write entry (they have no position).
    Policy q = parse_ok("name = \"x\"\n[filesystem]\nread_write = [\"//\"]\ntmpfs = []\n");
    std::vector<Diagnostic> qd = lint(q);
    EXPECT_NE(find_msg(qd, "filesystem.read_write contains \"/\""), nullptr) << dump(qd);
    std::vector<Diagnostic> qe = only(qd, S::Error);
    ASSERT_FALSE(qe.empty()) << dump(qd);
    EXPECT_EQ(qe[0].line, 3);
    EXPECT_EQ(qe[0].column, 15);
    EXPECT_THAT(qe[0].message, HasSubstr("is a default read_only entry"));
}

// Issue 11: clone3 in allow used to be "allowed" by lint while the supervisor
// answered every clone3 with ENOSYS. Lint now says what happens.
TEST(PolicyLint, Clone3InAllowSaysItIsAnsweredEnosys) {
    Policy p = parse_ok(R"(name = "x"
tier = "container"
[seccomp]
allow = ["@default", "clone3"]
)", "c.toml");
    std::vector<Diagnostic> d = lint(p);
    const Diagnostic* c = find_msg(d, "clone3");
    ASSERT_NE(c, nullptr) << dump(d);
    EXPECT_EQ(c->severity, S::Warning);
    EXPECT_EQ(c->line, 4);
    EXPECT_EQ(c->column, 22);
    EXPECT_THAT(c->message, HasSubstr("answered with ENOSYS"));
    EXPECT_THAT(c->message, HasSubstr("by design"));
    EXPECT_THAT(c->message, HasSubstr("falls back to clone"));
    EXPECT_THAT(c->message, HasSubstr("CLONE_NEWUSER"));
    // Not the generic "lets the job call clone3 unconditionally", which was false.
    EXPECT_EQ(find_msg(d, "call clone3 unconditionally"), nullptr) << dump(d);
    EXPECT_EQ(d.size(), 1u) << dump(d);

    // A rule allowing clone3 is refused by the compiler; lint says so first.
    Policy r = parse_ok(R"(name = "x"
tier = "container"
[seccomp]
allow = ["@default"]
[[seccomp.rule]]
syscall = "clone3"
action = "allow"
)");
    std::vector<Diagnostic> re = only(lint(r), S::Error);
    ASSERT_EQ(re.size(), 1u) << dump(lint(r));
    EXPECT_THAT(re[0].message, HasSubstr("clone3 cannot be allowed by a rule"));
}

// The container tier's /dev is its own: its five devices may be listed (the
// seccomp tier needs them for Landlock), anything else there is an error at
// its entry, because moatd would refuse the job at set-up.
TEST(PolicyLint, ContainerTierDevPathsOtherThanItsOwnDevicesAreErrors) {
    const std::string text = R"(name = "x"
tier = "container"
[filesystem]
read_only = ["/usr", "/dev/null", "/dev/sda"]
read_write = ["/dev/zero", "/dev/shm"]
tmpfs = ["/tmp", "/dev/mqueue"]
)";
    std::vector<Diagnostic> e = only(lint(parse_ok(text, "d.toml")), S::Error);
    ASSERT_EQ(e.size(), 3u) << dump(e);
    EXPECT_THAT(e[0].str(), HasSubstr("d.toml:4:35: error: /dev/sda: a container or vm job has its own /dev"));
    EXPECT_THAT(e[1].str(), HasSubstr("d.toml:5:28: error: /dev/shm:"));
    EXPECT_THAT(e[2].str(), HasSubstr("d.toml:6:18: error: /dev/mqueue:"));
    // The seccomp tier binds nothing: Landlock rules on device paths are fine there.
    std::string seccomp = text;
    seccomp.replace(seccomp.find("container"), 9, "seccomp");
    EXPECT_TRUE(only(lint(parse_ok(seccomp)), S::Error).empty()) << dump(lint(parse_ok(seccomp)));
    // The vm tier's guest runs the job in the same kind of container.
    std::string vm = text;
    vm.replace(vm.find("container"), 9, "vm");
    EXPECT_EQ(only(lint(parse_ok(vm)), S::Error).size(), 3u) << dump(lint(parse_ok(vm)));
}

}  // namespace
}  // namespace moat::policy
