#pragma once
// moatd's socket: framed JSON requests, roles from SO_PEERCRED, every request
// validated as if the client were hostile (docs/protocol.md).
#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "moat/common/event_loop.h"
#include "moat/common/fd.h"
#include "moat/ipc/frame.h"
#include "moat/store/artifacts.h"
#include "moat/store/store.h"
#include "moat/supervisor/supervisor.h"

namespace moat::ipc {

enum class Role { None, Viewer, Admin };
const char* role_name(Role r);

struct ServerConfig {
    std::string socket_path;
    // A listening socket handed over by systemd (socket activation, fd 3):
    // served instead of binding socket_path, and never unlinked (the socket
    // unit owns it). -1: bind socket_path.
    int listen_fd = -1;
    std::string admin_group = "moat-admin";
    std::string viewer_group = "moat-viewer";
    // Connections held at once. Refused peers (no role) are answered and closed
    // at accept and never hold one; connections being closed do not count.
    size_t max_clients = 256;
    size_t admin_reserved_clients = 32;  // of max_clients, the last ones only admins may take
    size_t max_clients_per_uid = 32;     // connections one uid other than 0 may hold
    // A connection with no request, answer or job in progress is closed after
    // this long (an `idle` frame, then the close). 0: never.
    int64_t client_idle_timeout_ns = 300'000'000'000;
    int64_t frame_timeout_ns = 30'000'000'000;  // a started frame must complete within this
    size_t max_output_bytes = 64u << 20;        // per client; a client that does not read is dropped
    const store::Artifacts* artifacts = nullptr;  // replay: recorded stdin blobs
    // Absolute path of the state database, told to clients in `hello` so
    // `moatctl db backup` and the console's incident copy find it (they open it
    // themselves, with their own rights). The default is documented anyway.
    std::string database_path;
};

// A socket systemd handed over (ServerConfig::listen_fd) must be what
// moatd.socket makes: a listening Unix stream socket. Error text names fd.
Result<void> check_inherited_listener(int fd);

class Server final {
public:
    static Result<std::unique_ptr<Server>> create(ServerConfig cfg, EventLoop* loop, supervisor::Supervisor* sup,
                                                  store::Store* store);
    ~Server();

    // Exposed for tests: the role a peer would get.
    static Role role_for(uid_t uid, gid_t gid, const std::vector<gid_t>& groups, const ServerConfig& cfg);

private:
    struct Client;
    Server() = default;
    void on_accept();
    // Why a new connection from uid with role may not be served now, if it may not.
    std::optional<std::string> over_limit(uid_t uid, Role role) const;
    void on_readable(uint64_t id);
    void on_writable(uint64_t id);
    void handle(Client& c, const std::string& frame);
    void handle_request(Client& c, const std::string& frame);
    // brief: as a run's brief frame (docs/protocol.md), as is everything
    // answered while a run_brief request is handled.
    void reply(uint64_t id, const nlohmann::json& j, bool brief = false);
    void drop(uint64_t id);
    void query_async(uint64_t client, std::function<nlohmann::json()> work);
    // Like query_async, but `then` runs on the loop with the worker's result
    // (if the client is still there) instead of replying it as is.
    void query_then(uint64_t client, std::function<nlohmann::json()> work,
                    std::function<void(Client&, nlohmann::json&)> then);
    // Running jobs' figures in a job's JSON are the supervisor's (the store's
    // are written at the end): denial_count and resources. Loop only.
    void overlay_live(nlohmann::json& job) const;
    // {denial_count, resources, sample} of a running job (nullopt otherwise).
    std::optional<nlohmann::json> live_figures(int64_t job) const;
    // Pushed updates (op "watch", docs/protocol.md).
    void handle_watch(Client& c, const nlohmann::json& req);
    void on_committed(const store::Committed& news);
    void on_output(int64_t job);
    void pump_watch(Client& c);
    void pump_watch_once(Client& c);
    void handle_run(Client& c, const nlohmann::json& req);
    void handle_replay(Client& c, const nlohmann::json& req);
    // Starts a validated job for a client and answers {"job"} then {"finished"}.
    void start_for(Client& c, supervisor::JobRequest jr, const store::PolicyRecord& pol);
    void tick();
    // parse_policy + lint, or the diagnostics that refuse it. Clients send the
    // same policy text job after job, so a parsed policy is kept for the next
    // request with the same text and source name (parsing is pure: the text
    // and name are all it reads). Bounded: kPolicyCacheEntries policies of at
    // most kPolicyCacheMaxText bytes of text each; the oldest goes first.
    std::expected<std::shared_ptr<const policy::Policy>, std::string> validated_policy(const std::string& toml,
                                                                                       const std::string& source);
    static constexpr size_t kPolicyCacheEntries = 32;
    static constexpr size_t kPolicyCacheMaxText = 64 * 1024;
    std::map<std::string, std::shared_ptr<const policy::Policy>> m_policy_cache;  // sha256(len:source text)
    std::deque<std::string> m_policy_cache_order;                                // keys, oldest first

    ServerConfig m_cfg;
    EventLoop* m_loop = nullptr;
    supervisor::Supervisor* m_sup = nullptr;
    store::Store* m_store = nullptr;
    UniqueFd m_listen;
    bool m_owns_path = true;  // we bound socket_path (unlinked at the end), not systemd
    std::map<uint64_t, std::unique_ptr<Client>> m_clients;
    uint64_t m_next_client = 1;
    EventLoop::TimerId m_tick = 0;
    // The store's commit hook runs on its writer thread; it reaches the loop
    // through this, which outlives the Server (cleared in ~Server).
    struct Hub {
        std::mutex mu;
        Server* server = nullptr;
    };
    std::shared_ptr<Hub> m_hub = std::make_shared<Hub>();

    // Reads of the store (show, jobs, events, policies, policy) happen on this worker so
    // a large query never stalls the loop that answers the jobs' syscalls. The
    // short writes of `run` and `policy_put` (put_policy, create_job) stay on the loop.
    std::thread m_worker;
    std::mutex m_mu;
    std::condition_variable m_cv;
    std::deque<std::function<void()>> m_work;
    bool m_quit = false;
};

}  // namespace moat::ipc
