// moat_learn's filesystem half (core/learn/src/paths.cpp): what a learn
// replay's `learn_paths` (moatd's PathLearner::report) turns into, from
// hand-written JSON of the shape moatd writes. The rules a user relies on:
// exact paths and every symlink hop, with evidence; never a secret or a broad
// directory; a directory only for many files of one harmless directory;
// scratch space as tmpfs, never over what the view binds; nothing for a replay
// that passed; and the result is a policy the parser takes back.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "moat/learn/paths.h"
#include "moat/learn/replay.h"
#include "moat/policy/diff.h"
#include "moat/policy/parser.h"
#include "test_util.h"

namespace {

using moat::learn::Addition;
using moat::learn::propose_paths;
using nlohmann::json;

using moat::learn::test::parse;

// A container policy with a small view: /usr/lib and /tmp scratch.
const char* kCtr = R"(name = "view"
tier = "container"
[filesystem]
read_only = ["/usr/lib"]
read_write = ["/srv/out"]
tmpfs = ["/tmp"]
[seccomp]
allow = ["@default"]
)";

json add(const std::string& path, const std::string& kind, const std::string& why = "the path itself") {
    return {{"path", path}, {"kind", kind}, {"why", why}};
}

// One missing path as moatd reports it.
json missing(const std::string& path, const std::string& syscall, const std::string& host, json adds,
             uint64_t calls = 1) {
    return {{"path", path}, {"syscall", syscall}, {"calls", calls}, {"host", host}, {"add", std::move(adds)}};
}

json learned(json paths, json write_dirs = json::array()) {
    return {{"paths", std::move(paths)}, {"write_dirs", std::move(write_dirs)}, {"dropped", 0},
            {"relative_not_followed", 0}, {"tier_view", "mount namespace"}};
}

std::vector<std::string> read_only_of(const std::vector<Addition>& adds) {
    std::vector<std::string> v;
    for (const auto& a : adds)
        if (!a.read_only.empty()) v.push_back(a.read_only);
    return v;
}

const Addition* addition_for(const std::vector<Addition>& adds, const std::string& path) {
    for (const auto& a : adds)
        if (a.read_only == path || a.tmpfs == path) return &a;
    return nullptr;
}

std::string all_notes(const std::vector<std::string>& notes) {
    std::string s;
    for (const auto& n : notes) s += n + "\n";
    return s;
}

bool has_note(const std::vector<std::string>& notes, const std::string& part) {
    return std::any_of(notes.begin(), notes.end(), [&](const std::string& n) { return n.find(part) != std::string::npos; });
}

// /usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk, as on Debian.
json awk_alternatives() {
    return learned({missing("/usr/bin/awk", "execve", "file",
                            {add("/usr/bin/awk", "symlink", "a symlink on the way: /usr/bin/awk -> /etc/alternatives/awk"),
                             add("/etc/alternatives/awk", "symlink",
                                 "a symlink on the way: /etc/alternatives/awk -> /usr/bin/mawk"),
                             add("/usr/bin/mawk", "file", "where /usr/bin/awk leads")},
                            3)});
}

TEST(LearnPaths, ExactPathsAndEveryHopAreProposedWithEvidence) {
    auto base = parse(kCtr);
    auto p = propose_paths(base, awk_alternatives(), false);
    std::vector<std::string> ro = read_only_of(p.additions);
    std::sort(ro.begin(), ro.end());
    EXPECT_EQ(ro, (std::vector<std::string>{"/etc/alternatives/awk", "/usr/bin/awk", "/usr/bin/mawk"}))
        << all_notes(p.notes);
    const Addition* hop = addition_for(p.additions, "/etc/alternatives/awk");
    ASSERT_NE(hop, nullptr);
    EXPECT_EQ(hop->entry, "read_only /etc/alternatives/awk");
    EXPECT_TRUE(hop->tmpfs.empty());
    EXPECT_NE(hop->evidence.find("a symlink on the way: /etc/alternatives/awk -> /usr/bin/mawk"), std::string::npos)
        << hop->evidence;
    EXPECT_NE(hop->evidence.find("3 call(s), first execve /usr/bin/awk"), std::string::npos) << hop->evidence;
    const Addition* fin = addition_for(p.additions, "/usr/bin/mawk");
    ASSERT_NE(fin, nullptr);
    EXPECT_NE(fin->evidence.find("where /usr/bin/awk leads"), std::string::npos) << fin->evidence;
    EXPECT_TRUE(p.notes.empty()) << all_notes(p.notes);
}

TEST(LearnPaths, AFileReachedByTwoPathsIsProposedOnceWithBothCounted) {
    auto base = parse(kCtr);
    auto p = propose_paths(
        base,
        learned({missing("/opt/app/data.txt", "openat", "file", {add("/opt/app/data.txt", "file")}, 2),
                 missing("/opt/app/latest.txt", "newfstatat", "file",
                         {add("/opt/app/latest.txt", "symlink", "a symlink on the way: /opt/app/latest.txt -> data.txt"),
                          add("/opt/app/data.txt", "file", "where /opt/app/latest.txt leads")},
                         5)}),
        false);
    ASSERT_EQ(p.additions.size(), 2u) << all_notes(p.notes);
    const Addition* data = addition_for(p.additions, "/opt/app/data.txt");
    ASSERT_NE(data, nullptr);
    EXPECT_NE(data->evidence.find("the path itself; 7 call(s), first openat /opt/app/data.txt"), std::string::npos)
        << data->evidence;
    ASSERT_NE(addition_for(p.additions, "/opt/app/latest.txt"), nullptr);
}

TEST(LearnPaths, SecretsAreNeverProposedAndEachRefusalIsANote) {
    auto base = parse(kCtr);
    json l = learned({
        missing("/etc/shadow", "openat", "file", {add("/etc/shadow", "file")}),
        missing("/home/u/.ssh/id_rsa", "openat", "file", {add("/home/u/.ssh/id_rsa", "file")}),
        missing("/srv/tls/server.key", "openat", "file", {add("/srv/tls/server.key", "file")}),
        // A harmless-looking link whose target is a key: the hop is fine, the key is not.
        missing("/opt/app/cert", "openat", "file",
                {add("/opt/app/cert", "symlink", "a symlink on the way: /opt/app/cert -> /etc/ssl/private/app.pem"),
                 add("/etc/ssl/private/app.pem", "file", "where /opt/app/cert leads")}),
        // moatd's own state: reported by moatd with no host lookup at all.
        missing("/var/lib/moat-state/moat.db", "openat", "moatd's own", json::array()),
    });
    auto p = propose_paths(base, l, false);
    EXPECT_EQ(read_only_of(p.additions), std::vector<std::string>{"/opt/app/cert"}) << all_notes(p.notes);
    for (const char* s : {"/etc/shadow: not proposed (under /etc/shadow",
                          "/home/u/.ssh/id_rsa: not proposed (a home directory's .ssh)",
                          "/srv/tls/server.key: not proposed (a key file by its name)",
                          "/etc/ssl/private/app.pem: not proposed (under /etc/ssl/private",
                          "/var/lib/moat-state/moat.db: not proposed (moatd's state or runtime directory)"})
        EXPECT_TRUE(has_note(p.notes, s)) << s << "\n" << all_notes(p.notes);
}

TEST(LearnPaths, SecretReasonNamesKeysAndCredentialStoresOnly) {
    using moat::learn::secret_reason;
    for (const char* s : {"/etc/shadow", "/etc/gshadow-", "/etc/sudoers.d/admins", "/etc/ssh/ssh_host_ed25519_key",
                          "/root/.bashrc", "/var/lib/moat/moat.db", "/home/u/.ssh/config", "/home/u/.gnupg/pubring.kbx",
                          "/home/u/.config/gcloud/credentials.db", "/home/u/.netrc", "/srv/id_ed25519",
                          "/srv/tls/site.key", "/srv/vault.kdbx", "/run/secrets/db"})
        EXPECT_FALSE(secret_reason(s).empty()) << s;
    for (const char* s : {"/etc/passwd", "/etc/shadowsocks.json", "/etc/sshd-banner", "/home/u/.bashrc",
                          "/home/u/.sshrc", "/srv/id_rsa.pub", "/usr/share/keyrings", "/etc/ssl/certs/ca.pem",
                          "/srv/monkey", "/key"})
        EXPECT_TRUE(secret_reason(s).empty()) << s << ": " << secret_reason(s);
}

TEST(LearnPaths, ABroadDirectoryIsRefusedButABroadNamedSymlinkHopIsRecreated) {
    using moat::learn::broad_dir;
    EXPECT_TRUE(broad_dir("/etc"));
    EXPECT_TRUE(broad_dir("/usr/lib"));
    EXPECT_TRUE(broad_dir("/"));
    EXPECT_FALSE(broad_dir("/usr/lib/python3"));
    EXPECT_FALSE(broad_dir("/etcetera"));

    auto base = parse(kCtr);
    json l = learned({
        // The job chdir'd to /var: the directory itself, not proposed whole.
        missing("/var", "chdir", "directory", {add("/var", "directory")}),
        // /lib64 -> usr/lib64 on a merged-/usr host: a symlink, recreated as one.
        missing("/lib64/ld-linux-x86-64.so.2", "openat", "file",
                {add("/lib64", "symlink", "a symlink on the way: /lib64 -> usr/lib64"),
                 add("/usr/lib64/ld-linux-x86-64.so.2", "file", "where /lib64/ld-linux-x86-64.so.2 leads")}),
    });
    auto p = propose_paths(base, l, false);
    std::vector<std::string> ro = read_only_of(p.additions);
    std::sort(ro.begin(), ro.end());
    EXPECT_EQ(ro, (std::vector<std::string>{"/lib64", "/usr/lib64/ld-linux-x86-64.so.2"})) << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "/var: not proposed (too broad")) << all_notes(p.notes);
}

std::vector<json> files_in(const std::string& dir, size_t n) {
    std::vector<json> v;
    for (size_t i = 0; i < n; ++i) {
        const std::string f = dir + "/f" + (i < 10 ? "0" : "") + std::to_string(i) + ".py";
        v.push_back(missing(f, "openat", "file", {add(f, "file")}));
    }
    return v;
}

TEST(LearnPaths, SixteenFilesOfOneDirectoryBecomeTheDirectoryFifteenDoNot) {
    auto base = parse(kCtr);
    auto sixteen = propose_paths(base, learned(files_in("/opt/py/lib", 16)), false);
    ASSERT_EQ(sixteen.additions.size(), 1u) << all_notes(sixteen.notes);
    EXPECT_EQ(sixteen.additions[0].read_only, "/opt/py/lib");
    EXPECT_NE(sixteen.additions[0].evidence.find("16 files in it the job needed (f00.py, f01.py, ...)"),
              std::string::npos)
        << sixteen.additions[0].evidence;
    EXPECT_NE(sixteen.additions[0].evidence.find("16 call(s)"), std::string::npos) << sixteen.additions[0].evidence;

    auto fifteen = propose_paths(base, learned(files_in("/opt/py/lib", 15)), false);
    EXPECT_EQ(fifteen.additions.size(), 15u);
    for (const auto& a : fifteen.additions) EXPECT_EQ(a.read_only.rfind("/opt/py/lib/f", 0), 0u) << a.read_only;
}

TEST(LearnPaths, NoCoalescingIntoABroadDirectoryOrOneThatHoldsSecrets) {
    auto base = parse(kCtr);
    // /etc is broad: 20 files of it stay 20 files.
    auto etc = propose_paths(base, learned(files_in("/etc", 20)), false);
    EXPECT_EQ(etc.additions.size(), 20u);
    EXPECT_EQ(addition_for(etc.additions, "/etc"), nullptr);
    // /etc/ssl holds /etc/ssl/private: its certificates stay single files.
    auto ssl = propose_paths(base, learned(files_in("/etc/ssl", 16)), false);
    EXPECT_EQ(ssl.additions.size(), 16u);
    EXPECT_EQ(addition_for(ssl.additions, "/etc/ssl"), nullptr) << "would expose /etc/ssl/private";
}

// The secrets a directory holds are not only the fixed trees: a home
// directory holds .ssh and .gnupg, and a directory where the job was just
// refused a key holds that key.
TEST(LearnPaths, NoCoalescingIntoAHomeDirectoryOrOneWithARefusedKey) {
    auto base = parse(kCtr);
    auto home = propose_paths(base, learned(files_in("/home/u", 16)), false);
    EXPECT_EQ(addition_for(home.additions, "/home/u"), nullptr) << "would expose /home/u/.ssh";
    EXPECT_EQ(home.additions.size(), 16u);
    auto config = propose_paths(base, learned(files_in("/home/u/.config", 16)), false);
    EXPECT_EQ(addition_for(config.additions, "/home/u/.config"), nullptr) << "would expose /home/u/.config/gcloud";
    // Control: a project directory in a home holds none of them.
    auto project = propose_paths(base, learned(files_in("/home/u/src/app", 16)), false);
    ASSERT_EQ(project.additions.size(), 1u) << all_notes(project.notes);
    EXPECT_EQ(project.additions[0].read_only, "/home/u/src/app");

    std::vector<json> conf = files_in("/opt/app/conf", 16);
    conf.push_back(missing("/opt/app/conf/server.key", "openat", "file", {add("/opt/app/conf/server.key", "file")}));
    auto key = propose_paths(base, learned(conf), false);
    EXPECT_EQ(addition_for(key.additions, "/opt/app/conf"), nullptr)
        << "the directory would hand the job the key the proposal refused";
    EXPECT_EQ(addition_for(key.additions, "/opt/app/conf/server.key"), nullptr);
    EXPECT_TRUE(has_note(key.notes, "/opt/app/conf/server.key: not proposed (a key file by its name)"))
        << all_notes(key.notes);
    EXPECT_EQ(key.additions.size(), 16u);
}

TEST(LearnPaths, AReplayThatPassedGetsNotesOnly) {
    auto base = parse(kCtr);
    json l = awk_alternatives();
    l["write_dirs"] = json::array({{{"path", "/work"}, {"syscall", "openat"}, {"calls", 1}, {"example", "/work/x"},
                                    {"in_view", false}, {"private", false}}});
    auto p = propose_paths(base, l, true);
    EXPECT_TRUE(p.additions.empty());
    ASSERT_EQ(p.notes.size(), 1u) << all_notes(p.notes);
    EXPECT_EQ(p.notes[0], "the job looked for /etc/alternatives/awk, /usr/bin/awk, /usr/bin/mawk, /work (to write in) "
                          "outside its view and passed without them: not proposed");
}

TEST(LearnPaths, PathsTheBaseAlreadyHasAreNotProposedAgain) {
    auto base = parse(kCtr);
    json l = learned({
        missing("/usr/lib/libfoo.so.1", "openat", "file", {add("/usr/lib/libfoo.so.1", "file")}),
        missing("/srv/out/report.txt", "openat", "file", {add("/srv/out/report.txt", "file")}),
        missing("/usr/lib", "newfstatat", "directory", {add("/usr/lib", "directory")}),
        missing("/opt/new", "openat", "file", {add("/opt/new", "file")}),
    });
    auto p = propose_paths(base, l, false);
    EXPECT_EQ(read_only_of(p.additions), std::vector<std::string>{"/opt/new"}) << all_notes(p.notes);
}

TEST(LearnPaths, AbsentAndUnreadablePathsAddNothing) {
    auto base = parse(kCtr);
    json l = learned({
        missing("/etc/nope.conf", "openat", "absent", json::array()),
        missing("/srv/locked/f", "openat", "Permission denied", json::array()),
    });
    l["relative_not_followed"] = 2;
    l["error"] = "taking the client's identity: Operation not permitted";
    auto p = propose_paths(base, l, false);
    EXPECT_TRUE(p.additions.empty());
    EXPECT_TRUE(has_note(p.notes, "1 path(s) the job looked for exist neither in the sandbox nor on the host "
                                  "(/etc/nope.conf): nothing to add"))
        << all_notes(p.notes);
    EXPECT_FALSE(has_note(p.notes, "/srv/locked/f")) << "a path the client cannot see tells nothing more: "
                                                     << all_notes(p.notes);
    // A job that passed: its fruitless probes are not worth a line.
    EXPECT_FALSE(has_note(propose_paths(base, l, true).notes, "exist neither")) << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "2 relative path(s)")) << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "could not be looked up: taking the client's identity")) << all_notes(p.notes);
}

json write_dir(const std::string& path, bool in_view, bool priv = false) {
    return {{"path", path}, {"syscall", "openat"}, {"calls", 2}, {"example", path + "/out.tmp"},
            {"in_view", in_view}, {"private", priv}};
}

TEST(LearnPaths, AWriteDirBecomesTmpfsNeverOverTheViewNorTheRoot) {
    auto base = parse(kCtr);
    json l = learned(json::array(), {write_dir("/work", false), write_dir("/work/sub", false),
                                     write_dir("/usr/lib/cache", true), write_dir("/", false),
                                     write_dir("/tmp/x", false), write_dir("/var/lib/moat-state", false, true),
                                     write_dir("/etc/ssh", false)});
    auto p = propose_paths(base, l, false);
    ASSERT_EQ(p.additions.size(), 1u) << all_notes(p.notes);
    const Addition& a = p.additions[0];
    EXPECT_EQ(a.tmpfs, "/work") << "the outermost directory only";
    EXPECT_TRUE(a.read_only.empty());
    EXPECT_EQ(a.entry, "tmpfs /work");
    EXPECT_NE(a.evidence.find("2 call(s), first openat /work/out.tmp"), std::string::npos) << a.evidence;
    EXPECT_FALSE(a.risk.empty());
    EXPECT_TRUE(has_note(p.notes, "/usr/lib/cache: the job writes there")) << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "the view has it read-only from the host; not proposed")) << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "/: the job writes there; not proposed (the root stays read-only)"))
        << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "/var/lib/moat-state: the job writes there; not proposed (a protected path)"))
        << all_notes(p.notes);
    EXPECT_TRUE(has_note(p.notes, "/etc/ssh: the job writes there; not proposed (a protected path)"))
        << all_notes(p.notes);
    EXPECT_FALSE(has_note(p.notes, "/tmp/x")) << "already scratch space: " << all_notes(p.notes);
}

TEST(LearnPaths, ApplyGivesAPolicyWithTheNewViewAndTheFragmentParses) {
    auto base = parse(kCtr);
    json l = awk_alternatives();
    l["write_dirs"] = json::array({write_dir("/work", false)});
    auto p = propose_paths(base, l, false);
    ASSERT_EQ(p.additions.size(), 4u) << all_notes(p.notes);

    auto v2 = parse(moat::learn::apply(base, p.additions));
    auto& ro = v2.filesystem.read_only;
    for (const char* path : {"/usr/lib", "/usr/bin/awk", "/etc/alternatives/awk", "/usr/bin/mawk"})
        EXPECT_NE(std::find(ro.begin(), ro.end(), path), ro.end()) << path;
    EXPECT_EQ(ro.size(), 4u);
    EXPECT_EQ(v2.filesystem.tmpfs, (std::vector<std::string>{"/tmp", "/work"}));
    EXPECT_EQ(v2.filesystem.read_write, base.filesystem.read_write);
    EXPECT_EQ(v2.seccomp.allowed, base.seccomp.allowed) << "a path proposal changes no syscall";
    const std::string diff = moat::policy::to_text(moat::policy::diff(base, v2));
    EXPECT_NE(diff.find("/etc/alternatives/awk"), std::string::npos) << diff;
    EXPECT_NE(diff.find("/work"), std::string::npos) << diff;
    EXPECT_EQ(diff.find("allow"), std::string::npos) << diff;

    const std::string frag = moat::learn::fragment(base, p.additions);
    EXPECT_NE(frag.find("[filesystem]\n"), std::string::npos) << frag;
    EXPECT_NE(frag.find("#   + read_only /etc/alternatives/awk  ("), std::string::npos) << frag;
    EXPECT_NE(frag.find("#   + tmpfs /work  ("), std::string::npos) << frag;
    EXPECT_EQ(frag.find("[seccomp]"), std::string::npos) << frag;
    auto fr = moat::policy::parse_policy("name = \"f\"\n" + frag, "frag");
    ASSERT_TRUE(fr.policy) << frag << (fr.diagnostics.empty() ? "" : fr.diagnostics[0].str());
    EXPECT_EQ(fr.policy->filesystem.read_only.size(), 4u) << frag;
    EXPECT_EQ(fr.policy->filesystem.tmpfs, (std::vector<std::string>{"/tmp", "/work"})) << frag;
}

// propose() reads learn_paths from the learn replay's `show` object.
TEST(LearnPaths, ProposeTakesThePathsFromTheReplaysSandboxInfo) {
    auto base = parse(kCtr);
    moat::learn::LearnContext ctx;
    ctx.replay_job = {{"id", 9}, {"sandbox", {{"learn_paths", awk_alternatives()}}}};
    json failed = {{"id", 9}, {"termination", {{"cause", "setup-failed"}, {"detail", "exec"}}},
                   {"exit_code", nullptr}, {"signal", nullptr}};
    auto p = moat::learn::propose(base, {}, moat::learn::outcome_of(failed, {}), ctx);
    EXPECT_EQ(read_only_of(p.additions).size(), 3u) << p.to_json().dump(2);
    EXPECT_TRUE(has_note(p.notes, "the proposal adds the paths it was missing")) << all_notes(p.notes);
}

}  // namespace
