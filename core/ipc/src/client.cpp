#include "moat/ipc/client.h"

#include <sys/socket.h>
#include <sys/un.h>

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
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return fail("socket path too long: " + path);
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    Client c;
    c.m_fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c.m_fd) return fail_sys("socket(AF_UNIX)", errno);
    if (::connect(c.m_fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return fail_sys("connect(\"" + path + "\") (is moatd running? set --socket or MOAT_SOCKET)", errno);
    return c;
}

Result<void> Client::send(const nlohmann::json& req, const std::vector<int>& fds) {
    std::string payload;
    try {
        payload = req.dump();
    } catch (const nlohmann::json::exception& e) {
        return fail(std::string("cannot encode the request: ") + e.what() + " (arguments must be valid UTF-8)");
    }
    return send_frame(m_fd.get(), payload, fds);
}

Result<nlohmann::json> Client::receive() {
    auto f = recv_frame(m_fd.get());
    if (!f) return std::unexpected(f.error());
    auto j = nlohmann::json::parse(*f, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail("moatd sent a malformed answer");
    return j;
}

Result<nlohmann::json> Client::call(const nlohmann::json& req) {
    if (auto r = send(req); !r) {
        // moatd may have refused us before reading (not allowed, busy): its
        // answer is still in our receive queue and says why.
        if (auto j = receive(); j && !j->value("ok", true)) return fail(j->value("error", r.error().message));
        return std::unexpected(r.error());
    }
    auto j = receive();
    if (!j) return j;
    if (!j->value("ok", false)) return fail(j->value("error", std::string("moatd refused the request")));
    return j;
}

}  // namespace moat::ipc
