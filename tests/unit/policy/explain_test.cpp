#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "moat/policy/parser.h"
#include "test_util.h"

namespace moat::policy {
namespace {

using test::dump;
using test::parse_ok;
using ::testing::HasSubstr;

// Effective values only (provenance differs by design).
void expect_same_effective(const Policy& a, const Policy& b) {
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.description, b.description);
    EXPECT_EQ(a.tier, b.tier);
    EXPECT_EQ(a.hostname, b.hostname);
    EXPECT_EQ(a.limits.wall_time_ns, b.limits.wall_time_ns);
    EXPECT_EQ(a.limits.cpu_time_ns, b.limits.cpu_time_ns);
    EXPECT_EQ(a.limits.memory_bytes, b.limits.memory_bytes);
    EXPECT_EQ(a.limits.pids, b.limits.pids);
    EXPECT_EQ(a.limits.file_size_bytes, b.limits.file_size_bytes);
    EXPECT_EQ(a.limits.open_files, b.limits.open_files);
    EXPECT_EQ(a.limits.stack_bytes, b.limits.stack_bytes);
    EXPECT_EQ(a.limits.core_bytes, b.limits.core_bytes);
    EXPECT_EQ(a.filesystem.read_only, b.filesystem.read_only);
    EXPECT_EQ(a.filesystem.read_write, b.filesystem.read_write);
    EXPECT_EQ(a.filesystem.tmpfs, b.filesystem.tmpfs);
    EXPECT_EQ(a.filesystem.tmpfs_size_bytes, b.filesystem.tmpfs_size_bytes);
    EXPECT_EQ(a.filesystem.landlock, b.filesystem.landlock);
    EXPECT_EQ(a.network, b.network);
    EXPECT_EQ(a.environment.pass, b.environment.pass);
    EXPECT_EQ(a.environment.set, b.environment.set);
    EXPECT_EQ(a.seccomp.default_action, b.seccomp.default_action);
    EXPECT_EQ(a.seccomp.allow_entries, b.seccomp.allow_entries);
    EXPECT_EQ(a.seccomp.allowed, b.seccomp.allowed);
    EXPECT_EQ(a.seccomp.rules, b.seccomp.rules);
    for (size_t i = 0; i < std::min(a.seccomp.rules.size(), b.seccomp.rules.size()); ++i) {
        EXPECT_EQ(a.seccomp.rules[i].nr, b.seccomp.rules[i].nr);
        for (size_t j = 0; j < a.seccomp.rules[i].args.size(); ++j)
            EXPECT_EQ(a.seccomp.rules[i].args[j].mask, b.seccomp.rules[i].args[j].mask);
    }
    EXPECT_EQ(a.monitor.sample_interval_ns, b.monitor.sample_interval_ns);
    EXPECT_EQ(a.monitor.max_events, b.monitor.max_events);
    EXPECT_EQ(a.monitor.max_event_bytes, b.monitor.max_event_bytes);
}

Policy round_trip(const Policy& p) {
    std::string text = explain(p);
    ParseResult r = parse_policy(text, "explained.toml");
    EXPECT_TRUE(r.policy) << dump(r.diagnostics) << "\n" << text;
    EXPECT_TRUE(r.diagnostics.empty()) << dump(r.diagnostics);
    return r.policy.value_or(Policy{});
}

// Every key set to a non-default value.
constexpr std::string_view kEveryKey = R"(name = "every.key_1"
description = "quotes \" and \\ backslash\nnewline\ttab \u0001 ünïcode"
tier = "vm"
hostname = "thumb-01"

[limits]
wall_time = "90m"
cpu_time = "1500ms"
memory = "1.5GiB"
pids = 7
file_size = "10KB"
open_files = 33
stack = "16MiB"
core = "1MiB"

[filesystem]
read_only = ["/usr", "/opt//tools/"]
read_write = ["/work", "/var/out"]
tmpfs = ["/tmp", "/run"]
tmpfs_size = "1GiB"
landlock = "best-effort"

[network]
mode = "loopback"

[environment]
pass = ["HOME", "TERM"]
set = { A = "x=y", B_2 = "", PATH = "/bin" }

[seccomp]
default_action = "kill-process"
allow = ["@default", "@network-io", "ioctl", "clock_gettime"]

[[seccomp.rule]]
syscall = "socket"
action = "allow"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }, { index = 1, op = "masked_eq", value = "SOCK_STREAM|SOCK_CLOEXEC", mask = "0xffffffffffffffff" }]

[[seccomp.rule]]
syscall = "kill"
action = "errno:EACCES"
args = [{ index = 1, op = "ge", value = 9 }, { index = 0, op = "lt", value = -1 }]

[[seccomp.rule]]
syscall = "ioctl"
action = "trap"

[[seccomp.rule]]
syscall = "mmap"
action = "log"
args = [{ index = 2, op = "masked_eq", value = "PROT_EXEC", mask = 4 }]

[monitor]
sample_interval = "250ms"
max_events = 2500
max_event_bytes = "3MiB"
)";

TEST(PolicyExplain, EveryKeyRoundTrips) {
    Policy p = parse_ok(kEveryKey);
    Policy q = round_trip(p);
    expect_same_effective(p, q);
    // Not vacuous: the values really are the non-defaults written above.
    EXPECT_EQ(q.tier, Tier::Vm);
    EXPECT_EQ(q.monitor.max_events, 2500u);
    EXPECT_EQ(q.monitor.max_event_bytes, 3u << 20);
    EXPECT_EQ(q.limits.memory_bytes, 1536ULL << 20);
    EXPECT_EQ(q.limits.file_size_bytes, 10000u);
    EXPECT_EQ(q.limits.cpu_time_ns, 1'500'000'000u);
    EXPECT_EQ(q.filesystem.read_only[1], "/opt/tools");
    EXPECT_EQ(q.description, p.description);
    EXPECT_THAT(q.description, HasSubstr("\""));
    EXPECT_EQ(q.seccomp.rules.size(), 4u);
    EXPECT_EQ(q.seccomp.rules[1].args[1].value, uint64_t(-1));
    EXPECT_EQ(q.seccomp.rules[0].args[1].mask, ~0ULL);
    EXPECT_FALSE(q.seccomp.allowed.contains("ioctl"));  // it has a rule
    // A second round trip is a fixed point of the text.
    auto without_source = [](std::string t) { return t.erase(t.find("# Source:"), t.find('\n', t.find("# Source:")) - t.find("# Source:")); };
    EXPECT_EQ(without_source(explain(q)), without_source(explain(round_trip(q))));
}

TEST(PolicyExplain, MinimalRoundTripsAndMarksDefaults) {
    Policy p = parse_ok("name = \"min\"\n[limits]\nmemory = \"256MiB\"\n");
    std::string text = explain(p);
    EXPECT_THAT(text, HasSubstr("name = \"min\"\n"));
    EXPECT_THAT(text, HasSubstr("memory = \"256MiB\"  # cgroup memory limit\n"));
    EXPECT_THAT(text, HasSubstr("wall_time = \"1m\"  # default;"));
    EXPECT_THAT(text, HasSubstr("pids = 128  # default;"));
    EXPECT_THAT(text, HasSubstr("mode = \"none\"  # default\n"));
    EXPECT_THAT(text, HasSubstr("read_only = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/sbin\", \"/etc/ld.so.cache\"]  # default"));
    EXPECT_THAT(text, HasSubstr("set = { PATH = \"/usr/local/bin:/usr/bin:/bin\" }  # default"));
    EXPECT_THAT(text, HasSubstr("allow = [\"@default\"]  # default; expands to " +
                                    std::to_string(p.seccomp.allowed.size()) + " syscalls"));
    EXPECT_THAT(text, HasSubstr("sample_interval = \"1s\"  # default"));
    EXPECT_THAT(text, HasSubstr("max_events = 10000  # default;"));
    EXPECT_THAT(text, HasSubstr("max_event_bytes = \"16MiB\"  # default;"));
    EXPECT_THAT(text, HasSubstr("# Source: test.toml (sha256 " + p.sha256 + ")"));
    expect_same_effective(p, round_trip(p));
}

TEST(PolicyExplain, ExplainedPolicyHasNoDefaultMarks) {
    Policy p = parse_ok("name = \"min\"\n");
    Policy q = round_trip(p);
    std::string text = explain(q);
    EXPECT_THAT(text, ::testing::Not(HasSubstr("# default")));
}

TEST(PolicyExplain, EmptyCollectionsRoundTrip) {
    Policy p = parse_ok(
        "name = \"e\"\n[filesystem]\nread_only = []\ntmpfs = []\n[environment]\npass = []\nset = {}\n"
        "[seccomp]\nallow = []\n");
    Policy q = round_trip(p);
    expect_same_effective(p, q);
    EXPECT_TRUE(q.seccomp.allowed.empty());
    EXPECT_TRUE(q.environment.set.empty());
}

// Issue 11: --explain says what happens to clone3 when the policy lists it.
TEST(PolicyExplain, Clone3InAllowIsExplainedAsEnosys) {
    std::string with = explain(parse_ok("name = \"c\"\n[seccomp]\nallow = [\"@default\", \"clone3\"]\n"));
    EXPECT_THAT(with, HasSubstr("# clone3 is listed but never runs, by design: it is answered with ENOSYS"));
    EXPECT_THAT(with, HasSubstr("glibc falls back to clone"));
    std::string without = explain(parse_ok("name = \"c\"\n"));
    EXPECT_THAT(without, ::testing::Not(HasSubstr("answered with ENOSYS")));
}

}  // namespace
}  // namespace moat::policy
