#pragma once
// Replay and learning (docs/replay.md): compare a replay's outcome with the
// original's, and turn the denials of a learn replay into the smallest policy
// change that would have let the job pass. Shared by moatctl and the console;
// plain C++ over the protocol's JSON (contract sections 3 and 4).
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/learn/policy_draft.h"
#include "moat/policy/policy.h"

namespace moat::learn {

// What "the same outcome" means: termination cause, exit code (or signal) and
// the set of denied syscalls.
struct Outcome {
    int64_t job = 0;
    std::string cause;
    std::optional<int> exit_code, signal;
    std::set<std::string> denied;  // syscall names ("x32:..." / "i386:..." for foreign ABIs)
    std::set<std::string> let_through;  // learn mode: the members of `denied` whose calls were not enforced
    uint64_t denial_count = 0;
    uint64_t stdout_bytes = 0, stderr_bytes = 0;
    bool passed() const { return cause == "exited" && exit_code == 0 && denied.empty(); }
    // "exited (exit 1), denied: mkdir" / "exited (exit 0), let through (learn): mkdir"
    std::string describe() const;
};
// `job` is a `show` object, `denials` the job's denial events.
Outcome outcome_of(const nlohmann::json& job, const std::vector<nlohmann::json>& denials);

struct Comparison {
    bool reproduced = false;
    std::vector<std::string> differences;  // empty when reproduced
    std::vector<std::string> notes;        // informational (output sizes, stdin cut...)
    nlohmann::json to_json() const;
};
Comparison compare(const Outcome& original, const Outcome& replay, const nlohmann::json& original_job = {});

// One line of a proposal: a syscall (plain or with a narrow argument rule) or
// a whole group.
struct Addition {
    std::string entry;                 // "renameat2", "@network-client", or the rule's summary
    std::vector<std::string> syscalls; // what it lets through
    std::optional<PolicyDraft::Rule> rule;  // a narrow argument rule instead of a plain allow
    bool group = false;
    // Rules of the base policy (indexes into seccomp.rule) this addition
    // removes: narrow allow rules a plain allow makes redundant, or, only with
    // --override-deny-rules, the operator's deny rule it overrides.
    std::vector<size_t> removes_rules;
    // A filesystem addition instead of a syscall: a path for [filesystem]
    // read_only, or a directory for tmpfs (scratch space the job writes in).
    std::string read_only;
    std::string tmpfs;
    std::string risk;                  // what it would let an attacker do ("" when not risky)
    std::string evidence;              // what the job did: "2 calls; first renameat2(/tmp/a) at libc.so.6+0x..."
    nlohmann::json to_json() const;
};

struct Proposal {
    std::string policy_name;
    std::vector<Addition> additions;
    std::vector<std::string> notes;    // what the proposal cannot fix, and why
    bool empty() const { return additions.empty(); }
    nlohmann::json to_json() const;
};

// What else the proposal needs to know about the replay.
struct LearnContext {
    // The original job exited 0 under the policy the replay ran (no other
    // policy was given): it needs no change, whatever was denied on the way.
    bool original_passed = false;
    int64_t original_job = 0;
    // The replay let calls through that an explicit deny rule refuses
    // (--override-deny-rules); only then are such calls proposed.
    bool through_rules = false;
    // The learn replay's `show` object; its sandbox.learn holds what moatd
    // observed besides denials (paths missing in the sandbox, CPUs, clone3).
    nlohmann::json replay_job;
    // The original job's `show` object (null when not known): its
    // sandbox.cpus is compared with the replay's (threads.h).
    nlohmann::json original;
    // The last bytes of the replay's stderr, shown when it failed for a
    // reason no syscall change fixes.
    std::string stderr_tail;
    // Why the replay could not be set up ("" when it started).
    std::string setup_detail;
    // The original job's denial events: a call it was denied that the replay
    // did not reach (timing) is proposed from this evidence.
    std::vector<nlohmann::json> original_denials;
};

// `denials`: the learn replay's denial events. Never proposes a default
// action change or an allow-all; foreign ABIs and clone3 are explained, not
// proposed; an explicit deny rule is reported, not proposed (unless
// ctx.through_rules), and a plain allow never defeats one.
Proposal propose(const policy::Policy& base, const std::vector<nlohmann::json>& denials, const Outcome& learned,
                 const LearnContext& ctx = {});

// The base policy with some additions applied (the console lets the operator
// trim the list), as a complete TOML text. Comments of the original are not kept.
std::string apply(const policy::Policy& base, const std::vector<Addition>& additions);
// Only the changed part, as TOML with one comment line per addition.
std::string fragment(const policy::Policy& base, const std::vector<Addition>& additions);

}  // namespace moat::learn
