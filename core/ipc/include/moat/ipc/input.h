#pragma once
// A job's --input, opened by the client with the client's own rights (moatd
// gets the fd, never a path to open): by `moatctl run` on the local host, by
// `moatctl proxy` for a run relayed over SSH.
#include <string>

namespace moat::ipc {

// The last component is never followed (O_NOFOLLOW), or, with no_symlinks, no
// component is (openat2 RESOLVE_NO_SYMLINKS). Only regular files and
// directories. Returns the fd, or -1 with *err set.
int open_input(const std::string& host, bool no_symlinks, std::string* err);

// The name the kernel has for what fd opened: no symlink, no "..". "" when
// it cannot be named.
std::string opened_name(int fd);

}  // namespace moat::ipc
