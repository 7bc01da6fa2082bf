// moatd: the privileged core service. Parses arguments and wires the store,
// the supervisor and the socket server onto one event loop.
#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <cstdio>
#include <chrono>
#include <cstring>

#include <thread>
#include "moat/common/log.h"
#include "moat/cgroup/cgroup.h"
#include "moat/ipc/metrics_http.h"
#include "moat/common/event_loop.h"
#include "moat/common/paths.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/store/artifacts.h"
#include "moat/ipc/server.h"
#include "moat/store/store.h"
#include "moat/supervisor/supervisor.h"

namespace {

// sd_notify(3) without libsystemd (the protocol is stable and documented as
// such: one datagram to $NOTIFY_SOCKET, '@' meaning the abstract namespace).
// Type=notify in moatd.service waits for READY=1. The first call (state
// null, before any thread) takes $NOTIFY_SOCKET out of the environment.
void notify_systemd(const char* state) {
    static const std::string path = [] {
        const char* p = getenv("NOTIFY_SOCKET");
        std::string s = p ? p : "";
        unsetenv("NOTIFY_SOCKET");  // nothing moatd starts may talk to systemd as moatd
        return s;
    }();
    sockaddr_un a{};
    if (!state || path.empty() || path.size() >= sizeof a.sun_path || (path[0] != '/' && path[0] != '@')) return;
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path.data(), path.size());
    if (a.sun_path[0] == '@') a.sun_path[0] = 0;
    moat::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd) return;
    (void)::sendto(fd.get(), state, strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&a),
                   socklen_t(offsetof(sockaddr_un, sun_path) + path.size()));
}

// Lock files live in DIR (--uid-lock-dir): made when missing, and it must be a
// directory owned by root that nobody else may write (anyone who could plant
// or delete files there could make moatd share uids or cgroups). Returns the
// directory, or an invalid fd after setting *why.
moat::UniqueFd open_lock_dir(const std::string& dir, std::string* why) {
    for (size_t i = 1; i <= dir.size(); ++i)
        if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
    moat::UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st{};
    if (!dfd || fstat(dfd.get(), &st) < 0) {
        *why = std::string("open: ") + strerror(errno);
        return {};
    }
    if (st.st_uid != 0 || (st.st_mode & 022)) {
        *why = "must be a directory owned by root and writable only by it";
        return {};
    }
    return dfd;
}

// A lock file in the lock directory: root's, mode 0600. The locks are never
// taken on anything another user can open (the directory itself, a cgroup
// directory): any local user could flock that and keep moatd from starting.
moat::UniqueFd open_lock_file(int dfd, const std::string& name, std::string* why) {
    moat::UniqueFd f(::openat(dfd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    struct stat st{};
    if (!f || fstat(f.get(), &st) < 0) {
        *why = "open " + name + ": " + strerror(errno);
        return {};
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 077)) {
        *why = name + " must be a regular file owned by root, mode 0600";
        return {};
    }
    return f;
}

// The pid a lock file's holder wrote into it ("?" if none), for refusals.
std::string lock_holder(int fd) {
    char pid[32] = {};
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, size_t(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return holder;
}

bool valid_cgroup_parent(const std::string& p) {
    if (p.empty() || p.size() > 128) return false;
    size_t start = 0;
    for (;;) {
        const size_t end = std::min(p.find('/', start), p.size());
        const std::string c = p.substr(start, end - start);
        if (c.empty() || c == "." || c == "..") return false;
        for (char ch : c)
            if (!isalnum(static_cast<unsigned char>(ch)) && !strchr("._@:+-", ch)) return false;
        if (end == p.size()) return true;
        start = end + 1;
    }
}

// One moatd per --cgroup-parent (docs/cli.md): job-N groups must be its alone,
// and its orphan reaper kills everything under job-*. It holds an flock on
// DIR/cgroup-<parent> (its pid inside) for its lifetime; the reaper inherits
// it, so the next moatd waits (up to wait_ns) for a dead one's reaper to
// finish its kills. Returns the held lock, or -1 after printing why.
int lock_cgroup_parent(const std::string& dir, const std::string& parent, uint64_t wait_ns) {
    std::string why, name = "cgroup-";
    for (char c : parent) name += c == '/' ? std::string("%2F") : std::string(1, c);
    moat::UniqueFd dfd = open_lock_dir(dir, &why);
    moat::UniqueFd f = dfd ? open_lock_file(dfd.get(), name, &why) : moat::UniqueFd();
    if (!f) {
        moat::logf(moat::LogLevel::Error, "cgroup parent lock %s: %s\n", dir.c_str(), why.c_str());
        return -1;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(wait_ns);
    while (flock(f.get(), LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            moat::logf(moat::LogLevel::Error, "cgroup parent lock %s/%s: flock: %s\n", dir.c_str(), name.c_str(), strerror(errno));
            return -1;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            const std::string holder = lock_holder(f.get());
            moat::logf(moat::LogLevel::Error,
                    "another moatd holds cgroup parent \"%s\" (pid %s, %s/%s); give each moatd its own "
                    "--cgroup-parent\n",
                    parent.c_str(), holder.c_str(), dir.c_str(), name.c_str());
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(f.get(), 0) < 0 || pwrite(f.get(), pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
        moat::logf(moat::LogLevel::Error, "cgroup parent lock %s/%s: write: %s\n", dir.c_str(), name.c_str(), strerror(errno));
        return -1;
    }
    return f.release();
}

// Job uids are what keeps jobs apart (docs/architecture.md), so two moatd on
// one host must never hand out the same ones. Each moatd holds an flock on
// DIR/uids-<base>-<count> (its pid inside) for its lifetime; at start, under an
// flock on DIR itself, every other range file is tried: lockable means its
// moatd is gone (removed), held and overlapping means refuse to start. The
// directory-wide lock is DIR/.lock (a root-only file, see open_lock_file).
// Returns the held lock (the fd stays open, and is inherited by the orphan
// reaper, which kills a dead moatd's jobs before it lets go), or -1 after
// printing why.
int lock_uid_range(const std::string& dir, uint32_t base, uint32_t count) {
    auto fail = [&](const std::string& what, int err) {
        moat::logf(moat::LogLevel::Error, "uid range lock %s: %s: %s\n", dir.c_str(), what.c_str(), strerror(err));
        return -1;
    };
    std::string why;
    moat::UniqueFd dfd = open_lock_dir(dir, &why);
    moat::UniqueFd dir_lock = dfd ? open_lock_file(dfd.get(), ".lock", &why) : moat::UniqueFd();
    if (!dir_lock) {
        moat::logf(moat::LogLevel::Error, "uid range lock %s: %s\n", dir.c_str(), why.c_str());
        return -1;
    }
    if (flock(dir_lock.get(), LOCK_EX) < 0) return fail("flock", errno);  // released with dir_lock
    const uint64_t lo = base, hi = uint64_t(base) + count;
    const std::string own = "uids-" + std::to_string(base) + "-" + std::to_string(count);
    DIR* d = fdopendir(fcntl(dfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!d) return fail("opendir", errno);
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) names.emplace_back(e->d_name);
    closedir(d);
    for (const auto& name : names) {
        unsigned long long b = 0, c = 0;
        int used = 0;
        if (sscanf(name.c_str(), "uids-%llu-%llu%n", &b, &c, &used) != 2 || size_t(used) != name.size()) continue;
        moat::UniqueFd f(::openat(dfd.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
        if (!f) continue;
        if (flock(f.get(), LOCK_EX | LOCK_NB) == 0) {  // its moatd (and reaper) are gone
            ::unlinkat(dfd.get(), name.c_str(), 0);
            continue;
        }
        if (!(lo < b + c && b < hi)) continue;  // held, but no uid in common
        const std::string holder = lock_holder(f.get());
        moat::logf(moat::LogLevel::Error,
                "job uids %u..%llu overlap %llu..%llu, which moatd pid %s is using (%s/%s); "
                "give each moatd its own --uid-base/--uid-count\n",
                base, (unsigned long long)(hi - 1), b, b + c - 1, holder.c_str(), dir.c_str(), name.c_str());
        return -1;
    }
    int fd = ::openat(dfd.get(), own.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail("create " + own, errno);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return fail("flock " + own, e);
    }
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
        int e = errno;
        close(fd);
        return fail("write " + own, e);
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    moat::ensure_stdio_open();
    moat::log_init("moatd");  // the journal is recognised from the first line on
    CLI::App app{"moatd: runs untrusted jobs in sandboxes and records everything they try"};
    app.set_version_flag("--version", "moatd " MOAT_VERSION);
    std::string state_dir = "/var/lib/moat";
    std::string socket = "/run/moat/moatd.sock";
    std::string cgroup_mode = "auto";
    std::string cgroup_parent = "moat";
    uint32_t uid_base = 700000, uid_count = 65536;
    std::string admin_group = "moat-admin", viewer_group = "moat-viewer";
    std::string init_path, runtime_dir = "/run/moat", uid_lock_dir = "/run/moat/uid-ranges";
    app.add_option("--state-dir", state_dir, "database and artifacts (created 0700)")->capture_default_str();
    app.add_option("--socket", socket, "Unix socket to serve")->capture_default_str();
    app.add_option("--cgroup", cgroup_mode, "cgroup version: auto, v1 or v2")
        ->check(CLI::IsMember({"auto", "v1", "v2"}))->capture_default_str();
    app.add_option("--cgroup-parent", cgroup_parent, "parent group for jobs in each hierarchy")->capture_default_str();
    bool cgroup_delegated = false;
    app.add_flag("--cgroup-delegated", cgroup_delegated,
                 "cgroup v2 under systemd's Delegate=yes: move moatd into a leaf of its own cgroup and make the job "
                 "groups below it (--cgroup-parent is then relative to that cgroup); ignored on v1");
    std::string cgroup_parent_wait = "5s";
    app.add_option("--cgroup-parent-wait", cgroup_parent_wait,
                   "how long to wait for another moatd's hold on the same --cgroup-parent (a dead one's orphan "
                   "reaper finishing its kills) before refusing to start")
        ->capture_default_str();
    app.add_option("--uid-base", uid_base, "first host uid for jobs")->capture_default_str();
    app.add_option("--uid-count", uid_count, "number of job uids")->capture_default_str();
    app.add_option("--uid-lock-dir", uid_lock_dir,
                   "where each moatd locks its job uid range and its --cgroup-parent; a moatd whose range overlaps a "
                   "running one's, or whose parent a running one holds, refuses to start (give every moatd on the "
                   "host the same directory)")
        ->capture_default_str();
    app.add_option("--admin-group", admin_group)->capture_default_str();
    std::string log_level = "info";
    app.add_option("--log-level", log_level,
                   "least important log lines written: error, warning, notice, info or debug (under systemd each "
                   "line carries its level for the journal)")
        ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}))
        ->capture_default_str();
    std::string metrics_listen;
    app.add_option("--metrics", metrics_listen,
                   "serve Prometheus metrics at http://ADDR/metrics; ADDR is PORT (127.0.0.1:PORT), IP:PORT or "
                   "[IPv6]:PORT (off unless given)");
    app.add_option("--init", init_path,
                   "moat-init, the container tier's stage-2 helper (default: next to moatd, then "
                   "../moat-init/moat-init, then /usr/libexec/moat/moat-init)");
    app.add_option("--runtime-dir", runtime_dir, "runtime files (the container tier's empty root mount point)")
        ->capture_default_str();
    app.add_option("--viewer-group", viewer_group)->capture_default_str();
    std::string record_stdin_max = "16MiB", record_output_max = "1MiB", record_input_max = "1GiB";
    std::string record_budget = "4GiB", record_retention = "720h";
    app.add_option("--record-stdin-max", record_stdin_max, "stdin kept per job for replay; beyond it the recording is marked cut")
        ->capture_default_str();
    app.add_option("--record-output-max", record_output_max, "tail of stdout and of stderr kept per job")
        ->capture_default_str();
    app.add_option("--record-input-max", record_input_max,
                   "largest --input file (for a directory: its files together) snapshotted for replay")
        ->capture_default_str();
    uint64_t record_input_entries = 100000;
    app.add_option("--record-input-entries", record_input_entries,
                   "most entries (directories, files, symlinks) of a directory --input snapshotted for replay")
        ->check(CLI::Range(uint64_t(1), uint64_t(1000000)))
        ->capture_default_str();
    app.add_option("--record-budget", record_budget,
                   "total size of recorded stdin and input snapshots; oldest recordings are dropped beyond it")
        ->capture_default_str();
    app.add_option("--record-retention", record_retention, "recordings of jobs that ended longer ago are dropped")
        ->capture_default_str();
    size_t max_clients = 256, admin_reserved_clients = 32, max_clients_per_uid = 32;
    std::string client_idle_timeout = "5m";
    app.add_option("--max-clients", max_clients,
                   "connections served at once (peers with no role are answered and closed, never counted)")
        ->check(CLI::Range(size_t(1), size_t(65536)))->capture_default_str();
    app.add_option("--admin-reserved-clients", admin_reserved_clients,
                   "of --max-clients, the last ones that only admins may take")
        ->capture_default_str();
    app.add_option("--max-clients-per-uid", max_clients_per_uid, "connections one uid other than root may hold")
        ->check(CLI::Range(size_t(1), size_t(65536)))->capture_default_str();
    app.add_option("--client-idle-timeout", client_idle_timeout,
                   "close a connection with no request, answer or job in progress after this long (0 = never)")
        ->capture_default_str();
    std::string notify_spin = "50us";
    app.add_option("--notify-spin", notify_spin,
                   "after answering a job's seccomp notification, poll this long for its next one before sleeping "
                   "(0 = never; polling is capped at 250 ms a second, 10 ms of it finding nothing)")
        ->capture_default_str();
    // The vm tier (docs/vm.md).
    bool vm_off = false;
    bool no_spawn_helper = false;
    std::string vm_agent, vm_guest_dir, vm_cache_dir = "/var/cache/moat", vm_pool_idle = "5m";
    std::string vm_boot_timeout = "30s", vm_guest_overhead = "64MiB", vm_vmm_overhead = "160MiB";
    uint32_t vm_pool_size = 1;
    app.add_flag("--no-spawn-helper", no_spawn_helper,
                 "container tier: moatd clones each job's init and it executes moat-init, instead of the spawn "
                 "helper cloning it (docs/architecture.md)");
    uint32_t inits_ahead = 2;
    app.add_option("--inits-ahead", inits_ahead,
                   "container tier: job inits the spawn helper keeps made ahead while idle, so a job's start "
                   "clones none (0 = none; only where the job joins its cgroup itself: cgroup v1; "
                   "docs/architecture.md)")
        ->check(CLI::Range(0, 8))
        ->capture_default_str();
    app.add_flag("--vm-off", vm_off, "turn the vm tier off (no guest is ever booted)");
    app.add_option("--vm-agent", vm_agent,
                   "the static guest agent, the guest's /init (default: moat-agent next to moatd, then "
                   "../moat-agent/moat-agent, then /usr/libexec/moat/moat-agent)");
    // Accepted and ignored (docs/cli.md): scripts written for the static
    // moat-init that the agent no longer needs keep starting moatd.
    std::string vm_init_unused;
    app.add_option("--vm-init", vm_init_unused, "no longer used: the agent runs moat-init's code itself (ignored)")
        ->group("");
    app.add_option("--vm-guest-dir", vm_guest_dir,
                   "the guest kernel kit (packaging/moat.sh guest-kernel; default $MOAT_GUEST_DIR or /var/cache/moat/guest)");
    app.add_option("--vm-cache-dir", vm_cache_dir, "initramfs and root images, cached by content hash")->capture_default_str();
    app.add_option("--vm-pool-size", vm_pool_size,
                   "booted guests kept waiting per recently used (root image, memory); 0 turns the pool off")
        ->check(CLI::Range(0u, 64u))->capture_default_str();
    app.add_option("--vm-pool-idle", vm_pool_idle, "a warm guest unused this long is destroyed")->capture_default_str();
    app.add_option("--vm-boot-timeout", vm_boot_timeout, "a guest whose agent has not spoken by then is a setup failure")
        ->capture_default_str();
    app.add_option("--vm-guest-overhead", vm_guest_overhead, "guest RAM on top of the policy's limits.memory")
        ->capture_default_str();
    app.add_option("--vm-vmm-overhead", vm_vmm_overhead,
                   "QEMU's own memory, on top of the guest's RAM, in the job cgroup's memory limit")
        ->capture_default_str();
    // Every option is also a key of the config file (docs/cli.md, "The config
    // file"); the command line wins over the file.
    app.set_config("--config", "",
                   "read options from this TOML file: each key is an option's long name (state-dir = \"...\"); "
                   "default /etc/moat/moatd.toml when it exists; a named file that is missing is an error",
                   false);
    app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not ignored
    // moatd runs as root, so its config must be root's and writable only by
    // root (like sshd_config). The file is opened once and checked through the
    // fd, and CLI11 reads that same open file (/proc/self/fd/N): a file
    // swapped between the check and the read is never read.
    std::vector<std::string> args(argv, argv + argc);
    moat::UniqueFd config_fd;
    {
        std::string path = "/etc/moat/moatd.toml";
        size_t at = 0;  // the argument holding the path (0: not on the command line)
        for (size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
            if (args[i] == "--config" && i + 1 < args.size()) at = ++i;  // the value is not an option
            else if (args[i].rfind("--config=", 0) == 0) at = i;
        }
        if (at) path = args[at].rfind("--config=", 0) == 0 ? args[at].substr(9) : args[at];
        // O_NONBLOCK: a FIFO must not hang moatd before the regular-file check.
        config_fd.reset(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        struct stat cs{};
        if (!config_fd) {
            if (at || errno != ENOENT) {
                moat::logf(moat::LogLevel::Error, "%sconfig file %s: %s\n", at ? "--" : "", path.c_str(),
                        errno == ELOOP ? "a symlink (refused: name the file itself)" : strerror(errno));
                return 1;
            }
        } else if (fstat(config_fd.get(), &cs) < 0 || !S_ISREG(cs.st_mode) || cs.st_uid != 0 || (cs.st_mode & 022)) {
            moat::logf(moat::LogLevel::Error,
                    "%s must be a regular file owned by root and writable only by it (it sets what moatd "
                    "runs as root)\n",
                    path.c_str());
            return 1;
        } else {
            const std::string via = "/proc/self/fd/" + std::to_string(config_fd.get());
            if (!at) args.insert(args.begin() + 1, {"--config", via});
            else args[at] = args[at].rfind("--config=", 0) == 0 ? "--config=" + via : via;
        }
    }
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    CLI11_PARSE(app, int(cargv.size()), cargv.data());
    config_fd.reset();
    moat::log_init("moatd", *moat::log_level_from_name(log_level));
    // systemd socket activation (sd_listen_fds(3), a stable protocol: fds
    // from 3, LISTEN_PID naming us). moatd takes exactly one socket.
    int inherited_listen = -1;
    if (const char* lp = getenv("LISTEN_PID"); lp && std::string(lp) == std::to_string(getpid())) {
        const char* lf = getenv("LISTEN_FDS");
        if (!lf || std::string(lf) != "1") {
            moat::logf(moat::LogLevel::Error, "socket activation passed LISTEN_FDS=%s; moatd serves exactly one socket "
                            "(moatd.socket: one ListenStream=)\n", lf ? lf : "(unset)");
            return 1;
        }
        // Checked here, before anything else could take fd 3's number.
        if (auto ok = moat::ipc::check_inherited_listener(3); !ok) {
            moat::logf(moat::LogLevel::Error, "%s\n", ok.error().message.c_str());
            return 1;
        }
        inherited_listen = 3;
        fcntl(inherited_listen, F_SETFD, FD_CLOEXEC);
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    notify_systemd(nullptr);
    if (!vm_init_unused.empty())
        moat::logf(moat::LogLevel::Warning, "--vm-init is no longer used (the guest agent runs moat-init's code itself); ignored\n");
    if (admin_reserved_clients >= max_clients) {
        moat::logf(moat::LogLevel::Error, "--admin-reserved-clients %zu must be less than --max-clients %zu\n",
                admin_reserved_clients, max_clients);
        return 1;
    }
    uint64_t notify_spin_ns = 0;
    if (notify_spin != "0") {
        auto d = moat::parse_duration_ns(notify_spin);
        if (!d || *d > 1'000'000) {
            moat::logf(moat::LogLevel::Error, "--notify-spin %s: %s\n", notify_spin.c_str(),
                       d ? "at most 1ms" : d.error().message.c_str());
            return 1;
        }
        notify_spin_ns = *d;
    }
    uint64_t idle_ns = 0;
    if (client_idle_timeout != "0") {
        auto d = moat::parse_duration_ns(client_idle_timeout);
        if (!d || *d > uint64_t(INT64_MAX)) {
            moat::logf(moat::LogLevel::Error, "--client-idle-timeout %s: %s\n", client_idle_timeout.c_str(),
                    d ? "too large" : d.error().message.c_str());
            return 1;
        }
        idle_ns = *d;
    }

    uint64_t rec_limits[5];
    {
        const std::pair<const char*, const std::string*> sizes[] = {{"--record-stdin-max", &record_stdin_max},
                                                                    {"--record-output-max", &record_output_max},
                                                                    {"--record-input-max", &record_input_max},
                                                                    {"--record-budget", &record_budget}};
        for (size_t i = 0; i < 4; ++i) {
            auto v = moat::parse_size(*sizes[i].second);
            if (!v) {
                moat::logf(moat::LogLevel::Error, "%s %s: %s\n", sizes[i].first, sizes[i].second->c_str(), v.error().message.c_str());
                return 1;
            }
            rec_limits[i] = *v;
        }
        auto d = moat::parse_duration_ns(record_retention);
        if (!d) {
            moat::logf(moat::LogLevel::Error, "--record-retention %s: %s\n", record_retention.c_str(), d.error().message.c_str());
            return 1;
        }
        rec_limits[4] = *d;
    }

    if (geteuid() != 0) {
        moat::logf(moat::LogLevel::Error, "must run as root (cgroups, switching to job uids, seccomp notification)\n");
        return 1;
    }
    if (uid_base == 0 || uid_count == 0 || uint64_t(uid_base) + uid_count > 0xFFFFFFFEULL) {
        moat::logf(moat::LogLevel::Error, "invalid job uid range\n");
        return 1;
    }
    // Before anything forks: the orphan reaper inherits the lock.
    const int uid_lock = lock_uid_range(uid_lock_dir, uid_base, uid_count);
    if (uid_lock < 0) return 1;
    // Block the shutdown signals in every thread (threads inherit the mask) and
    // take them through a signalfd on the loop.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Not dumpable: no core file of moatd (client requests, job data) and no
    // ptrace of it without CAP_SYS_PTRACE. A job's first process shares
    // moatd's memory until its execve, and its uid change sets this flag on
    // that memory to fs.suid_dumpable anyway: said once here, not left to
    // the first job (docs/security.md).
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(022);
    rlimit nof{};
    if (getrlimit(RLIMIT_NOFILE, &nof) == 0) {
        nof.rlim_cur = nof.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nof);
    }

    if (::mkdir(state_dir.c_str(), 0700) < 0 && errno != EEXIST) {
        moat::logf(moat::LogLevel::Error, "mkdir(\"%s\"): %s\n", state_dir.c_str(), strerror(errno));
        return 1;
    }
    ::chmod(state_dir.c_str(), 0700);
    std::optional<moat::cgroup::Version> prefer;
    if (cgroup_mode == "v1") prefer = moat::cgroup::Version::V1;
    if (cgroup_mode == "v2") prefer = moat::cgroup::Version::V2;
    auto layout = moat::cgroup::Layout::detect(prefer);
    if (!layout) {
        moat::logf(moat::LogLevel::Error, "%s\n", layout.error().message.c_str());
        return 1;
    }

    // One moatd per cgroup parent (lock_cgroup_parent). Before the reaper is
    // forked: it inherits the lock.
    auto parent_wait = moat::parse_duration_ns(cgroup_parent_wait);
    if (!parent_wait || *parent_wait > 3600'000'000'000ULL) {
        moat::logf(moat::LogLevel::Error, "--cgroup-parent-wait %s: %s\n", cgroup_parent_wait.c_str(),
                parent_wait ? "at most 1h" : parent_wait.error().message.c_str());
        return 1;
    }
    // One spelling per directory: the lock file is named after the text, so
    // "moat/", "./moat" or "moat//x" must not pass for other parents than
    // "moat" and "moat/x" (two moatds would then share one and sweep each
    // other's jobs). Checked as given, and again once a delegation put it
    // below moatd's own cgroup (whose name systemd chose).
    auto parent_ok = [&](const char* where) {
        if (valid_cgroup_parent(cgroup_parent)) return true;
        moat::logf(moat::LogLevel::Error,
                   "--cgroup-parent \"%s\"%s: use 1 to 128 characters, components of A-Z a-z 0-9 . _ @ : + - "
                   "separated by single '/', none of them \".\" or \"..\", no leading or trailing '/'\n",
                   cgroup_parent.c_str(), where);
        return false;
    };
    if (!parent_ok("")) return 1;
    // Under systemd's Delegate=yes the job groups live in moatd's own subtree
    // (docs/systemd.md): moatd moves into a leaf of it first (v2 lets only
    // leaves hold processes), before the reaper is forked (it stays there).
    if (cgroup_delegated && layout->version == moat::cgroup::Version::V1) {
        moat::logf(moat::LogLevel::Warning,
                   "--cgroup-delegated: this host uses cgroup v1 for Moat's controllers; jobs go under --cgroup-parent "
                   "\"%s\" in each hierarchy as without it\n",
                   cgroup_parent.c_str());
    } else if (cgroup_delegated) {
        std::ifstream self("/proc/self/cgroup");
        std::stringstream text;
        text << self.rdbuf();
        auto parent = moat::cgroup::delegate_v2(*layout, text.str(), getpid(), cgroup_parent);
        if (!parent) {
            moat::logf(moat::LogLevel::Error, "--cgroup-delegated: %s\n", parent.error().message.c_str());
            return 1;
        }
        cgroup_parent = *parent;
    }
    if (cgroup_delegated && !parent_ok(" (below the delegated cgroup)")) return 1;

    const int parent_lock = lock_cgroup_parent(uid_lock_dir, cgroup_parent, *parent_wait);
    if (parent_lock < 0) return 1;

    // The orphan reaper: a small process forked before any thread exists (so it
    // may allocate and print) that
    // waits for moatd to go away (its pipe reaches EOF, however moatd died) and
    // then kills every process left in the job cgroups. The jobs' own
    // parent-death signal covers their first process; this covers whatever
    // they forked. The next moatd start records those jobs as supervisor-lost.
    int reaper_pipe[2];
    if (pipe2(reaper_pipe, O_CLOEXEC) < 0) {
        moat::logf(moat::LogLevel::Error, "pipe2: %s\n", strerror(errno));
        return 1;
    }
    pid_t reaper = fork();
    if (reaper == 0) {
        close(reaper_pipe[1]);
        if (inherited_listen >= 0) close(inherited_listen);  // clients must never wait on the reaper
        prctl(PR_SET_NAME, "moatd-reaper");
        moat::log_init("moatd-reaper", moat::LogLevel::Warning);
        // Keep nothing of moatd's but the pipe (the store is not open yet).
        char b;
        while (read(reaper_pipe[0], &b, 1) != 0) {
            if (errno != EINTR) break;
        }
        size_t n = moat::cgroup::JobCgroup::kill_all_jobs(*layout, cgroup_parent);
        if (n) moat::logf(moat::LogLevel::Warning, "moatd is gone; killed the processes of %zu job(s)\n", n);
        _exit(0);
    }
    close(reaper_pipe[0]);  // the write end stays open (O_CLOEXEC) for moatd's lifetime

    auto store = moat::store::Store::open(state_dir + "/moat.db");
    if (!store) {
        moat::logf(moat::LogLevel::Error, "opening the store: %s\n", store.error().message.c_str());
        return 1;
    }
    auto loop = moat::EventLoop::create();
    if (!loop) {
        moat::logf(moat::LogLevel::Error, "%s\n", loop.error().message.c_str());
        return 1;
    }
    // The container tier's helper: opened once, executed from the fd (so its
    // path never has to be reachable by a job's uid).
    std::vector<std::string> candidates;
    if (!init_path.empty()) candidates.push_back(init_path);
    else {
        if (std::string dir = moat::exe_dir(); !dir.empty()) {
            candidates.push_back(dir + "/moat-init");
            candidates.push_back(dir + "/../moat-init/moat-init");
            candidates.push_back(dir + "/../libexec/moat/moat-init");
        }
        candidates.push_back("/usr/libexec/moat/moat-init");
    }
    moat::UniqueFd init_fd;
    for (const auto& c : candidates) {
        init_fd.reset(::open(c.c_str(), O_RDONLY | O_CLOEXEC));
        if (init_fd) {
            init_path = c;
            break;
        }
    }
    if (!init_fd) moat::logf(moat::LogLevel::Warning, "moat-init not found (%s): the container tier is unavailable\n", candidates.front().c_str());
    std::string newroot = runtime_dir + "/newroot";
    ::mkdir(runtime_dir.c_str(), 0755);
    if (::mkdir(newroot.c_str(), 0755) < 0 && errno != EEXIST) {
        moat::logf(moat::LogLevel::Error, "mkdir(\"%s\"): %s\n", newroot.c_str(), strerror(errno));
        return 1;
    }

    auto artifacts = moat::store::Artifacts::open(state_dir + "/artifacts");
    if (!artifacts) {
        moat::logf(moat::LogLevel::Error, "%s\n", artifacts.error().message.c_str());
        return 1;
    }
    // Retention and budget of replay recordings: at start and every 10 minutes.
    auto expire = [&] {
        auto gone = (*store)->expire_recordings(moat::now_realtime_ns() - int64_t(rec_limits[4]), rec_limits[3]);
        if (!gone) {
            moat::logf(moat::LogLevel::Warning, "expiring recordings: %s\n", gone.error().message.c_str());
            return;
        }
        for (const auto& sha : *gone) artifacts->remove(sha);
    };
    expire();
    (void)(*loop)->add_timer(600'000'000'000, 600'000'000'000, expire);

    moat::supervisor::Config cfg;
    cfg.artifacts = &*artifacts;
    cfg.stage_dir = runtime_dir + "/stage";
    {
        char real[PATH_MAX];
        cfg.private_dirs = {::realpath(state_dir.c_str(), real) ? std::string(real) : state_dir,
                            ::realpath(runtime_dir.c_str(), real) ? std::string(real) : runtime_dir};
    }
    cfg.record_stdin_max = rec_limits[0];
    cfg.record_output_max = rec_limits[1];
    cfg.record_input_max = rec_limits[2];
    cfg.record_input_entries = record_input_entries;
    cfg.init_exe_fd = init_fd.get();
    cfg.newroot_dir = newroot;
    cfg.spawn_helper = !no_spawn_helper;
    cfg.inits_ahead = inits_ahead;
    cfg.store = store->get();
    cfg.loop = loop->get();
    (*loop)->set_spin_ns(int64_t(notify_spin_ns));
    cfg.cgroups = *layout;
    cfg.cgroup_parent = cgroup_parent;
    cfg.uid_base = uid_base;
    cfg.uid_count = uid_count;
    {
        auto& v = cfg.vm;
        v.enabled = !vm_off;
        v.guest_dir = vm_guest_dir;
        v.cache_dir = vm_cache_dir;
        v.pool_size = vm_pool_size;
        auto dur = [](const std::string& what, const std::string& text, uint64_t& out) {
            auto d = moat::parse_duration_ns(text);
            if (!d) {
                moat::logf(moat::LogLevel::Error, "%s %s: %s\n", what.c_str(), text.c_str(), d.error().message.c_str());
                return false;
            }
            out = *d;
            return true;
        };
        auto size = [](const std::string& what, const std::string& text, uint64_t& out) {
            auto d = moat::parse_size(text);
            if (!d) {
                moat::logf(moat::LogLevel::Error, "%s %s: %s\n", what.c_str(), text.c_str(), d.error().message.c_str());
                return false;
            }
            out = *d;
            return true;
        };
        if (!dur("--vm-pool-idle", vm_pool_idle, v.pool_idle_ns) || !dur("--vm-boot-timeout", vm_boot_timeout, v.boot_timeout_ns) ||
            !size("--vm-guest-overhead", vm_guest_overhead, v.guest_overhead_bytes) ||
            !size("--vm-vmm-overhead", vm_vmm_overhead, v.vmm_overhead_bytes))
            return 1;
        // Static helpers: next to moatd (installed or in the build tree).
        auto find_helper = [](const std::string& given, const std::string& name) {
            if (!given.empty()) return given;
            std::vector<std::string> c;
            if (std::string dir = moat::exe_dir(); !dir.empty()) {
                c = {dir + "/" + name, dir + "/../moat-agent/" + name,
                     dir + "/../../core/vm/" + name, dir + "/../libexec/moat/" + name};
            }
            c.push_back("/usr/libexec/moat/" + name);
            for (const auto& p : c)
                if (access(p.c_str(), R_OK) == 0) return p;
            return std::string();
        };
        v.agent_exe = find_helper(vm_agent, "moat-agent");
        v.probe_exe = find_helper("", "moat-vm-probe-init");
    }
    moat::supervisor::Supervisor sup(cfg);
    for (const auto& [name, why] : sup.tiers())
        if (!why.empty()) moat::logf(moat::LogLevel::Warning, "tier %s unavailable: %s\n", name.c_str(), why.c_str());
    if (auto n = sup.recover(); !n)
        moat::logf(moat::LogLevel::Error, "recovering jobs of a previous run failed: %s\n", n.error().message.c_str());
    else if (*n)
        moat::logf(moat::LogLevel::Notice, "%zu job(s) of a previous run marked supervisor-lost\n", *n);
    // What the store did not know of (a wiped state dir, another state dir on
    // the same parent): job and warm-guest groups an earlier moatd left behind.
    {
        auto sw = moat::cgroup::JobCgroup::sweep_stale_groups(*layout, cgroup_parent);
        if (sw.removed)
            moat::logf(moat::LogLevel::Notice,
                    "removed %zu job or warm-guest cgroup(s) an earlier moatd left under \"%s\" (%zu still "
                    "held processes, killed)\n",
                    sw.removed, cgroup_parent.c_str(), sw.killed);
        for (const auto& f : sw.failed) moat::logf(moat::LogLevel::Warning, "a stale job cgroup could not be removed: %s\n", f.c_str());
    }

    moat::ipc::ServerConfig scfg;
    scfg.socket_path = socket;
    scfg.listen_fd = inherited_listen;
    scfg.admin_group = admin_group;
    scfg.viewer_group = viewer_group;
    scfg.artifacts = &*artifacts;
    {
        // Absolute, so a client in another working directory can open it.
        char real[PATH_MAX];
        scfg.database_path = ::realpath(state_dir.c_str(), real) ? std::string(real) + "/moat.db" : state_dir + "/moat.db";
    }
    scfg.max_clients = max_clients;
    scfg.admin_reserved_clients = admin_reserved_clients;
    scfg.max_clients_per_uid = max_clients_per_uid;
    scfg.client_idle_timeout_ns = int64_t(idle_ns);
    // The metrics endpoint (docs/metrics.md): read-only figures, no request
    // reaches the supervisor or the store beyond these two calls. Bound before
    // the socket is served: a moatd that exits over a bad --metrics must never
    // have accepted a client first.
    std::unique_ptr<moat::ipc::MetricsHttp> metrics;
    if (!metrics_listen.empty()) {
        const std::string db = state_dir + "/moat.db";
        moat::store::Store* st = store->get();
        moat::EventLoop* lp = loop->get();
        auto m = moat::ipc::MetricsHttp::create({.listen = metrics_listen}, loop->get(), [&sup, st, db, lp] {
            moat::supervisor::StoreFigures f{.stats = st->stats()};
            struct stat sb{};
            if (::stat(db.c_str(), &sb) == 0) f.db_bytes = uint64_t(sb.st_size);
            if (::stat((db + "-wal").c_str(), &sb) == 0) f.wal_bytes = uint64_t(sb.st_size);
            return moat::supervisor::render_metrics(sup.metrics(), f, lp->spin_stats());
        });
        if (!m) {
            moat::logf(moat::LogLevel::Error, "metrics: %s\n", m.error().message.c_str());
            return 1;
        }
        metrics = std::move(*m);
        if (!moat::ipc::parse_listen_address(metrics_listen)->loopback)
            moat::logf(moat::LogLevel::Warning,
                    "--metrics %s is not a loopback address: whoever can reach it sees policy names, "
                    "denied syscalls and job counts\n",
                    metrics->address().c_str());
        moat::logf(moat::LogLevel::Notice, "metrics at http://%s/metrics\n", metrics->address().c_str());
    }

    auto server = moat::ipc::Server::create(scfg, loop->get(), &sup, store->get());
    if (!server) {
        moat::logf(moat::LogLevel::Error, "%s\n", server.error().message.c_str());
        return 1;
    }

    moat::UniqueFd sfd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    bool stopping = false;
    (void)(*loop)->add_fd(sfd.get(), EPOLLIN, [&](uint32_t) {
        signalfd_siginfo si{};
        while (read(sfd.get(), &si, sizeof si) == sizeof si) {
            if (stopping) continue;
            stopping = true;
            notify_systemd("STOPPING=1");
            moat::logf(moat::LogLevel::Notice, "%s: stopping %zu running job(s)\n", strsignal(int(si.ssi_signo)), sup.running());
            sup.stop_all(std::string("moatd received SIG") + sigabbrev_np(int(si.ssi_signo)),
                         [&] { (*loop)->stop(); });
        }
    });
    moat::logf(moat::LogLevel::Notice, "serving %s%s; state in %s; cgroup %s; job uids %u..%u\n",
            inherited_listen >= 0 ? "the socket systemd passed" : socket.c_str(),
            inherited_listen >= 0 ? " (socket activation)" : "", state_dir.c_str(), layout->describe().c_str(),
            uid_base, uid_base + uid_count - 1);
    notify_systemd("READY=1\nSTATUS=serving");
    (*loop)->run();
    metrics.reset();
    server->reset();
    (*store)->flush();
    moat::logf(moat::LogLevel::Notice, "stopped\n");
    return 0;
}
