#include "moat/learn/allow_list.h"

#include <algorithm>
#include <map>

#include "moat/policy/syscalls.h"

namespace moat::learn {

namespace {

bool isGroup(const std::string& e) { return !e.empty() && e[0] == '@'; }

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The direct members of `group`, with the nested groups that contain `syscall`
// replaced by their own members, recursively, and `syscall` left out.
void membersWithout(const std::string& group, const std::string& syscall, std::vector<std::string>& out) {
    const auto& groups = moat::policy::syscall_groups();
    const auto it = groups.find(group);
    if (it == groups.end()) return;
    for (const auto& m : it->second.members) {
        if (m == syscall) continue;
        if (isGroup(m) && contains(moat::policy::expand_group(m), syscall)) {
            membersWithout(m, syscall, out);
        } else if (!contains(out, m)) {
            out.push_back(m);
        }
    }
}

// After `syscall` was allowed again: the largest group holding it that the
// entries now cover completely, counting only entries inside that group, is
// written back as the group in place of those entries. Unchecking one member
// of @default replaced @default by its members; checking that member again
// must give @default back, not leave some 80 names behind. The list allows
// exactly the same syscalls before and after.
std::vector<std::string> regroup(std::vector<std::string> entries, const std::string& syscall) {
    std::string best;
    std::set<std::string> bestMembers;
    for (const auto& [name, g] : moat::policy::syscall_groups()) {
        const auto expanded = moat::policy::expand_group(name);
        const std::set<std::string> members(expanded.begin(), expanded.end());
        if (!members.contains(syscall) || members.size() <= bestMembers.size() || contains(entries, name)) continue;
        std::set<std::string> covered;
        size_t inside = 0;
        for (const auto& e : entries) {
            const auto part = isGroup(e) ? moat::policy::expand_group(e) : std::vector<std::string>{e};
            if (part.empty() || !std::all_of(part.begin(), part.end(), [&](const auto& s) { return members.contains(s); }))
                continue;
            covered.insert(part.begin(), part.end());
            ++inside;
        }
        if (inside >= 2 && covered == members) {
            best = name;
            bestMembers = members;
        }
    }
    if (best.empty()) return entries;
    std::vector<std::string> out;
    for (const auto& e : entries) {
        const auto part = isGroup(e) ? moat::policy::expand_group(e) : std::vector<std::string>{e};
        const bool inside = !part.empty() && std::all_of(part.begin(), part.end(), [&](const auto& s) { return bestMembers.contains(s); });
        if (!inside) out.push_back(e);
        else if (!contains(out, best)) out.push_back(best);
    }
    return out;
}

}  // namespace

std::set<std::string> expandAllowList(const std::vector<std::string>& entries) {
    std::set<std::string> out;
    for (const auto& e : entries) {
        if (isGroup(e)) {
            for (auto& s : moat::policy::expand_group(e)) out.insert(std::move(s));
        } else {
            out.insert(e);
        }
    }
    return out;
}

std::vector<std::string> withSyscall(std::vector<std::string> entries, const std::string& syscall, bool allowed) {
    if (allowed) {
        if (expandAllowList(entries).contains(syscall)) return entries;
        entries.push_back(syscall);
        return regroup(std::move(entries), syscall);
    }
    std::vector<std::string> out;
    for (const auto& e : entries) {
        if (e == syscall) continue;
        if (isGroup(e) && contains(moat::policy::expand_group(e), syscall)) {
            std::vector<std::string> members;
            membersWithout(e, syscall, members);
            for (auto& m : members)
                if (!contains(out, m) && !contains(entries, m)) out.push_back(std::move(m));
            continue;
        }
        if (!contains(out, e)) out.push_back(e);
    }
    return out;
}

std::vector<std::string> withGroup(std::vector<std::string> entries, const std::string& group, bool allowed) {
    const auto members = moat::policy::expand_group(group);
    if (allowed) {
        std::vector<std::string> out;
        for (const auto& e : entries)
            if (isGroup(e) || !contains(members, e)) out.push_back(e);
        if (!contains(out, group)) out.push_back(group);
        return out;
    }
    std::erase(entries, group);
    const auto now = expandAllowList(entries);
    for (const auto& m : members)
        if (now.contains(m)) entries = withSyscall(std::move(entries), m, false);
    return entries;
}

std::string syscallDescription(const std::string& syscall) {
    static const std::map<std::string, std::string> kByName = [] {
        std::map<std::string, std::pair<size_t, std::string>> best;
        for (const auto& [name, g] : moat::policy::syscall_groups()) {
            const auto members = moat::policy::expand_group(name);
            for (const auto& s : members) {
                auto it = best.find(s);
                if (it == best.end() || members.size() < it->second.first) best[s] = {members.size(), g.description};
            }
        }
        std::map<std::string, std::string> out;
        for (auto& [s, v] : best) out[s] = std::move(v.second);
        return out;
    }();
    const auto it = kByName.find(syscall);
    return it == kByName.end() ? std::string() : it->second;
}

}  // namespace moat::learn
