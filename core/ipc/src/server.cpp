#include "moat/ipc/server.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <expected>
#include <set>

#include "moat/common/sha256.h"
#include "moat/common/log.h"
#include "moat/common/paths.h"
#include "moat/common/signals.h"
#include "moat/common/base64.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/ipc/json.h"
#include "moat/ipc/run_end.h"
#include "moat/store/backup.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"

namespace moat::ipc {

using nlohmann::json;

const char* role_name(Role r) {
    switch (r) {
        case Role::Admin: return "admin";
        case Role::Viewer: return "viewer";
        default: return "none";
    }
}

// One watching connection's subscription (op "watch"). Nothing is buffered
// per change beyond a bounded set of job ids: events are read from the store
// after a cursor, so a slow client falls behind without costing moatd memory
// and without losing anything; too many changed jobs fold into a snapshot.
struct WatchState {
    bool jobs = false, policies = false;
    int64_t job = 0;                  // events of this job (0: none)
    std::optional<store::EventKind> kind;
    int64_t cursor = 0;               // the last event id pushed
    bool ended = false;               // "end" was pushed
    std::set<int64_t> changed_jobs;   // rows to re-read from the store; at most kMaxWatchedChanges
    std::set<int64_t> live_jobs;      // jobs whose events were stored: their live figures (no store read)
    bool jobs_snapshot = false;       // push the whole (recent) list instead
    uint64_t missed = 0;              // changes folded into that snapshot
    bool policies_dirty = false, events_dirty = false;
    bool busy = false;                // a query for this watcher is on the worker
    bool output = false;              // also the job's stdout/stderr as relayed
    bool output_dirty = false;
    uint64_t out_off[2] = {0, 0};     // the next stream offset to push
    bool in_pump = false, repump = false;  // pump_watch is re-entered through reply() -> on_writable()
    bool stored = false;              // a hint whenever any job's events were stored
    bool stored_dirty = false;
};

struct Server::Client {
    uint64_t id = 0;
    std::unique_ptr<WatchState> watch;  // set by "watch": the connection only receives pushes
    UniqueFd fd;
    Role role = Role::None;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;    // SO_PEERGROUPS: inputs named by path are opened with these
    pid_t pid = 0;
    FrameDecoder decoder{kMaxRequestBytes};
    std::string out;
    std::deque<UniqueFd> fds;     // received with SCM_RIGHTS, consumed by `run`
    size_t fds_refused = 0;       // received beyond kMaxFdsPerFrame and closed; the next request is refused
    int64_t last_active = 0;      // monotonic ns of the last request, answer or output progress
    int pending = 0;              // requests on the worker, not answered yet
    int64_t frame_started = 0;    // monotonic ns when the current partial frame began
    int64_t attached_job = 0;     // `run` in progress: the job is stopped if we go away
    bool closing = false;         // close once `out` is flushed
    bool half_closed = false;     // answer sent, SHUT_WR done, draining input
    int64_t closing_since = 0;
    bool writable_armed = false;
    // Set while a `run_brief` request is handled (docs/protocol.md, "Brief
    // runs"): what is answered meanwhile goes as a brief frame. The job's
    // final answer carries its own flag (start_for).
    bool brief_now = false;
};

namespace {

// A job in a list: what a learn replay found on the host (sandbox.learn_paths,
// up to about 256 KiB) is left to `show`, so a few learn jobs cannot swell
// every list and watch snapshot.
json listed(json j) {
    if (j.contains("sandbox") && j["sandbox"].is_object() && j["sandbox"].contains("learn_paths")) {
        const json& lp = j["sandbox"]["learn_paths"];
        const size_t n = lp.is_object() && lp.contains("paths") && lp["paths"].is_array() ? lp["paths"].size() : 0;
        j["sandbox"]["learn_paths"] = {{"paths", n}, {"omitted", "moatctl show JOB --json has them"}};
    }
    return j;
}

std::optional<gid_t> group_gid(const std::string& name) {
    std::vector<char> buf(16384);
    group g{};
    group* res = nullptr;
    if (getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
    return res->gr_gid;
}

json error_reply(const std::string& code, const std::string& msg) {
    return {{"ok", false}, {"code", code}, {"error", msg}};
}

// The most fds one sendmsg can carry (the kernel's SCM_MAX_FD). moatd's receive
// buffer has room for them all, so the kernel never truncates the control data.
constexpr size_t kScmMaxFd = 253;

// Watch limits (docs/protocol.md): changed job ids remembered per watcher
// before they fold into a snapshot; bytes queued to a watcher above which no
// further push is prepared (the rest waits in the store); events per push.
constexpr size_t kMaxWatchedChanges = 256;
constexpr size_t kPushHighWater = 256u << 10;
constexpr int kEventsPerPush = 500;
constexpr int kJobsSnapshot = 100;
constexpr size_t kOutputPerPush = 32u << 10;  // bytes of one stream per output push

// Answers a connection that will not be served and closes it at once: it never
// enters the loop, so it holds no slot, whatever the peer does next. The send is
// non-blocking and the frame small: a fresh socket's buffer always takes it.
// Closing right away does not lose the answer. The peer has sent at most its
// first request; on a Unix stream socket, closing with unread input makes the
// peer's reads fail with ECONNRESET only after it has read what we queued
// (unix_stream_read_generic returns queued data before the socket error;
// unlike TCP, nothing is discarded, and SO_LINGER does not apply). A peer
// that writes after the close gets EPIPE and can still read the answer
// (ipc::Client::send does).
void refuse_at_accept(int fd, const json& answer) {
    std::string msg = encode_frame(answer.dump());
    (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Bounded accessors: every field a client sends is checked for type and size.
std::optional<std::string> get_string(const json& j, const char* key, size_t max) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > max) return std::nullopt;
    return s;
}

std::optional<std::vector<std::string>> get_strings(const json& j, const char* key, size_t max_items, size_t max_len) {
    auto it = j.find(key);
    if (it == j.end()) return std::vector<std::string>{};
    if (!it->is_array() || it->size() > max_items) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& e : *it) {
        if (!e.is_string() || e.get_ref<const std::string&>().size() > max_len) return std::nullopt;
        const auto& s = e.get_ref<const std::string&>();
        if (s.find('\0') != std::string::npos) return std::nullopt;
        out.push_back(s);
    }
    return out;
}

std::optional<int64_t> get_int(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}

// Parse + lint, as `run` and `policy_put` both require: any error diagnostic
// refuses the policy. Returns the policy, or the diagnostics one per line.
std::expected<policy::Policy, std::string> validate_policy(const std::string& toml, const std::string& source) {
    auto parsed = policy::parse_policy(toml, source);
    std::string diag;
    for (const auto& d : parsed.diagnostics)
        if (d.severity == policy::Diagnostic::Severity::Error) diag += d.str() + "\n";
    if (parsed.policy) {
        for (const auto& d : policy::lint(*parsed.policy))
            if (d.severity == policy::Diagnostic::Severity::Error) diag += d.str() + "\n";
    }
    if (!parsed.policy || !diag.empty()) {
        if (!diag.empty() && diag.back() == '\n') diag.pop_back();
        return std::unexpected(diag.empty() ? std::string("invalid policy") : diag);
    }
    return std::move(*parsed.policy);
}

}  // namespace

Role Server::role_for(uid_t uid, gid_t gid, const std::vector<gid_t>& groups, const ServerConfig& cfg) {
    if (uid == 0) return Role::Admin;
    auto in = [&](const std::optional<gid_t>& g) {
        return g && (gid == *g || std::find(groups.begin(), groups.end(), *g) != groups.end());
    };
    if (in(group_gid(cfg.admin_group))) return Role::Admin;
    if (in(group_gid(cfg.viewer_group))) return Role::Viewer;
    return Role::None;
}

Result<void> check_inherited_listener(int fd) {
    int domain = 0, type = 0, listening = 0;
    socklen_t l = sizeof domain;
    const bool ok = getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) == 0 &&
                    (l = sizeof type, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0) &&
                    (l = sizeof listening, getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) == 0) &&
                    domain == AF_UNIX && type == SOCK_STREAM && listening;
    if (!ok)
        return fail("the inherited socket (fd " + std::to_string(fd) +
                    ") is not a listening Unix stream socket (moatd.socket must use ListenStream=PATH)");
    return {};
}

Result<std::unique_ptr<Server>> Server::create(ServerConfig cfg, EventLoop* loop, supervisor::Supervisor* sup,
                                               store::Store* store) {
    std::unique_ptr<Server> s(new Server);
    s->m_cfg = std::move(cfg);
    s->m_loop = loop;
    s->m_sup = sup;
    s->m_store = store;
    if (s->m_cfg.listen_fd >= 0) {
        // Socket activation: check it is what moatd.socket makes before
        // serving it (a unit with ListenDatagram= or a TCP port must not be).
        UniqueFd fd(s->m_cfg.listen_fd);
        if (auto ok = check_inherited_listener(fd.get()); !ok) return std::unexpected(ok.error());
        int fl = fcntl(fd.get(), F_GETFL);
        if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd.get(), F_SETFD, FD_CLOEXEC) < 0)
            return fail_sys("fcntl(inherited socket)", errno);
        sockaddr_un bound{};
        socklen_t bl = sizeof bound;
        if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bl) == 0 && bl > sizeof(sa_family_t) &&
            bound.sun_path[0])
            s->m_cfg.socket_path = std::string(bound.sun_path, strnlen(bound.sun_path, sizeof bound.sun_path));
        s->m_listen = std::move(fd);
        s->m_owns_path = false;
    } else {
        const std::string& path = s->m_cfg.socket_path;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (path.size() >= sizeof addr.sun_path) return fail("socket path too long: " + path);
        memcpy(addr.sun_path, path.c_str(), path.size() + 1);

        // Create the parent directory; refuse to replace a live daemon's socket.
        auto slash = path.rfind('/');
        if (slash != std::string::npos && slash > 0) {
            std::string dir = path.substr(0, slash);
            if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) return fail_sys("mkdir(\"" + dir + "\")", errno);
        }
        struct stat st{};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) return fail(path + " exists and is not a socket; refusing to replace it");
            UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
                return fail("another moatd is already listening on " + path);
            ::unlink(path.c_str());
        }
        s->m_listen.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!s->m_listen) return fail_sys("socket(AF_UNIX)", errno);
        // Bound under a name of its own, made accessible and listening, then
        // renamed into place: whoever sees PATH finds a socket that listens.
        // (Bound at PATH, a client that waited for the file to appear could
        // connect between bind() and listen() and get ECONNREFUSED: seen in
        // CI, a test's moatctl started as soon as the socket file existed.)
        // A name too long for the temporary falls back to binding PATH.
        const std::string tmp = path + ".new";
        sockaddr_un taddr{};
        taddr.sun_family = AF_UNIX;
        const bool via_tmp = tmp.size() < sizeof taddr.sun_path;
        const std::string& at = via_tmp ? tmp : path;
        memcpy(taddr.sun_path, at.c_str(), at.size() + 1);
        if (via_tmp) ::unlink(tmp.c_str());  // a moatd that died between its bind and rename left it
        if (::bind(s->m_listen.get(), reinterpret_cast<sockaddr*>(&taddr), sizeof taddr) < 0)
            return fail_sys("bind(\"" + at + "\")", errno);
        auto undo = [&](Error e) {
            ::unlink(at.c_str());
            return std::unexpected(std::move(e));
        };
        // Anyone may connect; what they may do is decided from SO_PEERCRED, and
        // strangers get a clear refusal instead of a bare EACCES.
        if (::chmod(at.c_str(), 0666) < 0) return undo(Error::sys("chmod(\"" + at + "\")", errno));
        if (::listen(s->m_listen.get(), 128) < 0) return undo(Error::sys("listen", errno));
        if (via_tmp && ::rename(tmp.c_str(), path.c_str()) < 0)
            return undo(Error::sys("rename(\"" + tmp + "\", \"" + path + "\")", errno));
    }
    Server* raw = s.get();
    if (auto r = loop->add_fd(s->m_listen.get(), EPOLLIN, [raw](uint32_t) { raw->on_accept(); }); !r)
        return std::unexpected(r.error());
    if (auto t = loop->add_timer(1'000'000'000, 1'000'000'000, [raw] { raw->tick(); })) s->m_tick = *t;
    s->m_hub->server = raw;
    sup->set_output_hook([raw](int64_t job) { raw->on_output(job); });
    store->set_commit_hook([hub = s->m_hub, loop](const store::Committed& news) {
        // The writer thread: hand the news to the loop, nothing more.
        std::lock_guard lk(hub->mu);
        if (!hub->server) return;
        loop->post([hub, news] {
            // The loop thread, where ~Server runs too: server is either live or null.
            if (Server* srv = hub->server) srv->on_committed(news);
        });
    });
    s->m_worker = std::thread([raw] {
        for (;;) {
            std::function<void()> fn;
            {
                std::unique_lock lk(raw->m_mu);
                raw->m_cv.wait(lk, [raw] { return raw->m_quit || !raw->m_work.empty(); });
                if (raw->m_quit && raw->m_work.empty()) return;
                fn = std::move(raw->m_work.front());
                raw->m_work.pop_front();
            }
            fn();
        }
    });
    return s;
}

Server::~Server() {
    m_sup->set_output_hook(nullptr);
    {
        std::lock_guard lk(m_hub->mu);
        m_hub->server = nullptr;
    }
    {
        std::lock_guard lk(m_mu);
        m_quit = true;
    }
    m_cv.notify_all();
    if (m_worker.joinable()) m_worker.join();
    if (m_tick) m_loop->cancel_timer(m_tick);
    for (auto& [id, c] : m_clients) m_loop->remove_fd(c->fd.get());
    m_loop->remove_fd(m_listen.get());
    if (m_owns_path) ::unlink(m_cfg.socket_path.c_str());
}

std::optional<std::string> Server::over_limit(uid_t uid, Role role) const {
    size_t active = 0, mine = 0;
    for (const auto& [cid, cl] : m_clients) {
        if (cl->closing) continue;  // answered and on its way out
        ++active;
        if (cl->uid == uid) ++mine;
    }
    const std::string total = std::to_string(m_cfg.max_clients);
    // Connections being closed are bounded too, however fast they come.
    if (active >= m_cfg.max_clients || m_clients.size() >= 2 * m_cfg.max_clients)
        return "moatd: too many clients (" + total + " connections, --max-clients)";
    if (uid != 0 && mine >= m_cfg.max_clients_per_uid)
        return "moatd: too many connections from uid " + std::to_string(uid) + " (" +
               std::to_string(m_cfg.max_clients_per_uid) + ", --max-clients-per-uid)";
    if (role != Role::Admin && active + m_cfg.admin_reserved_clients >= m_cfg.max_clients)
        return "moatd: too many clients: " + std::to_string(active) + " of " + total +
               " connections are in use and the last " + std::to_string(m_cfg.admin_reserved_clients) +
               " are reserved for admins (--admin-reserved-clients)";
    return std::nullopt;
}

void Server::on_accept() {
    // Bounded work per wake-up: a peer connecting in a tight loop must not keep
    // the loop from the jobs and the other clients. The listening socket is
    // level-triggered, so what is left in the backlog wakes us again.
    for (int accepted = 0; accepted < 64; ++accepted) {
        UniqueFd fd(::accept4(m_listen.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) return;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) continue;
        std::vector<gid_t> groups(256);
        socklen_t glen = socklen_t(groups.size() * sizeof(gid_t));
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0)
            groups.resize(glen / sizeof(gid_t));
        else
            groups.clear();
        const Role role = role_for(cred.uid, cred.gid, groups, m_cfg);
        if (role == Role::None) {
            refuse_at_accept(fd.get(), error_reply("forbidden", "permission denied: uid " + std::to_string(cred.uid) +
                                                                    " is not root and not in group " +
                                                                    m_cfg.admin_group + " or " + m_cfg.viewer_group));
            continue;
        }
        if (auto why = over_limit(cred.uid, role)) {
            refuse_at_accept(fd.get(), error_reply("busy", *why));
            continue;
        }
        auto c = std::make_unique<Client>();
        c->id = m_next_client++;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->groups = groups;
        c->pid = cred.pid;
        c->role = role;
        c->last_active = now_monotonic_ns();
        const uint64_t id = c->id;
        if (auto r = m_loop->add_fd(fd.get(), EPOLLIN | EPOLLRDHUP, [this, id](uint32_t ev) {
                if (ev & EPOLLOUT) on_writable(id);
                if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(id);
            });
            !r)
            continue;
        c->fd = std::move(fd);
        m_clients.emplace(id, std::move(c));
    }
}

void Server::on_readable(uint64_t id) {
    auto it = m_clients.find(id);
    if (it == m_clients.end()) return;
    Client& c = *it->second;
    for (int rounds = 0; rounds < 16; ++rounds) {  // fairness: bounded work per wake-up
        char buf[65536];
        iovec iov{buf, sizeof buf};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        // Room for every fd one sendmsg can carry: a smaller buffer would make the
        // kernel truncate (MSG_CTRUNC, closing the rest) and leave us unable to
        // tell the client why. At most kMaxFdsPerFrame are kept; the request they
        // came with is refused (handle()).
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kScmMaxFd)];
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        ssize_t n = recvmsg(c.fd.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            drop(id);
            return;
        }
        for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; ++i) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
                    if (c.fds.size() < kMaxFdsPerFrame) {
                        c.fds.emplace_back(fd);
                    } else {
                        ::close(fd);  // more than any request uses: refuse to hoard them
                        ++c.fds_refused;
                    }
                }
            }
        }
        // Not expected with room for SCM_MAX_FD fds; if it happens the kernel has
        // closed what did not fit, and the request is refused all the same.
        if (msg.msg_flags & MSG_CTRUNC) ++c.fds_refused;
        if (n == 0) {
            drop(id);
            return;
        }
        if (c.closing) continue;  // answered for the last time: discard input until it hangs up
        if (!c.decoder.mid_frame()) c.frame_started = now_monotonic_ns();
        if (auto r = c.decoder.feed(buf, size_t(n)); !r) {
            c.closing = true;
            reply(id, error_reply("too-large", r.error().message));
            return;
        }
        while (auto frame = c.decoder.next()) {
            c.last_active = now_monotonic_ns();
            handle(c, *frame);
            if (!m_clients.count(id)) return;  // handler dropped the client
            c.frame_started = now_monotonic_ns();
        }
    }
}

void Server::on_writable(uint64_t id) {
    auto it = m_clients.find(id);
    if (it == m_clients.end()) return;
    Client& c = *it->second;
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            drop(id);
            return;
        }
        c.out.erase(0, size_t(n));
        c.last_active = now_monotonic_ns();  // a client reading a long answer is not idle
    }
    if (c.out.empty()) {
        if (c.closing) {
            // Do not close yet: closing a Unix socket with unread input makes the
            // peer's read fail with ECONNRESET and lose our answer. Half-close,
            // discard what it still sends, drop it on EOF or after 2 s (tick).
            if (!c.half_closed) {
                ::shutdown(c.fd.get(), SHUT_WR);
                c.half_closed = true;
                c.closing_since = now_monotonic_ns();
            }
            if (c.writable_armed) {
                (void)m_loop->modify_fd(c.fd.get(), EPOLLIN | EPOLLRDHUP);
                c.writable_armed = false;
            }
            return;
        }
        if (c.writable_armed) {
            (void)m_loop->modify_fd(c.fd.get(), EPOLLIN | EPOLLRDHUP);
            c.writable_armed = false;
        }
        if (c.watch) pump_watch(c);  // the client caught up: the next push may be prepared
    } else if (!c.writable_armed) {
        (void)m_loop->modify_fd(c.fd.get(), EPOLLIN | EPOLLRDHUP | EPOLLOUT);
        c.writable_armed = true;
    }
}

namespace {

// A run's answer in its brief form (docs/protocol.md, "Brief runs"): the
// job's id (kBriefJob), or how the run ended (kBriefEnd: the client's exit
// status, a newline, then what it says on stderr), rendered here by the same
// function moatctl uses on the full record. Anything else (no run answer) as
// JSON.
std::string brief_answer(const json& j) {
    const bool ok = j.is_object() && j.value("ok", false);
    RunEnd end;
    if (ok && j.contains("finished")) {
        const json& f = j["finished"];
        const int64_t id = f.is_object() && f.contains("id") && f["id"].is_number_integer() ? f["id"].get<int64_t>() : 0;
        end = describe_run_end(id, f);
    } else if (ok && j.contains("job") && j["job"].is_number_integer()) {
        return std::string(1, kBriefJob) + std::to_string(j["job"].get<int64_t>());
    } else if (!ok && j.is_object()) {
        const auto e = j.find("error");
        end = describe_run_error(e != j.end() && e->is_string() ? e->get_ref<const std::string&>() : std::string("-"));
    } else {
        return j.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    return std::string(1, kBriefEnd) + std::to_string(end.status) + "\n" + end.text;
}

}  // namespace

void Server::reply(uint64_t id, const json& j, bool brief) {
    auto it = m_clients.find(id);
    if (it == m_clients.end()) return;
    Client& c = *it->second;
    std::string payload = brief || c.brief_now ? brief_answer(j) : j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (payload.size() > kMaxResponseBytes) payload = error_reply("too-large", "answer too large; use paging").dump();
    c.out += encode_frame(payload);
    c.last_active = now_monotonic_ns();
    if (c.out.size() > m_cfg.max_output_bytes) {  // a client that does not read cannot make us hoard memory
        drop(id);
        return;
    }
    on_writable(id);
}

void Server::drop(uint64_t id) {
    auto it = m_clients.find(id);
    if (it == m_clients.end()) return;
    int64_t job = it->second->attached_job;
    m_loop->remove_fd(it->second->fd.get());
    m_clients.erase(it);
    // Documented behaviour: a job started by `run` belongs to its client; when
    // the client goes away the job is stopped (cause "stopped").
    if (job) (void)m_sup->stop(job, "the client that ran it disconnected");
}

void Server::tick() {
    const int64_t now = now_monotonic_ns();
    std::vector<uint64_t> slow, done, idle;
    const int64_t idle_ns = m_cfg.client_idle_timeout_ns;
    for (auto& [id, c] : m_clients) {
        if (c->half_closed && now - c->closing_since > 2'000'000'000) done.push_back(id);
        else if (!c->closing && c->decoder.mid_frame() && now - c->frame_started > m_cfg.frame_timeout_ns)
            slow.push_back(id);
        // Idle: nothing in progress in either direction. A partial frame is the
        // frame timeout's business; a connection whose job runs (`run`, `replay`)
        // or whose query is on the worker is waiting, not idle.
        else if (idle_ns > 0 && !c->closing && !c->decoder.mid_frame() && !c->attached_job && c->pending == 0 &&
                 !c->watch && now - c->last_active > idle_ns)
            idle.push_back(id);
    }
    for (uint64_t id : done) drop(id);
    for (uint64_t id : idle) {
        m_clients[id]->closing = true;
        reply(id, error_reply("idle", "closing a connection idle for " + format_duration_ns(uint64_t(idle_ns)) +
                                          " (--client-idle-timeout); connect again to send more"));
    }
    for (uint64_t id : slow) {
        m_clients[id]->closing = true;
        reply(id, error_reply("timeout", "request not completed within " +
                                             std::to_string(m_cfg.frame_timeout_ns / 1'000'000'000) + " s"));
    }
}

void Server::query_async(uint64_t client, std::function<json()> work) {
    if (auto it = m_clients.find(client); it != m_clients.end()) ++it->second->pending;
    {
        std::lock_guard lk(m_mu);
        m_work.push_back([this, client, work = std::move(work)] {
            json result = work();
            m_loop->post([this, client, result = std::move(result)] {
                if (auto it = m_clients.find(client); it != m_clients.end()) --it->second->pending;
                reply(client, result);
            });
        });
    }
    m_cv.notify_one();
}

void Server::query_then(uint64_t client, std::function<json()> work, std::function<void(Client&, json&)> then) {
    if (auto it = m_clients.find(client); it != m_clients.end()) ++it->second->pending;
    {
        std::lock_guard lk(m_mu);
        m_work.push_back([this, client, work = std::move(work), then = std::move(then)]() mutable {
            json result = work();
            m_loop->post([this, client, result = std::move(result), then = std::move(then)]() mutable {
                auto it = m_clients.find(client);
                if (it == m_clients.end()) return;
                --it->second->pending;
                then(*it->second, result);
            });
        });
    }
    m_cv.notify_one();
}

std::optional<json> Server::live_figures(int64_t job) const {
    auto rec = m_sup->live(job);
    if (!rec) return std::nullopt;
    json f = {{"denial_count", rec->denial_count},
              {"resources", {{"cpu_time_ns", rec->resources.cpu_time_ns},
                             {"peak_memory_bytes", rec->resources.peak_memory_bytes},
                             {"peak_pids", rec->resources.peak_pids}}}};
    if (auto sample = m_sup->last_sample(job); sample.is_object()) f["sample"] = std::move(sample);
    return f;
}

void Server::overlay_live(json& job) const {
    if (!job.is_object() || job.value("state", "") != "running" || !job.contains("id") || !job["id"].is_number_integer())
        return;
    if (auto f = live_figures(job["id"].get<int64_t>())) job.update(*f);
}

void Server::handle_watch(Client& c, const json& req) {
    if (c.watch) {
        reply(c.id, error_reply("bad-request", "this connection is already watching"));
        return;
    }
    auto w = std::make_unique<WatchState>();
    auto flag = [&](const char* key) -> std::optional<bool> {
        auto it = req.find(key);
        if (it == req.end()) return false;
        if (!it->is_boolean()) return std::nullopt;
        return it->get<bool>();
    };
    auto jobs = flag("jobs"), policies = flag("policies"), stored = flag("stored");
    if (!jobs || !policies || !stored) {
        reply(c.id, error_reply("bad-request", "\"jobs\", \"policies\" and \"stored\" must be booleans"));
        return;
    }
    w->jobs = *jobs;
    w->policies = *policies;
    w->stored = *stored;
    if (auto job = get_int(req, "job")) {
        if (*job <= 0) {
            reply(c.id, error_reply("bad-request", "\"job\" must be a job id"));
            return;
        }
        w->job = *job;
        w->cursor = std::max<int64_t>(0, get_int(req, "after").value_or(0));
        if (auto k = get_string(req, "kind", 16)) {
            if (*k == "lifecycle") w->kind = store::EventKind::Lifecycle;
            else if (*k == "resource") w->kind = store::EventKind::Resource;
            else if (*k == "denial") w->kind = store::EventKind::Denial;
            else if (*k == "limit") w->kind = store::EventKind::Limit;
            else {
                reply(c.id, error_reply("bad-request", "unknown event kind \"" + *k + "\""));
                return;
            }
        }
        w->events_dirty = true;  // what is stored already comes first
        auto out = req.find("output");
        if (out != req.end() && !out->is_boolean()) {
            reply(c.id, error_reply("bad-request", "\"output\" must be a boolean"));
            return;
        }
        w->output = out != req.end() && out->get<bool>();
        w->output_dirty = w->output;
    }
    if (!w->jobs && !w->policies && !w->stored && !w->job) {
        reply(c.id, error_reply("bad-request",
                                "watch needs \"jobs\": true, \"policies\": true, \"stored\": true or a \"job\""));
        return;
    }
    w->jobs_snapshot = w->jobs;
    w->policies_dirty = w->policies;
    json what = json::array();
    if (w->jobs) what.push_back("jobs");
    if (w->policies) what.push_back("policies");
    if (w->stored) what.push_back("stored");
    json ok = {{"ok", true}, {"watching", what}};
    if (w->job) ok["job"] = w->job;
    c.watch = std::move(w);
    reply(c.id, ok);
    pump_watch(c);
}

void Server::on_committed(const store::Committed& news) {
    std::vector<uint64_t> ids;
    for (auto& [id, c] : m_clients) {
        if (!c->watch || c->closing) continue;
        WatchState& w = *c->watch;
        if (w.jobs && !w.jobs_snapshot) {
            // A job's row changed: it is read again from the store.
            for (int64_t j : news.jobs) {
                if (w.changed_jobs.size() >= kMaxWatchedChanges && !w.changed_jobs.count(j)) {
                    // Too far behind to list what changed: one snapshot instead.
                    w.missed += w.changed_jobs.size() + 1;
                    w.changed_jobs.clear();
                    w.jobs_snapshot = true;
                    break;
                }
                w.changed_jobs.insert(j);
            }
        } else if (w.jobs) {
            w.missed += news.jobs.size();
        }
        // Its events were stored (samples, denials): only the live figures
        // changed, and the loop has them; bounded like the rows (a job left
        // out here is in the next commit's set: its figures keep moving).
        if (w.jobs)
            for (int64_t j : news.event_jobs)
                if (w.live_jobs.size() < kMaxWatchedChanges) w.live_jobs.insert(j);
        if (w.policies && news.policies) w.policies_dirty = true;
        if (w.stored && !news.event_jobs.empty()) w.stored_dirty = true;
        if (w.job && !w.ended) {
            for (const auto* list : {&news.event_jobs, &news.jobs})
                if (std::find(list->begin(), list->end(), w.job) != list->end()) w.events_dirty = true;
        }
        ids.push_back(id);
    }
    for (uint64_t id : ids)
        if (auto it = m_clients.find(id); it != m_clients.end()) pump_watch(*it->second);
}

void Server::on_output(int64_t job) {
    std::vector<uint64_t> ids;
    for (auto& [id, c] : m_clients)
        if (c->watch && !c->closing && c->watch->output && c->watch->job == job && !c->watch->ended) {
            c->watch->output_dirty = true;
            ids.push_back(id);
        }
    for (uint64_t id : ids)
        if (auto it = m_clients.find(id); it != m_clients.end()) pump_watch(*it->second);
}

void Server::pump_watch(Client& c) {
    if (!c.watch) return;
    if (c.watch->in_pump) {
        c.watch->repump = true;
        return;
    }
    const uint64_t id = c.id;
    do {
        auto it = m_clients.find(id);
        if (it == m_clients.end() || !it->second->watch) return;  // dropped meanwhile
        WatchState& w = *it->second->watch;
        w.repump = false;
        w.in_pump = true;
        pump_watch_once(*it->second);
        if (auto again = m_clients.find(id); again != m_clients.end() && again->second->watch) {
            again->second->watch->in_pump = false;
            if (!again->second->watch->repump) return;
        } else {
            return;
        }
    } while (true);
}

void Server::pump_watch_once(Client& c) {
    if (!c.watch || c.closing) return;
    WatchState& w = *c.watch;
    const uint64_t id = c.id;
    if (c.out.size() > kPushHighWater) return;  // on_writable calls again once it drained
    // Output comes from the supervisor's live tail on the loop (no store read):
    // a watcher far behind gets the kept tail and how many bytes it missed.
    if (w.output_dirty && w.output && !w.ended) {
        w.output_dirty = false;
        for (int s = 0; s < 2; ++s) {
            auto slice = m_sup->live_output(w.job, s, w.out_off[s], kOutputPerPush);
            if (!slice || (slice->data.empty() && !slice->skipped)) continue;
            json push = {{"push", "output"}, {"job", w.job}, {"stream", s == 0 ? "stdout" : "stderr"},
                         {"offset", slice->from}, {"data_b64", base64_encode(slice->data)}};
            if (slice->skipped) push["skipped"] = slice->skipped;
            w.out_off[s] = slice->from + slice->data.size();
            if (w.out_off[s] < slice->total) w.output_dirty = true;  // more than one push holds
            reply(id, push);
            if (!m_clients.count(id)) return;
        }
        if (c.out.size() > kPushHighWater) return;
    }
    if (!w.live_jobs.empty() && !w.jobs_snapshot) {
        // Running jobs' live figures, from the supervisor on the loop: no
        // store read per sample (a finished job's row push has its final ones).
        json live = json::array();
        for (int64_t j : w.live_jobs)
            if (auto f = live_figures(j)) {
                (*f)["id"] = j;
                live.push_back(std::move(*f));
            }
        w.live_jobs.clear();
        if (!live.empty()) {
            reply(id, {{"push", "live"}, {"jobs", std::move(live)}});
            if (!m_clients.count(id)) return;
        }
    }
    if (w.stored_dirty) {
        // Only a hint (no store read, nothing per event): the client asks
        // for what it wants with `events`, its own filter and cursor.
        w.stored_dirty = false;
        reply(id, {{"push", "stored"}});
        if (!m_clients.count(id)) return;
    }
    if (w.busy) return;
    // reply() may drop a client (over its output bound): after a reply the
    // client is looked up again by id, never used through a reference.
    auto done = [this](uint64_t cid) {
        auto it = m_clients.find(cid);
        if (it == m_clients.end() || !it->second->watch) return;
        it->second->watch->busy = false;
        pump_watch(*it->second);
    };
    if (w.jobs_snapshot) {
        w.busy = true;
        const uint64_t missed = std::exchange(w.missed, 0);
        w.jobs_snapshot = false;
        w.changed_jobs.clear();
        query_then(
            id,
            [this]() -> json {
                auto r = m_store->list_jobs(kJobsSnapshot, 0);
                if (!r) return error_reply("store", r.error().message);
                json arr = json::array();
                for (const auto& j : *r) arr.push_back(listed(job_to_json(j)));
                return arr;
            },
            [this, done, missed](Client& cl, json& jobs) {
                const uint64_t cid = cl.id;
                if (jobs.is_array()) {
                    for (auto& j : jobs) overlay_live(j);
                    json push = {{"push", "jobs"}, {"snapshot", true}, {"jobs", std::move(jobs)}};
                    if (missed) push["missed"] = missed;
                    reply(cid, push);
                } else {
                    reply(cid, {{"push", "error"}, {"error", jobs.value("error", "store")}});
                }
                done(cid);
            });
        return;
    }
    if (!w.changed_jobs.empty()) {
        w.busy = true;
        std::vector<int64_t> want;
        while (!w.changed_jobs.empty() && want.size() < 100) {
            want.push_back(*w.changed_jobs.begin());
            w.changed_jobs.erase(w.changed_jobs.begin());
        }
        query_then(
            id,
            [this, want]() -> json {
                json arr = json::array();
                for (int64_t j : want)
                    if (auto r = m_store->get_job(j)) arr.push_back(listed(job_to_json(*r)));
                return arr;
            },
            [this, done](Client& cl, json& jobs) {
                const uint64_t cid = cl.id;
                for (auto& j : jobs) overlay_live(j);
                if (!jobs.empty()) reply(cid, {{"push", "jobs"}, {"jobs", std::move(jobs)}});
                done(cid);
            });
        return;
    }
    if (w.policies_dirty) {
        w.busy = true;
        w.policies_dirty = false;
        query_then(
            id,
            [this]() -> json {
                auto r = m_store->list_policies();
                json arr = json::array();
                if (r)
                    for (const auto& p : *r)
                        arr.push_back({{"id", p.id}, {"name", p.name}, {"version", p.version}, {"sha256", p.sha256},
                                       {"created_at", rfc3339_utc(p.created_ns)}});
                return arr;
            },
            [this, done](Client& cl, json& pols) {
                const uint64_t cid = cl.id;
                reply(cid, {{"push", "policies"}, {"policies", std::move(pols)}});
                done(cid);
            });
        return;
    }
    if (w.events_dirty && w.job && !w.ended) {
        w.busy = true;
        w.events_dirty = false;
        store::EventQuery q;
        q.job = w.job;
        q.after_id = w.cursor;
        q.limit = kEventsPerPush;
        q.kind = w.kind;
        const int64_t job = w.job;
        query_then(
            id,
            [this, q, job]() mutable -> json {
                auto r = m_store->query_events(q);
                if (!r) return {{"error", r.error().message}};
                json out = {{"events", json::array()}, {"full", r->size() == size_t(q.limit)}};
                for (const auto& e : *r) out["events"].push_back(e.to_json());
                if (r->size() < size_t(q.limit)) {
                    // Caught up. A finished job ends the watch, but only after
                    // everything appended before its end is committed and sent.
                    auto rec = m_store->get_job(job);
                    if (!rec) {
                        out["error"] = "no job " + std::to_string(job);
                    } else if (rec->state == "finished") {
                        m_store->flush();
                        q.after_id = r->empty() ? q.after_id : r->back().id;
                        if (auto more = m_store->query_events(q); more && !more->empty()) {
                            for (const auto& e : *more) out["events"].push_back(e.to_json());
                            out["full"] = true;  // come back for the rest, then end
                        } else {
                            out["end"] = job_to_json(*rec);
                        }
                    }
                }
                return out;
            },
            [this, done, job](Client& cl, json& res) {
                const uint64_t cid = cl.id;
                WatchState& ws = *cl.watch;
                if (res.contains("error")) {
                    ws.ended = true;
                    reply(cid, {{"push", "error"}, {"job", job}, {"error", res["error"]}});
                    return done(cid);
                }
                auto& evs = res["events"];
                if (!evs.empty()) ws.cursor = evs.back().value("id", ws.cursor);
                if (res.value("full", false)) ws.events_dirty = true;
                const bool end = res.contains("end");
                if (end) ws.ended = true;
                if (!evs.empty()) reply(cid, {{"push", "events"}, {"job", job}, {"events", std::move(evs)}});
                if (end && m_clients.count(cid)) reply(cid, {{"push", "end"}, {"job", std::move(res["end"])}});
                done(cid);
            });
        return;
    }
}

void Server::handle(Client& c, const std::string& frame) {
    // Exceptions never cross the IPC boundary: a request that trips one (a bug)
    // is answered with an error and moatd keeps serving everyone else.
    const uint64_t id = c.id;
    const uid_t uid = c.uid;
    if (c.fds_refused) {
        // The fds came with this request (a client attaches them to the first
        // sendmsg of its frame); more than any request uses refuses it.
        const size_t got = c.fds.size() + c.fds_refused;
        c.fds.clear();
        c.fds_refused = 0;
        reply(id, error_reply("bad-request", "too many fds: " + std::to_string(got) + ", at most " +
                                                 std::to_string(kMaxFdsPerFrame)));
        return;
    }
    try {
        handle_request(c, frame);
    } catch (const std::exception& e) {
        moat::logf(moat::LogLevel::Error, "internal error while handling a request from uid %u: %s\n", uid, e.what());
        reply(id, error_reply("internal", std::string("internal error: ") + e.what()));
    }
}

void Server::handle_request(Client& c, const std::string& frame) {
    json req = json::parse(frame, nullptr, false);
    if (req.is_discarded() || !req.is_object()) {
        c.fds.clear();
        reply(c.id, error_reply("bad-request", "request is not a JSON object"));
        return;
    }
    auto op = get_string(req, "op", 64);
    if (!op) {
        c.fds.clear();
        reply(c.id, error_reply("bad-request", "request has no \"op\""));
        return;
    }
    const bool admin = c.role == Role::Admin;
    auto need_admin = [&]() {
        if (admin) return true;
        reply(c.id, error_reply("forbidden", "\"" + *op + "\" needs the admin role (group " + m_cfg.admin_group +
                                                 "); you are " + role_name(c.role)));
        return false;
    };
    // Only `run` (stdio) and `backup` (the file the client created) carry fds.
    std::vector<UniqueFd> backup_fds;
    if (*op == "backup")
        while (!c.fds.empty()) {
            backup_fds.push_back(std::move(c.fds.front()));
            c.fds.pop_front();
        }
    if (*op != "run" && *op != "run_brief") c.fds.clear();

    // A field that is present must have its type: a mistyped filter must never
    // be read as "no filter" (e.g. {"job":"3"} answering with every job's events).
    static const std::pair<const char*, json::value_t> kTyped[] = {
        {"job", json::value_t::number_integer},   {"limit", json::value_t::number_integer},
        {"before", json::value_t::number_integer}, {"after", json::value_t::number_integer},
        {"since_ns", json::value_t::number_integer}, {"until_ns", json::value_t::number_integer},
        {"id", json::value_t::number_integer},    {"kind", json::value_t::string},
        {"syscall", json::value_t::string},       {"policy_toml", json::value_t::string},
        {"policy_source", json::value_t::string}, {"cwd", json::value_t::string},
        {"tier", json::value_t::string},          {"argv", json::value_t::array},
        {"env", json::value_t::array},            {"inputs", json::value_t::array},
        {"stream", json::value_t::string},        {"signal", json::value_t::number_integer},
        {"rootfs", json::value_t::object}};
    for (const auto& [key, type] : kTyped) {
        auto it = req.find(key);
        if (it == req.end()) continue;
        bool ok = type == json::value_t::number_integer ? (it->is_number_integer() || it->is_number_unsigned())
                                                         : it->type() == type;
        if (!ok) {
            c.fds.clear();
            const char* want = type == json::value_t::number_integer ? "an integer"
                               : type == json::value_t::string       ? "a string"
                               : type == json::value_t::object       ? "an object"
                                                                     : "an array";
            reply(c.id, error_reply("bad-request", std::string("\"") + key + "\" must be " + want));
            return;
        }
    }

    if (c.watch) {
        reply(c.id, error_reply("bad-request", "this connection is watching (it only receives pushes); use another connection for requests"));
        return;
    }
    if (*op == "hello") {
        json a = {{"ok", true}, {"role", role_name(c.role)}, {"uid", c.uid}, {"version", "0.1.0"},
                  {"running", m_sup->running()}};
        if (!m_cfg.database_path.empty()) a["database"] = m_cfg.database_path;
        reply(c.id, std::move(a));
    } else if (*op == "run" || *op == "run_brief") {
        // run_brief: a run whose answers (a refusal too) are brief frames.
        // Its own op, not a field: a moatd without it refuses it before any
        // job exists, and the client can ask again in JSON.
        const uint64_t cid = c.id;
        c.brief_now = *op == "run_brief";
        if (need_admin()) handle_run(c, req);
        else c.fds.clear();
        if (auto it = m_clients.find(cid); it != m_clients.end()) it->second->brief_now = false;  // `c` may be gone
    } else if (*op == "replay") {
        if (!need_admin()) return;
        handle_replay(c, req);
    } else if (*op == "output") {
        auto job = get_int(req, "job");
        auto stream = get_string(req, "stream", 16).value_or("stdout");
        if (!job) { reply(c.id, error_reply("bad-request", "output needs an integer \"job\"")); return; }
        if (stream != "stdout" && stream != "stderr") {
            reply(c.id, error_reply("bad-request", "\"stream\" must be \"stdout\" or \"stderr\""));
            return;
        }
        int64_t id = *job;
        query_async(c.id, [this, id, stream]() -> json {
            auto r = m_store->get_output(id, stream);
            if (!r) return error_reply("store", r.error().message);
            if (!*r) return error_reply("not-found", "no recorded " + stream + " for job " + std::to_string(id) +
                                                         " (running, or recorded by an older moatd)");
            const auto& o = **r;
            return {{"ok", true}, {"stream", stream}, {"total_bytes", o.total_bytes},
                    {"tail_bytes", o.data.size()}, {"truncated", o.total_bytes > o.data.size()},
                    {"data_b64", base64_encode(o.data)}};
        });
    } else if (*op == "stop") {
        if (!need_admin()) return;
        auto job = get_int(req, "job");
        if (!job) { reply(c.id, error_reply("bad-request", "stop needs an integer \"job\"")); return; }
        auto r = m_sup->stop(*job, "stopped by uid " + std::to_string(c.uid));
        reply(c.id, r ? json{{"ok", true}} : error_reply("not-found", r.error().message));
    } else if (*op == "signal") {
        if (!need_admin()) return;
        auto job = get_int(req, "job");
        auto sig = get_int(req, "signal");
        if (!job || !sig || *sig < 1 || *sig > 64) {
            reply(c.id, error_reply("bad-request", "signal needs an integer \"job\" and a \"signal\" number (1-64)"));
            return;
        }
        auto r = m_sup->signal(*job, int(*sig), "uid " + std::to_string(c.uid));
        reply(c.id, r ? json{{"ok", true}} : error_reply("refused", r.error().message));
    } else if (*op == "show") {
        auto job = get_int(req, "job");
        if (!job) { reply(c.id, error_reply("bad-request", "show needs an integer \"job\"")); return; }
        if (auto live = m_sup->live(*job)) {
            // Running: the figures are the supervisor's; policy names come from the store.
            auto rec = *live;
            query_async(c.id, [this, rec]() mutable -> json {
                if (auto p = m_store->get_policy(rec.policy_id)) {
                    rec.policy_name = p->name;
                    rec.policy_version = p->version;
                    rec.policy_sha256 = p->sha256;
                }
                return {{"ok", true}, {"job", job_to_json(rec)}};
            });
            return;
        }
        int64_t id = *job;
        query_async(c.id, [this, id]() -> json {
            auto r = m_store->get_job(id);
            if (!r) return error_reply("not-found", "no job " + std::to_string(id));
            return {{"ok", true}, {"job", job_to_json(*r)}};
        });
    } else if (*op == "watch") {
        handle_watch(c, req);
    } else if (*op == "backup") {
        // An incident copy for an admin who cannot read the state directory
        // (docs/cli.md "db backup"). The client created the file with its own
        // rights and passes it open; moatd never opens a path a client names.
        // The copy is made by SQLite's backup API into a private file of the
        // state directory, then written into the client's file.
        if (!need_admin()) return;
        if (backup_fds.size() != 1) {
            reply(c.id, error_reply("bad-request", "backup needs exactly one fd: the new, empty file to write the copy into"));
            return;
        }
        struct stat st{};
        const int fl = fcntl(backup_fds[0].get(), F_GETFL);
        if (fstat(backup_fds[0].get(), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != 0 || fl < 0 ||
            (fl & O_ACCMODE) == O_RDONLY || (fl & O_APPEND)) {
            reply(c.id, error_reply("bad-request", "the backup fd must be an empty regular file open for writing"));
            return;
        }
        if (m_cfg.database_path.empty()) {
            reply(c.id, error_reply("store", "this moatd does not know its database path"));
            return;
        }
        auto out = std::make_shared<UniqueFd>(std::move(backup_fds[0]));
        static uint64_t seq = 0;
        const std::string tmp = m_cfg.database_path + ".backup-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
        query_async(c.id, [this, out, tmp]() -> json {
            auto info = store::backup_database(m_cfg.database_path, tmp);
            if (!info) return error_reply("store", info.error().message);
            UniqueFd in(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
            ::unlink(tmp.c_str());
            if (!in) return error_reply("store", "reopening the copy: " + std::string(strerror(errno)));
            char buf[1 << 16];
            uint64_t done = 0;
            for (;;) {
                ssize_t n = ::read(in.get(), buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) return error_reply("store", "reading the copy: " + std::string(strerror(errno)));
                if (n == 0) break;
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = ::pwrite(out->get(), buf + off, size_t(n - off), off_t(done));
                    if (w < 0 && errno == EINTR) continue;
                    if (w <= 0) return error_reply("store", "writing the client's file: " + std::string(strerror(errno)));
                    off += w;
                    done += uint64_t(w);
                }
            }
            if (::fsync(out->get()) < 0) return error_reply("store", "fsync of the client's file: " + std::string(strerror(errno)));
            return {{"ok", true}, {"bytes", done}, {"jobs", info->jobs}, {"events", info->events},
                    {"policies", info->policies}};
        });
    } else if (*op == "jobs") {
        int64_t limit = std::clamp<int64_t>(get_int(req, "limit").value_or(100), 1, 10000);
        int64_t before = std::max<int64_t>(0, get_int(req, "before").value_or(0));
        query_then(
            c.id,
            [this, limit, before]() -> json {
                auto r = m_store->list_jobs(int(limit), before);
                if (!r) return error_reply("store", r.error().message);
                json arr = json::array();
                for (const auto& j : *r) arr.push_back(listed(job_to_json(j)));
                return {{"ok", true}, {"jobs", arr}};
            },
            [this](Client& cl, json& res) {
                // A running job's denial count and figures are live (the store's row has them at the end).
                if (res.contains("jobs"))
                    for (auto& j : res["jobs"]) overlay_live(j);
                reply(cl.id, res);
            });
    } else if (*op == "events") {
        store::EventQuery q;
        q.job = get_int(req, "job");
        q.after_id = std::max<int64_t>(0, get_int(req, "after").value_or(0));
        q.limit = int(std::clamp<int64_t>(get_int(req, "limit").value_or(1000), 1, 10000));
        if (auto k = get_string(req, "kind", 16)) {
            if (*k == "lifecycle") q.kind = store::EventKind::Lifecycle;
            else if (*k == "resource") q.kind = store::EventKind::Resource;
            else if (*k == "denial") q.kind = store::EventKind::Denial;
            else if (*k == "limit") q.kind = store::EventKind::Limit;
            else { reply(c.id, error_reply("bad-request", "unknown event kind \"" + *k + "\"")); return; }
        }
        if (auto s = get_string(req, "syscall", 64)) q.syscall = *s;
        q.since_ns = get_int(req, "since_ns");
        q.until_ns = get_int(req, "until_ns");
        query_async(c.id, [this, q]() -> json {
            // Make everything the supervisor has recorded so far visible first.
            m_store->flush();
            auto r = m_store->query_events(q);
            if (!r) return error_reply("store", r.error().message);
            json arr = json::array();
            for (const auto& e : *r) arr.push_back(e.to_json());
            json next = r->size() == size_t(q.limit) && !r->empty() ? json(r->back().id) : json(nullptr);
            return {{"ok", true}, {"events", arr}, {"next", next}};
        });
    } else if (*op == "policies") {
        query_async(c.id, [this]() -> json {
            auto r = m_store->list_policies();
            if (!r) return error_reply("store", r.error().message);
            json arr = json::array();
            for (const auto& p : *r)
                arr.push_back({{"id", p.id}, {"name", p.name}, {"version", p.version}, {"sha256", p.sha256},
                               {"created_at", rfc3339_utc(p.created_ns)}});
            return {{"ok", true}, {"policies", arr}};
        });
    } else if (*op == "policy") {
        auto pid = get_int(req, "id");
        if (!pid) { reply(c.id, error_reply("bad-request", "policy needs an integer \"id\"")); return; }
        int64_t id = *pid;
        query_async(c.id, [this, id]() -> json {
            auto r = m_store->get_policy(id);
            if (!r) {
                // get_policy says "policy N not found" for a missing row; anything else is SQLite's.
                const auto& m = r.error().message;
                bool missing = m.size() >= 10 && m.compare(m.size() - 10, 10, " not found") == 0;
                return missing ? error_reply("not-found", "no policy " + std::to_string(id))
                               : error_reply("store", m);
            }
            return {{"ok", true}, {"id", r->id}, {"name", r->name}, {"version", r->version}, {"sha256", r->sha256},
                    {"created_at", rfc3339_utc(r->created_ns)}, {"toml", r->toml}};
        });
    } else if (*op == "policy_put") {
        // Stores a policy text without running anything (moat-console's editor).
        // Validated exactly like `run`: the store never holds a version that
        // `run` would refuse. The write is short and stays on the loop, as in `run`.
        if (!need_admin()) return;
        for (const char* key : {"policy_toml", "policy_source"}) {
            if (req.contains(key) && !req[key].is_string()) {
                reply(c.id, error_reply("bad-request", std::string("\"") + key + "\" must be a string"));
                return;
            }
        }
        auto toml = get_string(req, "policy_toml", policy::kMaxPolicyBytes);
        if (!toml) {
            reply(c.id, error_reply("bad-request", "policy_put needs \"policy_toml\" (a string of at most 1 MiB)"));
            return;
        }
        auto source = get_string(req, "policy_source", 4096);
        if (req.contains("policy_source") && !source) {
            reply(c.id, error_reply("bad-request", "\"policy_source\" must be at most 4096 bytes"));
            return;
        }
        auto parsed = validate_policy(*toml, source.value_or("policy.toml"));
        if (!parsed) { reply(c.id, error_reply("bad-policy", parsed.error())); return; }
        auto stored = m_store->put_policy(parsed->name, *toml, parsed->sha256);
        if (!stored) { reply(c.id, error_reply("store", stored.error().message)); return; }
        reply(c.id, {{"ok", true}, {"id", stored->id}, {"name", stored->name}, {"version", stored->version},
                     {"sha256", stored->sha256}});
    } else {
        reply(c.id, error_reply("bad-request", "unknown op \"" + *op + "\""));
    }
}

namespace {

// A network namespace a client passes for the job to join: a network
// namespace, and never moatd's own (that would be network.mode = "host",
// which the container tier refuses).
Result<UniqueFd> job_netns(UniqueFd fd) {
    int type = ioctl(fd.get(), NS_GET_NSTYPE);
    if (type < 0) return std::unexpected(Error::sys("the fd passed as rootfs.netns is not a namespace", errno));
    if (type != CLONE_NEWNET) return fail("the fd passed as rootfs.netns is a namespace, but not a network one");
    struct stat a{}, b{};
    if (fstat(fd.get(), &a) < 0 || stat("/proc/self/ns/net", &b) < 0)
        return std::unexpected(Error::sys("fstat(rootfs.netns)", errno));
    if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return fail("rootfs.netns is moatd's own (the host's) network namespace; a container job never joins it");
    return fd;
}

// moatd's own copy of a tree the client passed: a clone (open_tree), so the
// flags set here change nothing of the client's, made nosuid and nodev (and
// read-only when asked). An fd that cannot be cloned here (a mount tree of
// another mount namespace, which older kernels do not clone) is passed as it
// is; moat-init can only move a detached tree, and sets the same flags.
// Private as well: a clone of a shared mount would otherwise carry what the
// job mounts below it back to the client's source.
Result<UniqueFd> own_tree(UniqueFd fd, bool read_only) {
    UniqueFd clone(int(syscall(SYS_open_tree, fd.get(), "",
                               OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE)));
    if (!clone) return fd;
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0);
    attr.propagation = MS_PRIVATE;
    if (syscall(SYS_mount_setattr, clone.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return std::unexpected(Error::sys("mount_setattr on moatd's clone of a client tree", errno));
    return clone;
}

// The "rootfs" object of a run (docs/protocol.md): the root tree's fd and one
// per bind follow the inputs' fds. Returns the error text, or "".
std::string parse_rootfs(const json& r, std::shared_ptr<supervisor::ClientRootfs>& out, bool& want_netns) {
    if (!r.is_object()) return "\"rootfs\" must be an object";
    static const std::set<std::string> known = {"read_only", "binds", "dev_shm_bytes", "origin", "netns"};
    for (const auto& [k, v] : r.items())
        if (!known.count(k)) return "\"rootfs\" has an unknown key \"" + k + "\"";
    auto rf = std::make_shared<supervisor::ClientRootfs>();
    rf->root.target = "/";
    if (auto it = r.find("read_only"); it != r.end()) {
        if (!it->is_boolean()) return "\"rootfs.read_only\" must be true or false";
        rf->root.read_only = it->get<bool>();
    }
    if (auto it = r.find("dev_shm_bytes"); it != r.end()) {
        if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
            return "\"rootfs.dev_shm_bytes\" must be a non-negative integer";
        rf->dev_shm_bytes = it->get<uint64_t>();
        if (rf->dev_shm_bytes > (16ull << 30)) return "\"rootfs.dev_shm_bytes\" is above 16 GiB";
        if (rf->dev_shm_bytes && rf->dev_shm_bytes < 4096) return "\"rootfs.dev_shm_bytes\" is below 4 KiB";
    }
    if (auto it = r.find("netns"); it != r.end()) {
        if (!it->is_boolean()) return "\"rootfs.netns\" must be true or false";
        want_netns = it->get<bool>();
    }
    if (auto it = r.find("origin"); it != r.end()) {
        if (!it->is_string() || it->get_ref<const std::string&>().size() > 512)
            return "\"rootfs.origin\" must be a string of at most 512 bytes";
        rf->origin = it->get<std::string>();
        if (!valid_utf8(rf->origin)) return "\"rootfs.origin\" is not UTF-8";
    }
    if (auto it = r.find("binds"); it != r.end()) {
        if (!it->is_array() || it->size() > kMaxClientBinds)
            return "\"rootfs.binds\" must be an array of at most " + std::to_string(kMaxClientBinds) + " objects";
        for (const auto& b : *it) {
            if (!b.is_object() || !b.contains("target") || !b["target"].is_string())
                return "each of \"rootfs.binds\" needs a \"target\" path";
            supervisor::ClientTree t;
            t.target = b["target"].get<std::string>();
            if (!normalised_abs(t.target) || t.target == "/")
                return "rootfs bind target \"" + t.target.substr(0, 200) + "\" is not a normalised absolute path below /";
            if (auto ro = b.find("read_only"); ro != b.end()) {
                if (!ro->is_boolean()) return "rootfs bind \"read_only\" must be true or false";
                t.read_only = ro->get<bool>();
            }
            for (const auto& k : b.items())
                if (k.key() != "target" && k.key() != "read_only")
                    return "a rootfs bind has an unknown key \"" + k.key() + "\"";
            rf->binds.push_back(std::move(t));
        }
    }
    out = std::move(rf);
    return "";
}

}  // namespace

void Server::handle_run(Client& c, const json& req) {
    std::vector<UniqueFd> fds;
    while (!c.fds.empty()) {
        fds.push_back(std::move(c.fds.front()));
        c.fds.pop_front();
    }
    if (c.attached_job) {
        reply(c.id, error_reply("bad-request", "this connection already has a running job"));
        return;
    }
    // Present-but-invalid fields are refused, never replaced by a default.
    for (const char* key : {"policy_source", "cwd", "tier"}) {
        if (req.contains(key) && !get_string(req, key, 4096)) {
            reply(c.id, error_reply("bad-request", std::string("\"") + key + "\" must be a string of at most 4096 bytes"));
            return;
        }
    }
    auto toml = get_string(req, "policy_toml", policy::kMaxPolicyBytes);
    auto source = get_string(req, "policy_source", 4096).value_or("policy.toml");
    auto argv = get_strings(req, "argv", 4096, 1 << 16);
    auto env = get_strings(req, "env", 4096, 1 << 16);
    auto cwd = get_string(req, "cwd", 4096).value_or("/");
    if (cwd.empty() || cwd[0] != '/') { reply(c.id, error_reply("bad-request", "\"cwd\" must be an absolute path")); return; }
    if (!toml) { reply(c.id, error_reply("bad-request", "run needs \"policy_toml\" (a string of at most 1 MiB)")); return; }
    if (!argv || argv->empty()) { reply(c.id, error_reply("bad-request", "run needs a non-empty \"argv\"")); return; }
    if (!env) { reply(c.id, error_reply("bad-request", "\"env\" must be an array of strings")); return; }
    std::optional<policy::Tier> tier;
    if (auto t = get_string(req, "tier", 16)) {
        tier = policy::tier_from_name(*t);
        if (!tier) { reply(c.id, error_reply("bad-request", "unknown tier \"" + *t + "\"")); return; }
    }
    std::vector<supervisor::InputFile> inputs;
    size_t with_fd = 0;
    std::vector<bool> wants_fd;
    if (auto it = req.find("inputs"); it != req.end()) {
        if (!it->is_array() || it->size() > kMaxInputs) {
            reply(c.id, error_reply("bad-request", "\"inputs\" must be an array of at most " +
                                                       std::to_string(kMaxInputs) + " objects"));
            return;
        }
        for (const auto& e : *it) {
            if (!e.is_object() || !e.contains("host") || !e["host"].is_string()) {
                reply(c.id, error_reply("bad-request", "each input needs a \"host\" path"));
                return;
            }
            supervisor::InputFile in;
            in.host_path = e["host"].get<std::string>();
            in.sandbox_path = in.host_path;
            if (e.contains("sandbox")) {
                if (!e["sandbox"].is_string()) {
                    reply(c.id, error_reply("bad-request", "input \"sandbox\" must be a string"));
                    return;
                }
                in.sandbox_path = e["sandbox"].get<std::string>();
            }
            if (in.host_path.size() > 4096 || in.sandbox_path.size() > 4096) {
                reply(c.id, error_reply("bad-request", "input path longer than 4096 bytes"));
                return;
            }
            if (in.host_path.empty() || in.host_path[0] != '/' || in.sandbox_path.empty() || in.sandbox_path[0] != '/') {
                reply(c.id, error_reply("bad-request", "input paths must be absolute"));
                return;
            }
            if (auto f = e.find("fd"); f != e.end()) {
                if (!f->is_boolean()) {
                    reply(c.id, error_reply("bad-request", "input \"fd\" must be true or false"));
                    return;
                }
                // Its fd follows stdio, in the order of the inputs that have one.
                wants_fd.push_back(f->get<bool>());
                with_fd += f->get<bool>() ? 1 : 0;
            } else {
                wants_fd.push_back(false);
            }
            inputs.push_back(std::move(in));
        }
    }

    std::shared_ptr<supervisor::ClientRootfs> rootfs;
    bool want_netns = false;
    if (auto it = req.find("rootfs"); it != req.end()) {
        if (auto why = parse_rootfs(*it, rootfs, want_netns); !why.empty()) {
            reply(c.id, error_reply("bad-request", why));
            return;
        }
    }
    const size_t trees = rootfs ? 1 + rootfs->binds.size() + (want_netns ? 1 : 0) : 0;
    if (fds.size() != 3 + with_fd + trees) {
        reply(c.id, error_reply("bad-request", "run must pass 3 fds (stdin, stdout, stderr), one for each input "
                                               "with \"fd\": true and, with \"rootfs\", one for its root, each "
                                               "of its binds and its netns (" + std::to_string(3 + with_fd + trees) + " in all); got " +
                                                   std::to_string(fds.size())));
        return;
    }
    size_t next = 3;
    for (size_t k = 0; k < inputs.size(); ++k)
        if (wants_fd[k]) inputs[k].fd = std::move(fds[next++]);
    if (rootfs) {
        std::vector<supervisor::ClientTree*> trees = {&rootfs->root};
        for (auto& b : rootfs->binds) trees.push_back(&b);
        for (auto* t : trees) {
            auto own = own_tree(std::move(fds[next++]), t->read_only);
            if (!own) {
                reply(c.id, error_reply("bad-request", "rootfs " + t->target + ": " + own.error().message));
                return;
            }
            t->fd = std::move(*own);
        }
        if (want_netns) {
            auto ns = job_netns(std::move(fds[next++]));
            if (!ns) {
                reply(c.id, error_reply("bad-request", ns.error().message));
                return;
            }
            rootfs->netns = std::move(*ns);
        }
    }

    auto parsed = validated_policy(*toml, source);
    if (!parsed) {
        reply(c.id, error_reply("bad-policy", parsed.error()));
        return;
    }
    auto stored = m_store->put_policy((*parsed)->name, (*parsed)->source_text, (*parsed)->sha256);
    if (!stored) { reply(c.id, error_reply("store", stored.error().message)); return; }

    supervisor::JobRequest jr;
    jr.policy = std::move(*parsed);
    jr.policy_id = stored->id;
    jr.tier_override = tier;
    jr.argv = std::move(*argv);
    jr.client_env = std::move(*env);
    jr.cwd = cwd;
    for (int i = 0; i < 3; ++i) jr.stdio[i] = std::move(fds[size_t(i)]);
    jr.inputs = std::move(inputs);
    jr.rootfs = std::move(rootfs);
    jr.client = {c.uid, c.gid, c.groups};
    start_for(c, std::move(jr), *stored);
}

std::expected<std::shared_ptr<const policy::Policy>, std::string> Server::validated_policy(const std::string& toml,
                                                                                           const std::string& source) {
    const bool cacheable = toml.size() <= kPolicyCacheMaxText;
    std::string key;
    if (cacheable) {
        // Length-prefixed: a source name holding a NUL cannot make two
        // requests' (source, text) pairs one key.
        key = sha256_hex(std::to_string(source.size()) + ':' + source + toml);
        if (auto it = m_policy_cache.find(key); it != m_policy_cache.end()) return it->second;
    }
    auto parsed = validate_policy(toml, source);
    if (!parsed) return std::unexpected(std::move(parsed.error()));
    auto p = std::make_shared<const policy::Policy>(std::move(*parsed));
    if (cacheable) {
        if (m_policy_cache.size() >= kPolicyCacheEntries) {
            m_policy_cache.erase(m_policy_cache_order.front());
            m_policy_cache_order.pop_front();
        }
        m_policy_cache.emplace(key, p);
        m_policy_cache_order.push_back(std::move(key));
    }
    return p;
}

void Server::start_for(Client& c, supervisor::JobRequest jr, const store::PolicyRecord& policy) {
    uint64_t cid = c.id;
    jr.on_finished = [this, cid, pol = policy, brief = c.brief_now](const store::JobRecord& rec) {
        auto it = m_clients.find(cid);
        if (it == m_clients.end()) return;
        it->second->attached_job = 0;
        store::JobRecord r = rec;
        r.policy_name = pol.name;
        r.policy_version = pol.version;
        r.policy_sha256 = pol.sha256;
        reply(cid, {{"ok", true}, {"finished", job_to_json(r)}}, brief);
    };
    auto res = m_sup->start(std::move(jr));  // `c` may be gone after this (a set-up failure's answer): cid
    if (res.job_id == 0) {
        reply(cid, error_reply("setup-failed", res.setup_error ? res.setup_error->message : "job not created"));
        return;
    }
    // Attached before the first answer: a client that went away while its
    // job was set up is dropped by that answer's failed write, and its job
    // must be stopped then, not left running to its wall time.
    if (auto it = m_clients.find(cid); it != m_clients.end() && !res.setup_error) it->second->attached_job = res.job_id;
    reply(cid, {{"ok", true}, {"job", res.job_id}});
    if (res.setup_error) {
        auto rec = m_store->get_job(res.job_id);
        json j = rec ? job_to_json(*rec) : json::object();
        reply(cid, {{"ok", true}, {"finished", j}});
    }
}

void Server::handle_replay(Client& c, const json& req) {
    c.fds.clear();
    if (c.attached_job) {
        reply(c.id, error_reply("bad-request", "this connection already has a running job"));
        return;
    }
    auto job = get_int(req, "job");
    if (!job) { reply(c.id, error_reply("bad-request", "replay needs an integer \"job\"")); return; }
    for (const char* key : {"learn", "force", "override_deny_rules"}) {
        if (req.contains(key) && !req[key].is_boolean()) {
            reply(c.id, error_reply("bad-request", std::string("\"") + key + "\" must be true or false"));
            return;
        }
    }
    for (const char* key : {"policy_source", "tier"}) {
        if (req.contains(key) && !get_string(req, key, 4096)) {
            reply(c.id, error_reply("bad-request", std::string("\"") + key + "\" must be a string of at most 4096 bytes"));
            return;
        }
    }
    const bool learn = req.value("learn", false), force = req.value("force", false);
    auto orig = m_store->get_job(*job);
    if (!orig) { reply(c.id, error_reply("not-found", "no job " + std::to_string(*job))); return; }
    const std::string who = "job " + std::to_string(*job);
    if (orig->state != "finished") {
        reply(c.id, error_reply("bad-request", who + " is still running; replay needs its finished recording"));
        return;
    }
    const json& rec = orig->recording;
    if (rec.contains("evicted")) {
        reply(c.id, error_reply("not-replayable", who + ": its recording was removed (" +
                                                      rec["evicted"].get<std::string>() + "); see moatd --record-retention"));
        return;
    }
    // Its root filesystem came from its client as mount trees (moat-runtime,
    // --rootfs) and was not snapshotted: nothing here can put it back.
    if (rec.contains("rootfs")) {
        reply(c.id, error_reply("not-replayable",
                                who + " ran on a root filesystem its client passed (" +
                                    rec["rootfs"].value("origin", std::string("no origin given")) +
                                    "), which moatd does not snapshot; run it again through its client (for a "
                                    "container: podman/containerd with moat-runtime) to reproduce it"));
        return;
    }
    // A job that never started replays the same failure under the same
    // policy; learn mode finds what its set-up lacked (a program outside the
    // view), and another policy may have it.
    if (orig->cause == "setup-failed" && orig->pid <= 0 && !learn && !req.contains("policy_toml")) {
        reply(c.id, error_reply("not-replayable", who + " never started (setup-failed: " + orig->detail +
                                                      "); replay --learn finds the paths its set-up lacked"));
        return;
    }

    // The policy: the recorded version, or the one given.
    std::string toml, source;
    if (auto t = get_string(req, "policy_toml", policy::kMaxPolicyBytes)) {
        toml = *t;
        source = get_string(req, "policy_source", 4096).value_or("policy.toml");
    } else if (req.contains("policy_toml")) {
        reply(c.id, error_reply("bad-request", "\"policy_toml\" must be a string of at most 1 MiB"));
        return;
    } else {
        auto p = m_store->get_policy(orig->policy_id);
        if (!p) { reply(c.id, error_reply("store", p.error().message)); return; }
        toml = p->toml;
        source = p->name + " v" + std::to_string(p->version);
    }
    auto parsed = validated_policy(toml, source);
    if (!parsed) { reply(c.id, error_reply("bad-policy", parsed.error())); return; }
    std::optional<policy::Tier> tier = policy::tier_from_name(orig->tier);
    if (auto t = get_string(req, "tier", 16)) {
        tier = policy::tier_from_name(*t);
        if (!tier) { reply(c.id, error_reply("bad-request", "unknown tier \"" + *t + "\"")); return; }
    }
    if (learn && tier == policy::Tier::Seccomp && !force) {
        reply(c.id, error_reply("refused",
                                "learning in the seccomp tier is refused: learn mode lets every denied syscall run "
                                "(the filter's notify action continues it), and the seccomp tier has no namespaces "
                                "to contain what those calls do on the host. Learn in the container tier "
                                "(--tier container) or pass --force if this job is trusted"));
        return;
    }

    supervisor::JobRequest jr;
    jr.argv = orig->argv;
    jr.client_env = orig->env;  // the environment as given to the job; the policy filters it again
    jr.cwd = orig->cwd;
    jr.tier_override = tier;
    jr.require_stdio = false;   // stdin comes from the recording, output is only recorded
    jr.replay_of = orig->id;
    jr.learn = learn;
    jr.learn_through_rules = learn && req.value("override_deny_rules", false);
    jr.client = {c.uid, c.gid, c.groups};  // a host file is checked with the replaying client's rights
    if (rec.contains("stdin") && rec["stdin"].is_object() && rec["stdin"]["sha256"].is_null() &&
        rec["stdin"].value("bytes", json(0)).is_number_unsigned() && rec["stdin"]["bytes"].get<uint64_t>() > 0) {
        // The job read stdin that could not be recorded (the artifact store
        // refused the file): replaying it with an empty stdin would not be a replay.
        reply(c.id, error_reply("not-replayable", who + ": its stdin (" + std::to_string(rec["stdin"]["bytes"].get<uint64_t>()) +
                                                      " bytes) was not recorded (" +
                                                      rec["stdin"].value("note", std::string("no note")) + ")"));
        return;
    }
    if (rec.contains("stdin") && rec["stdin"].is_object() && rec["stdin"].value("sha256", json()).is_string()) {
        std::string sha = rec["stdin"]["sha256"].get<std::string>();
        if (!m_cfg.artifacts || !store::valid_sha256(sha) || !m_cfg.artifacts->exists(sha)) {
            reply(c.id, error_reply("not-replayable", who + ": its recorded stdin is gone from the artifact store"));
            return;
        }
        jr.stdio[0].reset(::open(m_cfg.artifacts->path(sha).c_str(), O_RDONLY | O_CLOEXEC));
        if (!jr.stdio[0]) { reply(c.id, error_reply("store", "opening the recorded stdin: " + std::string(strerror(errno)))); return; }
    }
    if (rec.contains("inputs") && rec["inputs"].is_array()) {
        for (const auto& in : rec["inputs"]) {
            if (!in.is_object() || !in.value("host", json()).is_string()) continue;
            supervisor::InputFile f;
            f.host_path = in["host"].get<std::string>();
            f.sandbox_path = in.value("sandbox", f.host_path);
            if (!in.value("sha256", json()).is_string()) {
                reply(c.id, error_reply("not-replayable", who + ": input " + f.host_path + " was not recorded (" +
                                                              in.value("note", std::string("no snapshot")) + ")"));
                return;
            }
            f.snapshot = in["sha256"].get<std::string>();
            f.directory = in.value("kind", json()) == "directory";
            jr.inputs.push_back(std::move(f));
        }
    }
    auto stored = m_store->put_policy((*parsed)->name, (*parsed)->source_text, (*parsed)->sha256);
    if (!stored) { reply(c.id, error_reply("store", stored.error().message)); return; }
    jr.policy = std::move(*parsed);
    jr.policy_id = stored->id;
    start_for(c, std::move(jr), *stored);
}

}  // namespace moat::ipc
