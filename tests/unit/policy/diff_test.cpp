// Semantic policy diff (core/policy/src/diff.cpp).
#include "moat/policy/diff.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace moat::policy {
namespace {

using test::parse_ok;
using ::testing::HasSubstr;

constexpr const char* kBase = R"(
name = "base"
tier = "container"
[limits]
memory = "256MiB"
[filesystem]
read_only = ["/usr", "/lib"]
[environment]
pass = ["LANG"]
set = { PATH = "/usr/bin:/bin", A = "1" }
[seccomp]
allow = ["@default"]
[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }]
)";

TEST(PolicyDiff, EqualPoliciesWrittenDifferently) {
    // Same effective values: another name and description, paths reordered,
    // a constant spelt as a number, defaults written out.
    Policy a = parse_ok(kBase);
    Policy b = parse_ok(R"(
name = "other-name"
description = "not compared"
tier = "container"
[limits]
memory = "0.25GiB"
wall_time = "60s"
[filesystem]
read_only = ["/lib", "/usr/"]
[environment]
pass = ["LANG"]
set = { A = "1", PATH = "/usr/bin:/bin" }
[seccomp]
default_action = "errno:EPERM"
allow = ["@default"]
[[seccomp.rule]]
syscall = "socket"
action = "allow"
args = [{ index = 0, op = "eq", value = 1 }]
)");
    PolicyDiff d = diff(a, b);
    EXPECT_TRUE(d.empty()) << to_text(d);
    EXPECT_EQ(to_text(d), "no semantic difference\n");
    EXPECT_EQ(to_json(d)["equal"], true);
}

TEST(PolicyDiff, AddedAndRemovedSyscalls) {
    Policy a = parse_ok(R"(
name = "a"
[seccomp]
allow = ["read", "write", "execve", "exit_group", "ptrace"]
)");
    Policy b = parse_ok(R"(
name = "b"
[seccomp]
allow = ["read", "write", "execve", "exit_group", "mkdir"]
)");
    PolicyDiff d = diff(a, b);
    EXPECT_EQ(d.syscalls.added, std::vector<std::string>{"mkdir"});
    EXPECT_EQ(d.syscalls.removed, std::vector<std::string>{"ptrace"});
    EXPECT_EQ(to_text(d), "+ allow mkdir\n- allow ptrace\n");
    nlohmann::json j = to_json(d);
    EXPECT_EQ(j["equal"], false);
    EXPECT_EQ(j["seccomp"]["allowed"]["added"], nlohmann::json({"mkdir"}));
    EXPECT_EQ(j["seccomp"]["allowed"]["removed"], nlohmann::json({"ptrace"}));
}

TEST(PolicyDiff, ChangedLimitIsFormatted) {
    Policy a = parse_ok(kBase);
    std::string text = kBase;
    text.replace(text.find("256MiB"), 6, "512MiB");
    text.replace(text.find("[limits]"), 8, "[limits]\ncpu_time = \"1m\"");
    Policy b = parse_ok(text);
    PolicyDiff d = diff(a, b);
    ASSERT_EQ(d.limits.size(), 2u);
    EXPECT_EQ(to_text(d), "~ limits.cpu_time 30s -> 1m\n~ limits.memory 256MiB -> 512MiB\n");
    nlohmann::json j = to_json(d);
    EXPECT_EQ(j["limits"][1], nlohmann::json::parse(R"({"key": "limits.memory", "from": "256MiB", "to": "512MiB"})"));
}

TEST(PolicyDiff, EverySectionIsCompared) {
    Policy a = parse_ok(kBase);
    Policy b = parse_ok(R"(
name = "base"
tier = "seccomp"
hostname = "box"
[limits]
memory = "256MiB"
[filesystem]
read_only = ["/usr", "/opt"]
tmpfs = []
landlock = "best-effort"
[network]
mode = "loopback"
[environment]
pass = ["LANG", "TZ"]
set = { PATH = "/bin", B = "x\ny" }
[seccomp]
default_action = "kill-process"
allow = ["@default"]
[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = "AF_INET" }]
[monitor]
sample_interval = "2s"
max_events = 500
max_event_bytes = "1MiB"
)");
    PolicyDiff d = diff(a, b);
    EXPECT_EQ(to_text(d), "~ tier container -> seccomp\n"
                          "+ hostname = \"box\"\n"
                          "+ filesystem.read_only /opt\n"
                          "- filesystem.read_only /lib\n"
                          "- filesystem.tmpfs /tmp\n"
                          "~ filesystem.landlock required -> best-effort\n"
                          "~ network.mode none -> loopback\n"
                          "+ environment.pass TZ\n"
                          "- environment.set.A = \"1\"\n"
                          "+ environment.set.B = \"x\\ny\"\n"
                          "~ environment.set.PATH \"/usr/bin:/bin\" -> \"/bin\"\n"
                          "~ seccomp.default_action errno:EPERM -> kill-process\n"
                          "+ rule socket: arg0 == AF_INET -> allow\n"
                          "- rule socket: arg0 == AF_UNIX -> allow\n"
                          "~ monitor.sample_interval 1s -> 2s\n"
                          "~ monitor.max_events 10000 -> 500\n"
                          "~ monitor.max_event_bytes 16MiB -> 1MiB\n");
    nlohmann::json j = to_json(d);
    EXPECT_EQ(j["monitor"]["max_events"]["to"], "500");
    EXPECT_EQ(j["tier"]["to"], "seccomp");
    EXPECT_EQ(j["hostname"]["from"], nullptr);
    EXPECT_EQ(j["filesystem"]["tmpfs"]["removed"], nlohmann::json({"/tmp"}));
    EXPECT_EQ(j["filesystem"]["read_write"]["added"], nlohmann::json::array());
    EXPECT_EQ(j["environment"]["set"][0]["to"], nullptr);
    EXPECT_EQ(j["seccomp"]["rules"]["added"][0],
              nlohmann::json::parse(R"({"syscall": "socket", "action": "allow", "args": [{"index": 0, "op": "eq", "value": 2}]})"));
}

TEST(PolicyDiff, NarrowingAGroupMemberShowsTheRule) {
    Policy a = parse_ok("name = \"a\"\n[seccomp]\nallow = [\"@default\", \"@basic-io\"]\n");
    Policy b = parse_ok(R"(
name = "b"
[seccomp]
allow = ["@default", "@basic-io"]
[[seccomp.rule]]
syscall = "ioctl"
args = [{ index = 1, op = "masked_eq", value = 0, mask = "0xffff0000" }]
)");
    EXPECT_EQ(to_text(diff(a, b)), "- allow ioctl\n+ rule ioctl: arg1 & 0xffff0000 == 0 -> allow\n");
}

}  // namespace
}  // namespace moat::policy
