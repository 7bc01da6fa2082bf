#pragma once
// Landlock: the seccomp tier's filesystem (and, from ABI 4, TCP; from ABI 6,
// signal and abstract-socket) confinement, built in the privileged parent as a
// ruleset fd; the child only calls landlock_restrict_self().
#include <string>
#include <vector>

#include "moat/common/error.h"
#include "moat/common/fd.h"
#include "moat/policy/policy.h"

namespace moat::sandbox {

// The kernel's Landlock ABI version, 0 when Landlock is unavailable.
int landlock_abi();

struct LandlockRuleset {
    UniqueFd fd;         // -1 when nothing is to be applied
    int abi = 0;         // ABI the ruleset was built for (recorded with the job)
    bool net_restricted = false;     // TCP bind/connect denied (ABI >= 4, network = none/loopback)
    bool scoped = false;             // signals and abstract unix sockets scoped to the job (ABI >= 6)
    std::vector<std::string> notes;  // e.g. "read_only path /lib64 does not exist; skipped"
};

struct ExtraPath {
    std::string path;
    bool writable = false;
    // When >= 0: the rule is put on this open file (an --input the client
    // opened with its own rights) and `path` only names it in messages.
    int fd = -1;
};

// Builds the ruleset for `fs` plus extra read-only paths (--input files).
// LandlockMode::Required fails when the kernel has no Landlock; BestEffort
// returns an empty ruleset with a note; Off returns an empty ruleset.
Result<LandlockRuleset> build_landlock(const policy::Filesystem& fs, policy::NetworkMode net,
                                       const std::vector<ExtraPath>& extra);

}  // namespace moat::sandbox
