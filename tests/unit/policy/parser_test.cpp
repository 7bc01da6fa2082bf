#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <random>

#include "moat/common/sha256.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"
#include "test_util.h"

namespace moat::policy {
namespace {

using test::dump;
using test::errors_of;
using test::one_error;
using test::parse_ok;
using ::testing::HasSubstr;

constexpr uint64_t kSec = 1'000'000'000ULL;
constexpr uint64_t kMiB = 1ULL << 20;

// The example from docs/contract section 5, verbatim.
constexpr std::string_view kContractExample = R"(name = "thumbnailer"
description = "Resize user uploads"
tier = "container"                # seccomp | container | vm

[limits]
wall_time = "30s"
cpu_time = "10s"
memory = "256MiB"
pids = 64
file_size = "64MiB"
open_files = 256

[filesystem]                      # paths seen inside the sandbox
read_only = ["/usr", "/lib", "/lib64", "/etc/ImageMagick-6"]
read_write = []
tmpfs = ["/tmp"]

[network]
mode = "none"                     # none | loopback

[environment]
pass = ["LANG"]                   # everything else is dropped
set = { OMP_NUM_THREADS = "1" }

[seccomp]
default_action = "errno:EPERM"    # kill-process | kill-thread | errno:NAME | trap | log
allow = ["@default", "read", "write", "openat"]   # names and @groups

[[seccomp.rule]]                  # argument-conditioned rules
syscall = "socket"
action = "allow"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }]
)";

TEST(PolicyParse, ContractExample) {
    Policy p = parse_ok(kContractExample, "thumb.toml");
    EXPECT_EQ(p.name, "thumbnailer");
    EXPECT_EQ(p.description, "Resize user uploads");
    EXPECT_EQ(p.tier, Tier::Container);
    EXPECT_EQ(p.limits.wall_time_ns, 30 * kSec);
    EXPECT_EQ(p.limits.cpu_time_ns, 10 * kSec);
    EXPECT_EQ(p.limits.memory_bytes, 256 * kMiB);
    EXPECT_EQ(p.limits.pids, 64u);
    EXPECT_EQ(p.limits.file_size_bytes, 64 * kMiB);
    EXPECT_EQ(p.limits.open_files, 256u);
    EXPECT_EQ(p.limits.stack_bytes, 8 * kMiB);  // not in the file: default
    EXPECT_EQ(p.limits.core_bytes, 0u);
    EXPECT_EQ(p.filesystem.read_only, (std::vector<std::string>{"/usr", "/lib", "/lib64", "/etc/ImageMagick-6"}));
    EXPECT_TRUE(p.filesystem.read_write.empty());
    EXPECT_EQ(p.filesystem.tmpfs, std::vector<std::string>{"/tmp"});
    EXPECT_EQ(p.network, NetworkMode::None);
    EXPECT_EQ(p.environment.pass, std::vector<std::string>{"LANG"});
    EXPECT_EQ(p.environment.set, (std::map<std::string, std::string>{{"OMP_NUM_THREADS", "1"}}));
    EXPECT_EQ(p.seccomp.default_action.kind, Action::Kind::Errno);
    EXPECT_EQ(p.seccomp.default_action.errno_value, EPERM);
    EXPECT_EQ(p.seccomp.allow_entries, (std::vector<std::string>{"@default", "read", "write", "openat"}));
    EXPECT_TRUE(p.seccomp.allowed.contains("execve"));
    EXPECT_TRUE(p.seccomp.allowed.contains("exit_group"));
    EXPECT_TRUE(p.seccomp.allowed.contains("openat"));
    ASSERT_EQ(p.seccomp.rules.size(), 1u);
    const SeccompRule& r = p.seccomp.rules[0];
    EXPECT_EQ(r.syscall, "socket");
    EXPECT_EQ(r.nr, 41);  // x86_64 socket
    EXPECT_EQ(r.action.kind, Action::Kind::Allow);
    ASSERT_EQ(r.args.size(), 1u);
    EXPECT_EQ(r.args[0].index, 0u);
    EXPECT_EQ(r.args[0].op, ArgCondition::Op::Eq);
    EXPECT_EQ(r.args[0].value, uint64_t(AF_UNIX));
    EXPECT_EQ(r.args[0].value_text, "AF_UNIX");
    EXPECT_EQ(r.pos.line, 29);  // the [[seccomp.rule]] header
    // Provenance.
    EXPECT_EQ(p.source_name, "thumb.toml");
    EXPECT_EQ(p.source_text, kContractExample);
    EXPECT_EQ(p.sha256, sha256_hex(kContractExample));
    EXPECT_EQ(p.key_pos.at("limits.memory").line, 8);
    EXPECT_EQ(p.key_pos.at("limits.memory").column, 1);
    EXPECT_EQ(p.key_pos.at("seccomp.allow").line, 27);
    EXPECT_FALSE(p.key_pos.contains("limits.stack"));
}

TEST(PolicyParse, MinimalPolicyGetsEveryDefault) {
    Policy p = parse_ok("name = \"min\"\n");
    Limits d = default_limits();
    EXPECT_EQ(p.limits.wall_time_ns, 60 * kSec);
    EXPECT_EQ(p.limits.cpu_time_ns, 30 * kSec);
    EXPECT_EQ(p.limits.memory_bytes, 512 * kMiB);
    EXPECT_EQ(p.limits.pids, 128u);
    EXPECT_EQ(p.limits.file_size_bytes, 1024 * kMiB);
    EXPECT_EQ(p.limits.open_files, 1024u);
    EXPECT_EQ(p.limits.stack_bytes, 8 * kMiB);
    EXPECT_EQ(p.limits.core_bytes, 0u);
    EXPECT_EQ(d.memory_bytes, p.limits.memory_bytes);
    EXPECT_EQ(p.description, "");
    EXPECT_EQ(p.tier, Tier::Seccomp);
    EXPECT_EQ(p.filesystem.read_only,
              (std::vector<std::string>{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"}));
    EXPECT_TRUE(p.filesystem.read_write.empty());
    EXPECT_EQ(p.filesystem.tmpfs, std::vector<std::string>{"/tmp"});
    EXPECT_EQ(p.filesystem.tmpfs_size_bytes, 64 * kMiB);
    EXPECT_EQ(p.filesystem.landlock, LandlockMode::Required);
    EXPECT_EQ(p.network, NetworkMode::None);
    EXPECT_EQ(p.environment.pass, (std::vector<std::string>{"LANG", "LC_ALL", "TZ"}));
    EXPECT_EQ(p.environment.set.at("PATH"), "/usr/local/bin:/usr/bin:/bin");
    EXPECT_EQ(p.seccomp.default_action.str(), "errno:EPERM");
    EXPECT_EQ(p.seccomp.allow_entries, std::vector<std::string>{"@default"});
    std::vector<std::string> def = expand_group("@default");
    EXPECT_EQ(p.seccomp.allowed, std::set<std::string>(def.begin(), def.end()));
    EXPECT_TRUE(p.seccomp.rules.empty());
    EXPECT_EQ(p.monitor.sample_interval_ns, kSec);
    EXPECT_EQ(p.monitor.max_events, 10000u);
    EXPECT_EQ(p.monitor.max_event_bytes, 16u << 20);
}

TEST(PolicyParse, HostnameIsValidated) {
    EXPECT_THAT(one_error("name = \"n\"\nhostname = \"-bad\"\n"), HasSubstr("test.toml:2:12: error: hostname \"-bad\" is not valid"));
    EXPECT_THAT(one_error("name = \"n\"\nhostname = \"a.b\"\n"), HasSubstr("is not valid"));
    EXPECT_THAT(one_error("name = \"n\"\nhostnam = \"x\"\n"), HasSubstr("did you mean \"hostname\""));
}

TEST(PolicyParse, NameIsRequiredAndValidated) {
    EXPECT_THAT(one_error("description = \"x\"\n"), HasSubstr("missing required key \"name\""));
    EXPECT_THAT(one_error("name = \"has space\"\n"), HasSubstr("test.toml:1:8: error: name \"has space\" is not valid"));
    EXPECT_THAT(one_error("name = \"\"\n"), HasSubstr("is not valid"));
    EXPECT_THAT(one_error("name = \"" + std::string(65, 'a') + "\"\n"), HasSubstr("1 to 64 characters"));
    parse_ok("name = \"" + std::string(64, 'a') + "\"\n");
    parse_ok("name = \"a.b_c-1\"\n");
}

TEST(PolicyParse, UnknownTopLevelKeyHasDidYouMeanAndPosition) {
    EXPECT_EQ(one_error("name = \"x\"\n\n[limts]\nmemory = \"1GiB\"\n", "p.toml"),
              "p.toml:3:2: error: unknown key \"limts\" (did you mean \"limits\"?)");
}

TEST(PolicyParse, UnknownNestedKeyHasDidYouMeanAndPosition) {
    EXPECT_EQ(one_error("name = \"x\"\n[limits]\n  memroy = \"1GiB\"\n"),
              "test.toml:3:3: error: unknown key \"memroy\" in [limits] (did you mean \"memory\"?)");
    // Nothing close: no suggestion.
    std::string e = one_error("name = \"x\"\n[network]\nzzzzzzzz = 1\n");
    EXPECT_THAT(e, HasSubstr("unknown key \"zzzzzzzz\" in [network]"));
    EXPECT_THAT(e, ::testing::Not(HasSubstr("did you mean")));
}

TEST(PolicyParse, AllErrorsAreCollectedInFileOrder) {
    std::vector<Diagnostic> e = errors_of(
        "name = \"x\"\n"
        "[limits]\n"
        "memory = 512\n"
        "pids = -1\n"
        "[seccomp]\n"
        "allow = [\"opnat\", \"@nope\"]\n");
    ASSERT_EQ(e.size(), 4u) << dump(e);
    EXPECT_EQ(e[0].line, 3);
    EXPECT_EQ(e[1].line, 4);
    EXPECT_EQ(e[2].line, 6);
    EXPECT_EQ(e[3].line, 6);
    EXPECT_LT(e[2].column, e[3].column);
}

TEST(PolicyParse, MisspeltSyscallSuggestsAndPointsAtElement) {
    EXPECT_EQ(one_error("name = \"x\"\n[seccomp]\nallow = [\"@default\", \"opnat\"]\n"),
              "test.toml:3:22: error: unknown syscall \"opnat\" (did you mean \"openat\"?)");
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\nallow = [\"exceve\"]\n"), HasSubstr("did you mean \"execve\"?"));
}

TEST(PolicyParse, UnknownGroupSuggestsGroup) {
    std::string e = one_error("name = \"x\"\n[seccomp]\nallow = [\"@basicio\"]\n");
    EXPECT_THAT(e, HasSubstr("test.toml:3:10: error: unknown syscall group \"@basicio\" (did you mean \"@basic-io\"?)"));
}

TEST(PolicyParse, SizesAndDurationsNeedUnits) {
    std::string e = one_error("name = \"x\"\n[limits]\nmemory = 512\n");
    EXPECT_THAT(e, HasSubstr("test.toml:3:10: error: limits.memory has no unit"));
    EXPECT_THAT(e, HasSubstr("memory = \"512MiB\""));
    e = one_error("name = \"x\"\n[limits]\nmemory = \"512\"\n");
    EXPECT_THAT(e, HasSubstr("has no unit"));
    EXPECT_THAT(e, HasSubstr("example"));
    e = one_error("name = \"x\"\n[limits]\nwall_time = 30\n");
    EXPECT_THAT(e, HasSubstr("limits.wall_time has no unit"));
    EXPECT_THAT(e, HasSubstr("\"30s\""));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nwall_time = \"30 parsecs\"\n"), HasSubstr("unknown unit"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nmemory = true\n"),
                HasSubstr("limits.memory must be a string with a unit such as \"512MiB\", not a boolean"));
}

TEST(PolicyParse, NegativeValuesRejected) {
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nmemory = \"-5MiB\"\n"), HasSubstr("must not be negative"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nmemory = -5\n"), HasSubstr("must not be negative"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\npids = -1\n"),
                HasSubstr("test.toml:3:8: error: limits.pids must not be negative"));
}

TEST(PolicyParse, ZeroAndHugeLimitsRejectedWithReason) {
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nwall_time = \"0s\"\n"), HasSubstr("kill the job before it starts"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\ncpu_time = \"0ms\"\n"), HasSubstr("too small"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nmemory = \"0B\"\n"), HasSubstr("too small"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\npids = 0\n"), HasSubstr("can never start"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\nopen_files = 0\n"), HasSubstr("cannot open anything"));
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\npids = 4194305\n"), HasSubstr("sanity bound"));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\ntmpfs_size = \"0B\"\n"), HasSubstr("unlimited"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nsample_interval = \"10ms\"\n"), HasSubstr("50ms"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nsample_interval = \"2h\"\n"), HasSubstr("sanity bound"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nmax_events = 10\n"), HasSubstr("too small"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nmax_events = \"5\"\n"), HasSubstr("must be an integer"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nmax_event_bytes = 1000\n"), HasSubstr("has no unit"));
    EXPECT_THAT(one_error("name = \"x\"\n[monitor]\nmax_event_bytes = \"1KiB\"\n"), HasSubstr("too small"));
    EXPECT_EQ(parse_ok("name = \"x\"\n[monitor]\nmax_events = 500\n").monitor.max_events, 500u);
    EXPECT_THAT(one_error("name = \"x\"\n[limits]\npids = \"64\"\n"), HasSubstr("must be an integer, not a string"));
    // Zero is fine where it means "none": no core dumps, no file writes.
    Policy p = parse_ok("name = \"x\"\n[limits]\ncore = \"0B\"\nfile_size = \"0B\"\npids = 4194304\n");
    EXPECT_EQ(p.limits.file_size_bytes, 0u);
    EXPECT_EQ(p.limits.pids, 4194304u);
}

TEST(PolicyParse, WrongTypeNamesExpectedType) {
    EXPECT_THAT(one_error("name = 5\n"), HasSubstr("name must be a string, not an integer"));
    EXPECT_THAT(one_error("name = \"x\"\nlimits = 5\n"), HasSubstr("[limits] must be a table, not an integer"));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\nread_only = \"/usr\"\n"),
                HasSubstr("filesystem.read_only must be an array of absolute paths, not a string"));
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\nallow = [1]\n"), HasSubstr("not an integer"));
    EXPECT_THAT(one_error("name = \"x\"\ntier = \"contaner\"\n"), HasSubstr("did you mean \"container\"?"));
    EXPECT_THAT(one_error("name = \"x\"\n[network]\nmode = \"lo\"\n"), HasSubstr("network.mode must be"));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\nlandlock = \"maybe\"\n"), HasSubstr("filesystem.landlock must be"));
}

TEST(PolicyParse, PathsAreNormalisedAndChecked) {
    Policy p = parse_ok(
        "name = \"x\"\n[filesystem]\nread_only = [\"/usr//lib/\", \"/./opt/./x\", \"/\"]\nread_write = [\"/work/\"]\n"
        "tmpfs = []\n");
    EXPECT_EQ(p.filesystem.read_only, (std::vector<std::string>{"/usr/lib", "/opt/x", "/"}));
    EXPECT_EQ(p.filesystem.read_write, std::vector<std::string>{"/work"});
    EXPECT_TRUE(p.filesystem.tmpfs.empty());
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\nread_only = [\"usr\"]\n"), HasSubstr("is not absolute"));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\ntmpfs = [\"/tmp/../etc\"]\n"), HasSubstr("contains \"..\""));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\nread_write = [\"\"]\n"), HasSubstr("empty path"));
    EXPECT_THAT(one_error("name = \"x\"\n[filesystem]\ntmpfs = [\"/a\\nb\"]\n"), HasSubstr("control character"));
    EXPECT_EQ(one_error("name = \"x\"\n[filesystem]\nread_only = [\"/data\"]\nread_write = [\"/data/\"]\n"),
              "test.toml:4:15: error: \"/data\" is in both filesystem.read_only and filesystem.read_write; keep one");
    // Duplicates are a warning, kept once.
    ParseResult r = parse_policy("name = \"x\"\n[filesystem]\nread_only = [\"/usr\", \"/usr/\"]\n", "t");
    ASSERT_TRUE(r.policy) << dump(r.diagnostics);
    EXPECT_EQ(r.policy->filesystem.read_only, std::vector<std::string>{"/usr"});
    ASSERT_EQ(r.diagnostics.size(), 1u);
    EXPECT_EQ(r.diagnostics[0].severity, Diagnostic::Severity::Warning);
}

// Whatever `policy check` accepts must set up: one mount per path.
TEST(PolicyParse, AnExplicitBindReplacesTheDefaultTmpfsAtItsPath) {
    Policy p = parse_ok("name = \"x\"\n[filesystem]\nread_write = [\"/tmp\"]\n");
    EXPECT_EQ(p.filesystem.read_write, std::vector<std::string>{"/tmp"});
    EXPECT_TRUE(p.filesystem.tmpfs.empty());
    Policy q = parse_ok("name = \"x\"\n[filesystem]\nread_only = [\"/usr\", \"/tmp/\"]\n");
    EXPECT_TRUE(q.filesystem.tmpfs.empty());
    // Another path keeps the default tmpfs.
    Policy r = parse_ok("name = \"x\"\n[filesystem]\nread_write = [\"/srv/out\"]\n");
    EXPECT_EQ(r.filesystem.tmpfs, std::vector<std::string>{"/tmp"});
    // Both written: the file must choose, and the error is at the tmpfs entry.
    EXPECT_EQ(one_error("name = \"x\"\n[filesystem]\nread_write = [\"/tmp\"]\ntmpfs = [\"/run\", \"/tmp\"]\n"),
              "test.toml:4:18: error: \"/tmp\" is in filesystem.tmpfs and also bound from the host (read_only or "
              "read_write); a path gets one mount, keep one");
}

TEST(PolicyParse, Environment) {
    Policy p = parse_ok("name = \"x\"\n[environment]\npass = [\"HOME\", \"_X1\"]\n[environment.set]\nA = \"1\"\nB = \"\"\n");
    EXPECT_EQ(p.environment.pass, (std::vector<std::string>{"HOME", "_X1"}));
    EXPECT_EQ(p.environment.set, (std::map<std::string, std::string>{{"A", "1"}, {"B", ""}}));
    EXPECT_THAT(one_error("name = \"x\"\n[environment]\npass = [\"1BAD\"]\n"), HasSubstr("is not a variable name"));
    EXPECT_THAT(one_error("name = \"x\"\n[environment]\nset = { \"A-B\" = \"1\" }\n"), HasSubstr("is not a variable name"));
    EXPECT_THAT(one_error("name = \"x\"\n[environment]\nset = { A = 1 }\n"),
                HasSubstr("environment.set.A must be a string, not an integer"));
    // Writing the key replaces the default entirely.
    Policy q = parse_ok("name = \"x\"\n[environment]\npass = []\nset = {}\n");
    EXPECT_TRUE(q.environment.pass.empty());
    EXPECT_TRUE(q.environment.set.empty());
}

TEST(PolicyParse, Actions) {
    Policy p = parse_ok("name = \"x\"\n[seccomp]\ndefault_action = \"errno:EACCES\"\n");
    EXPECT_EQ(p.seccomp.default_action.kind, Action::Kind::Errno);
    EXPECT_EQ(p.seccomp.default_action.errno_value, EACCES);
    EXPECT_EQ(p.seccomp.default_action.str(), "errno:EACCES");
    EXPECT_EQ(parse_ok("name = \"x\"\n[seccomp]\ndefault_action = \"errno:ENOSYS\"\n").seccomp.default_action.errno_value,
              ENOSYS);
    for (std::string_view a : {"kill-process", "kill-thread", "trap", "log"}) {
        Policy q = parse_ok("name = \"x\"\n[seccomp]\ndefault_action = \"" + std::string(a) + "\"\n");
        EXPECT_EQ(q.seccomp.default_action.str(), a);
    }
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\ndefault_action = \"errno:EACESS\"\n"),
                HasSubstr("unknown errno name \"EACESS\" (did you mean \"errno:EACCES\"?)"));
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\ndefault_action = \"kill\"\n"), HasSubstr("unknown action \"kill\""));
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\ndefault_action = \"kill-proces\"\n"),
                HasSubstr("did you mean \"kill-process\"?"));
    EXPECT_THAT(one_error("name = \"x\"\n[seccomp]\ndefault_action = \"errno:\"\n"), HasSubstr("needs an errno name"));
}

TEST(PolicyParse, AllowAsDefaultActionIsRejected) {
    std::string e = one_error("name = \"x\"\n[seccomp]\ndefault_action = \"allow\"\n");
    EXPECT_THAT(e, HasSubstr("test.toml:3:18: error: seccomp.default_action cannot be \"allow\""));
    EXPECT_THAT(e, HasSubstr("allow-all"));
}

TEST(PolicyParse, ParseActionDirectly) {
    std::string why;
    EXPECT_FALSE(parse_action("errno:NOPE", &why));
    EXPECT_THAT(why, HasSubstr("unknown errno name"));
    auto a = parse_action("errno:EPERM");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->errno_value, EPERM);
    auto n = parse_action("errno:200");  // numeric form for values glibc has no name for
    ASSERT_TRUE(n);
    EXPECT_EQ(n->errno_value, 200);
    EXPECT_EQ(parse_action(n->str()), n);
}

TEST(PolicyParse, ArgRulesWithSymbolicConstants) {
    Policy p = parse_ok(R"(name = "x"
[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = "AF_INET6" },
        { index = 1, op = "masked_eq", value = "SOCK_STREAM", mask = "0xf" }]

[[seccomp.rule]]
syscall = "openat"
action = "errno:EACCES"
args = [{ index = 2, op = "masked_eq", value = "O_WRONLY", mask = "O_ACCMODE" }]

[[seccomp.rule]]
syscall = "ioctl"
args = [{ index = 1, op = "ne", value = "TIOCSTI" }]

[[seccomp.rule]]
syscall = "clone"
args = [{ index = 0, op = "masked_eq", value = 0, mask = "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET" }]

[[seccomp.rule]]
syscall = "fcntl"
args = [{ index = 1, op = "le", value = "0x10" }, { index = 2, op = "gt", value = 7 }]
)");
    const auto& r = p.seccomp.rules;
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0].action.kind, Action::Kind::Allow);  // default action of a rule
    EXPECT_EQ(r[0].args[0].value, uint64_t(AF_INET6));
    EXPECT_EQ(r[0].args[1].op, ArgCondition::Op::MaskedEq);
    EXPECT_EQ(r[0].args[1].value, uint64_t(SOCK_STREAM));
    EXPECT_EQ(r[0].args[1].mask, 0xfu);
    EXPECT_EQ(r[1].action.str(), "errno:EACCES");
    EXPECT_EQ(r[1].args[0].value, 1u);   // O_WRONLY
    EXPECT_EQ(r[1].args[0].mask, 3u);    // O_ACCMODE
    EXPECT_EQ(r[2].args[0].value, 0x5412u);  // TIOCSTI on x86_64
    EXPECT_EQ(r[3].args[0].mask, 0x10000000u | 0x00020000u | 0x40000000u);
    EXPECT_EQ(r[4].args[0].value, 16u);
    EXPECT_EQ(r[4].args[0].op, ArgCondition::Op::Le);
    EXPECT_EQ(r[4].args[1].value, 7u);
    EXPECT_EQ(r[4].args[1].value_text, "7");
    // Syscalls with rules are decided by the rules, not the allow list.
    EXPECT_FALSE(p.seccomp.allowed.contains("openat"));
    EXPECT_FALSE(p.seccomp.allowed.contains("clone"));
    EXPECT_TRUE(p.seccomp.allowed.contains("read"));
}

TEST(PolicyParse, ArgRuleErrors) {
    auto rule = [](std::string body) { return "name = \"x\"\n[[seccomp.rule]]\n" + body; };
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, value = \"AF_UNX\" }]\n")),
                HasSubstr("unknown constant \"AF_UNX\" (did you mean \"AF_UNIX\"?)"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 6, value = 1 }]\n")), HasSubstr("0 to 5"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, op = \"equals\", value = 1 }]\n")),
                HasSubstr(".op must be one of"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, op = \"masked_eq\", value = 1 }]\n")),
                HasSubstr("needs a mask"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, value = 1, mask = 1 }]\n")),
                HasSubstr("only meaningful with op = \"masked_eq\""));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, value = \"0xZZ\" }]\n")),
                HasSubstr("is not a number"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, value = \"99999999999999999999\" }]\n")),
                HasSubstr("does not fit in 64 bits"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0 }]\n")), HasSubstr("has no value"));
    EXPECT_THAT(one_error(rule("syscall = \"socket\"\nargs = [{ index = 0, value = 1, vlaue = 2 }]\n")),
                HasSubstr("did you mean \"value\"?"));
    EXPECT_EQ(one_error(rule("syscall = \"sockt\"\n")),
              "test.toml:3:11: error: unknown syscall \"sockt\" (did you mean \"socket\"?)");
    EXPECT_THAT(one_error(rule("action = \"allow\"\n")), HasSubstr("has no syscall key"));
    EXPECT_THAT(one_error(rule("syscall = \"@default\"\n")), HasSubstr("not a group"));
    EXPECT_THAT(one_error(rule("syscall = \"read\"\nactoin = \"allow\"\n")),
                HasSubstr("unknown key \"actoin\" in seccomp.rule[0] (did you mean \"action\"?)"));
    EXPECT_THAT(one_error(rule("syscall = \"read\"\naction = \"errno:NOTANERRNO\"\n")), HasSubstr("unknown errno name"));
}

TEST(PolicyParse, ConflictingDuplicateRules) {
    std::string e = one_error(
        "name = \"x\"\n[[seccomp.rule]]\nsyscall = \"kill\"\n[[seccomp.rule]]\nsyscall = \"kill\"\naction = \"trap\"\n");
    EXPECT_THAT(e, HasSubstr("test.toml:4:1: error: rule for kill repeats the conditions of an earlier rule"));
    EXPECT_THAT(e, HasSubstr("first at line 2"));
    // Different conditions are separate rules; an exact repeat is only a warning.
    ParseResult r = parse_policy(
        "name = \"x\"\n[[seccomp.rule]]\nsyscall = \"kill\"\nargs = [{ index = 1, value = 0 }]\n"
        "[[seccomp.rule]]\nsyscall = \"kill\"\naction = \"trap\"\n"
        "[[seccomp.rule]]\nsyscall = \"kill\"\naction = \"trap\"\n", "t");
    ASSERT_TRUE(r.policy) << dump(r.diagnostics);
    EXPECT_EQ(r.policy->seccomp.rules.size(), 2u);
    ASSERT_EQ(r.diagnostics.size(), 1u);
    EXPECT_EQ(r.diagnostics[0].severity, Diagnostic::Severity::Warning);
}

TEST(PolicyParse, ExecveArgRulesRejected) {
    std::string e = one_error(
        "name = \"x\"\n[[seccomp.rule]]\nsyscall = \"execve\"\nargs = [{ index = 0, op = \"eq\", value = 0 }]\n");
    EXPECT_THAT(e, HasSubstr("test.toml:4:8: error: execve cannot have argument rules"));
    EXPECT_THAT(e, HasSubstr("race-free"));
    EXPECT_THAT(one_error("name = \"x\"\n[[seccomp.rule]]\nsyscall = \"execveat\"\nargs = [{ index = 4, value = 0 }]\n"),
                HasSubstr("execveat cannot have argument rules"));
    // A plain rule for execve (no args) is fine.
    parse_ok("name = \"x\"\n[[seccomp.rule]]\nsyscall = \"execve\"\naction = \"allow\"\n");
}

TEST(PolicyParse, TomlSyntaxErrorPosition) {
    std::vector<Diagnostic> e = errors_of("name = \"x\"\n[limits]\nmemory = \"1GiB\n", "bad.toml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].line, 3);
    EXPECT_GT(e[0].column, 0);
    EXPECT_THAT(e[0].str(), ::testing::StartsWith("bad.toml:3:"));
    std::vector<Diagnostic> e2 = errors_of("name = \"x\"\n\n[limits\n");
    ASSERT_EQ(e2.size(), 1u);
    EXPECT_EQ(e2[0].line, 3);
    // Duplicate keys are a TOML error.
    std::vector<Diagnostic> e3 = errors_of("name = \"x\"\nname = \"y\"\n");
    ASSERT_EQ(e3.size(), 1u);
    EXPECT_EQ(e3[0].line, 2);
}

TEST(PolicyParse, OversizedInputRejected) {
    std::string big = "name = \"x\"\n" + std::string(kMaxPolicyBytes, '#');
    std::vector<Diagnostic> e = errors_of(big);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_THAT(e[0].message, HasSubstr("the limit is 1048576 bytes"));
    // Exactly at the limit is still read.
    std::string edge = "name = \"x\"\n#";
    edge += std::string(kMaxPolicyBytes - edge.size(), 'x');
    ASSERT_EQ(edge.size(), kMaxPolicyBytes);
    parse_ok(edge);
}

TEST(PolicyParse, ErrorFloodIsBounded) {
    std::string text = "name = \"x\"\n[seccomp]\nallow = [";
    for (int i = 0; i < 5000; ++i) text += "\"nosuchcall" + std::to_string(i) + "\", ";
    text += "]\n";
    ParseResult r = parse_policy(text, "flood.toml");
    EXPECT_FALSE(r.policy);
    EXPECT_LE(r.diagnostics.size(), 101u);
    EXPECT_EQ(r.diagnostics.front().severity, Diagnostic::Severity::Note);  // line 0 sorts first
    EXPECT_THAT(r.diagnostics.front().message, HasSubstr("too many errors"));
}

TEST(PolicyParse, GarbageDoesNotCrash) {
    const std::string samples[] = {
        std::string("\xff\xfe\x00\x01", 4),
        "name = \"\xc3\x28\"\n",      // invalid UTF-8 in a string
        std::string("name = \"x\0y\"\n", 13),
        "[[[[[[",
        "a = [" + std::string(2000, '[') + std::string(2000, ']') + "]",
        "name = \"x\"\nseccomp = { rule = [1, \"a\", {syscall = 3}] }\n",
        "name = \"x\"\n[seccomp]\nrule = 7\nallow = {}\n",
        "",
        "\n\n\n",
    };
    for (const std::string& s : samples) {
        ParseResult r = parse_policy(s, "g.toml");
        EXPECT_FALSE(r.policy);
        EXPECT_TRUE(has_errors(r.diagnostics)) << s;
        for (const Diagnostic& d : r.diagnostics) EXPECT_FALSE(d.message.empty());
    }
    std::mt19937 rng(1234);
    for (int i = 0; i < 300; ++i) {
        std::string s(size_t(rng() % 400), '\0');
        for (char& c : s) c = char(rng());
        ParseResult r = parse_policy(s, "random.toml");
        EXPECT_FALSE(r.policy && r.policy->name.empty());
    }
    // Mutations of a valid policy: every prefix must be handled.
    std::string base(kContractExample);
    for (size_t n = 0; n < base.size(); n += 7) (void)parse_policy(base.substr(0, n), "prefix.toml");
}

TEST(PolicyDiagnostic, Format) {
    Diagnostic d{"f.toml", 3, 7, Diagnostic::Severity::Error, "bad"};
    EXPECT_EQ(d.str(), "f.toml:3:7: error: bad");
    d.severity = Diagnostic::Severity::Warning;
    EXPECT_EQ(d.str(), "f.toml:3:7: warning: bad");
    d.severity = Diagnostic::Severity::Note;
    d.line = 0;
    EXPECT_EQ(d.str(), "f.toml: note: bad");
    EXPECT_FALSE(has_errors({d}));
    d.severity = Diagnostic::Severity::Error;
    EXPECT_TRUE(has_errors({d}));
}

}  // namespace
}  // namespace moat::policy
