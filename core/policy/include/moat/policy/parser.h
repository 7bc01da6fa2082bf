#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moat/common/wire.h"
#include "moat/policy/diagnostic.h"
#include "moat/policy/policy.h"

namespace moat::policy {

struct ParseResult {
    std::optional<Policy> policy;          // set only when there is no error diagnostic
    std::vector<Diagnostic> diagnostics;   // errors and warnings, in file order
};

// Parses and validates. Bounded: texts above kMaxPolicyBytes are rejected.
// Unknown keys and misspelt syscall names are errors with a "did you mean".
inline constexpr size_t kMaxPolicyBytes = MOAT_MAX_POLICY_BYTES;
ParseResult parse_policy(std::string_view text, std::string_view source_name);

// A TOML basic string, quoted and escaped (what explain() writes; the
// console's editor uses it too).
std::string toml_quote(std::string_view s);

// The effective policy as TOML with every default written out and commented.
std::string explain(const Policy& p);

}  // namespace moat::policy
