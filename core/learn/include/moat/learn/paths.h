#pragma once
// The filesystem half of a learn proposal (docs/replay.md, "Learning the
// filesystem view"): read_only entries from the paths moatd found missing in
// the learn replay's view (the job's info, `learn_paths`). Exact paths and
// every symlink hop; a directory only when many of its files were needed and
// it is neither broad nor holds secrets; never a secret.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/learn/replay.h"
#include "moat/policy/policy.h"

namespace moat::learn {

struct PathsProposal {
    std::vector<Addition> additions;
    std::vector<std::string> notes;
    size_t refused = 0;  // paths the job lacked that are never proposed (secrets, broad, moatd's)
};

// `replay_passed`: the learn replay passed without the paths (then they are
// only reported).
PathsProposal propose_paths(const policy::Policy& base, const nlohmann::json& learn_paths, bool replay_passed);

// Why a path must never be proposed ("" when it may be).
std::string secret_reason(const std::string& path);
bool broad_dir(const std::string& path);
bool holds_secret(const std::string& dir);

}  // namespace moat::learn
