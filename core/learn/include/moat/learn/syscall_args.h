#pragma once
// Syscall arguments as operators read them, built at display time from the raw
// register values of a denial: open flags ("O_RDONLY|O_CLOEXEC"), socket
// families and types ("AF_INET", "SOCK_STREAM|SOCK_CLOEXEC"), modes in octal
// ("0777"), AT_FDCWD, signal names, mmap protections, clone namespace flags.
// The numbers come from the system headers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moat::learn {

// What argument `index` of `syscall` means with this value; "" when the
// console has no decoder for it.
std::string argMeaning(const std::string& syscall, unsigned index, uint64_t value, const std::vector<uint64_t>& all = {});

// The syscall's argument names in order (mkdir: pathname, mode), as the
// kernel declares them; nullopt when unknown (then all six registers may matter).
std::optional<std::vector<std::string>> argNames(const std::string& syscall);

// A symbolic name for a single value where one exists ("AF_UNIX" for socket's
// arg 0 = 1), for writing rules the way people read them.
std::optional<std::string> argSymbol(const std::string& syscall, unsigned index, uint64_t value);

// "EPERM (1): Operation not permitted" for "errno:EPERM"; "" for other actions.
std::string errnoText(const std::string& action);

}  // namespace moat::learn
