#pragma once
#include <fcntl.h>
#include <cerrno>
#include <unistd.h>
#include <utility>

namespace moat {

// Owns one file descriptor; closes it exactly once.
class UniqueFd final {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : m_fd(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : m_fd(std::exchange(o.m_fd, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.m_fd, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return m_fd; }
    explicit operator bool() const noexcept { return m_fd >= 0; }
    int release() noexcept { return std::exchange(m_fd, -1); }
    void reset(int fd = -1) noexcept {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = fd;
    }

private:
    int m_fd = -1;
};

// Opens /dev/null on each of fds 0-2 that is closed, first thing in main().
// Otherwise the next socket or file the program opens takes that number, and
// whatever is written to "stdout" or "stderr" (a job's relayed output, a log
// line) lands in it: a job started by `moatctl run >&-` could write requests
// into moatctl's own connection to moatd.
inline void ensure_stdio_open() {
    for (int fd = 0; fd < 3; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            const int n = ::open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) ::close(n);  // cannot happen: the lowest free number is fd
        }
}

}  // namespace moat
