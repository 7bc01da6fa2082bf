#pragma once
// A path resolved the way the kernel resolves it, component by component with
// lstat/readlink in the caller's own view (and with the caller's rights),
// remembering every symlink followed. Used to explain a failed exec inside the
// sandbox and, in learn mode, to find which host paths a job's path needs.
#include <string>
#include <vector>

namespace moat::sandbox {

struct PathWalk {
    struct Link {
        std::string path;    // the symlink (its parent directories are real, none is a link)
        std::string target;  // what it says
    };
    std::vector<Link> links;  // in the order followed
    std::string stuck;        // the path that could not be looked up ("" when all resolved)
    int err = 0;              // why (ENOENT, ENOTDIR, ELOOP, EACCES...)
    std::string resolved;     // the final path when all resolved (no symlink in it)
    bool is_dir = false;      // the final path is a directory
};

// `nofollow`: a final symlink is not followed (lstat, readlink, O_NOFOLLOW).
PathWalk walk_path(const std::string& path, bool nofollow = false);

// The interpreter the kernel loads first for the file at `fd`: the "#!"
// line's program or the ELF's PT_INTERP ("" when neither).
std::string interpreter_of(int fd);

}  // namespace moat::sandbox
