// moat_learn: the replay comparison and the learned policy change.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <map>

#include "moat/learn/replay.h"
#include "moat/policy/diff.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"

namespace {

using moat::learn::Addition;
using moat::learn::Outcome;
using nlohmann::json;

moat::policy::Policy parse(const std::string& text) {
    auto r = moat::policy::parse_policy(text, "test.toml");
    EXPECT_TRUE(r.policy) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
    return r.policy ? *r.policy : moat::policy::Policy{};
}

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

}  // namespace
