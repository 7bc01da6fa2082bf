#include "fsutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "moat/common/fd.h"
#include "moat/common/sha256.h"
#include "moat/common/timeutil.h"

namespace moat::vm::detail {

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + path + "\", O_RDONLY)", errno);
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_sys("read(\"" + path + "\")", errno);
        if (n == 0) break;
        out.append(buf, size_t(n));
        if (out.size() > max_bytes) return fail(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    return out;
}

Result<std::string> file_sha256(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + path + "\", O_RDONLY)", errno);
    Sha256 h;
    static thread_local char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_sys("read(\"" + path + "\")", errno);
        if (n == 0) break;
        h.update(std::string_view(buf, size_t(n)));
    }
    return h.hex();
}

Result<void> make_dirs(const std::string& path, mode_t mode) {
    if (path.empty()) return {};
    for (size_t pos = 1;; ++pos) {
        pos = path.find('/', pos);
        std::string part = path.substr(0, pos);
        if (::mkdir(part.c_str(), mode) < 0 && errno != EEXIST) return fail_sys("mkdir(\"" + part + "\")", errno);
        if (pos == std::string::npos) break;
    }
    return {};
}

std::string temp_name_for(const std::string& final_path) {
    static std::atomic<unsigned> counter{0};
    return final_path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++) + "." +
           std::to_string(now_monotonic_ns() % 1000000);
}

uint64_t allocated_bytes(const struct stat& st) { return uint64_t(st.st_blocks) * 512; }

}  // namespace moat::vm::detail
