#pragma once
// Helpers shared by moat_learn's proposal code (replay.cpp, threads.cpp).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moat::learn::detail {

// "seccomp.rule[0], seccomp.rule[3]"
std::string rule_list(const std::vector<size_t>& indexes);

// Argument `index` of a denial event's "args" (0 when absent or not a number).
uint64_t arg_value(const nlohmann::json& denial, size_t index);

}  // namespace moat::learn::detail
