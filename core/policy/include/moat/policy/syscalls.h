#pragma once
// Syscall names and numbers come from libseccomp; groups come from
// resources/syscall-groups.toml (embedded at build time).
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moat::policy {

// x86_64 number for a name, or nullopt when libseccomp does not know it.
std::optional<int> syscall_nr(std::string_view name);
// Name for an x86_64 number ("" when unknown). Other arches: "i386", "x32".
std::string syscall_name(int nr, std::string_view arch = "x86_64");
// Every x86_64 syscall name libseccomp knows, sorted.
const std::vector<std::string>& all_syscalls();

struct SyscallGroup {
    std::string name;         // "@basic-io"
    std::string description;
    std::vector<std::string> members;  // syscall names and nested @groups, as written
};
const std::map<std::string, SyscallGroup>& syscall_groups();
// Fully expanded members of a group (nested groups resolved); empty if unknown.
std::vector<std::string> expand_group(std::string_view group);

// The symbolic name a [[seccomp.rule]] may use for an argument value, where the
// argument has a known set of them: ioctl's request (arg1), prctl's option
// (arg0), fcntl's command (arg1), socket's family (arg0). nullopt otherwise.
std::optional<std::string> arg_constant_name(std::string_view syscall, unsigned index, uint64_t value);

// Closest candidate by edit distance, for "did you mean"; "" when nothing is close.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace moat::policy
