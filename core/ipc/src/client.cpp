#include "moat/ipc/client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "moat/ipc/frame.h"

namespace moat::ipc {

std::string socket_path(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* e = getenv("MOAT_SOCKET"); e && *e) return e;
    return kDefaultSocket;
}

Result<Client> Client::connect(const std::string& path) {
    auto fd = connect_unix(path);
    if (!fd) return std::unexpected(moat::Error{fd.error().message + " (is moatd running? set --socket or MOAT_SOCKET)", fd.error().sys_errno});
    Client c;
    c.m_fd = std::move(*fd);
    return c;
}

Result<Client> Client::connect_to(const std::string& target, int stderr_fd) {
    if (!is_ssh_uri(target)) return connect(target);
    auto t = parse_ssh_uri(target);
    if (!t) return std::unexpected(t.error());
    auto s = spawn_ssh(*t, stderr_fd);
    if (!s) return std::unexpected(s.error());
    Client c;
    c.m_fd = std::move(s->fd);
    c.m_ssh = std::move(s->child);
    c.m_peer = t->display();
    return c;
}

Result<void> Client::send_bytes(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::send(m_fd.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_sys("send", errno);
        }
        off += size_t(n);
    }
    return {};
}

Result<std::string> Client::receive_frame() {
    auto f = recv_frame(m_fd.get());
    if (!f && relayed()) return std::unexpected(f.error().wrap("over ssh to " + m_peer));
    return f;
}

Result<void> Client::send(const nlohmann::json& req, const std::vector<int>& fds) {
    std::string payload;
    try {
        payload = req.dump();
    } catch (const nlohmann::json::exception& e) {
        return fail(std::string("cannot encode the request: ") + e.what() + " (arguments must be valid UTF-8)");
    }
    auto sent = send_frame(m_fd.get(), payload, fds);
    if (sent) {
        m_sent = true;
    } else if (!m_sent) {
        // moatd answers a peer it will not serve (no role, busy) at accept and
        // closes at once, so our first send may fail (EPIPE). Its answer is
        // already in our receive queue (it was written before the close) and
        // says why. Only on the first request: later, a queued frame is the
        // answer to an earlier request and belongs to the caller.
        pollfd p{m_fd.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
            if (auto j = receive(); j && !j->value("ok", true))
                return fail(j->value("error", sent.error().message));
        }
    }
    return sent;
}

Result<nlohmann::json> Client::receive() {
    auto f = receive_frame();
    if (!f) return std::unexpected(f.error());
    auto j = nlohmann::json::parse(*f, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail("moatd sent a malformed answer");
    return j;
}

Result<nlohmann::json> Client::call(const nlohmann::json& req) {
    if (auto r = send(req); !r) return std::unexpected(r.error());  // a refusal's text, when there was one
    auto j = receive();
    if (!j) return j;
    if (!j->value("ok", false)) return fail(j->value("error", std::string("moatd refused the request")));
    return j;
}

}  // namespace moat::ipc
