#include "moat/common/paths.h"

#include <climits>
#include <unistd.h>

namespace moat {

std::string exe_dir() {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return {};
    std::string dir(self, size_t(n));
    return dir.substr(0, dir.rfind('/'));
}

}  // namespace moat
