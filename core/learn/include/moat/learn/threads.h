#pragma once
// What one learn replay cannot show by itself (issue 14 item 4): the paths a
// thread library takes when it starts and ends threads, and those that depend
// on how many CPUs the job sees. Called by propose() (replay.cpp); plain C++
// over the protocol's JSON, like the rest of moat_learn.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/learn/replay.h"
#include "moat/policy/policy.h"

namespace moat::learn {

struct ThreadPaths {
    std::vector<Addition> additions;  // the thread start/exit set the base lacks
    std::vector<std::string> notes;   // the clone3 note, CPU-count warnings
};

// The thread start/exit calls glibc 2.36 makes (x86_64), whatever one run reached.
const std::vector<std::string>& thread_start_set();

// `base`: the policy the learn replay ran under; `denials`: its denial events;
// `original_job` and `replay_job`: the `show` objects of the recorded job and
// of the learn replay (their `sandbox` carries `cpus` and `clone3`; either may
// be null or lack them, e.g. from an older moatd).
//
// When the replay started threads (clone3 calls with CLONE_THREAD answered
// ENOSYS, or a clone with CLONE_THREAD among the denials), proposes each call
// of thread_start_set() that the base does not allow, that no denial already
// covers (propose() decides those) and that no rule of the base decides (an
// operator's rule is never overridden: a note says so). Adds the clone3 note
// whenever clone3 was answered ENOSYS or denied, and warns when the replay ran
// on 1 CPU or on fewer CPUs than the original.
ThreadPaths thread_paths(const policy::Policy& base, const std::vector<nlohmann::json>& denials,
                         const nlohmann::json& original_job, const nlohmann::json& replay_job);

}  // namespace moat::learn
