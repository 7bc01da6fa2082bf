#pragma once
#include <string>

namespace moat {

// The directory of this process's executable (/proc/self/exe without its
// last component); "" if it cannot be read. Where moatd and moatctl look for
// their helpers first (the build tree, or an install's bin/ or sbin/).
std::string exe_dir();

}  // namespace moat
