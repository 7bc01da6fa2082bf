#pragma once
// Module-private helpers shared by the policy sources.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat::policy::detail {

// resources/syscall-groups.toml, embedded at build time (generated source).
extern const std::string_view kSyscallGroupsToml;

// Symbolic constants accepted as [[seccomp.rule]] argument values.
struct NamedConstant {
    std::string_view name;
    uint64_t value;
};
const std::vector<NamedConstant>& arg_constants();
std::vector<std::string> arg_constant_names();
// Resolves "AF_UNIX", "SOCK_STREAM|SOCK_CLOEXEC", "0x80000", "42".
// On failure returns nullopt and explains why in *why.
std::optional<uint64_t> resolve_arg_value(std::string_view text, std::string* why);

// Every errno name glibc knows ("EPERM", ...), for "did you mean".
const std::vector<std::string>& errno_names();

// Escapes a string for a TOML basic string (without the quotes).
std::string toml_escape(std::string_view s);

}  // namespace moat::policy::detail
