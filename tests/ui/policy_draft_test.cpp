#include <QPlainTextEdit>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <sstream>

#include "fake_backend.h"
#include "models/policy_draft.h"
#include "moat/policy/parser.h"
#include "views/policy_form.h"
#include "views/policy_view.h"

using namespace moat::ui;
using moat::policy::Policy;

namespace {

// Every key of the policy reference, none at its default.
const char* kEveryKey = R"(name = "every-key"
description = "all \"keys\" set"
tier = "container"
[limits]
wall_time = "5m"
cpu_time = "150s"
memory = "1.5GiB"
pids = 32
file_size = "64MiB"
open_files = 256
stack = "16MiB"
core = "1MiB"
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/etc/ImageMagick-6"]
read_write = ["/srv/out"]
tmpfs = ["/tmp", "/var/tmp"]
tmpfs_size = "32MiB"
landlock = "best-effort"
[network]
mode = "loopback"
[environment]
pass = ["LANG", "TZ"]
set = { OMP_NUM_THREADS = "1", PATH = "/usr/bin:/bin" }
[seccomp]
default_action = "errno:EACCES"
allow = ["@default", "read", "write", "openat"]
[[seccomp.rule]]
syscall = "socket"
action = "allow"
args = [{ index = 0, op = "eq", value = "AF_UNIX" }]
[[seccomp.rule]]
syscall = "ioctl"
action = "errno:ENOTTY"
args = [{ index = 1, op = "masked_eq", value = 0x5400, mask = 0xff00 }, { index = 0, op = "le", value = 2 }]
[monitor]
sample_interval = "250ms"
)";

Policy parse(const std::string& text) {
    auto r = moat::policy::parse_policy(text, "test.toml");
    std::string diags;
    for (const auto& d : r.diagnostics) diags += d.str() + "\n";
    EXPECT_TRUE(r.policy.has_value()) << diags << "\n" << text;
    return r.policy.value_or(Policy{});
}

void expectSame(const Policy& a, const Policy& b) {
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.description, b.description);
    EXPECT_EQ(a.tier, b.tier);
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
    EXPECT_EQ(a.monitor.sample_interval_ns, b.monitor.sample_interval_ns);
}

std::string readFile(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST(PolicyDraft, TomlRoundTripKeepsEveryKey) {
    const Policy a = parse(kEveryKey);
    const std::string again = PolicyDraft::fromPolicy(a).toToml();
    const Policy b = parse(again);
    expectSame(a, b);
    // And it is a fixed point: a second trip writes the same text.
    EXPECT_EQ(PolicyDraft::fromPolicy(b).toToml(), again);
}

TEST(PolicyDraft, RoundTripsTheShippedPolicies) {
    int n = 0;
    for (const auto& dir : {"resources/policies", "tests/scenario/policies"}) {
        for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(MOAT_SOURCE_DIR) / dir)) {
            std::string text = readFile(entry.path());
            // The scenario policies carry placeholders the fixture fills in.
            for (auto [from, to] : {std::pair{"@TESTDIR@", "/opt/moat-test"}, std::pair{"@RWDIR@", "/srv/moat-rw"}})
                for (size_t at; (at = text.find(from)) != std::string::npos;) text.replace(at, strlen(from), to);
            auto r = moat::policy::parse_policy(text, entry.path().string());
            if (!r.policy) continue;  // deliberately invalid test policies
            SCOPED_TRACE(entry.path().string());
            expectSame(*r.policy, parse(PolicyDraft::fromPolicy(*r.policy).toToml()));
            ++n;
        }
    }
    EXPECT_GE(n, 10);
}

TEST(PolicyDraft, EmptyListsStayEmpty) {
    // tmpfs = [] must not turn into the default ["/tmp"].
    const Policy a = parse("name = \"x\"\n[filesystem]\ntmpfs = []\nread_only = []\n");
    const Policy b = parse(PolicyDraft::fromPolicy(a).toToml());
    EXPECT_TRUE(b.filesystem.tmpfs.empty());
    EXPECT_TRUE(b.filesystem.read_only.empty());
}

TEST(PolicyForm, FormRoundTripKeepsEveryKey) {
    const Policy a = parse(kEveryKey);
    const PolicyDraft d = PolicyDraft::fromPolicy(a);
    PolicyForm form;
    form.setDraft(d);
    EXPECT_EQ(form.draft(), d);
    expectSame(a, parse(form.draft().toToml()));
}

TEST(PolicyView, ValidatesLiveAndSyncsBothWays) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) { return nlohmann::json{{"ok", true}, {"policies", nlohmann::json::array()}}; });
    PolicyView view(&backend);
    // TOML -> form.
    view.setTomlText(QString::fromLatin1(kEveryKey));
    EXPECT_EQ(view.errorCount(), 0);
    EXPECT_EQ(view.form()->draft().memory, "1536MiB");
    // An error is reported with its line.
    view.setTomlText(QStringLiteral("name = \"x\"\n[limits]\nmemory = 512\n"));
    EXPECT_GT(view.errorCount(), 0);
    EXPECT_FALSE(view.editor()->extraSelections().isEmpty());
    EXPECT_EQ(view.editor()->extraSelections().first().cursor.blockNumber(), 2);
    // Form -> TOML.
    view.setTomlText(QString::fromLatin1(kEveryKey));
    PolicyDraft d = view.form()->draft();
    d.pids = "7";
    view.form()->setDraft(d);
    emit view.form()->changed();
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return view.tomlText().contains(QStringLiteral("pids = 7")); }));
    EXPECT_EQ(parse(view.tomlText().toStdString()).limits.pids, 7u);
}
