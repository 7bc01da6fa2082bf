#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::ipc {

inline constexpr const char* kDefaultSocket = "/run/moat/moatd.sock";
// --socket, else $MOAT_SOCKET, else the default.
std::string socket_path(const std::string& flag);

class Client final {
public:
    static Result<Client> connect(const std::string& path);
    // A first request that cannot be sent because moatd refused the connection
    // (forbidden, busy) fails with moatd's answer as the message.
    Result<void> send(const nlohmann::json& req, const std::vector<int>& fds = {});
    Result<nlohmann::json> receive();
    // send + receive; an {"ok":false} answer becomes an Error with its message.
    Result<nlohmann::json> call(const nlohmann::json& req);
    int fd() const { return m_fd.get(); }

private:
    UniqueFd m_fd;
    bool m_sent = false;  // a request went out: refusals at accept come before that
};

}  // namespace moat::ipc
