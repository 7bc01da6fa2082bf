#include "moat/ipc/input.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace moat::ipc {

int open_input(const std::string& host, bool no_symlinks, std::string* err) {
    const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd;
    if (no_symlinks) {
        open_how how{};
        how.flags = flags;
        how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        fd = int(syscall(SYS_openat2, AT_FDCWD, host.c_str(), &how, sizeof how));
    } else {
        fd = ::open(host.c_str(), flags);
    }
    if (fd < 0) {
        *err = errno == ELOOP ? std::string("a symlink") + (no_symlinks ? " on the path" : "") +
                                    ": inputs are opened without following symlinks; name the file itself"
                              : std::string(strerror(errno));
        return -1;
    }
    struct stat st{};
    if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
        ::close(fd);
        *err = "only regular files and directories can be inputs";
        return -1;
    }
    return fd;
}

std::string opened_name(int fd) {
    char real[PATH_MAX];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), real, sizeof real - 1);
    if (n <= 0 || real[0] != '/') return {};
    return std::string(real, size_t(n));
}

}  // namespace moat::ipc
