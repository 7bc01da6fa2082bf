// OCI / Docker seccomp profile import and export (core/policy/src/oci.cpp).
#include "moat/policy/oci.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/sched.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "moat/policy/diff.h"
#include "test_util.h"

namespace moat::policy {
namespace {

using nlohmann::json;
using test::dump;
using ::testing::HasSubstr;

// Shaped like moby's profiles/seccomp/default.json (trimmed, written here, not
// downloaded): an allow list with i386-only names, personality argument rules,
// arch- and capability-conditioned entries, clone without namespace flags for
// containers without CAP_SYS_ADMIN and clone3 -> ENOSYS.
constexpr const char* kDockerLike = R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "archMap": [
    { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
    { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] }
  ],
  "syscalls": [
    {
      "names": ["accept", "accept4", "access", "alarm", "bind", "brk", "chdir", "chmod", "chown", "chown32",
                "close", "connect", "dup", "dup2", "dup3", "epoll_create1", "epoll_ctl", "epoll_pwait",
                "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fcntl",
                "fcntl64", "fstat", "fstat64", "futex", "getcwd", "getdents64", "getegid", "geteuid", "getgid",
                "getpid", "getppid", "getrandom", "gettid", "getuid", "ioctl", "kill", "listen", "lseek",
                "_llseek", "madvise", "mkdir", "mkdirat", "mmap", "mmap2", "mprotect", "munmap", "nanosleep",
                "newfstatat", "openat", "pipe", "pipe2", "prlimit64", "read", "readlink", "recvfrom",
                "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sendto", "set_robust_list",
                "set_tid_address", "socket", "socketcall", "stat", "stat64", "statx", "uname", "wait4",
                "write", "writev", "rseq", "clock_gettime", "sigreturn", "ugetrlimit"],
      "action": "SCMP_ACT_ALLOW"
    },
    { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] },
    { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }] },
    { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 131072, "op": "SCMP_CMP_EQ" }] },
    { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 131080, "op": "SCMP_CMP_EQ" }] },
    { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ" }] },
    { "names": ["sync_file_range2", "swapcontext"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["ppc64le"] } },
    { "names": ["vhangup"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["s390", "s390x"] } },
    { "names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64", "x32", "x86"] } },
    { "names": ["bpf", "clone", "clone3", "mount", "setns", "umount2", "unshare"], "action": "SCMP_ACT_ALLOW",
      "includes": { "caps": ["CAP_SYS_ADMIN"] } },
    { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
      "args": [{ "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }],
      "excludes": { "caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"] } },
    { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": { "caps": ["CAP_SYS_ADMIN"] } },
    { "names": ["ptrace", "process_vm_readv"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_PTRACE"] } },
    { "names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": { "minKernel": "4.8" } },
    { "names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_BOOT"] } }
  ]
})";

std::vector<std::string> messages(const std::vector<Diagnostic>& d, Diagnostic::Severity s) {
    std::vector<std::string> out;
    for (const Diagnostic& x : d)
        if (x.severity == s) out.push_back(x.message);
    return out;
}

// Imports and parses; the import must succeed.
Policy import_ok(std::string_view json_text, std::vector<Diagnostic>* diags = nullptr) {
    OciImportResult r = import_oci(json_text, "profile.json", "imported");
    EXPECT_FALSE(has_errors(r.diagnostics)) << dump(r.diagnostics);
    EXPECT_FALSE(r.toml.empty());
    if (diags) *diags = r.diagnostics;
    return test::parse_ok(r.toml, "imported.toml");
}

// A profile with one entry (JSON object text) after an allow of execve/exit_group.
std::string with_entry(const std::string& entry, const std::string& dflt = R"("SCMP_ACT_ERRNO")") {
    return R"({"defaultAction": )" + dflt +
           R"(, "syscalls": [{"names": ["execve", "exit_group"], "action": "SCMP_ACT_ALLOW"}, )" + entry + "]}";
}

std::string one_error_of(std::string_view json_text) {
    OciImportResult r = import_oci(json_text, "profile.json", "imported");
    EXPECT_TRUE(r.toml.empty());
    std::vector<std::string> e = messages(r.diagnostics, Diagnostic::Severity::Error);
    EXPECT_EQ(e.size(), 1u) << dump(r.diagnostics);
    for (const Diagnostic& d : r.diagnostics)
        if (d.severity == Diagnostic::Severity::Error) return d.str();
    return "";
}

TEST(OciImport, DockerLikeProfileBecomesAValidPolicy) {
    std::vector<Diagnostic> diags;
    Policy p = import_ok(kDockerLike, &diags);
    EXPECT_EQ(p.name, "imported");
    EXPECT_EQ(p.seccomp.default_action.str(), "errno:EPERM");
    for (const char* s : {"read", "write", "execve", "openat", "mkdir", "socket", "arch_prctl", "modify_ldt", "clone"})
        EXPECT_TRUE(p.seccomp.allowed.contains(s)) << s;
    // Capability-conditioned, other-arch and i386-only names are not allowed.
    for (const char* s : {"mount", "bpf", "setns", "unshare", "reboot", "vhangup", "process_vm_readv"})
        EXPECT_FALSE(p.seccomp.allowed.contains(s)) << s;
    // includes.minKernel is kept (Docker allows ptrace on 4.8 and later, where
    // seccomp can no longer be bypassed with it).
    EXPECT_TRUE(p.seccomp.allowed.contains("ptrace"));
    // Five personality rules; clone3 is Moat's built-in ENOSYS, not a rule.
    int personality = 0;
    for (const SeccompRule& r : p.seccomp.rules) {
        EXPECT_NE(r.syscall, "clone3");
        EXPECT_NE(r.syscall, "clone");
        if (r.syscall == "personality") {
            ++personality;
            EXPECT_EQ(r.action.kind, Action::Kind::Allow);
            ASSERT_EQ(r.args.size(), 1u);
            EXPECT_EQ(r.args[0].op, ArgCondition::Op::Eq);
        }
    }
    EXPECT_EQ(personality, 5);
    EXPECT_EQ(p.seccomp.rules.back().args[0].value, 4294967295u);

    std::string all = dump(diags);
    EXPECT_THAT(all, HasSubstr("unknown to libseccomp on x86_64 and dropped: chown32"));
    EXPECT_THAT(all, HasSubstr("_llseek"));
    EXPECT_THAT(all, HasSubstr("socketcall"));
    EXPECT_THAT(all, HasSubstr("CAP_SYS_ADMIN, and Moat jobs run without capabilities"));
    EXPECT_THAT(all, HasSubstr("CAP_SYS_PTRACE"));
    EXPECT_THAT(all, HasSubstr("SCMP_ARCH_X86, SCMP_ARCH_X32"));
    // Entries for other architectures are dropped without noise.
    EXPECT_THAT(all, ::testing::Not(HasSubstr("vhangup")));
    EXPECT_THAT(all, ::testing::Not(HasSubstr("sync_file_range2")));
}

TEST(OciImport, WarningsAreRepeatedInTheTomlHeader) {
    OciImportResult r = import_oci(kDockerLike, "docker.json", "docker-default");
    ASSERT_FALSE(has_errors(r.diagnostics)) << dump(r.diagnostics);
    EXPECT_THAT(r.toml, HasSubstr("# Imported from the OCI seccomp profile docker.json"));
    EXPECT_THAT(r.toml, HasSubstr("#   syscalls[9] (bpf and 6 more) dropped"));
    EXPECT_THAT(r.toml, HasSubstr("name = \"docker-default\""));
}

TEST(OciImport, ActionsMapToMoatActions) {
    struct Case {
        const char* entry;
        const char* action;
    };
    const Case cases[] = {
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})", "errno:EACCES"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})", "errno:EPERM"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_KILL"})", "kill-process"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"})", "kill-process"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_KILL_THREAD"})", "kill-thread"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_TRAP"})", "trap"},
        {R"({"names": ["mkdir"], "action": "SCMP_ACT_LOG"})", "log"},
    };
    for (const Case& c : cases) {
        Policy p = import_ok(with_entry(c.entry, R"("SCMP_ACT_ERRNO", "defaultErrnoRet": 38)"));
        ASSERT_EQ(p.seccomp.rules.size(), 1u) << c.entry;
        EXPECT_EQ(p.seccomp.rules[0].syscall, "mkdir");
        EXPECT_EQ(p.seccomp.rules[0].action.str(), c.action) << c.entry;
        EXPECT_TRUE(p.seccomp.rules[0].args.empty());
    }
    Policy allow = import_ok(with_entry(R"({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"})"));
    EXPECT_TRUE(allow.seccomp.allowed.contains("mkdir"));
    EXPECT_TRUE(allow.seccomp.rules.empty());
}

TEST(OciImport, DefaultActionsMap) {
    struct Case {
        const char* dflt;
        const char* action;
    };
    const Case cases[] = {
        {R"("SCMP_ACT_ERRNO", "defaultErrnoRet": 38)", "errno:ENOSYS"},
        {R"("SCMP_ACT_ERRNO")", "errno:EPERM"},
        {R"("SCMP_ACT_KILL_PROCESS")", "kill-process"},
        {R"("SCMP_ACT_KILL")", "kill-process"},
        {R"("SCMP_ACT_KILL_THREAD")", "kill-thread"},
        {R"("SCMP_ACT_TRAP")", "trap"},
        {R"("SCMP_ACT_LOG")", "log"},
    };
    for (const Case& c : cases) {
        Policy p = import_ok(R"({"defaultAction": )" + std::string(c.dflt) +
                             R"(, "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ALLOW"}]})");
        EXPECT_EQ(p.seccomp.default_action.str(), c.action) << c.dflt;
    }
}

TEST(OciImport, EntryWithTheDefaultActionIsRedundant) {
    Policy p = import_ok(with_entry(R"({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})"));
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_FALSE(p.seccomp.allowed.contains("mkdir"));
}

TEST(OciImport, NotifyAndTraceBecomeTheDefaultWithAWarning) {
    for (const char* act : {"SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE"}) {
        std::vector<Diagnostic> d;
        Policy p = import_ok(with_entry(R"({"names": ["mkdir"], "action": ")" + std::string(act) + "\"}"), &d);
        EXPECT_FALSE(p.seccomp.allowed.contains("mkdir"));
        EXPECT_TRUE(p.seccomp.rules.empty());
        EXPECT_THAT(dump(d), HasSubstr(std::string(act) + " hands the syscall to another process")) << act;
        EXPECT_THAT(dump(d), HasSubstr("default action errno:EPERM"));
    }
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"}", "\"SCMP_ACT_NOTIFY\""), &d);
    EXPECT_EQ(p.seccomp.default_action.str(), "errno:EPERM");
    EXPECT_THAT(dump(d), HasSubstr("defaultAction: SCMP_ACT_NOTIFY"));
}

TEST(OciImport, OperatorsMap) {
    std::string entry = R"({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 3, "op": "SCMP_CMP_NE"},
        {"index": 2, "value": 10, "op": "SCMP_CMP_LT"},
        {"index": 3, "value": 11, "op": "SCMP_CMP_LE"},
        {"index": 4, "value": 12, "op": "SCMP_CMP_GT"},
        {"index": 5, "value": 18446744073709551615, "op": "SCMP_CMP_GE"}]},
      {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
        {"index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]})";
    Policy p = import_ok(with_entry(entry));
    ASSERT_EQ(p.seccomp.rules.size(), 2u);
    using Op = ArgCondition::Op;
    const std::vector<ArgCondition>& a = p.seccomp.rules[0].args;
    ASSERT_EQ(a.size(), 6u);
    const Op ops[] = {Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge};
    const uint64_t values[] = {1, 3, 10, 11, 12, UINT64_MAX};
    for (unsigned i = 0; i < 6; ++i) {
        EXPECT_EQ(a[i].index, i);
        EXPECT_EQ(a[i].op, ops[i]);
        EXPECT_EQ(a[i].value, values[i]);
    }
    const SeccompRule& m = p.seccomp.rules[1];
    EXPECT_EQ(m.action.str(), "errno:EACCES");
    ASSERT_EQ(m.args.size(), 1u);
    EXPECT_EQ(m.args[0].op, Op::MaskedEq);
    EXPECT_EQ(m.args[0].mask, 4u);   // OCI value
    EXPECT_EQ(m.args[0].value, 4u);  // OCI valueTwo
}

TEST(OciImport, MaskedEqSwapsValueAndValueTwo) {
    Policy p = import_ok(with_entry(R"({"names": ["open"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 1, "value": 3, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})"));
    ASSERT_EQ(p.seccomp.rules.size(), 1u);
    EXPECT_EQ(p.seccomp.rules[0].args[0].mask, 3u);
    EXPECT_EQ(p.seccomp.rules[0].args[0].value, 0u);
}

TEST(OciImport, SameArgumentTwiceBecomesAlternativesAsInRunc) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]})"),
                         &d);
    ASSERT_EQ(p.seccomp.rules.size(), 2u);
    EXPECT_EQ(p.seccomp.rules[0].args.size(), 1u);
    EXPECT_EQ(p.seccomp.rules[1].args[0].value, 8u);
    EXPECT_THAT(dump(d), HasSubstr("each becomes its own rule"));
}

TEST(OciImport, UnknownSyscallIsAWarningAndDropped) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["mkdir", "no_such_call", "socketcall"], "action": "SCMP_ACT_ALLOW"})"), &d);
    EXPECT_TRUE(p.seccomp.allowed.contains("mkdir"));
    std::vector<std::string> w = messages(d, Diagnostic::Severity::Warning);
    ASSERT_EQ(w.size(), 1u) << dump(d);
    EXPECT_EQ(w[0], "syscalls[1] (mkdir and 2 more): 2 syscall names are unknown to libseccomp on x86_64 and dropped: "
                    "no_such_call, socketcall");
    EXPECT_EQ(d[0].str().rfind("profile.json: warning: ", 0), 0u) << d[0].str();
}

TEST(OciImport, CapabilityConditionedEntriesAreDroppedExcludesKept) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}})"),
                         &d);
    EXPECT_FALSE(p.seccomp.allowed.contains("mount"));
    EXPECT_TRUE(p.seccomp.allowed.contains("mkdir"));
    EXPECT_THAT(dump(d), HasSubstr("syscalls[1] (mount) dropped: it applies only to containers with CAP_SYS_ADMIN"));
}

TEST(OciImport, ArchConditions) {
    Policy p = import_ok(with_entry(R"({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["rmdir"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["chmod"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}})"));
    EXPECT_FALSE(p.seccomp.allowed.contains("mkdir"));
    EXPECT_TRUE(p.seccomp.allowed.contains("rmdir"));
    EXPECT_FALSE(p.seccomp.allowed.contains("chmod"));
    EXPECT_TRUE(p.seccomp.allowed.contains("chown"));
}

TEST(OciImport, UnconditionalRuleShadowsConditionalOnes) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]})"),
                         &d);
    EXPECT_TRUE(p.seccomp.allowed.contains("ioctl"));
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_THAT(dump(d), HasSubstr("conditional rule for ioctl dropped"));
}

TEST(OciImport, MoatFixedRulesForCloneAndClone3) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["clone3"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060416, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})"),
                         &d);
    EXPECT_FALSE(p.seccomp.allowed.contains("clone3"));
    EXPECT_TRUE(p.seccomp.allowed.contains("clone"));
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_THAT(dump(d), HasSubstr("Moat always answers clone3 with ENOSYS"));

    // A clone condition that is not "no namespace flags" stays a rule.
    Policy q = import_ok(with_entry(R"({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 256, "valueTwo": 256, "op": "SCMP_CMP_MASKED_EQ"}]})"));
    ASSERT_EQ(q.seccomp.rules.size(), 1u);
    EXPECT_EQ(q.seccomp.rules[0].syscall, "clone");
}

TEST(OciImport, ExecveConditionsAreDropped) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["execve"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]}]})",
                         &d);
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_THAT(dump(d), HasSubstr("execve has argument conditions"));
}

TEST(OciImport, RuntimeSpecConfigIsAccepted) {
    Policy p = import_ok(R"({"ociVersion": "1.1.0", "linux": {"seccomp":
        {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}})");
    EXPECT_EQ(p.seccomp.default_action.str(), "kill-process");
    EXPECT_EQ(p.seccomp.allowed, std::set<std::string>{"read"});
}

TEST(OciImport, AllowAsDefaultIsRefused) {
    std::string e = one_error_of(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]})");
    EXPECT_THAT(e, HasSubstr("profile.json: error: defaultAction SCMP_ACT_ALLOW cannot be imported"));
    EXPECT_THAT(e, HasSubstr("Moat refuses allow-all defaults"));
}

TEST(OciImport, MalformedJsonHasAPosition) {
    std::string e = one_error_of("{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [ }\n");
    EXPECT_THAT(e, HasSubstr("profile.json:2:17: error: invalid JSON at byte 53: "));
    EXPECT_THAT(e, HasSubstr("syntax error"));
    EXPECT_THAT(one_error_of(""), HasSubstr("invalid JSON at byte"));
    EXPECT_THAT(one_error_of("\"\xff\""), HasSubstr("invalid JSON"));
}

TEST(OciImport, StructuralErrors) {
    EXPECT_THAT(one_error_of("[1, 2]"), HasSubstr("is a JSON object with defaultAction and syscalls, not array"));
    EXPECT_THAT(one_error_of("{\"syscalls\": []}"), HasSubstr("defaultAction is missing"));
    EXPECT_THAT(one_error_of("{\"defaultAction\": \"SCMP_ACT_NOPE\"}"), HasSubstr("unknown action \"SCMP_ACT_NOPE\""));
    EXPECT_THAT(one_error_of("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": {}}"),
                HasSubstr("syscalls must be an array"));
    EXPECT_THAT(one_error_of("{\"linux\": {}}"), HasSubstr("no linux.seccomp object"));
}

TEST(OciImport, BadEntriesAreDroppedWithAWarning) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"(7, {"names": "read", "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["rmdir"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]},
        {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
        {"names": ["umask"]})"),
                         &d);
    EXPECT_EQ(p.seccomp.allowed, (std::set<std::string>{"execve", "exit_group"}));
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_EQ(messages(d, Diagnostic::Severity::Warning).size(), 7u) << dump(d);
    std::string all = dump(d);
    EXPECT_THAT(all, HasSubstr("index must be 0 to 5"));
    EXPECT_THAT(all, HasSubstr("value must be an unsigned 64-bit integer"));
    EXPECT_THAT(all, HasSubstr("op must be one of"));
    EXPECT_THAT(all, HasSubstr("errnoRet 0 cannot be represented"));
    EXPECT_THAT(all, HasSubstr("(umask) dropped: it has no action"));
}

TEST(OciImport, OversizedInputIsRejected) {
    std::string big(kMaxOciProfileBytes + 1, ' ');
    EXPECT_THAT(one_error_of(big), HasSubstr("the limit is 4194304 (4 MiB)"));
}

TEST(OciImport, InvalidNameIsAnError) {
    OciImportResult r = import_oci(with_entry("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"}"), "p.json", "a b");
    EXPECT_TRUE(r.toml.empty());
    EXPECT_THAT(dump(r.diagnostics), HasSubstr("policy name \"a b\" is not valid"));
}

TEST(OciImport, HostileTextCannotInjectTomlLines) {
    std::vector<Diagnostic> d;
    Policy p = import_ok(with_entry(R"({"names": ["x\n[limits]\nmemory = \"1GiB\""], "action": "SCMP_ACT_ALLOW"})"), &d);
    EXPECT_EQ(p.limits.memory_bytes, default_limits().memory_bytes);
    EXPECT_THAT(dump(d), HasSubstr("x?[limits]?memory"));
}

TEST(OciExport, MirrorsMoatEnforcement) {
    Policy p = test::parse_ok(R"(
name = "exp"
[seccomp]
default_action = "errno:EACCES"
allow = ["@default", "clone3"]

[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }]

[[seccomp.rule]]
syscall = "ptrace"
action = "kill-thread"
)");
    OciExportResult r = export_oci(p);
    json j = json::parse(r.json);
    EXPECT_EQ(j["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_EQ(j["defaultErrnoRet"], EACCES);
    EXPECT_EQ(j["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
    const json& calls = j["syscalls"];
    ASSERT_GE(calls.size(), 5u);
    EXPECT_EQ(calls[0]["action"], "SCMP_ACT_ALLOW");
    std::vector<std::string> names = calls[0]["names"];
    EXPECT_THAT(names, ::testing::Contains("execve"));
    EXPECT_THAT(names, ::testing::Not(::testing::Contains("clone")));
    EXPECT_THAT(names, ::testing::Not(::testing::Contains("clone3")));
    // clone: only without namespace flags; the mask is the compiler's.
    constexpr uint64_t kNs = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                             CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME;
    static_assert(kNs == 0x7E020080);
    EXPECT_EQ(calls[1], json::parse(R"({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 2114060416, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})"));
    EXPECT_EQ(calls[2], json::parse(R"({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})"));
    EXPECT_EQ(calls[3], json::parse(R"({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]})"));
    EXPECT_EQ(calls[4], json::parse(R"({"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"})"));
    EXPECT_THAT(dump(r.diagnostics), HasSubstr("kill-thread rules exported as SCMP_ACT_KILL_PROCESS"));
}

TEST(OciExport, CloneRulesGetTheNamespaceCondition) {
    Policy p = test::parse_ok(R"(
name = "exp"
[seccomp]
[[seccomp.rule]]
syscall = "clone"
args = [{ index = 0, op = "masked_eq", value = 0, mask = "CLONE_VM" }]
[[seccomp.rule]]
syscall = "clone"
args = [{ index = 0, op = "gt", value = 5 }]
)");
    OciExportResult r = export_oci(p);
    json calls = json::parse(r.json)["syscalls"];
    json clone_rules = json::array();
    for (const json& c : calls)
        if (c["names"] == json({"clone"})) clone_rules.push_back(c);
    ASSERT_EQ(clone_rules.size(), 1u) << calls.dump();
    EXPECT_EQ(clone_rules[0]["args"][0]["value"], 0x7E020080u | 0x100u);
    EXPECT_THAT(dump(r.diagnostics), HasSubstr("seccomp.rule[1] (clone) not exported"));
}

TEST(OciRoundTrip, ExportThenImportKeepsTheEffectiveSeccompSection) {
    const char* policies[] = {
        R"(
name = "rt"
[seccomp]
default_action = "kill-process"
allow = ["@default", "@network-io", "@file-system"]

[[seccomp.rule]]
syscall = "ioctl"
args = [{ index = 1, op = "eq", value = "TCGETS" }]

[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }, { index = 1, op = "masked_eq", value = "SOCK_STREAM", mask = 15 }]

[[seccomp.rule]]
syscall = "mmap"
action = "errno:EACCES"
args = [{ index = 2, op = "masked_eq", value = "PROT_EXEC", mask = "PROT_EXEC" }]

[[seccomp.rule]]
syscall = "personality"
args = [{ index = 0, op = "eq", value = "0xffffffffffffffff" }]

[[seccomp.rule]]
syscall = "ptrace"
action = "trap"

[[seccomp.rule]]
syscall = "kcmp"
action = "log"
)",
        R"(
name = "rt2"
[seccomp]
default_action = "errno:ENOSYS"
allow = ["read", "write", "execve", "exit_group"]
)",
        R"(
name = "rt3"
[seccomp]
default_action = "log"
allow = ["@default"]
[[seccomp.rule]]
syscall = "prctl"
action = "errno:EPERM"
args = [{ index = 0, op = "ge", value = 1 }, { index = 1, op = "lt", value = 5 }, { index = 2, op = "ne", value = 7 }, { index = 3, op = "le", value = 9 }]
)",
    };
    for (const char* text : policies) {
        Policy a = test::parse_ok(text);
        OciExportResult e = export_oci(a);
        EXPECT_FALSE(has_errors(e.diagnostics)) << dump(e.diagnostics);
        OciImportResult i = import_oci(e.json, "exported.json", a.name);
        ASSERT_FALSE(has_errors(i.diagnostics)) << dump(i.diagnostics) << e.json;
        Policy b = test::parse_ok(i.toml);
        EXPECT_EQ(a.seccomp.default_action, b.seccomp.default_action);
        EXPECT_EQ(a.seccomp.allowed, b.seccomp.allowed);
        PolicyDiff d = diff(a, b);
        EXPECT_TRUE(d.syscalls.empty() && d.rules_added.empty() && d.rules_removed.empty() && !d.default_action)
            << to_text(d) << "\n" << i.toml;
        EXPECT_EQ(a.seccomp.rules.size(), b.seccomp.rules.size());
    }
}

}  // namespace
}  // namespace moat::policy
