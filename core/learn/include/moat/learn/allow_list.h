#pragma once
// Editing a policy's seccomp allow list (names and @groups, as written) one
// syscall or group at a time, for the editor's checklist. Pure functions over
// the list; the group definitions come from moat_policy (syscall_groups()).
#include <set>
#include <string>
#include <vector>

namespace moat::learn {

// Every syscall the entries allow (groups expanded).
std::set<std::string> expandAllowList(const std::vector<std::string>& entries);

// The list with `syscall` allowed (appended when not already allowed; when
// that completes a group the list had been holding as loose members, the group
// is written back in their place) or not
// allowed: its own entries are removed and every @group that brings it in is
// replaced by that group's members (nested groups kept where they do not
// contain it), so everything else stays allowed.
std::vector<std::string> withSyscall(std::vector<std::string> entries, const std::string& syscall, bool allowed);

// The list with a whole group allowed (its entry added, member entries it
// makes redundant removed) or none of its members allowed.
std::vector<std::string> withGroup(std::vector<std::string> entries, const std::string& group, bool allowed);

// One line for a syscall: the description of the smallest group that holds it
// ("" when it is in none).
std::string syscallDescription(const std::string& syscall);

}  // namespace moat::learn
