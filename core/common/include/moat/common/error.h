#pragma once
// The error contract (see docs/errors.md): fallible core functions return
// moat::Result<T>. An Error names the operation and its arguments plus the
// errno where one exists, e.g. `open("/etc/x", O_RDONLY): EACCES (Permission denied)`.
// Exceptions never cross a module boundary.
#include <expected>
#include <string>
#include <utility>

namespace moat {

struct Error {
    std::string message;   // full human text, operation first
    int sys_errno = 0;     // errno when the failure came from the kernel, else 0

    // "op: ENAME (strerror)"
    static Error sys(std::string op, int err);
    static Error msg(std::string text) { return Error{std::move(text), 0}; }
    // Prefix context: Error("x").wrap("loading policy") -> "loading policy: x"
    Error wrap(const std::string& context) const { return Error{context + ": " + message, sys_errno}; }
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string text) { return std::unexpected(Error::msg(std::move(text))); }
inline std::unexpected<Error> fail_sys(std::string op, int err) { return std::unexpected(Error::sys(std::move(op), err)); }

// Symbolic errno name ("EPERM") or "" when unknown; and the reverse.
const char* errno_name(int err);
int errno_from_name(std::string_view name);  // -1 when unknown

}  // namespace moat
