#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/common/wire.h"
#include "moat/common/error.h"
#include "moat/common/fd.h"
#include "moat/ipc/remote.h"

namespace moat::ipc {

inline constexpr const char* kDefaultSocket = MOAT_DEFAULT_SOCKET;
// --socket, else $MOAT_SOCKET, else the default.
std::string socket_path(const std::string& flag);

class Client final {
public:
    static Result<Client> connect(const std::string& path);
    // An ssh:// address (remote.h) or a local socket path. ssh's stderr goes
    // to stderr_fd (-1: ours).
    static Result<Client> connect_to(const std::string& target, int stderr_fd = -1);
    // Over SSH: no fd can be passed; a `run` relays its stdio (remote.h).
    bool relayed() const { return m_ssh.pid() > 0; }
    const std::string& peer() const { return m_peer; }
    // A first request that cannot be sent because moatd refused the connection
    // (forbidden, busy) fails with moatd's answer as the message.
    Result<void> send(const nlohmann::json& req, const std::vector<int>& fds = {});
    Result<nlohmann::json> receive();
    // One frame as it came: JSON, or a relay frame (remote.h) on a relayed run.
    Result<std::string> receive_frame();
    // A relay frame (remote.h), written whole.
    Result<void> send_bytes(const std::string& bytes);
    // send + receive; an {"ok":false} answer becomes an Error with its message.
    Result<nlohmann::json> call(const nlohmann::json& req);
    Client() = default;
    Client(Client&&) = default;
    Client& operator=(Client&&) = default;
    ~Client() { m_fd.reset(); }  // ssh sees EOF and ends; then m_ssh reaps it
    int fd() const { return m_fd.get(); }

private:
    UniqueFd m_fd;
    ChildProcess m_ssh;  // reaped after ~Client has closed m_fd (ssh then sees EOF and ends)
    std::string m_peer;
    bool m_sent = false;  // a request went out: refusals at accept come before that
};

}  // namespace moat::ipc
