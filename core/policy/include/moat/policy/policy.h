#pragma once
// The policy model: plain values, every field documented in docs/policy.md.
// A Policy is produced only by parse_policy() (parse + validate); every field
// holds its effective value (defaults filled in), so consumers never guess.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace moat::policy {

enum class Tier { Seccomp, Container, Vm };
const char* tier_name(Tier t);                   // "seccomp" | "container" | "vm"
std::optional<Tier> tier_from_name(std::string_view s);

// Where a value came from in the TOML file (1-based; 0 = defaulted).
struct SourcePos {
    int line = 0;
    int column = 0;
};

// What the filter (or the supervisor on its behalf) does with a syscall.
struct Action {
    enum class Kind { Allow, KillProcess, KillThread, Errno, Trap, Log };
    Kind kind = Kind::Errno;
    int errno_value = 1;  // EPERM; meaningful for Kind::Errno only
    // "allow", "kill-process", "kill-thread", "errno:EPERM", "trap", "log"
    std::string str() const;
    bool operator==(const Action&) const = default;
};
// Parses the spellings above; errno names come from glibc (strerrorname_np).
std::optional<Action> parse_action(std::string_view s, std::string* why = nullptr);

struct ArgCondition {
    enum class Op { Eq, Ne, Lt, Le, Gt, Ge, MaskedEq };
    unsigned index = 0;    // 0..5
    Op op = Op::Eq;
    uint64_t value = 0;    // resolved numeric value
    uint64_t mask = 0;     // for MaskedEq: (arg & mask) == value
    std::string value_text;  // as written ("AF_UNIX", "0x80000", "3")
    bool operator==(const ArgCondition&) const = default;
};
const char* op_name(ArgCondition::Op op);  // "eq", "ne", "lt", "le", "gt", "ge", "masked_eq"

struct SeccompRule {
    std::string syscall;  // canonical name, resolved through libseccomp
    int nr = -1;          // x86_64 number
    Action action{Action::Kind::Allow};
    std::vector<ArgCondition> args;  // all must hold (AND)
    SourcePos pos;
    bool operator==(const SeccompRule& o) const {
        return syscall == o.syscall && action == o.action && args == o.args;
    }
};

struct Limits {
    uint64_t wall_time_ns;   // supervisor-enforced, whole job
    uint64_t cpu_time_ns;    // supervisor-enforced from the job cgroup's CPU usage
    uint64_t memory_bytes;   // cgroup memory limit
    uint64_t pids;           // cgroup pids limit
    uint64_t file_size_bytes;  // RLIMIT_FSIZE
    uint64_t open_files;     // RLIMIT_NOFILE
    uint64_t stack_bytes;    // RLIMIT_STACK
    uint64_t core_bytes;     // RLIMIT_CORE
};
Limits default_limits();

enum class LandlockMode { Required, BestEffort, Off };
const char* landlock_mode_name(LandlockMode m);

struct Filesystem {
    std::vector<std::string> read_only;   // absolute, normalised
    std::vector<std::string> read_write;
    std::vector<std::string> tmpfs;
    uint64_t tmpfs_size_bytes;            // per tmpfs mount (container/vm tiers)
    LandlockMode landlock = LandlockMode::Required;  // seccomp tier enforcement
};

// A read_only entry at or below a read_write entry ("/srv/data/bin" under
// "/srv/data"). Landlock, the seccomp tier's file confinement, grants the
// union of the rules on every directory along a path, so such an entry is
// writable there: the seccomp tier must refuse the policy (lint error, and
// moatd at job start, where a --tier override is known). The container tier's
// bind mounts keep it read-only. Paths are compared lexically, component by
// component, after collapsing "//", "/./" and a trailing "/"; callers that
// care about symlinks compare resolved paths too (moatd does).
struct NestedReadOnly {
    size_t read_only_index = 0;   // into the read_only list given
    size_t read_write_index = 0;  // into the read_write list given
    std::string read_only;
    std::string read_write;
};
std::vector<NestedReadOnly> read_only_inside_read_write(const std::vector<std::string>& read_only,
                                                        const std::vector<std::string>& read_write);
// "in the seccomp tier X in filesystem.read_only is inside Y in filesystem.read_write: ..."
// with the reason and the two ways out; one wording for lint and moatd.
std::string nested_read_only_message(const NestedReadOnly& n);

// Engine: the container joins the network namespace its client passes
// (moat-runtime: the one the container engine made); container tier only.
enum class NetworkMode { None, Loopback, Host, Engine };
const char* network_mode_name(NetworkMode m);

struct Environment {
    std::vector<std::string> pass;              // names copied from the client's environment
    std::map<std::string, std::string> set;     // fixed values (win over pass)
};

struct Seccomp {
    Action default_action;                   // for syscalls the policy does not allow
    std::vector<std::string> allow_entries;  // as written: names and @groups
    // Expanded, canonical syscall names allowed without conditions. A syscall
    // that has any [[seccomp.rule]] is NOT in this set: its rules decide.
    std::set<std::string> allowed;
    std::vector<SeccompRule> rules;          // [[seccomp.rule]]
};

struct Monitor {
    uint64_t sample_interval_ns;  // resource sampling period
    // The job's event budget (docs/policy.md [monitor]): denial rows (and exec
    // events) stored one by one; past it denials are only counted, per
    // (syscall, action, rule), in aggregate rows.
    uint64_t max_events = 10000;
    uint64_t max_event_bytes = 16ull << 20;  // approximate size of those rows
};

struct Policy {
    std::string name;
    std::string description;
    Tier tier = Tier::Seccomp;
    std::string hostname;  // container/vm tiers; "" = "job-<id>"
    Limits limits;
    Filesystem filesystem;
    NetworkMode network = NetworkMode::None;
    Environment environment;
    Seccomp seccomp;
    Monitor monitor;

    // Provenance.
    std::string source_name;  // file name used in diagnostics
    std::string source_text;  // exact TOML text
    std::string sha256;       // of source_text; the policy version's identity
    std::map<std::string, SourcePos> key_pos;  // "limits.memory" -> where it was written
};

}  // namespace moat::policy
