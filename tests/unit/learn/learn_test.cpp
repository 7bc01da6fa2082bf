// moat_learn: the replay comparison and the learned policy change.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <map>

#include "moat/learn/paths.h"
#include "moat/learn/replay.h"
#include "moat/learn/threads.h"
#include "moat/policy/diff.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "test_util.h"
#include "moat/policy/syscalls.h"

namespace {

using moat::learn::Addition;
using moat::learn::Outcome;
using nlohmann::json;

using moat::learn::test::parse;

const char* kBase = R"(name = "conv"
[seccomp]
allow = ["@default"]
)";

json denial(const std::string& syscall, std::vector<uint64_t> args = {0, 0, 0, 0, 0, 0}, const std::string& arch = "x86_64",
            uint64_t count = 1) {
    while (args.size() < 6) args.push_back(0);
    return {{"kind", "denial"}, {"syscall", syscall}, {"args", args}, {"arch", arch}, {"count", count},
            {"decoded", nullptr}, {"module", "libc.so.6+0x10"}};
}

json job(const std::string& cause, std::optional<int> exit_code) {
    return {{"id", 7},
            {"termination", {{"cause", cause}, {"detail", ""}}},
            {"exit_code", exit_code ? json(*exit_code) : json(nullptr)},
            {"signal", nullptr}};
}

TEST(Learn, ProposesExactlyTheDeniedSyscallAndTheResultAllowsIt) {
    auto base = parse(kBase);
    std::vector<json> d = {denial("renameat2", {0, 0, 0, 0, 1}, "x86_64", 3)};
    auto learned = moat::learn::outcome_of(job("exited", 0), d);
    auto p = moat::learn::propose(base, d, learned);
    ASSERT_EQ(p.additions.size(), 1u);
    EXPECT_EQ(p.additions[0].entry, "renameat2");
    EXPECT_FALSE(p.additions[0].rule.has_value());
    EXPECT_NE(p.additions[0].evidence.find("3 call(s)"), std::string::npos) << p.additions[0].evidence;
    EXPECT_TRUE(p.notes.empty());

    auto v2 = parse(moat::learn::apply(base, p.additions));
    EXPECT_TRUE(v2.seccomp.allowed.count("renameat2"));
    auto diff = moat::policy::diff(base, v2);
    EXPECT_EQ(moat::policy::to_text(diff), "+ allow renameat2\n") << "nothing but the addition may change";
    // The fragment is TOML that parses on its own and carries the new allow list.
    std::string frag = moat::learn::fragment(base, p.additions);
    EXPECT_NE(frag.find("allow = [\"@default\", \"renameat2\"]"), std::string::npos) << frag;
    EXPECT_TRUE(moat::policy::parse_policy("name = \"f\"\n" + frag, "frag").policy) << frag;
}

TEST(Learn, ArgumentsThatFitANarrowRuleGetOneAndRiskIsExplained) {
    auto base = parse(kBase);
    std::vector<json> d = {denial("socket", {AF_INET, SOCK_STREAM, 0}), denial("socket", {AF_INET, SOCK_DGRAM, 0}),
                           denial("ptrace", {16 /* PTRACE_ATTACH */, 1})};
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 0), d));
    ASSERT_EQ(p.additions.size(), 2u);
    const Addition* sock = nullptr;
    const Addition* ptr = nullptr;
    for (const auto& a : p.additions) (a.syscalls[0] == "socket" ? sock : ptr) = &a;
    ASSERT_TRUE(sock && ptr);
    ASSERT_TRUE(sock->rule.has_value()) << "two calls with the same family: one rule on arg0";
    ASSERT_EQ(sock->rule->args.size(), 1u);
    EXPECT_EQ(sock->rule->args[0].index, "0");
    EXPECT_EQ(sock->rule->args[0].value, "AF_INET");
    EXPECT_FALSE(ptr->risk.empty()) << "ptrace is risky and the proposal must say why";
    EXPECT_EQ(ptr->risk, moat::policy::risk_of("ptrace"));

    auto v2 = parse(moat::learn::apply(base, p.additions));
    EXPECT_FALSE(v2.seccomp.allowed.count("socket")) << "socket must stay narrowed by its rule";
    bool rule = false;
    for (const auto& r : v2.seccomp.rules) rule = rule || (r.syscall == "socket" && r.args.size() == 1 && r.args[0].value == AF_INET);
    EXPECT_TRUE(rule);
}

TEST(Learn, NarrowRulesUseTheSymbolicNamesAPolicyAccepts) {
    auto base = parse(kBase);
    std::vector<json> d = {denial("ioctl", {1, 0x5401 /* TCGETS */}), denial("prctl", {15 /* PR_SET_NAME */})};
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 0), d));
    ASSERT_EQ(p.additions.size(), 2u);
    std::map<std::string, std::string> value;
    for (const auto& a : p.additions) value[a.syscalls[0]] = a.rule ? a.rule->args.at(0).value : "";
    EXPECT_EQ(value["ioctl"], "TCGETS");
    EXPECT_EQ(value["prctl"], "PR_SET_NAME");
    auto v2 = parse(moat::learn::apply(base, p.additions));  // and the parser takes them back
    EXPECT_EQ(v2.seccomp.rules.size(), 2u);
    EXPECT_FALSE(moat::policy::arg_constant_name("ioctl", 1, 0xdeadbeef).has_value());
    EXPECT_FALSE(moat::policy::arg_constant_name("read", 0, 1).has_value());
}

TEST(Learn, AWholeGroupIsProposedOnlyWhenEveryMissingMemberWasNeeded) {
    auto base = parse(kBase);
    std::vector<std::string> missing;
    for (const auto& m : moat::policy::expand_group("@aio"))
        if (!base.seccomp.allowed.count(m)) missing.push_back(m);
    ASSERT_GE(missing.size(), 2u);
    std::vector<json> all, most;
    for (const auto& m : missing) all.push_back(denial(m));
    for (size_t i = 0; i + 1 < missing.size(); ++i) most.push_back(denial(missing[i]));

    auto p = moat::learn::propose(base, all, moat::learn::outcome_of(job("exited", 0), all));
    ASSERT_EQ(p.additions.size(), 1u);
    EXPECT_TRUE(p.additions[0].group);
    EXPECT_EQ(p.additions[0].entry, "@aio");
    auto v2 = parse(moat::learn::apply(base, p.additions));
    for (const auto& m : missing) EXPECT_TRUE(v2.seccomp.allowed.count(m)) << m;

    auto q = moat::learn::propose(base, most, moat::learn::outcome_of(job("exited", 0), most));
    EXPECT_EQ(q.additions.size(), most.size()) << "one member was not needed: no group";
    for (const auto& a : q.additions) EXPECT_FALSE(a.group);
}

TEST(Learn, NeverProposesForeignAbisClone3OrADefaultChangeAndExplainsOtherFailures) {
    auto base = parse(kBase);
    std::vector<json> d = {denial("open", {}, "i386"), denial("clone3")};
    auto learned = moat::learn::outcome_of(job("memory", std::nullopt), d);
    auto p = moat::learn::propose(base, d, learned);
    EXPECT_TRUE(p.empty());
    ASSERT_EQ(p.notes.size(), 3u);
    EXPECT_NE(p.notes[0].find("i386:open"), std::string::npos) << p.notes[0];
    EXPECT_NE(p.notes[1].find("clone3"), std::string::npos) << p.notes[1];
    EXPECT_NE(p.notes[2].find("memory"), std::string::npos) << p.notes[2];
    auto v2 = parse(moat::learn::apply(base, p.additions));
    EXPECT_EQ(v2.seccomp.default_action, base.seccomp.default_action);
    EXPECT_TRUE(moat::policy::diff(base, v2).empty());
}

TEST(Learn, ComparisonIsCauseExitAndDeniedSet) {
    std::vector<json> d1 = {denial("mkdir"), denial("mkdir")}, d2 = {denial("mkdir")}, d3 = {denial("rmdir")};
    auto a = moat::learn::outcome_of(job("exited", 1), d1);
    auto b = moat::learn::outcome_of(job("exited", 1), d2);
    EXPECT_TRUE(moat::learn::compare(a, b).reproduced) << "counts may differ; the set is what counts";
    auto c = moat::learn::outcome_of(job("exited", 0), {});
    auto cmp = moat::learn::compare(a, c);
    EXPECT_FALSE(cmp.reproduced);
    ASSERT_EQ(cmp.differences.size(), 2u);
    EXPECT_EQ(cmp.differences[0], "exit code: 1 -> 0");
    EXPECT_EQ(cmp.differences[1], "no longer denied: mkdir");
    EXPECT_TRUE(c.passed());
    auto e = moat::learn::outcome_of(job("seccomp", std::nullopt), d3);
    auto cmp2 = moat::learn::compare(a, e);
    EXPECT_EQ(cmp2.differences.front(), "termination cause: exited -> seccomp");
    EXPECT_EQ(cmp2.differences.back(), "newly denied: rmdir");
    // A foreign-ABI denial is kept apart from the native one of the same name.
    auto f = moat::learn::outcome_of(job("exited", 1), {denial("mkdir", {}, "i386")});
    EXPECT_FALSE(moat::learn::compare(a, f).reproduced);
}

// Issue 11 item 9: evidence that quotes a decoded path says it is what moatd
// read, not necessarily what the kernel used.
TEST(Learn, EvidenceWithADecodedPathCarriesTheRaceNote) {
    auto base = parse(kBase);
    json d = denial("renameat2");
    d["decoded"] = "/tmp/out.tmp -> /tmp/out";
    auto p = moat::learn::propose(base, {d}, moat::learn::outcome_of(job("exited", 0), {d}));
    ASSERT_EQ(p.additions.size(), 1u);
    EXPECT_NE(p.additions[0].evidence.find("/tmp/out.tmp -> /tmp/out"), std::string::npos);
    ASSERT_EQ(p.notes.size(), 1u);
    EXPECT_NE(p.notes[0].find("multithreaded job can change that memory"), std::string::npos) << p.notes[0];
    // Without a decoded value there is nothing to warn about.
    json plain = denial("renameat2");
    EXPECT_TRUE(moat::learn::propose(base, {plain}, moat::learn::outcome_of(job("exited", 0), {plain})).notes.empty());
}

// Issue 14 item 3: a deny the operator wrote is never overridden in silence.
const char* kWithDenyRule = R"(name = "conv"
[seccomp]
allow = ["@default"]

[[seccomp.rule]]
syscall = "socket"
action = "errno:EACCES"
)";

json by_rule(json d, const std::string& rule, const std::string& action, bool enforced) {
    d["rule"] = rule;
    d["action"] = action;
    d["enforced"] = enforced;
    return d;
}

TEST(Learn, AnExplicitDenyIsReportedNotProposed) {
    auto base = parse(kWithDenyRule);
    std::vector<json> d = {by_rule(denial("socket", {AF_UNIX, SOCK_STREAM}, "x86_64", 3), "seccomp.rule[0]", "errno:EACCES", true),
                           denial("renameat2")};
    auto learned = moat::learn::outcome_of(job("exited", 1), d);
    EXPECT_EQ(learned.describe(), "exited (exit 1), denied: renameat2, socket");
    auto p = moat::learn::propose(base, d, learned);
    ASSERT_EQ(p.additions.size(), 1u);
    EXPECT_EQ(p.additions[0].entry, "renameat2");
    bool noted = false;
    for (const auto& n : p.notes)
        noted = noted || (n.find("socket: 3 call(s) denied by your rule seccomp.rule[0] (errno:EACCES)") == 0 &&
                          n.find("--override-deny-rules") != std::string::npos);
    EXPECT_TRUE(noted) << ::testing::PrintToString(p.notes);
    auto v2 = parse(moat::learn::apply(base, p.additions));
    ASSERT_EQ(v2.seccomp.rules.size(), 1u);
    EXPECT_EQ(v2.seccomp.rules[0].action.str(), "errno:EACCES") << "the operator's rule is kept as written";

    // Asked for with the flag: proposed, the rule it overrides removed, and said so.
    moat::learn::LearnContext through;
    through.through_rules = true;
    std::vector<json> t = {by_rule(denial("socket", {AF_INET6, SOCK_DGRAM}), "seccomp.rule[0]", "errno:EACCES", false),
                           by_rule(denial("socket", {AF_UNIX, SOCK_STREAM}), "seccomp.rule[0]", "errno:EACCES", false),
                           by_rule(denial("socket", {AF_INET, SOCK_STREAM}), "seccomp.rule[0]", "errno:EACCES", false)};
    auto q = moat::learn::propose(base, t, moat::learn::outcome_of(job("exited", 0), t), through);
    ASSERT_EQ(q.additions.size(), 3u);
    for (const auto& a : q.additions) {
        ASSERT_TRUE(a.rule.has_value());
        EXPECT_NE(a.risk.find("overrides your explicit deny seccomp.rule[0]"), std::string::npos) << a.risk;
    }
}

TEST(Learn, APlainAllowNeverDefeatsADenyRuleOfTheSameSyscall) {
    auto base = parse(R"(name = "x"
[seccomp]
allow = ["@default"]
[[seccomp.rule]]
syscall = "mkdir"
args = [{ index = 1, op = "eq", value = 0o700 }]
action = "errno:EPERM"
)");
    // mkdir has no narrow form: a plain allow would let every mode through.
    std::vector<json> d = {denial("mkdir", {0, 0755})};
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 1), d));
    EXPECT_TRUE(p.empty());
    ASSERT_FALSE(p.notes.empty());
    EXPECT_NE(p.notes[0].find("would defeat them"), std::string::npos) << p.notes[0];
}

TEST(Learn, AJobThatPassedNeedsNoChange) {
    auto base = parse(kWithDenyRule);
    std::vector<json> d = {by_rule(denial("socket", {AF_UNIX}), "seccomp.rule[0]", "errno:EACCES", true),
                           denial("sched_getaffinity")};
    moat::learn::LearnContext ctx;
    ctx.original_passed = true;
    ctx.original_job = 12;
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 0), d), ctx);
    EXPECT_TRUE(p.empty());
    ASSERT_EQ(p.notes.size(), 3u) << ::testing::PrintToString(p.notes);
    EXPECT_EQ(p.notes[0], "job 12 passed under this policy (exited 0): no change needed");
    EXPECT_NE(p.notes[1].find("went on without sched_getaffinity"), std::string::npos) << p.notes[1];
    EXPECT_EQ(p.notes[2].find("socket: 1 call(s) denied by your rule"), 0u) << p.notes[2];
}

// Issue 14 item 5: evidence per value; names, not numbers.
TEST(Learn, EvidenceIsCountedPerValueAndConstantsAreNamed) {
    auto base = parse(kBase);
    std::vector<json> d = {denial("ioctl", {1, 0x5401 /* TCGETS */}, "x86_64", 42), denial("ioctl", {3, 0x5451 /* FIOCLEX */}),
                           denial("arch_prctl", {0x1002 /* ARCH_SET_FS */, 0}), denial("fcntl", {3, 1 /* F_GETFD */})};
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 1), d));
    std::map<std::string, const Addition*> by;
    for (const auto& a : p.additions) by[a.entry] = &a;
    ASSERT_TRUE(by.count("allow ioctl when arg1 == TCGETS")) << ::testing::PrintToString(by.size());
    ASSERT_TRUE(by.count("allow ioctl when arg1 == FIOCLEX"));
    ASSERT_TRUE(by.count("allow arch_prctl when arg0 == ARCH_SET_FS"));
    ASSERT_TRUE(by.count("allow fcntl when arg1 == F_GETFD"));
    EXPECT_EQ(by["allow ioctl when arg1 == TCGETS"]->evidence.find("42 call(s)"), 0u);
    EXPECT_EQ(by["allow ioctl when arg1 == FIOCLEX"]->evidence.find("1 call(s)"), 0u);
    auto v2 = parse(moat::learn::apply(base, p.additions));
    EXPECT_NE(moat::policy::to_text(moat::policy::diff(base, v2)).find("ioctl: arg1 == TCGETS -> allow"), std::string::npos)
        << moat::policy::to_text(moat::policy::diff(base, v2));
}

TEST(Learn, ManyValuesOfARuledSyscallBecomeOnePlainAllowThatReplacesItsRules) {
    auto base = parse(R"(name = "x"
[seccomp]
allow = ["@default"]
[[seccomp.rule]]
syscall = "fcntl"
args = [{ index = 1, op = "eq", value = "F_GETFD" }]
action = "allow"
)");
    std::vector<json> d;
    for (uint64_t cmd : {2u /* F_SETFD */, 3u, 4u, 1030u, 1031u}) d.push_back(denial("fcntl", {3, cmd}));
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 1), d));
    ASSERT_EQ(p.additions.size(), 1u);
    EXPECT_EQ(p.additions[0].entry, "fcntl (any arguments; replaces seccomp.rule[0])");
    EXPECT_NE(p.additions[0].evidence.find("5 different argument values"), std::string::npos);
    auto v2 = parse(moat::learn::apply(base, p.additions));
    EXPECT_TRUE(v2.seccomp.allowed.count("fcntl"));
    EXPECT_TRUE(v2.seccomp.rules.empty()) << "no rule with args = [] next to the header's plain fcntl";
    const std::string frag = moat::learn::fragment(base, p.additions);
    EXPECT_NE(frag.find("#   - seccomp.rule[0] fcntl: arg1 == F_GETFD -> allow  (removed)"), std::string::npos) << frag;
    EXPECT_EQ(frag.find("args = []"), std::string::npos) << frag;
}

TEST(Learn, ALearnReplaySummarySaysLetThroughNotDenied) {
    json d = denial("renameat2");
    d["enforced"] = false;
    auto o = moat::learn::outcome_of(job("exited", 0), {d, denial("mkdir")});
    EXPECT_EQ(o.describe(), "exited (exit 0), denied: mkdir, let through (learn): renameat2");
}

// ---- threads, CPUs and clone3 (issue 14 item 4; threads.cpp) ------------------

// A policy with everything a single-threaded program needs and none of the
// thread start/exit set.
const char* kNoThreads = R"(name = "nothreads"
[seccomp]
allow = ["execve", "brk", "arch_prctl", "read", "write", "openat", "close", "exit_group", "newfstatat"]
)";

json show_with(json sandbox) { return {{"id", 9}, {"sandbox", std::move(sandbox)}}; }

std::set<std::string> entries(const std::vector<Addition>& v) {
    std::set<std::string> s;
    for (const auto& a : v) s.insert(a.entry);
    return s;
}

TEST(LearnThreads, Clone3ThreadProbesProposeTheThreadSetTheBaseLacks) {
    auto base = parse(kNoThreads);
    // The run reached clone and futex (denied, proposed by propose() itself).
    const uint64_t clone_thread = 0x3d0f00;  // glibc's flags: CLONE_VM|...|CLONE_THREAD|...
    std::vector<json> d = {denial("clone", {clone_thread}), denial("futex", {0, 0x80})};
    json replay = show_with({{"cpus", 2}, {"clone3", {{"calls", 3}, {"threads", 3}}}});
    auto t = moat::learn::thread_paths(base, d, show_with({{"cpus", 2}}), replay);
    std::set<std::string> want(moat::learn::thread_start_set().begin(), moat::learn::thread_start_set().end());
    want.erase("clone");
    want.erase("futex");
    EXPECT_EQ(entries(t.additions), want) << "the set minus what the denials cover";
    for (const auto& a : t.additions) {
        EXPECT_NE(a.evidence.find("the job starts threads: 3 clone3 attempt(s) with CLONE_THREAD answered ENOSYS, "
                                  "glibc then uses clone"), std::string::npos) << a.evidence;
        EXPECT_NE(a.evidence.find("whether or not this run reached them"), std::string::npos) << a.evidence;
    }

    // Through propose(): the whole set ends up allowed, each syscall once.
    moat::learn::LearnContext ctx;
    ctx.replay_job = replay;
    ctx.original = show_with({{"cpus", 2}});
    auto p = moat::learn::propose(base, d, moat::learn::outcome_of(job("exited", 0), d), ctx);
    auto v2 = parse(moat::learn::apply(base, p.additions));
    for (const auto& name : moat::learn::thread_start_set()) EXPECT_TRUE(v2.seccomp.allowed.count(name)) << name;
    std::map<std::string, int> times;
    for (const auto& a : p.additions)
        for (const auto& s : a.syscalls) ++times[s];
    for (const auto& [name, n] : times) EXPECT_EQ(n, 1) << name;
}

TEST(LearnThreads, ACloneWithCloneThreadIsThreadEvidenceToo) {
    auto base = parse(kNoThreads);
    std::vector<json> d = {denial("clone", {0x10000 /* CLONE_THREAD */ | 0x100 /* CLONE_VM */}, "x86_64", 2)};
    auto t = moat::learn::thread_paths(base, d, json(), show_with(json::object()));
    EXPECT_TRUE(entries(t.additions).count("exit"));
    ASSERT_FALSE(t.additions.empty());
    EXPECT_NE(t.additions[0].evidence.find("2 clone call(s) with CLONE_THREAD"), std::string::npos)
        << t.additions[0].evidence;
}

TEST(LearnThreads, NoThreadEvidenceNoThreadSet) {
    auto base = parse(kNoThreads);
    // A fork-like clone (no CLONE_THREAD) and clone3 probes without threads (posix_spawn).
    std::vector<json> d = {denial("clone", {0x01200011 /* SIGCHLD|CLONE_CHILD_* */})};
    json replay = show_with({{"cpus", 4}, {"clone3", {{"calls", 1}, {"threads", 0}}}});
    auto t = moat::learn::thread_paths(base, d, show_with({{"cpus", 4}}), replay);
    EXPECT_TRUE(t.additions.empty()) << entries(t.additions).size();
    // And nothing at all when the replay's info has no clone3 or cpus (an older moatd).
    auto none = moat::learn::thread_paths(base, {}, json(), show_with(json::object()));
    EXPECT_TRUE(none.additions.empty());
    EXPECT_TRUE(none.notes.empty());
}

TEST(LearnThreads, TheBaseOrAnOperatorsRuleKeepsItsOwnWord) {
    // @default has the whole set: nothing to add.
    auto full = parse(kBase);
    json replay = show_with({{"cpus", 2}, {"clone3", {{"calls", 2}, {"threads", 2}}}});
    EXPECT_TRUE(moat::learn::thread_paths(full, {}, json(), replay).additions.empty());
    // A rule on madvise decides it: reported, not overridden by a plain allow.
    auto ruled = parse(std::string(kNoThreads) + R"([[seccomp.rule]]
syscall = "madvise"
action = "errno:EPERM"
args = [{ index = 2, op = "eq", value = 8 }]
)");
    auto t = moat::learn::thread_paths(ruled, {}, json(), replay);
    EXPECT_FALSE(entries(t.additions).count("madvise"));
    EXPECT_NE(::testing::PrintToString(t.notes).find("madvise: threads need it"), std::string::npos);
}

TEST(LearnThreads, Clone3NoteAppearsForENOSYSProbesAndAgreesWithLint) {
    auto base = parse(kBase);
    json replay = show_with({{"cpus", 2}, {"clone3", {{"calls", 5}, {"threads", 4}}}});
    moat::learn::LearnContext ctx;
    ctx.replay_job = replay;
    // No clone3 denial at all: the probes were answered ENOSYS without one.
    auto p = moat::learn::propose(base, {}, moat::learn::outcome_of(job("exited", 0), {}), ctx);
    std::string note;
    for (const auto& n : p.notes)
        if (n.starts_with("clone3: ")) note = n;
    ASSERT_FALSE(note.empty()) << ::testing::PrintToString(p.notes);
    EXPECT_NE(note.find("5 call(s) answered with ENOSYS (4 starting a thread)"), std::string::npos) << note;
    EXPECT_NE(note.find(moat::policy::clone3_design()), std::string::npos) << note;
    // The lint warning for clone3 in allow carries the same explanation.
    auto listed = parse("name = \"c\"\n[seccomp]\nallow = [\"@default\", \"clone3\"]\n");
    bool found = false;
    for (const auto& w : moat::policy::lint(listed))
        found = found || w.message.find(moat::policy::clone3_design()) != std::string::npos;
    EXPECT_TRUE(found);
    // A clone3 asking for namespaces is a denial: counted in the note, never proposed.
    std::vector<json> ns = {denial("clone3", {0x7ffc0000, 88})};
    auto q = moat::learn::propose(base, ns, moat::learn::outcome_of(job("exited", 0), ns), {});
    EXPECT_TRUE(q.additions.empty());
    EXPECT_NE(::testing::PrintToString(q.notes).find("1 asking for new namespaces, recorded as denials"),
              std::string::npos) << ::testing::PrintToString(q.notes);
    // No probes, no note.
    ctx.replay_job = show_with({{"cpus", 2}, {"clone3", {{"calls", 0}, {"threads", 0}}}});
    for (const auto& n : moat::learn::propose(base, {}, moat::learn::outcome_of(job("exited", 0), {}), ctx).notes)
        EXPECT_FALSE(n.starts_with("clone3")) << n;
}

TEST(LearnThreads, WarnsWhenTheReplayHadOneCpuOrFewerThanTheOriginal) {
    auto base = parse(kBase);
    auto warning = [&](json original, json replay) {
        std::string w;
        for (const auto& n : moat::learn::thread_paths(base, {}, original, replay).notes)
            if (n.find("may not show every threaded or CPU-count dependent path") != std::string::npos) w = n;
        return w;
    };
    std::string one = warning(show_with({{"cpus", 1}}), show_with({{"cpus", 1}}));
    EXPECT_NE(one.find("the learn replay ran on 1 CPU(s)"), std::string::npos) << one;
    EXPECT_NE(one.find("taskset"), std::string::npos) << "says what to do: " << one;
    std::string fewer = warning(show_with({{"cpus", 8}}), show_with({{"cpus", 2}, {"cpus_learn", {{"before", 1}, {"after", 2}}}}));
    EXPECT_NE(fewer.find("the learn replay ran on 2 CPU(s), the original job on 8"), std::string::npos) << fewer;
    EXPECT_NE(fewer.find("every CPU its cgroup allows"), std::string::npos) << fewer;
    EXPECT_EQ(warning(show_with({{"cpus", 2}}), show_with({{"cpus", 4}})), "") << "more CPUs than the original: fine";
    EXPECT_EQ(warning(show_with({{"cpus", 2}}), show_with({{"cpus", 2}})), "");
    EXPECT_EQ(warning(json(), show_with(json::object())), "") << "unknown counts: no guess";
}

// The learning benchmark's xz: poll is denied in production only when the
// pipe fills, which a slowed learn replay may never reach.
TEST(Learn, ACallOnlyTheOriginalReachedIsProposedFromItsDenial) {
    auto base = parse(kBase);
    json orig_poll = denial("poll", {0, 1, 0}, "x86_64", 2);
    orig_poll["rule"] = "seccomp.default_action";
    json orig_read = denial("read");
    orig_read["rule"] = "seccomp.default_action";
    moat::learn::LearnContext ctx;
    ctx.original_job = 34;
    ctx.original_denials = {orig_poll, orig_read};
    std::vector<json> replay = {denial("read")};
    auto p = moat::learn::propose(base, replay, moat::learn::outcome_of(job("exited", 0), replay), ctx);
    std::map<std::string, const Addition*> by;
    for (const auto& a : p.additions) by[a.entry] = &a;
    ASSERT_TRUE(by.count("poll")) << ::testing::PrintToString(p.notes);
    EXPECT_NE(by["poll"]->evidence.find("in the original job 34; this replay did not reach it"), std::string::npos)
        << by["poll"]->evidence;
    EXPECT_EQ(by["poll"]->evidence.find("2 call(s)"), 0u);
    EXPECT_EQ(by["read"]->evidence.find("1 call(s)"), 0u) << "seen in the replay: its own evidence, not doubled";
    // A syscall the replay's policy already allows is not proposed again.
    auto allows = parse("name = \"conv\"\n[seccomp]\nallow = [\"@default\", \"poll\"]\n");
    auto q = moat::learn::propose(allows, replay, moat::learn::outcome_of(job("exited", 0), replay), ctx);
    for (const auto& a : q.additions) EXPECT_NE(a.entry, "poll");
}

// Review findings on the filesystem half: a job chooses the paths, so they
// are hostile input to the proposal.
TEST(LearnPaths, NoSecretOrPrivateDirectoryThroughAStatALinkOrCoalescing) {
    auto base = parse(kBase);
    auto entry = [](const std::string& path, json add) {
        return json{{"path", path}, {"syscall", "newfstatat"}, {"calls", 1}, {"host", "directory"}, {"add", add}};
    };
    auto dir = [](const std::string& p) { return json{{"path", p}, {"kind", "directory"}, {"why", "the path itself"}}; };
    json lp = {{"paths", json::array()}};
    lp["paths"].push_back(entry("/home/alice", json::array({dir("/home/alice")})));
    lp["paths"].push_back(entry("/home/alice/.config", json::array({dir("/home/alice/.config")})));
    lp["paths"].push_back(entry("/etc/ssl", json::array({dir("/etc/ssl")})));
    json priv = dir("/run/moat");
    priv["private"] = true;
    lp["paths"].push_back(entry("/var/run/moat", json::array({priv})));
    json viaLink = dir("/srv/state");
    viaLink["private"] = true;
    lp["paths"].push_back(entry("/srv/alias", json::array({viaLink})));
    // Sixteen dotfiles of a home directory: not the home directory.
    for (int i = 0; i < 16; ++i) {
        const std::string f = "/home/bob/.f" + std::to_string(i);
        lp["paths"].push_back(entry(f, json::array({{{"path", f}, {"kind", "file"}, {"why", "the path itself"}}})));
    }
    auto p = moat::learn::propose_paths(base, lp, false);
    for (const auto& a : p.additions) {
        EXPECT_NE(a.read_only, "/home/alice");
        EXPECT_NE(a.read_only, "/home/alice/.config");
        EXPECT_NE(a.read_only, "/etc/ssl");
        EXPECT_NE(a.read_only, "/run/moat");
        EXPECT_NE(a.read_only, "/srv/state");
        EXPECT_NE(a.read_only, "/home/bob");
    }
    EXPECT_EQ(p.additions.size(), 16u) << "the sixteen files one by one";
}

TEST(LearnPaths, AJobsPathCannotWriteTomlIntoTheFragment) {
    auto base = parse(kBase);
    const std::string evil = "/a\n[[seccomp.rule]]\nsyscall = \"ptrace\"\naction = \"allow\"\n#";
    json lp = {{"paths", json::array()},
               {"write_dirs", json::array({{{"path", evil}, {"syscall", "openat"}, {"calls", 1},
                                             {"example", evil + "/f"}, {"in_view", false}, {"private", false}}})}};
    auto p = moat::learn::propose_paths(base, lp, false);
    EXPECT_TRUE(p.additions.empty()) << "a path with a newline is never proposed (no policy takes it)";
    // And evidence quoting the job stays inside its comment line.
    Addition a;
    a.read_only = "/srv/ok";
    a.entry = "read_only /srv/ok";
    a.evidence = "first open " + evil;
    p.additions = {a};
    const std::string frag = moat::learn::fragment(base, p.additions);
    auto t = moat::policy::parse_policy("name = \"f\"\n" + frag, "frag");
    ASSERT_TRUE(t.policy) << frag;
    EXPECT_TRUE(t.policy->seccomp.rules.empty()) << frag;
    EXPECT_FALSE(t.policy->seccomp.allowed.count("ptrace")) << frag;
}

}  // namespace
