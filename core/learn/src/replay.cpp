#include "moat/learn/replay.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "moat/learn/allow_list.h"
#include "moat/learn/denial_allow.h"
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
    s += denied.empty() ? ", no denials" : ", denied: " + join(denied);
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

Proposal propose(const policy::Policy& base, const std::vector<json>& denials, const Outcome& learned) {
    Proposal p;
    p.policy_name = base.name;
    struct Seen {
        uint64_t calls = 0;
        std::string first;                         // "renameat2(/tmp/x) at libc.so.6+0x..."
        std::vector<PolicyDraft::Rule> rules;      // distinct narrow rules
        bool plain = false;                        // some call fits no narrow rule
    };
    std::map<std::string, Seen> seen;
    std::set<std::string> foreign;
    bool clone3 = false;
    bool shows_decoded = false;
    for (const auto& e : denials) {
        if (e.value("kind", std::string()) != "denial") continue;
        const std::string name = e.value("syscall", std::string());
        const std::string arch = e.value("arch", std::string("x86_64"));
        if (name.empty()) continue;
        if (arch != "x86_64") {
            foreign.insert(arch + ":" + name);
            continue;
        }
        if (name == "clone3") {
            clone3 = true;
            continue;
        }
        Seen& s = seen[name];
        s.calls += e.value("count", uint64_t(1));
        if (s.first.empty()) {
            const bool has = e.contains("decoded") && e["decoded"].is_string() && !e["decoded"].get_ref<const std::string&>().empty();
            shows_decoded = shows_decoded || has;
            s.first = name + "(" + (has ? e["decoded"].get<std::string>() : "") + ")";
            if (e.contains("module") && e["module"].is_string()) s.first += " at " + e["module"].get<std::string>();
        }
        DenialAllow a = proposeAllow(e);
        if (a.narrow()) {
            if (std::find(s.rules.begin(), s.rules.end(), a.rule) == s.rules.end()) s.rules.push_back(a.rule);
        } else {
            s.plain = true;
        }
    }

    // Plain syscalls, then whole groups where every member the policy lacks
    // was needed: the group adds nothing beyond what the job did.
    std::set<std::string> plain;
    for (auto& [name, s] : seen)
        if (s.plain || s.rules.empty() || s.rules.size() > kMaxRulesPerSyscall) plain.insert(name);
    std::vector<std::pair<std::string, std::vector<std::string>>> groups;
    for (const auto& [gname, g] : policy::syscall_groups()) {
        std::vector<std::string> missing;
        bool whole = true;
        for (const auto& m : policy::expand_group(gname)) {
            if (base.seccomp.allowed.count(m)) continue;
            if (!plain.count(m)) {
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
        const std::string evidence = std::to_string(s.calls) + " call(s); first " + s.first;
        if (plain.count(name)) {
            Addition a;
            a.entry = name;
            a.syscalls = {name};
            a.risk = risk;
            a.evidence = evidence;
            if (!s.plain && s.rules.size() > kMaxRulesPerSyscall)
                a.evidence += " (" + std::to_string(s.rules.size()) + " different argument values: a rule per value "
                              "would not be narrow)";
            p.additions.push_back(std::move(a));
            continue;
        }
        for (const auto& r : s.rules) {
            Addition a;
            a.syscalls = {name};
            a.rule = r;
            a.entry = "allow " + name + " when";
            for (size_t i = 0; i < r.args.size(); ++i)
                a.entry += std::string(i ? " and" : "") + " arg" + r.args[i].index + " == " + r.args[i].value;
            a.risk = risk.empty() ? "" : risk + " (narrowed to this argument value)";
            a.evidence = evidence;
            p.additions.push_back(std::move(a));
        }
    }
    for (const auto& f : foreign)
        p.notes.push_back(f + ": a foreign-ABI call; policies judge only native x86_64 calls, so this is not "
                          "proposed (a program that needs it is not built for this machine)");
    if (clone3)
        p.notes.push_back("clone3: always answered ENOSYS (its flags cannot be checked by a filter); glibc falls "
                          "back to clone, which the policy judges");
    if (shows_decoded)
        p.notes.push_back("the paths and addresses in the evidence are what moatd read from the job's memory when "
                          "the call was held; a multithreaded job can change that memory before or after the kernel "
                          "reads it, so they describe the call, they do not prove it. The proposal itself uses only "
                          "syscall numbers and register arguments");
    if (!learned.cause.empty() && !(learned.cause == "exited" && learned.exit_code == 0))
        p.notes.push_back("the learn replay still ended " + learned.describe() +
                          ": that part is not a denied syscall (look at filesystem paths, limits and the job's "
                          "output); the proposal covers only the syscalls");
    return p;
}

namespace {
PolicyDraft applied(const policy::Policy& base, const std::vector<Addition>& additions) {
    PolicyDraft d = PolicyDraft::fromPolicy(base);
    for (const auto& a : additions) {
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
    for (const auto& a : additions) {
        o << "#   + " << a.entry << "  (" << a.evidence << ")\n";
        if (!a.risk.empty()) o << "#     risk: " << a.risk << "\n";
    }
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

}  // namespace moat::learn
