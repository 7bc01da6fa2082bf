#include "moat/ipc/frame.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::ipc {

Result<void> FrameDecoder::feed(const char* data, size_t n) {
    m_buf.append(data, n);
    if (m_buf.size() >= 4) {
        uint32_t len = (uint32_t(uint8_t(m_buf[0])) << 24) | (uint32_t(uint8_t(m_buf[1])) << 16) |
                       (uint32_t(uint8_t(m_buf[2])) << 8) | uint32_t(uint8_t(m_buf[3]));
        if (len > m_max)
            return fail("frame of " + std::to_string(len) + " bytes exceeds the limit of " + std::to_string(m_max));
    }
    return {};
}

std::optional<std::string> FrameDecoder::next() {
    if (m_buf.size() < 4) return std::nullopt;
    uint32_t len = (uint32_t(uint8_t(m_buf[0])) << 24) | (uint32_t(uint8_t(m_buf[1])) << 16) |
                   (uint32_t(uint8_t(m_buf[2])) << 8) | uint32_t(uint8_t(m_buf[3]));
    if (len > m_max || m_buf.size() < 4 + size_t(len)) return std::nullopt;
    std::string out = m_buf.substr(4, len);
    m_buf.erase(0, 4 + size_t(len));
    return out;
}

std::string encode_frame(const std::string& payload) {
    std::string out;
    out.reserve(payload.size() + 4);
    uint32_t len = uint32_t(payload.size());
    out += char(len >> 24);
    out += char(len >> 16);
    out += char(len >> 8);
    out += char(len);
    out += payload;
    return out;
}

Result<UniqueFd> connect_unix(const std::string& path, bool nonblocking) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) return fail("socket path too long or empty: " + path);
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
    if (!fd) return fail_sys("socket(AF_UNIX)", errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return fail_sys("connect(\"" + path + "\")", errno);
    return fd;
}

ssize_t send_with_fds(int sock, const char* data, size_t len, const int* fds, size_t nfds, int flags) {
    iovec iov{const_cast<char*>(data), len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)];
    if (nfds > kMaxFdsPerFrame) {
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
}

Result<void> send_frame(int fd, const std::string& payload, const std::vector<int>& fds) {
    if (payload.size() > kMaxRequestBytes) return fail("request too large");
    if (fds.size() > kMaxFdsPerFrame) return fail("too many fds for one frame");
    std::string data = encode_frame(payload);
    size_t off = 0;
    while (off < data.size()) {
        // The fds ride on the first byte only.
        ssize_t n = off == 0 ? send_with_fds(fd, data.data(), data.size(), fds.data(), fds.size(), 0)
                             : send_with_fds(fd, data.data() + off, data.size() - off, nullptr, 0, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_sys("sendmsg", errno);
        }
        off += size_t(n);
    }
    return {};
}

Result<std::string> recv_frame(int fd, uint32_t max) {
    auto read_exact = [&](char* p, size_t n) -> Result<void> {
        size_t got = 0;
        while (got < n) {
            ssize_t r = ::read(fd, p + got, n - got);
            if (r < 0) {
                if (errno == EINTR) continue;
                return fail_sys("read from moatd", errno);
            }
            if (r == 0) return fail("moatd closed the connection");
            got += size_t(r);
        }
        return {};
    };
    unsigned char hdr[4];
    if (auto r = read_exact(reinterpret_cast<char*>(hdr), 4); !r) return std::unexpected(r.error());
    uint32_t len = (uint32_t(hdr[0]) << 24) | (uint32_t(hdr[1]) << 16) | (uint32_t(hdr[2]) << 8) | hdr[3];
    if (len > max) return fail("response of " + std::to_string(len) + " bytes exceeds the limit");
    std::string out(len, '\0');
    if (auto r = read_exact(out.data(), len); !r) return std::unexpected(r.error());
    return out;
}

}  // namespace moat::ipc
