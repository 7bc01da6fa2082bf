#pragma once
// Policy -> seccomp BPF. Compiled once per policy version in the privileged
// parent (libseccomp never runs in the job); the child only installs it.
#include <linux/filter.h>
#include <linux/sched.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "moat/common/error.h"
#include "moat/policy/policy.h"

namespace moat::compiler {

// Namespace-creating clone() flags the filter refuses even when clone is allowed.
inline constexpr uint64_t kCloneNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                                 CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME;

// How the supervisor answers a notified syscall. The filter itself only knows
// three outcomes: allow, ENOSYS (clone3), and "ask the supervisor" (everything
// else), so every denial is seen, decoded and recorded before it is answered.
struct Verdict {
    policy::Action action;
    std::string rule;  // "seccomp.rule[2]" or "seccomp.default_action" or "abi"
};

// Learn mode's filesystem half (docs/replay.md, "Filesystem"): these allowed
// syscalls are sent to the supervisor too, which looks their path up in the
// job's view and lets them run (decide() answers allow, rule "watch").
struct CompileOptions {
    std::vector<std::string> watch;  // syscall names
};

class CompiledFilter final {
public:
    const std::vector<sock_filter>& program() const { return m_program; }
    const std::string& policy_sha256() const { return m_sha; }
    // The action for a syscall that reached the supervisor. `args` are the
    // values the kernel captured (race-free; pointer targets are never judged).
    Verdict decide(int nr, uint32_t arch, const uint64_t args[6]) const;
    // The syscall is watched (CompileOptions::watch) and reaches the supervisor
    // even when the policy allows it.
    bool watched(int nr) const { return m_watched.count(nr) > 0; }

private:
    friend Result<std::shared_ptr<const CompiledFilter>> compile(const policy::Policy&, const CompileOptions&);
    std::vector<sock_filter> m_program;
    std::string m_sha;
    policy::Action m_default;
    std::map<int, std::vector<std::pair<size_t, policy::SeccompRule>>> m_rules;  // non-allow rules by nr
    // Watched syscalls: their allow rules (checked first, as the filter would)
    // and whether the policy allows them outright.
    std::map<int, std::vector<std::pair<size_t, policy::SeccompRule>>> m_watched_allow_rules;
    std::map<int, bool> m_watched;
};

Result<std::shared_ptr<const CompiledFilter>> compile(const policy::Policy& p, const CompileOptions& opt = {});

// Thread-safe cache keyed by policy sha256 (and the watch list): libseccomp
// runs once per version.
class FilterCache final {
public:
    Result<std::shared_ptr<const CompiledFilter>> get(const policy::Policy& p, const CompileOptions& opt = {});
    size_t size() const;

private:
    mutable std::mutex m_mu;
    std::map<std::string, std::shared_ptr<const CompiledFilter>> m_cache;
};

}  // namespace moat::compiler
