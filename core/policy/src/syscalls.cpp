#include "moat/policy/syscalls.h"

#include <seccomp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <set>
#include <toml++/toml.h>

#include "internal.h"

namespace moat::policy {

namespace {

// libseccomp returns malloc()ed names.
struct FreeDeleter {
    void operator()(char* p) const noexcept { std::free(p); }
};

// x86_64 numbers are below 512 (512.. are x32); leave head-room for new calls.
constexpr int kMaxSyscallNr = 1024;

}  // namespace

std::optional<int> syscall_nr(std::string_view name) {
    if (name.empty() || name.size() > 64) return std::nullopt;
    std::string n(name);
    int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, n.c_str());
    // Negative values are __NR_SCMP_ERROR or libseccomp pseudo-syscalls for calls
    // that do not exist on x86_64 (e.g. socketcall); neither is a real syscall.
    if (nr < 0) return std::nullopt;
    return nr;
}

std::string syscall_name(int nr, std::string_view arch) {
    uint32_t token = SCMP_ARCH_X86_64;
    if (arch == "i386" || arch == "x86") token = SCMP_ARCH_X86;
    else if (arch == "x32") token = SCMP_ARCH_X32;
    else if (arch != "x86_64") return "";
    std::unique_ptr<char, FreeDeleter> n(seccomp_syscall_resolve_num_arch(token, nr));
    return n ? std::string(n.get()) : std::string();
}

const std::vector<std::string>& all_syscalls() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (int nr = 0; nr < kMaxSyscallNr; ++nr) {
            std::string n = syscall_name(nr);
            if (!n.empty()) v.push_back(std::move(n));
        }
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
        return v;
    }();
    return names;
}

const std::map<std::string, SyscallGroup>& syscall_groups() {
    // Parsed once from the embedded file. A malformed file yields whatever could
    // be read; tests/unit/policy checks the file strictly (every member resolves,
    // no cycles), so a broken file cannot ship.
    static const std::map<std::string, SyscallGroup> groups = [] {
        std::map<std::string, SyscallGroup> out;
        try {
            toml::table root = toml::parse(detail::kSyscallGroupsToml, std::string_view("syscall-groups.toml"));
            const toml::table* g = root["groups"].as_table();
            if (!g) return out;
            for (auto&& [key, node] : *g) {
                const toml::table* t = node.as_table();
                if (!t) continue;
                SyscallGroup grp;
                grp.name = std::string(key.str());
                grp.description = (*t)["description"].value_or(std::string());
                if (const toml::array* m = (*t)["members"].as_array())
                    for (const toml::node& e : *m)
                        if (auto s = e.value<std::string>()) grp.members.push_back(*s);
                out.emplace(grp.name, std::move(grp));
            }
        } catch (const std::exception&) {
            // Exceptions never leave the module; an empty/partial map fails the tests.
        }
        return out;
    }();
    return groups;
}

std::vector<std::string> expand_group(std::string_view group) {
    const auto& groups = syscall_groups();
    std::set<std::string> out;
    std::set<std::string> seen;  // guards against cycles: each group expands once
    std::vector<std::string> todo{std::string(group)};
    while (!todo.empty()) {
        std::string g = std::move(todo.back());
        todo.pop_back();
        if (!seen.insert(g).second) continue;
        auto it = groups.find(g);
        if (it == groups.end()) continue;
        for (const std::string& m : it->second.members) {
            if (m.starts_with('@')) todo.push_back(m);
            else out.insert(m);
        }
    }
    return {out.begin(), out.end()};
}

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

// Optimal string alignment distance (Damerau-Levenshtein with adjacent
// transpositions), case-insensitive. Stops early once every cell in a row
// exceeds `limit`, which keeps "did you mean" cheap over ~400 syscall names.
size_t osa_distance(std::string_view a, std::string_view b, size_t limit) {
    const size_t n = a.size(), m = b.size();
    if ((n > m ? n - m : m - n) > limit) return limit + 1;
    std::vector<size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
    for (size_t j = 0; j <= m; ++j) prev[j] = j;
    for (size_t i = 1; i <= n; ++i) {
        cur[0] = i;
        size_t row_min = cur[0];
        for (size_t j = 1; j <= m; ++j) {
            size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            size_t v = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
                v = std::min(v, prev2[j - 2] + 1);
            cur[j] = v;
            row_min = std::min(row_min, v);
        }
        if (row_min > limit) return limit + 1;
        std::swap(prev2, prev);
        std::swap(prev, cur);
    }
    return prev[m];
}

}  // namespace

std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
    // Words this long are not typos of a key or syscall name; skip the work.
    if (word.empty() || word.size() > 128) return "";
    const size_t limit = std::max<size_t>(1, word.size() / 3);
    size_t best = limit + 1;
    std::string best_word;
    for (const std::string& c : candidates) {
        size_t d = osa_distance(word, c, limit);
        if (d < best) {
            best = d;
            best_word = c;
        }
    }
    return best <= limit ? best_word : std::string();
}

}  // namespace moat::policy
