#include "moat/learn/replay.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <sstream>

#include "internal.h"
#include "moat/learn/allow_list.h"
#include "moat/learn/denial_allow.h"
#include "moat/learn/paths.h"
#include "moat/learn/threads.h"
#include "moat/policy/diff.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"

namespace moat::learn {
namespace {

using nlohmann::json;

std::string join(const std::set<std::string>& s) {
    std::string out;
    for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
    return out;
}

std::optional<int> opt_int(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int>();
}

// Rules allowing different values of one argument are kept up to this many;
// beyond it the syscall is proposed as a plain allow (a long list of values
// is not narrow any more).
constexpr size_t kMaxRulesPerSyscall = 4;

}  // namespace

std::string Outcome::describe() const {
    std::string s = cause.empty() ? "running" : cause;
    if (exit_code) s += " (exit " + std::to_string(*exit_code) + ")";
    else if (signal) s += " (signal " + std::to_string(*signal) + ")";
    std::set<std::string> enforced;
    std::set_difference(denied.begin(), denied.end(), let_through.begin(), let_through.end(),
                        std::inserter(enforced, enforced.end()));
    if (denied.empty()) s += ", no denials";
    if (!enforced.empty()) s += ", denied: " + join(enforced);
    if (!let_through.empty()) s += ", let through (learn): " + join(let_through);
    return s;
}

Outcome outcome_of(const json& job, const std::vector<json>& denials) {
    Outcome o;
    o.job = job.value("id", int64_t(0));
    if (job.contains("termination") && job["termination"].is_object() && job["termination"]["cause"].is_string())
        o.cause = job["termination"]["cause"].get<std::string>();
    o.exit_code = opt_int(job, "exit_code");
    o.signal = opt_int(job, "signal");
    if (job.contains("recording") && job["recording"].is_object()) {
        o.stdout_bytes = job["recording"].value("stdout_bytes", uint64_t(0));
        o.stderr_bytes = job["recording"].value("stderr_bytes", uint64_t(0));
    }
    for (const auto& e : denials) {
        if (e.value("kind", std::string()) != "denial") continue;
        std::string name = e.value("syscall", std::string());
        std::string arch = e.value("arch", std::string("x86_64"));
        if (arch != "x86_64") name = arch + ":" + name;
        o.denied.insert(name);
        o.denial_count += e.value("count", uint64_t(1));
        if (e.contains("enforced") && e["enforced"].is_boolean() && !e["enforced"].get<bool>()) o.let_through.insert(name);
    }
    return o;
}

json Comparison::to_json() const {
    return {{"reproduced", reproduced}, {"differences", differences}, {"notes", notes}};
}

Comparison compare(const Outcome& a, const Outcome& b, const json& original_job) {
    Comparison c;
    if (a.cause != b.cause) c.differences.push_back("termination cause: " + a.cause + " -> " + b.cause);
    auto num = [](const std::optional<int>& v) { return v ? std::to_string(*v) : std::string("none"); };
    if (a.exit_code != b.exit_code) c.differences.push_back("exit code: " + num(a.exit_code) + " -> " + num(b.exit_code));
    if (a.signal != b.signal) c.differences.push_back("signal: " + num(a.signal) + " -> " + num(b.signal));
    std::set<std::string> gone, added;
    std::set_difference(a.denied.begin(), a.denied.end(), b.denied.begin(), b.denied.end(), std::inserter(gone, gone.end()));
    std::set_difference(b.denied.begin(), b.denied.end(), a.denied.begin(), a.denied.end(), std::inserter(added, added.end()));
    if (!gone.empty()) c.differences.push_back("no longer denied: " + join(gone));
    if (!added.empty()) c.differences.push_back("newly denied: " + join(added));
    c.reproduced = c.differences.empty();
    if (a.stdout_bytes != b.stdout_bytes)
        c.notes.push_back("stdout: " + std::to_string(a.stdout_bytes) + " -> " + std::to_string(b.stdout_bytes) + " bytes");
    if (a.stderr_bytes != b.stderr_bytes)
        c.notes.push_back("stderr: " + std::to_string(a.stderr_bytes) + " -> " + std::to_string(b.stderr_bytes) + " bytes");
    if (original_job.is_object() && original_job.contains("recording")) {
        const json& r = original_job["recording"];
        if (r.is_object() && r.contains("stdin") && r["stdin"].is_object() && r["stdin"].value("truncated", false))
            c.notes.push_back("the original's stdin was longer than the recording limit: the replay got only its "
                              "first " + std::to_string(r["stdin"].value("bytes", uint64_t(0))) + " bytes");
    }
    return c;
}

json Addition::to_json() const {
    json j = {{"entry", entry}, {"syscalls", syscalls}, {"group", group}, {"evidence", evidence}};
    j["read_only"] = read_only.empty() ? json(nullptr) : json(read_only);
    j["tmpfs"] = tmpfs.empty() ? json(nullptr) : json(tmpfs);
    if (!removes_rules.empty()) j["removes_rules"] = removes_rules;
    j["risk"] = risk.empty() ? json(nullptr) : json(risk);
    if (rule) {
        json args = json::array();
        for (const auto& a : rule->args) {
            json x = {{"index", a.index}, {"op", a.op}, {"value", a.value}};
            if (!a.mask.empty()) x["mask"] = a.mask;
            args.push_back(x);
        }
        j["rule"] = {{"syscall", rule->syscall}, {"action", rule->action}, {"args", args}};
    } else {
        j["rule"] = nullptr;
    }
    return j;
}

json Proposal::to_json() const {
    json adds = json::array();
    for (const auto& a : additions) adds.push_back(a.to_json());
    return {{"policy", policy_name}, {"additions", adds}, {"notes", notes}};
}

namespace {

// One narrow rule's share of a syscall's calls: evidence is per value.
struct RuleSeen {
    PolicyDraft::Rule rule;
    uint64_t value = 0;  // the narrowed argument's value
    uint64_t calls = 0;
    std::string first;
};

struct Seen {
    uint64_t calls = 0;
    std::string first;             // "renameat2(/tmp/x) at libc.so.6+0x..."
    std::vector<RuleSeen> rules;   // distinct narrow rules
    bool plain = false;            // some call fits no narrow rule
};

// Calls an explicit deny rule of the policy refused.
struct ByRule {
    std::set<size_t> rules;
    std::set<std::string> actions;
    uint64_t calls = 0;
    std::string first;
};

std::optional<size_t> rule_index(const std::string& rule) {
    constexpr std::string_view kPrefix = "seccomp.rule[";
    if (!rule.starts_with(kPrefix) || !rule.ends_with("]")) return std::nullopt;
    size_t v = 0;
    const char* b = rule.data() + kPrefix.size();
    const char* e = rule.data() + rule.size() - 1;
    auto [ptr, ec] = std::from_chars(b, e, v);
    if (ec != std::errc() || ptr != e) return std::nullopt;
    return v;
}

bool denies(const policy::SeccompRule& r) {
    using Kind = policy::Action::Kind;
    return r.action.kind != Kind::Allow && r.action.kind != Kind::Log;
}

// A narrow allow (arg I == V) cannot match a call a deny rule matches when
// that rule requires arg I to equal another value. Anything else may overlap,
// and the filter's allow would then win over the supervisor's deny.
bool disjoint(const RuleSeen& allow, const policy::SeccompRule& deny) {
    for (const auto& a : allow.rule.args)
        for (const auto& c : deny.args)
            if (std::to_string(c.index) == a.index && c.op == policy::ArgCondition::Op::Eq && c.value != allow.value)
                return true;
    return false;
}

std::string call_of(const json& e, const std::string& name, bool& shows_decoded) {
    const bool has = e.contains("decoded") && e["decoded"].is_string() && !e["decoded"].get_ref<const std::string&>().empty();
    shows_decoded = shows_decoded || has;
    std::string s = name + "(" + (has ? e["decoded"].get<std::string>() : "") + ")";
    if (e.contains("module") && e["module"].is_string()) s += " at " + e["module"].get<std::string>();
    return s;
}

}  // namespace

Proposal propose(const policy::Policy& base, const std::vector<json>& denials, const Outcome& learned,
                 const LearnContext& ctx) {
    Proposal p;
    p.policy_name = base.name;
    std::map<std::string, Seen> seen;
    std::map<std::string, ByRule> by_rule;
    std::set<std::string> foreign;
    bool shows_decoded = false;
    // One denied call as evidence: a narrow rule per argument value, or plain.
    auto take = [&](const json& e, const std::string& name, uint64_t count, const std::string& call) {
        Seen& s = seen[name];
        s.calls += count;
        if (s.first.empty()) s.first = call;
        DenialAllow a = proposeAllow(e);
        if (!a.narrow()) {
            s.plain = true;
            return;
        }
        auto it = std::find_if(s.rules.begin(), s.rules.end(), [&](const RuleSeen& r) { return r.rule == a.rule; });
        if (it == s.rules.end()) {
            s.rules.push_back({a.rule, detail::arg_value(e, size_t(a.rule.args.front().index[0] - '0')), 0, call});
            it = std::prev(s.rules.end());
        }
        it->calls += count;
    };
    for (const auto& e : denials) {
        if (e.value("kind", std::string()) != "denial") continue;
        const std::string name = e.value("syscall", std::string());
        const std::string arch = e.value("arch", std::string("x86_64"));
        if (name.empty()) continue;
        if (arch != "x86_64") {
            foreign.insert(arch + ":" + name);
            continue;
        }
        if (name == "clone3") continue;  // never proposed; thread_paths explains it with moatd's counts
        const uint64_t count = e.value("count", uint64_t(1));
        const std::string action = e.value("action", std::string());
        const std::string call = call_of(e, name, shows_decoded);
        if (auto idx = rule_index(e.value("rule", std::string())); idx && action != "log" && action != "allow") {
            ByRule& b = by_rule[name];
            b.rules.insert(*idx);
            b.actions.insert(action);
            b.calls += count;
            if (b.first.empty()) b.first = call;
            if (!ctx.through_rules) continue;  // reported below, never proposed
        }
        take(e, name, count, call);
    }
    // What the original job was denied by default and this replay never
    // reached (a call that depends on timing, like xz's poll on a full pipe,
    // may not happen when learn mode slows the job): its own denial is the
    // evidence. Only syscalls the replay's policy still does not allow.
    std::set<std::string> from_original;
    for (const auto& e : ctx.original_denials) {
        if (e.value("kind", std::string()) != "denial" || e.value("arch", std::string("x86_64")) != "x86_64") continue;
        const std::string name = e.value("syscall", std::string());
        if (name.empty() || name == "clone3" || seen.count(name) || by_rule.count(name)) continue;
        if (e.value("rule", std::string()) != "seccomp.default_action" || base.seccomp.allowed.count(name)) continue;
        if (std::any_of(base.seccomp.rules.begin(), base.seccomp.rules.end(),
                        [&](const policy::SeccompRule& r) { return r.syscall == name; }))
            continue;
        from_original.insert(name);
    }
    for (const auto& e : ctx.original_denials) {
        const std::string name = e.value("syscall", std::string());
        if (!from_original.count(name)) continue;
        take(e, name, e.value("count", uint64_t(1)),
             call_of(e, name, shows_decoded) + " (in the original job " + std::to_string(ctx.original_job) +
                 "; this replay did not reach it)");
    }

    auto explicit_notes = [&] {
        if (ctx.through_rules) return;
        for (const auto& [name, b] : by_rule) {
            std::string actions;
            for (const auto& a : b.actions) actions += (actions.empty() ? "" : ", ") + a;
            p.notes.push_back(name + ": " + std::to_string(b.calls) + " call(s) denied by your rule " +
                              detail::rule_list({b.rules.begin(), b.rules.end()}) + " (" + actions +
                              "), enforced in this replay as in production; first " + b.first +
                              ". An explicit deny is reported, never proposed (replay with --override-deny-rules "
                              "to let such calls run and see them proposed)");
        }
    };

    if (ctx.original_passed) {
        // A job that passed needs no change, whatever it was refused on the way.
        p.notes.push_back("job " + std::to_string(ctx.original_job) +
                          " passed under this policy (exited 0): no change needed");
        if (!seen.empty()) {
            std::string names;
            uint64_t calls = 0;
            for (const auto& [name, s] : seen) {
                names += (names.empty() ? "" : ", ") + name;
                calls += s.calls;
            }
            p.notes.push_back("it went on without " + names + " (" + std::to_string(calls) +
                              " call(s) denied by default_action); not proposed: the job did not need them");
        }
        explicit_notes();
        return p;
    }

    // Rules of the base policy, per syscall, by what they do.
    std::map<std::string, std::vector<size_t>> deny_rules, allow_rules;
    for (size_t i = 0; i < base.seccomp.rules.size(); ++i) {
        const auto& r = base.seccomp.rules[i];
        (denies(r) ? deny_rules : allow_rules)[r.syscall].push_back(i);
    }

    // Plain syscalls, then whole groups where every member the policy lacks
    // was needed: the group adds nothing beyond what the job did. A syscall
    // with rules is decided by its rules, so a group cannot allow it.
    std::set<std::string> plain;
    for (auto& [name, s] : seen)
        if (s.plain || s.rules.empty() || s.rules.size() > kMaxRulesPerSyscall) plain.insert(name);
    std::vector<std::pair<std::string, std::vector<std::string>>> groups;
    for (const auto& [gname, g] : policy::syscall_groups()) {
        std::vector<std::string> missing;
        bool whole = true;
        for (const auto& m : policy::expand_group(gname)) {
            if (base.seccomp.allowed.count(m)) continue;
            if (!plain.count(m) || deny_rules.count(m) || allow_rules.count(m)) {
                whole = false;
                break;
            }
            missing.push_back(m);
        }
        if (whole && missing.size() >= 2) groups.emplace_back(gname, std::move(missing));
    }
    // Largest first; a syscall is covered once.
    std::sort(groups.begin(), groups.end(), [](auto& a, auto& b) {
        return a.second.size() != b.second.size() ? a.second.size() > b.second.size() : a.first < b.first;
    });
    std::set<std::string> covered;
    for (auto& [gname, members] : groups) {
        bool overlaps = false;
        for (const auto& m : members) overlaps = overlaps || covered.count(m);
        if (overlaps) continue;
        Addition a;
        a.entry = gname;
        a.group = true;
        a.syscalls = members;
        uint64_t calls = 0;
        std::vector<std::string> risky;
        for (const auto& m : members) {
            covered.insert(m);
            calls += seen[m].calls;
            if (auto r = policy::risk_of(m); !r.empty()) risky.push_back(m + ": " + r);
        }
        a.evidence = std::to_string(calls) + " call(s) of " + std::to_string(members.size()) +
                     " member(s), every member the policy lacked";
        for (const auto& r : risky) a.risk += (a.risk.empty() ? "" : "; ") + r;
        p.additions.push_back(std::move(a));
    }
    for (auto& [name, s] : seen) {
        if (covered.count(name)) continue;
        const std::string risk = policy::risk_of(name);
        const std::vector<size_t>& denying = deny_rules[name];
        const std::string overrides =
            denying.empty() ? "" : "overrides your explicit deny " + detail::rule_list(denying) + " (--override-deny-rules)";
        auto with = [](std::string a, const std::string& b) { return a.empty() ? b : b.empty() ? a : a + "; " + b; };
        if (plain.count(name)) {
            if (!denying.empty() && !ctx.through_rules) {
                p.notes.push_back(name + ": " + std::to_string(s.calls) + " call(s) with arguments no narrow rule "
                                  "covers (first " + s.first + "), but your rule(s) " + detail::rule_list(denying) +
                                  " deny some " + name + " calls and an allow of every " + name +
                                  " call would defeat them; not proposed: write an allow rule for the arguments you "
                                  "mean");
                continue;
            }
            Addition a;
            a.entry = name;
            a.syscalls = {name};
            a.risk = with(overrides, risk);
            a.evidence = std::to_string(s.calls) + " call(s); first " + s.first;
            if (!s.plain && s.rules.size() > kMaxRulesPerSyscall)
                a.evidence += " (" + std::to_string(s.rules.size()) + " different argument values: a rule per value "
                              "would not be narrow)";
            // Rules decide their syscall: an allow of every call replaces them.
            a.removes_rules = allow_rules[name];
            if (ctx.through_rules) a.removes_rules.insert(a.removes_rules.end(), denying.begin(), denying.end());
            std::sort(a.removes_rules.begin(), a.removes_rules.end());
            if (!a.removes_rules.empty())
                a.entry += " (any arguments; replaces " + detail::rule_list(a.removes_rules) + ")";
            p.additions.push_back(std::move(a));
            continue;
        }
        for (const auto& r : s.rules) {
            std::vector<size_t> overlapping;
            for (size_t i : denying)
                if (!disjoint(r, base.seccomp.rules[i])) overlapping.push_back(i);
            if (!overlapping.empty() && !ctx.through_rules) {
                p.notes.push_back(name + " with arg" + r.rule.args.front().index + " == " + r.rule.args.front().value +
                                  ": " + std::to_string(r.calls) + " call(s), but your rule(s) " +
                                  detail::rule_list(overlapping) + " may deny some of the same calls and an allow rule would "
                                  "win over them; not proposed");
                continue;
            }
            Addition a;
            a.syscalls = {name};
            a.rule = r.rule;
            a.entry = "allow " + name + " when";
            for (size_t i = 0; i < r.rule.args.size(); ++i)
                a.entry += std::string(i ? " and" : "") + " arg" + r.rule.args[i].index + " == " + r.rule.args[i].value;
            a.risk = with(overlapping.empty() ? "" : "overrides your explicit deny " + detail::rule_list(overlapping) +
                                                         " (--override-deny-rules)",
                          risk.empty() ? "" : risk + " (narrowed to this argument value)");
            a.evidence = std::to_string(r.calls) + " call(s); first " + r.first;
            p.additions.push_back(std::move(a));
        }
    }
    explicit_notes();
    // The filesystem view: what moatd found missing in it (container and seccomp tiers).
    const json* lp = nullptr;
    if (ctx.replay_job.is_object() && ctx.replay_job.contains("sandbox") && ctx.replay_job["sandbox"].is_object() &&
        ctx.replay_job["sandbox"].contains("learn_paths"))
        lp = &ctx.replay_job["sandbox"]["learn_paths"];
    const bool replay_passed = learned.cause == "exited" && learned.exit_code == 0;
    size_t path_additions = 0, paths_refused = 0;
    if (lp) {
        PathsProposal fs = propose_paths(base, *lp, replay_passed);
        path_additions = fs.additions.size();
        paths_refused = fs.refused;
        for (auto& a : fs.additions) p.additions.push_back(std::move(a));
        for (auto& n : fs.notes) p.notes.push_back(std::move(n));
    }
    for (const auto& f : foreign)
        p.notes.push_back(f + ": a foreign-ABI call; policies judge only native x86_64 calls, so this is not "
                          "proposed (a program that needs it is not built for this machine)");
    // Threads, CPU counts and clone3 (threads.cpp): what one run cannot show.
    ThreadPaths tp = thread_paths(base, denials, ctx.original, ctx.replay_job);
    p.additions.insert(p.additions.end(), tp.additions.begin(), tp.additions.end());
    p.notes.insert(p.notes.end(), tp.notes.begin(), tp.notes.end());
    if (shows_decoded)
        p.notes.push_back("the paths and addresses in the evidence are what moatd read from the job's memory when "
                          "the call was held; a multithreaded job can change that memory before or after the kernel "
                          "reads it, so they describe the call, they do not prove it. The proposal itself uses only "
                          "syscall numbers and register arguments");
    if (!learned.cause.empty() && !replay_passed) {
        if (path_additions > 0)
            p.notes.push_back("the learn replay still ended " + learned.describe() +
                              ": the proposal adds the paths it was missing; replay again with the new policy to see "
                              "what the job does with them");
        else if (paths_refused > 0)
            p.notes.push_back("the learn replay still ended " + learned.describe() +
                              ": the job lacked paths that are never proposed (the notes above say which and why)");
        else
            p.notes.push_back("the learn replay still ended " + learned.describe() +
                              ": that part is not a denied syscall" +
                              (lp ? std::string(" and no missing path explains it") : std::string()) +
                              " (look at limits and the job's output); the proposal covers only the syscalls" +
                              (lp ? " and paths" : ""));
        if (!ctx.setup_detail.empty()) p.notes.push_back("its set-up failed: " + ctx.setup_detail);
        if (!ctx.stderr_tail.empty()) p.notes.push_back("the replay's stderr ended with: " + ctx.stderr_tail);
    }
    return p;
}

namespace {
PolicyDraft applied(const policy::Policy& base, const std::vector<Addition>& additions) {
    PolicyDraft d = PolicyDraft::fromPolicy(base);
    // Rules the additions replace go first (the draft's rules are in the
    // base's order), so that what is added is judged against what stays.
    std::set<size_t> removed;
    for (const auto& a : additions) removed.insert(a.removes_rules.begin(), a.removes_rules.end());
    for (auto it = removed.rbegin(); it != removed.rend(); ++it)
        if (*it < d.rules.size()) d.rules.erase(d.rules.begin() + std::ptrdiff_t(*it));
    for (const auto& a : additions) {
        if (!a.tmpfs.empty()) {
            if (std::find(d.tmpfs.begin(), d.tmpfs.end(), a.tmpfs) == d.tmpfs.end()) d.tmpfs.push_back(a.tmpfs);
            d.tmpfsSet = true;
            continue;
        }
        if (!a.read_only.empty()) {
            if (std::find(d.readOnly.begin(), d.readOnly.end(), a.read_only) == d.readOnly.end())
                d.readOnly.push_back(a.read_only);
            d.readOnlySet = true;
            continue;
        }
        if (a.group) {
            d.allow = withGroup(std::move(d.allow), a.entry, true);
            d.allowSet = true;
            continue;
        }
        DenialAllow x;
        x.syscall = a.syscalls.empty() ? std::string() : a.syscalls.front();
        x.rule.syscall = x.syscall;
        x.rule.action = "allow";
        if (a.rule) x.rule = *a.rule;
        d = applyAllow(std::move(d), x);
    }
    return d;
}
}  // namespace

std::string apply(const policy::Policy& base, const std::vector<Addition>& additions) {
    return applied(base, additions).toToml();
}

std::string fragment(const policy::Policy& base, const std::vector<Addition>& additions) {
    PolicyDraft before = PolicyDraft::fromPolicy(base);
    PolicyDraft after = applied(base, additions);
    std::ostringstream o;
    o << "# Proposed change to policy " << policy::toml_quote(base.name) << ": " << additions.size()
      << " addition(s)\n";
    // Entries and evidence quote what the job did (paths it chose): one
    // comment line each, whatever bytes they hold.
    auto comment = [](const std::string& text) {
        std::string out;
        for (unsigned char c : text) {
            if (c < 0x20 || c == 0x7f) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\x%02x", c);
                out += esc;
            } else {
                out += char(c);
            }
        }
        return out;
    };
    for (const auto& a : additions) {
        o << "#   + " << comment(a.entry) << "  (" << comment(a.evidence) << ")\n";
        if (!a.risk.empty()) o << "#     risk: " << comment(a.risk) << "\n";
    }
    std::set<size_t> removed;
    for (const auto& a : additions) removed.insert(a.removes_rules.begin(), a.removes_rules.end());
    for (size_t i : removed)
        if (i < base.seccomp.rules.size())
            o << "#   - seccomp.rule[" << i << "] " << policy::rule_summary(base.seccomp.rules[i]) << "  (removed)\n";
    if (before.readOnly != after.readOnly || before.tmpfs != after.tmpfs) o << "[filesystem]\n";
    auto list = [&](const char* key, const std::vector<std::string>& v) {
        o << key << " = [";
        for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << policy::toml_quote(v[i]);
        o << "]\n";
    };
    if (before.readOnly != after.readOnly) list("read_only", after.readOnly);
    if (before.tmpfs != after.tmpfs) list("tmpfs", after.tmpfs);
    if (before.allow != after.allow) {
        o << "[seccomp]\nallow = [";
        for (size_t i = 0; i < after.allow.size(); ++i) o << (i ? ", " : "") << policy::toml_quote(after.allow[i]);
        o << "]\n";
    }
    for (const auto& r : after.rules) {
        if (std::find(before.rules.begin(), before.rules.end(), r) != before.rules.end()) continue;
        o << "\n[[seccomp.rule]]\nsyscall = " << policy::toml_quote(r.syscall) << "\naction = "
          << policy::toml_quote(r.action) << "\nargs = [";
        for (size_t i = 0; i < r.args.size(); ++i) {
            const auto& a = r.args[i];
            o << (i ? ", " : "") << "{ index = " << a.index << ", op = " << policy::toml_quote(a.op)
              << ", value = " << policy::toml_quote(a.value);
            if (!a.mask.empty()) o << ", mask = " << policy::toml_quote(a.mask);
            o << " }";
        }
        o << "]\n";
    }
    return o.str();
}

namespace detail {

std::string rule_list(const std::vector<size_t>& indexes) {
    std::string out;
    for (size_t i : indexes) out += (out.empty() ? "" : ", ") + std::string("seccomp.rule[") + std::to_string(i) + "]";
    return out;
}

uint64_t arg_value(const json& e, size_t index) {
    auto it = e.find("args");
    if (it == e.end() || !it->is_array() || index >= it->size()) return 0;
    const json& a = (*it)[index];
    return a.is_number_unsigned() ? a.get<uint64_t>() : a.is_number_integer() ? uint64_t(a.get<int64_t>()) : 0;
}

}  // namespace detail

}  // namespace moat::learn
