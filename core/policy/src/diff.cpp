// diff(): what a job may do differently under policy b than under policy a.
// Both are parsed Policies, so every field already holds its effective value;
// the comparison is on those values, never on the TOML text.
#include "moat/policy/diff.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <set>

#include "moat/common/units.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

namespace {

using nlohmann::json;

// Rules are the same rule when syscall, action and the numeric conditions are
// equal; how a value was spelt (value_text) does not matter.
bool same_rule(const SeccompRule& a, const SeccompRule& b) {
    if (a.syscall != b.syscall || !(a.action == b.action) || a.args.size() != b.args.size()) return false;
    for (size_t i = 0; i < a.args.size(); ++i) {
        const ArgCondition& x = a.args[i];
        const ArgCondition& y = b.args[i];
        if (x.index != y.index || x.op != y.op || x.value != y.value ||
            (x.op == ArgCondition::Op::MaskedEq && x.mask != y.mask))
            return false;
    }
    return true;
}

// Rules of `from` that have no counterpart in `to` (each counterpart used once).
std::vector<SeccompRule> missing(const std::vector<SeccompRule>& from, const std::vector<SeccompRule>& to) {
    std::vector<bool> used(to.size(), false);
    std::vector<SeccompRule> out;
    for (const SeccompRule& r : from) {
        bool found = false;
        for (size_t i = 0; i < to.size() && !found; ++i)
            if (!used[i] && same_rule(r, to[i])) used[i] = found = true;
        if (!found) out.push_back(r);
    }
    return out;
}

SetDelta set_delta(std::string key, const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::set<std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
    SetDelta d{std::move(key), {}, {}};
    std::set_difference(sb.begin(), sb.end(), sa.begin(), sa.end(), std::back_inserter(d.added));
    std::set_difference(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(d.removed));
    return d;
}

std::string number(uint64_t v) {
    if (v < 0x1000) return std::to_string(v);
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string quote(const std::string& s) {
    // JSON string escaping is also readable for a terminal and keeps control
    // characters from an environment value out of it.
    return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

json change_json(const ValueChange& c) {
    return {{"key", c.key}, {"from", c.from ? json(*c.from) : json(nullptr)}, {"to", c.to ? json(*c.to) : json(nullptr)}};
}

json delta_json(const SetDelta& d) { return {{"added", d.added}, {"removed", d.removed}}; }

json rule_json(const SeccompRule& r) {
    json args = json::array();
    for (const ArgCondition& c : r.args) {
        json a = {{"index", c.index}, {"op", op_name(c.op)}, {"value", c.value}};
        if (c.op == ArgCondition::Op::MaskedEq) a["mask"] = c.mask;
        args.push_back(std::move(a));
    }
    return {{"syscall", r.syscall}, {"action", r.action.str()}, {"args", std::move(args)}};
}

}  // namespace

bool PolicyDiff::empty() const {
    return syscalls.empty() && !default_action && rules_added.empty() && rules_removed.empty() && limits.empty() &&
           filesystem.empty() && filesystem_options.empty() && !network && environment_pass.empty() &&
           environment_set.empty() && !tier && !hostname && !sample_interval && !max_events && !max_event_bytes;
}

std::string rule_summary(const SeccompRule& r) {
    static const char* const kSym[] = {"==", "!=", "<", "<=", ">", ">=", "&"};
    std::string s = r.syscall;
    for (size_t i = 0; i < r.args.size(); ++i) {
        const ArgCondition& c = r.args[i];
        s += i ? " && " : ": ";
        s += "arg" + std::to_string(c.index) + " ";
        if (c.op == ArgCondition::Op::MaskedEq) s += "& " + number(c.mask) + " == " + number(c.value);
        else if (auto name = arg_constant_name(r.syscall, c.index, c.value)) s += std::string(kSym[int(c.op)]) + " " + *name;
        else s += std::string(kSym[int(c.op)]) + " " + number(c.value);
    }
    return s + " -> " + r.action.str();
}

PolicyDiff diff(const Policy& a, const Policy& b) {
    PolicyDiff d;
    auto scalar = [](std::string key, const std::string& x, const std::string& y) -> std::optional<ValueChange> {
        if (x == y) return std::nullopt;
        return ValueChange{std::move(key), x, y};
    };

    // [seccomp]
    {
        const auto& sa = a.seccomp.allowed;
        const auto& sb = b.seccomp.allowed;
        std::set_difference(sb.begin(), sb.end(), sa.begin(), sa.end(), std::back_inserter(d.syscalls.added));
        std::set_difference(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(d.syscalls.removed));
    }
    d.default_action = scalar("seccomp.default_action", a.seccomp.default_action.str(), b.seccomp.default_action.str());
    d.rules_added = missing(b.seccomp.rules, a.seccomp.rules);
    d.rules_removed = missing(a.seccomp.rules, b.seccomp.rules);

    // [limits]
    const Limits& la = a.limits;
    const Limits& lb = b.limits;
    auto size = [&](const char* key, uint64_t x, uint64_t y) {
        if (x != y) d.limits.push_back({std::string("limits.") + key, format_size(x), format_size(y)});
    };
    auto dur = [&](const char* key, uint64_t x, uint64_t y) {
        if (x != y) d.limits.push_back({std::string("limits.") + key, format_duration_ns(x), format_duration_ns(y)});
    };
    auto count = [&](const char* key, uint64_t x, uint64_t y) {
        if (x != y) d.limits.push_back({std::string("limits.") + key, std::to_string(x), std::to_string(y)});
    };
    dur("wall_time", la.wall_time_ns, lb.wall_time_ns);
    dur("cpu_time", la.cpu_time_ns, lb.cpu_time_ns);
    size("memory", la.memory_bytes, lb.memory_bytes);
    count("pids", la.pids, lb.pids);
    size("file_size", la.file_size_bytes, lb.file_size_bytes);
    count("open_files", la.open_files, lb.open_files);
    size("stack", la.stack_bytes, lb.stack_bytes);
    size("core", la.core_bytes, lb.core_bytes);

    // [filesystem]: lists are sets (mounts are applied parent before child
    // whatever their order, and duplicates were removed by the parser).
    for (auto [key, x, y] : {std::tuple{"filesystem.read_only", &a.filesystem.read_only, &b.filesystem.read_only},
                             std::tuple{"filesystem.read_write", &a.filesystem.read_write, &b.filesystem.read_write},
                             std::tuple{"filesystem.tmpfs", &a.filesystem.tmpfs, &b.filesystem.tmpfs}}) {
        SetDelta s = set_delta(key, *x, *y);
        if (!s.empty()) d.filesystem.push_back(std::move(s));
    }
    if (a.filesystem.tmpfs_size_bytes != b.filesystem.tmpfs_size_bytes)
        d.filesystem_options.push_back({"filesystem.tmpfs_size", format_size(a.filesystem.tmpfs_size_bytes),
                                        format_size(b.filesystem.tmpfs_size_bytes)});
    if (auto c = scalar("filesystem.landlock", landlock_mode_name(a.filesystem.landlock),
                        landlock_mode_name(b.filesystem.landlock)))
        d.filesystem_options.push_back(std::move(*c));

    d.network = scalar("network.mode", network_mode_name(a.network), network_mode_name(b.network));

    // [environment]
    d.environment_pass = set_delta("environment.pass", a.environment.pass, b.environment.pass);
    for (const auto& [k, v] : a.environment.set) {
        auto it = b.environment.set.find(k);
        if (it == b.environment.set.end()) d.environment_set.push_back({"environment.set." + k, v, std::nullopt});
        else if (it->second != v) d.environment_set.push_back({"environment.set." + k, v, it->second});
    }
    for (const auto& [k, v] : b.environment.set)
        if (!a.environment.set.contains(k)) d.environment_set.push_back({"environment.set." + k, std::nullopt, v});
    std::sort(d.environment_set.begin(), d.environment_set.end(),
              [](const ValueChange& x, const ValueChange& y) { return x.key < y.key; });

    d.tier = scalar("tier", tier_name(a.tier), tier_name(b.tier));
    if (a.hostname != b.hostname)
        d.hostname = ValueChange{"hostname", a.hostname.empty() ? std::nullopt : std::optional(a.hostname),
                                 b.hostname.empty() ? std::nullopt : std::optional(b.hostname)};
    d.sample_interval = scalar("monitor.sample_interval", format_duration_ns(a.monitor.sample_interval_ns),
                               format_duration_ns(b.monitor.sample_interval_ns));
    d.max_events = scalar("monitor.max_events", std::to_string(a.monitor.max_events),
                          std::to_string(b.monitor.max_events));
    d.max_event_bytes = scalar("monitor.max_event_bytes", format_size(a.monitor.max_event_bytes),
                               format_size(b.monitor.max_event_bytes));
    return d;
}

std::string to_text(const PolicyDiff& d) {
    if (d.empty()) return "no semantic difference\n";
    std::string out;
    auto change = [&](const ValueChange& c, bool quoted) {
        auto show = [&](const std::optional<std::string>& v) {
            if (!v) return std::string("(unset)");
            return quoted ? quote(*v) : *v;
        };
        if (!c.from) out += "+ " + c.key + " = " + show(c.to) + "\n";
        else if (!c.to) out += "- " + c.key + " = " + show(c.from) + "\n";
        else out += "~ " + c.key + " " + show(c.from) + " -> " + show(c.to) + "\n";
    };
    auto delta = [&](const SetDelta& s, const std::string& label) {
        for (const std::string& x : s.added) out += "+ " + label + " " + x + "\n";
        for (const std::string& x : s.removed) out += "- " + label + " " + x + "\n";
    };

    if (d.tier) change(*d.tier, false);
    if (d.hostname) change(*d.hostname, true);
    for (const ValueChange& c : d.limits) change(c, false);
    for (const SetDelta& s : d.filesystem) delta(s, s.key);
    for (const ValueChange& c : d.filesystem_options) change(c, false);
    if (d.network) change(*d.network, false);
    delta(d.environment_pass, d.environment_pass.key);
    for (const ValueChange& c : d.environment_set) change(c, true);
    if (d.default_action) change(*d.default_action, false);
    delta(d.syscalls, "allow");
    for (const SeccompRule& r : d.rules_added) out += "+ rule " + rule_summary(r) + "\n";
    for (const SeccompRule& r : d.rules_removed) out += "- rule " + rule_summary(r) + "\n";
    if (d.sample_interval) change(*d.sample_interval, false);
    if (d.max_events) change(*d.max_events, false);
    if (d.max_event_bytes) change(*d.max_event_bytes, false);
    return out;
}

json to_json(const PolicyDiff& d) {
    auto opt = [](const std::optional<ValueChange>& c) { return c ? change_json(*c) : json(nullptr); };
    auto list = [](const std::vector<ValueChange>& v) {
        json a = json::array();
        for (const ValueChange& c : v) a.push_back(change_json(c));
        return a;
    };
    json rules_added = json::array(), rules_removed = json::array();
    for (const SeccompRule& r : d.rules_added) rules_added.push_back(rule_json(r));
    for (const SeccompRule& r : d.rules_removed) rules_removed.push_back(rule_json(r));
    json fs = json::object();
    for (const char* k : {"read_only", "read_write", "tmpfs"}) fs[k] = {{"added", json::array()}, {"removed", json::array()}};
    for (const SetDelta& s : d.filesystem) fs[s.key.substr(s.key.find('.') + 1)] = delta_json(s);
    fs["changes"] = list(d.filesystem_options);
    return {
        {"equal", d.empty()},
        {"tier", opt(d.tier)},
        {"hostname", opt(d.hostname)},
        {"limits", list(d.limits)},
        {"filesystem", std::move(fs)},
        {"network", opt(d.network)},
        {"environment", {{"pass", delta_json(d.environment_pass)}, {"set", list(d.environment_set)}}},
        {"seccomp",
         {{"default_action", opt(d.default_action)},
          {"allowed", delta_json(d.syscalls)},
          {"rules", {{"added", std::move(rules_added)}, {"removed", std::move(rules_removed)}}}}},
        {"monitor",
         {{"sample_interval", opt(d.sample_interval)},
          {"max_events", opt(d.max_events)},
          {"max_event_bytes", opt(d.max_event_bytes)}}},
    };
}

}  // namespace moat::policy
