#pragma once
// Semantic diff of two policies (`moatctl policy diff A B`): what a job may do
// differently, compared on effective values, not on the text. Spelling that
// does not change enforcement is not a difference: the order of paths, a group
// versus the syscalls it expands to, "AF_UNIX" versus 1 in a rule, defaults
// written out versus left implicit. name, description and provenance are not
// compared. docs/policy.md, "Semantic diff", describes the output.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moat/policy/policy.h"

namespace moat::policy {

// One value that differs; nullopt means "not set" (environment.set entries,
// hostname). Values are formatted as a policy writes them ("256MiB", "30s").
struct ValueChange {
    std::string key;  // "limits.memory", "environment.set.PATH"
    std::optional<std::string> from;
    std::optional<std::string> to;
};

// Elements of an unordered list present in only one of the policies.
struct SetDelta {
    std::string key;  // "filesystem.read_only", "environment.pass"
    std::vector<std::string> added;    // in b only, sorted
    std::vector<std::string> removed;  // in a only, sorted
    bool empty() const { return added.empty() && removed.empty(); }
};

// Changes from a to b. Only differing fields are filled in.
struct PolicyDiff {
    SetDelta syscalls{"seccomp.allowed", {}, {}};       // expanded unconditional allows
    std::optional<ValueChange> default_action;
    std::vector<SeccompRule> rules_added;    // by syscall + conditions + action
    std::vector<SeccompRule> rules_removed;
    std::vector<ValueChange> limits;         // "limits.*"
    std::vector<SetDelta> filesystem;        // read_only, read_write, tmpfs (non-empty deltas only)
    std::vector<ValueChange> filesystem_options;  // tmpfs_size, landlock
    std::optional<ValueChange> network;      // network.mode
    SetDelta environment_pass{"environment.pass", {}, {}};
    std::vector<ValueChange> environment_set;  // "environment.set.NAME"
    std::optional<ValueChange> tier;
    std::optional<ValueChange> hostname;
    std::optional<ValueChange> sample_interval;  // monitor.sample_interval
    std::optional<ValueChange> max_events;       // monitor.max_events
    std::optional<ValueChange> max_event_bytes;  // monitor.max_event_bytes

    bool empty() const;
};

PolicyDiff diff(const Policy& a, const Policy& b);

// One line per change: "+ allow mkdir", "- allow ptrace",
// "~ limits.memory 256MiB -> 512MiB"; "no semantic difference\n" when empty.
std::string to_text(const PolicyDiff& d);
// {"equal": bool, "seccomp": {...}, "limits": [...], ...}; see docs/policy.md.
nlohmann::json to_json(const PolicyDiff& d);

// "socket: arg0 == 1 -> allow", as to_text prints rules.
std::string rule_summary(const SeccompRule& r);

}  // namespace moat::policy
