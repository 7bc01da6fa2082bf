#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moat {

// The directory of this process's executable (/proc/self/exe without its
// last component); "" if it cannot be read. Where moatd and moatctl look for
// their helpers first (the build tree, or an install's bin/ or sbin/).
std::string exe_dir();

// `path` is `dir` or lies below it, component-wise ("/srv/database" is not
// under "/srv/data"; everything is under "/"). Both are normalised absolute
// paths (no "//", "/./" or trailing "/").
bool path_under(std::string_view path, std::string_view dir);

// A normalised absolute path: "/", or "/a/b" with no empty, "." or ".."
// component, no trailing "/", no NUL, at most 4096 bytes.
bool normalised_abs(std::string_view p);

// execvp's search for a program `name` without '/': the first absolute
// entry of PATH (from `env`'s "PATH=...", else `dflt`) where dir/name passes
// `usable`. Used by moatd (on the host) and moat-init (inside a client's root).
std::optional<std::string> search_path(const std::string& name, const std::vector<std::string>& env,
                                       const std::string& dflt, const std::function<bool(const std::string&)>& usable);

}  // namespace moat
