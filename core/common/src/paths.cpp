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

bool path_under(std::string_view path, std::string_view dir) {
    if (dir == "/") return true;
    return path == dir || (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

bool normalised_abs(std::string_view p) {
    if (p.empty() || p[0] != '/' || p.size() > 4096 || p.find('\0') != std::string_view::npos) return false;
    if (p == "/") return true;
    size_t i = 1;
    while (i <= p.size()) {
        size_t j = p.find('/', i);
        if (j == std::string_view::npos) j = p.size();
        const std::string_view c = p.substr(i, j - i);
        if (c.empty() || c == "." || c == "..") return false;
        i = j + 1;
    }
    return true;
}

std::optional<std::string> search_path(const std::string& name, const std::vector<std::string>& env,
                                       const std::string& dflt, const std::function<bool(const std::string&)>& usable) {
    std::string path = dflt;
    for (const auto& kv : env)
        if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        const std::string dir = path.substr(start, end - start);
        start = end + 1;
        if (dir.empty() || dir[0] != '/') continue;
        std::string cand = dir + "/" + name;
        if (usable(cand)) return cand;
    }
    return std::nullopt;
}

}  // namespace moat
