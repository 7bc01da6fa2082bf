#pragma once
#include <string>
#include <string_view>

namespace moat {

// The directory of this process's executable (/proc/self/exe without its
// last component); "" if it cannot be read. Where moatd and moatctl look for
// their helpers first (the build tree, or an install's bin/ or sbin/).
std::string exe_dir();

// `path` is `dir` or lies below it, component-wise ("/srv/database" is not
// under "/srv/data"; everything is under "/"). Both are normalised absolute
// paths (no "//", "/./" or trailing "/").
bool path_under(std::string_view path, std::string_view dir);

}  // namespace moat
