// moat-runtime: the OCI runtime command line (create, start, state, kill,
// delete, features) over moatd. Each container is a container-tier job on the
// local moatd; docs/fleet.md says how engines use it and what it honours.
//
// `create` converts the bundle's config.json (bundle.h), makes the mount
// points the job needs in the rootfs, opens the rootfs and every bind source
// as detached mount trees (open_tree: moatd never looks an engine's path up,
// and the rootfs may live in the engine's own mount namespace), and leaves a
// shim behind: the process the engine is told is the container (--pid-file).
// The shim holds the moatd connection and the trees, waits for `start` on a
// control socket in the state directory, then asks moatd to run the job with
// its own stdio (the engine's pipes) and exits with the job's status. Signals
// sent to it (the engine's kill) reach the job through moatd; if it is killed
// outright, moatd stops the job ("client disconnected").
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "moat/common/fd.h"
#include "moat/common/signals.h"
#include "moat/common/timeutil.h"
#include "moat/ipc/client.h"
#include "moat/ipc/frame.h"

namespace {

using json = nlohmann::json;
using moat::UniqueFd;

struct Global {
    std::string root = "/run/moat-runtime";
    std::string log;
    std::string log_format = "text";
    std::string socket;
};
Global g;

// Errors go to stderr and, when the engine gave one, to its log file (where
// podman and containerd look for a failed runtime's words).
void log_line(const char* level, std::string msg, bool to_stderr = true) {
    for (char& c : msg)  // one line each, whatever a config.json said
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    if (to_stderr) fprintf(stderr, "moat-runtime: %s%s\n", strcmp(level, "error") == 0 ? "" : "warning: ", msg.c_str());
    if (g.log.empty()) return;
    int fd = ::open(g.log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    std::string line = g.log_format == "json"
                           ? json{{"level", level}, {"msg", msg}, {"time", moat::rfc3339_utc(moat::now_realtime_ns())}}
                                     .dump() + "\n"
                           : "moat-runtime: " + std::string(level) + ": " + msg + "\n";
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
}

int die(const std::string& msg) {
    log_line("error", msg);
    return 1;
}

std::string state_dir(const std::string& id) { return g.root + "/" + id; }

std::optional<std::string> read_small(const std::string& path, size_t max) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return std::nullopt;
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        out.append(buf, size_t(n));
        if (out.size() > max) return std::nullopt;
    }
    return out;
}

bool write_atomic(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd || ::write(fd.get(), text.data(), text.size()) != ssize_t(text.size())) return false;
    fd.reset();
    return ::rename(tmp.c_str(), path.c_str()) == 0;
}

// Field 22 of /proc/PID/stat: with the pid, it names one process for good.
uint64_t start_time(pid_t pid) {
    auto s = read_small("/proc/" + std::to_string(pid) + "/stat", 4096);
    if (!s) return 0;
    auto close = s->rfind(')');
    if (close == std::string::npos || close + 2 >= s->size()) return 0;
    if ((*s)[close + 2] == 'Z' || (*s)[close + 2] == 'X') return 0;  // ended, not yet reaped: not running
    std::istringstream in(s->substr(close + 2));
    std::string f;
    for (int i = 3; i <= 22 && in >> f; ++i)
        if (i == 22) return std::strtoull(f.c_str(), nullptr, 10);
    return 0;
}

std::optional<json> load_state(const std::string& id) {
    auto s = read_small(state_dir(id) + "/state.json", 1 << 20);
    if (!s) return std::nullopt;
    json j = json::parse(*s, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    return j;
}

// The shim still runs (the same process, not a reused pid).
bool shim_alive(const json& st) {
    pid_t pid = st.value("pid", 0);
    return pid > 0 && start_time(pid) == st.value("pid_start", uint64_t(0)) && st.value("pid_start", uint64_t(0)) != 0;
}

std::string status_of(const json& st) { return shim_alive(st) ? st.value("status", std::string("created")) : "stopped"; }

std::string socket_path() { return moat::ipc::socket_path(g.socket); }

// --- create -----------------------------------------------------------------

int sys_openat2(int dirfd, const std::string& path, uint64_t flags, uint64_t resolve) {
    open_how how{};
    how.flags = flags;
    how.resolve = resolve;
    return int(syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

std::string fd_name(int fd) {
    char buf[PATH_MAX];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, size_t(n)) : "";
}

// The mount point `target` inside the rootfs, created (as the engine's root,
// like any OCI runtime does) when missing. Every lookup stays inside the
// rootfs (RESOLVE_IN_ROOT): a hostile image's symlinks cannot lead out. The
// answer is where it really is inside the root, symlinks followed, which is
// where moat-init (which follows none) mounts.
moat::Result<std::string> mount_point(int rootfd, const std::string& rootreal, const std::string& target, bool dir) {
    const uint64_t res = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    std::string rel = target.substr(1);
    UniqueFd fd(sys_openat2(rootfd, rel, O_PATH | O_CLOEXEC, res));
    if (!fd && errno == ENOENT) {
        std::string cur;
        std::stringstream ss(rel);
        std::string comp;
        std::vector<std::string> comps;
        while (std::getline(ss, comp, '/'))
            if (!comp.empty()) comps.push_back(comp);
        for (size_t i = 0; i < comps.size(); ++i) {
            std::string next = cur.empty() ? comps[i] : cur + "/" + comps[i];
            UniqueFd probe(sys_openat2(rootfd, next, O_PATH | O_CLOEXEC, res));
            if (!probe) {
                if (errno != ENOENT) return std::unexpected(moat::Error::sys("mount point " + target, errno));
                UniqueFd parent(sys_openat2(rootfd, cur.empty() ? "." : cur, O_PATH | O_DIRECTORY | O_CLOEXEC, res));
                if (!parent) return std::unexpected(moat::Error::sys("mount point " + target, errno));
                const bool last = i + 1 == comps.size();
                if (last && !dir) {
                    int f = openat(parent.get(), comps[i].c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                    if (f < 0 && errno != EEXIST) return std::unexpected(moat::Error::sys("creating mount point " + target, errno));
                    if (f >= 0) ::close(f);
                } else if (mkdirat(parent.get(), comps[i].c_str(), 0755) < 0 && errno != EEXIST) {
                    return std::unexpected(moat::Error::sys("creating mount point " + target, errno));
                }
            }
            cur = next;
        }
        fd.reset(sys_openat2(rootfd, rel, O_PATH | O_CLOEXEC, res));
    }
    if (!fd) return std::unexpected(moat::Error::sys("mount point " + target, errno));
    struct stat st{};
    if (fstat(fd.get(), &st) < 0) return std::unexpected(moat::Error::sys("mount point " + target, errno));
    if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
        return moat::fail("mount point " + target + " in the rootfs is not a " +
                          (dir ? "directory" : "regular file") + ", as its source is");
    std::string real = fd_name(fd.get());
    if (real == rootreal) return std::string("/");
    if (real.rfind(rootreal + "/", 0) != 0) return moat::fail("mount point " + target + " resolves outside the rootfs");
    return real.substr(rootreal.size());
}

moat::Result<UniqueFd> tree_of(const std::string& path, bool recursive) {
    UniqueFd t(int(syscall(SYS_open_tree, AT_FDCWD, path.c_str(),
                           OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0))));
    if (!t) return std::unexpected(moat::Error::sys("open_tree(" + path + ")", errno));
    // A clone of a shared mount stays in its peer group: made private at once,
    // nothing mounted below it in the job can reach the source.
    mount_attr attr{};
    attr.propagation = MS_PRIVATE;
    if (syscall(SYS_mount_setattr, t.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return std::unexpected(moat::Error::sys("mount_setattr(" + path + ", private)", errno));
    return t;
}

struct Shim {
    std::string id, dir;
    json request;
    std::vector<UniqueFd> trees;
    moat::ipc::Client client;  // connected at start: moatd closes idle connections
    UniqueFd ctl;
    UniqueFd ready;  // write end: 'R', or 'E' and the reason
};

void shim_fail_ready(Shim& s, const std::string& why) {
    std::string m = "E" + why;
    (void)!::write(s.ready.get(), m.data(), m.size());
    _exit(1);
}

bool save(const std::string& dir, json st) { return write_atomic(dir + "/state.json", st.dump(2) + "\n"); }

// The shim's whole life: created -> running -> the job's exit status.
[[noreturn]] void run_shim(Shim& s, json st) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : moat::kJobSignals)
        if (sig != SIGKILL) sigaddset(&set, sig);  // passed on to the job
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    UniqueFd sfd(signalfd(-1, &set, SFD_CLOEXEC));
    if (!sfd) shim_fail_ready(s, std::string("signalfd: ") + strerror(errno));
    st["pid"] = getpid();
    st["pid_start"] = start_time(getpid());
    st["status"] = "created";
    if (!save(s.dir, st)) shim_fail_ready(s, "cannot write " + s.dir + "/state.json: " + strerror(errno));
    (void)!::write(s.ready.get(), "R", 1);
    s.ready.reset();

    auto end = [&](int code, const std::string& why) {
        st["status"] = "stopped";
        st["exit_code"] = code;
        if (!why.empty()) st["ended"] = why;
        save(s.dir, st);
        _exit(code);
    };
    int64_t job = 0;
    for (;;) {
        pollfd p[3] = {{sfd.get(), POLLIN, 0}, {s.ctl.get(), POLLIN, 0}, {job ? s.client.fd() : -1, POLLIN, 0}};
        if (::poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            end(125, std::string("poll: ") + strerror(errno));
        }
        if (p[0].revents & POLLIN) {
            signalfd_siginfo si{};
            if (::read(sfd.get(), &si, sizeof si) == ssize_t(sizeof si)) {
                const int sig = int(si.ssi_signo);
                if (!job) {
                    // Never started: a terminating signal ends the container.
                    if (sig != SIGWINCH && sig != SIGUSR1 && sig != SIGUSR2) end(128 + sig, "signal before start");
                } else if (auto r = s.client.send({{"op", "signal"}, {"job", job}, {"signal", sig}}); !r) {
                    log_line("error", "container " + s.id + ": passing signal " + std::to_string(sig) + " to job " +
                                          std::to_string(job) + ": " + r.error().message, false);
                }
            }
        }
        if (p[1].revents & POLLIN) {
            UniqueFd c(::accept4(s.ctl.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!c) continue;
            timeval tv{5, 0};
            setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            char buf[16] = {};
            ssize_t n = ::read(c.get(), buf, sizeof buf - 1);
            if (n < 5 || strncmp(buf, "start", 5) != 0) continue;
            if (job) {
                const std::string busy = "error it was started already (job " + std::to_string(job) + ")\n";
                (void)!::write(c.get(), busy.data(), busy.size());
                continue;
            }
            std::vector<int> fds = {0, 1, 2};
            for (const auto& t : s.trees) fds.push_back(t.get());
            std::string answer;
            int fail_code = 0;
            auto conn = moat::ipc::Client::connect(socket_path());
            if (conn) s.client = std::move(*conn);
            if (!conn) {
                answer = "error moatd: " + conn.error().message;
                fail_code = 125;
            } else if (auto r = s.client.send(s.request, fds); !r) {
                answer = "error moatd: " + r.error().message;
                fail_code = 125;
            } else {
                s.trees.clear();  // moatd holds its own now
                for (;;) {
                    auto m = s.client.receive();
                    if (!m) {
                        answer = "error moatd: " + m.error().message;
                        fail_code = 125;
                        break;
                    }
                    if (!m->value("ok", false)) {
                        answer = "error " + m->value("error", std::string("moatd refused the job"));
                        fail_code = 125;
                        break;
                    }
                    if (m->contains("job") && (*m)["job"].is_number_integer()) {
                        job = (*m)["job"].get<int64_t>();
                        answer = "ok " + std::to_string(job);
                        break;
                    }
                }
            }
            answer += "\n";
            (void)!::write(c.get(), answer.data(), answer.size());
            if (fail_code) end(fail_code, answer.substr(6));
            st["status"] = "running";
            st["job"] = job;
            save(s.dir, st);
            continue;
        }
        if (job && (p[2].revents & (POLLIN | POLLHUP))) {
            auto m = s.client.receive();
            if (!m) end(125, "lost moatd: " + m.error().message);
            if (!m->value("ok", false)) {
                log_line("error", "container " + s.id + ": moatd: " + m->value("error", std::string("-")), false);
                continue;
            }
            if (!m->contains("finished")) continue;
            const json& rec = (*m)["finished"];
            const json& term = rec.value("termination", json::object());
            const std::string cause = term.value("cause", std::string());
            st["cause"] = cause;
            st["detail"] = term.value("detail", std::string());
            if (cause == "setup-failed") {
                // The engine shows the container's stderr: say it there.
                std::string msg = "moat-runtime: job " + std::to_string(job) +
                                  " could not be set up: " + term.value("detail", std::string()) + "\n";
                (void)!::write(2, msg.data(), msg.size());
                log_line("error", msg.substr(14, msg.size() - 15), false);
                end(125, "setup-failed");
            }
            if (rec.contains("exit_code") && rec["exit_code"].is_number_integer()) end(rec["exit_code"].get<int>(), "");
            if (rec.contains("signal") && rec["signal"].is_number_integer())
                end(128 + rec["signal"].get<int>(), cause);
            end(125, cause);
        }
    }
}

int cmd_create(const std::string& bundle_in, const std::string& pid_file, const std::string& console_socket,
               const std::string& id) {
    if (!moat::runtime::valid_container_id(id)) return die("container id \"" + id.substr(0, 140) + "\" is not valid");
    char bundle_real[PATH_MAX];
    if (!realpath(bundle_in.empty() ? "." : bundle_in.c_str(), bundle_real))
        return die("bundle " + bundle_in + ": " + strerror(errno));
    const std::string bundle = bundle_real;
    auto text = read_small(bundle + "/config.json", moat::runtime::kMaxConfigBytes);
    if (!text) return die(bundle + "/config.json: cannot read it (or it is larger than 4 MiB)");
    auto job = moat::runtime::convert_bundle(*text, bundle, id);
    if (!job) return die("container " + id + ": " + job.error().message);
    if (job->terminal || !console_socket.empty())
        return die("container " + id + " asks for a terminal (process.terminal, podman -t): a Moat job has no "
                   "terminal; run it without -t (-i works)");
    for (const auto& n : job->notes) log_line("warning", "container " + id + ": " + n, false);

    // The rootfs, its mount points and the trees moatd will mount.
    char rootreal[PATH_MAX];
    if (!realpath(job->rootfs.c_str(), rootreal)) return die("rootfs " + job->rootfs + ": " + strerror(errno));
    UniqueFd rootfd(::open(rootreal, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!rootfd) return die(std::string("rootfs ") + rootreal + ": " + strerror(errno));
    // Every mount point, parent before child. One below a bind is made in
    // that bind's source (where moat-init will find it), not in the image.
    struct Need {
        std::string target;
        const moat::runtime::BundleBind* bind = nullptr;  // null: /proc, /dev, a tmpfs
    };
    std::vector<Need> needs;
    for (const auto& mp : job->mount_points) needs.push_back({mp, nullptr});
    for (const auto& b : job->binds) needs.push_back({b.target, &b});
    auto depth = [](const std::string& t) { return std::count(t.begin(), t.end(), '/'); };
    std::stable_sort(needs.begin(), needs.end(), [&](const Need& a, const Need& b) { return depth(a.target) < depth(b.target); });
    struct Placed {
        std::string target;  // where it is inside the container, resolved
        std::string source;  // its source's real host path
    };
    std::vector<Placed> placed;  // directory binds made so far
    auto place = [&](const std::string& target, bool dir) -> moat::Result<std::string> {
        const Placed* parent = nullptr;
        for (const auto& p : placed)
            if (target.size() > p.target.size() && target.compare(0, p.target.size(), p.target) == 0 &&
                (p.target == "/" || target[p.target.size()] == '/') && (!parent || p.target.size() > parent->target.size()))
                parent = &p;
        if (!parent) return mount_point(rootfd.get(), rootreal, target, dir);
        UniqueFd pfd(::open(parent->source.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!pfd) return std::unexpected(moat::Error::sys("bind source " + parent->source, errno));
        auto r = mount_point(pfd.get(), parent->source, target.substr(parent->target.size()), dir);
        if (!r) return r;
        return parent->target + (*r == "/" ? "" : *r);
    };
    std::vector<UniqueFd> trees;
    auto root_tree = tree_of(rootreal, true);
    if (!root_tree) return die("container " + id + ": rootfs: " + root_tree.error().message);
    trees.push_back(std::move(*root_tree));
    json binds = json::array();
    for (const auto& n : needs) {
        if (!n.bind) {
            auto r = place(n.target, true);
            if (!r) return die("container " + id + ": " + r.error().message);
            // moat-init follows no symlink: these are mounted where they are named.
            if (*r != n.target)
                return die("container " + id + ": " + n.target + " is a symlink in the image (to " + *r +
                           "); moat-runtime mounts /proc, /dev and tmpfs only on real directories");
            continue;
        }
        const auto& b = *n.bind;
        char real[PATH_MAX];
        struct stat st{};
        if (!realpath(b.source.c_str(), real) || ::stat(real, &st) < 0)
            return die("bind source " + b.source + ": " + strerror(errno));
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
            return die("bind source " + b.source + " is neither a directory nor a regular file");
        auto at = place(b.target, S_ISDIR(st.st_mode));
        if (!at) return die("container " + id + ": " + at.error().message);
        auto t = tree_of(real, b.recursive);
        if (!t) return die("container " + id + ": bind " + b.target + ": " + t.error().message);
        trees.push_back(std::move(*t));
        binds.push_back({{"target", *at}, {"read_only", b.read_only}});
        if (S_ISDIR(st.st_mode)) placed.push_back({*at, real});
    }

    // The engine's network namespace, when it made one: passed as an fd
    // (it is checked to be a network namespace here and again by moatd).
    if (!job->netns_path.empty()) {
        UniqueFd ns(::open(job->netns_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!ns) return die("network namespace " + job->netns_path + ": " + strerror(errno));
        if (ioctl(ns.get(), NS_GET_NSTYPE) != CLONE_NEWNET)
            return die(job->netns_path + " is not a network namespace");
        trees.push_back(std::move(ns));
    }

    // moatd must be there and let us run jobs before the engine is told the
    // container exists. (The shim connects again at start: moatd closes a
    // connection that stays idle, and create and start may be far apart.)
    {
        auto client = moat::ipc::Client::connect(socket_path());
        if (!client) return die("moatd: " + client.error().message);
        auto hello = client->call({{"op", "hello"}});
        if (!hello) return die("moatd: " + hello.error().message);
        if (hello->value("role", std::string()) != "admin")
            return die("moatd at " + socket_path() + " gives this user the role \"" +
                       hello->value("role", std::string("?")) +
                       "\"; running containers needs admin (root or group moat-admin)");
    }

    json req = {{"op", "run"},
                {"policy_toml", job->policy_toml},
                {"policy_source", "oci:" + id},
                {"argv", job->argv},
                {"env", json::array()},
                {"cwd", job->cwd},
                {"tier", "container"},
                {"rootfs",
                 {{"read_only", job->root_read_only},
                  {"binds", binds},
                  {"dev_shm_bytes", job->dev_shm_bytes},
                  {"netns", !job->netns_path.empty()},
                  {"origin", "oci container " + id + " (bundle " + bundle + ")"}}}};

    ::mkdir(g.root.c_str(), 0700);
    const std::string dir = state_dir(id);
    if (::mkdir(dir.c_str(), 0700) < 0)
        return die(errno == EEXIST ? "container " + id + " already exists" : "mkdir " + dir + ": " + strerror(errno));
    auto undo = [&](const std::string& why) {
        ::unlink((dir + "/ctl.sock").c_str());
        ::unlink((dir + "/state.json").c_str());
        ::rmdir(dir.c_str());
        return die(why);
    };
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string ctl_path = dir + "/ctl.sock";
    if (ctl_path.size() >= sizeof addr.sun_path) return undo("state directory path too long for a socket: " + ctl_path);
    memcpy(addr.sun_path, ctl_path.c_str(), ctl_path.size() + 1);
    UniqueFd ctl(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!ctl || ::bind(ctl.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(ctl.get(), 4) < 0)
        return undo("control socket " + ctl_path + ": " + strerror(errno));
    ::chmod(ctl_path.c_str(), 0600);

    json st = {{"ociVersion", "1.0.2"},
               {"id", id},
               {"bundle", bundle},
               {"rootfs", rootreal},
               {"created", moat::rfc3339_utc(moat::now_realtime_ns())},
               {"status", "creating"},
               {"policy", job->policy_name}};
    json cfg = json::parse(*text, nullptr, false);
    st["annotations"] = cfg.is_object() && cfg.value("annotations", json::object()).is_object()
                            ? cfg.value("annotations", json::object())
                            : json::object();

    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0) return undo(std::string("pipe2: ") + strerror(errno));
    UniqueFd ready_r(rp[0]), ready_w(rp[1]);
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) return undo(std::string("fork: ") + strerror(errno));
    if (pid == 0) {
        ready_r.reset();
        setsid();  // the engine's terminal signals are not the container's
        // Nothing of the engine's reaches the shim but stdio (which becomes
        // the job's): no pipe of the engine's stays open because of us.
        std::vector<int> keep = {0, 1, 2, ready_w.get(), ctl.get()};
        for (const auto& t : trees) keep.push_back(t.get());
        std::vector<int> stray;
        if (DIR* d = opendir("/proc/self/fd")) {
            while (dirent* e = readdir(d)) {
                int fd = atoi(e->d_name);
                if (e->d_name[0] != '.' && fd != dirfd(d) && std::find(keep.begin(), keep.end(), fd) == keep.end())
                    stray.push_back(fd);
            }
            closedir(d);
        }
        for (int fd : stray) ::close(fd);
        Shim s;
        s.id = id;
        s.dir = dir;
        s.request = std::move(req);
        s.trees = std::move(trees);
        s.ctl = std::move(ctl);
        s.ready = std::move(ready_w);
        run_shim(s, std::move(st));
    }
    ready_w.reset();
    trees.clear();
    ctl.reset();
    std::string answer;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(ready_r.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        answer.append(buf, size_t(n));
    }
    if (answer != "R") {
        waitpid(pid, nullptr, 0);
        return undo("container " + id + ": the shim did not start: " +
                    (answer.size() > 1 ? answer.substr(1) : std::string("it ended without a word")));
    }
    if (!pid_file.empty() && !write_atomic(pid_file, std::to_string(pid))) {
        const int e = errno;
        ::kill(pid, SIGKILL);  // the engine will never know this shim: nothing may be left of it
        waitpid(pid, nullptr, 0);
        return undo("--pid-file " + pid_file + ": " + strerror(e));
    }
    return 0;
}

// --- start, state, kill, delete, features -----------------------------------

int cmd_start(const std::string& id) {
    if (!moat::runtime::valid_container_id(id)) return die("container id is not valid");
    auto st = load_state(id);
    if (!st) return die("container " + id + " does not exist");
    const std::string status = status_of(*st);
    if (status != "created") return die("container " + id + " is " + status + ", not created");
    auto c = moat::ipc::connect_unix(state_dir(id) + "/ctl.sock");
    if (!c) return die("container " + id + ": " + c.error().message);
    // moatd answers a run at once (the job's set-up goes on after); a shim
    // that says nothing in a minute is not going to.
    timeval tv{60, 0};
    setsockopt(c->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::write(c->get(), "start\n", 6) != 6) return die("container " + id + ": the shim does not listen");
    std::string answer;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(c->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        answer.append(buf, size_t(n));
        if (answer.find('\n') != std::string::npos || answer.size() > (64u << 10)) break;
    }
    if (answer.rfind("ok ", 0) == 0) return 0;
    if (answer.rfind("error ", 0) == 0) return die("container " + id + ": " + answer.substr(6, answer.find('\n') - 6));
    return die("container " + id + ": the shim ended before the job started");
}

int cmd_state(const std::string& id) {
    if (!moat::runtime::valid_container_id(id)) return die("container id is not valid");
    auto st = load_state(id);
    if (!st) return die("container " + id + " does not exist");
    const std::string status = status_of(*st);
    json out = {{"ociVersion", st->value("ociVersion", std::string("1.0.2"))},
                {"id", id},
                {"status", status},
                {"pid", status == "stopped" ? 0 : st->value("pid", 0)},
                {"bundle", st->value("bundle", std::string())},
                {"rootfs", st->value("rootfs", std::string())},
                {"created", st->value("created", std::string())},
                {"owner", ""},
                {"annotations", st->value("annotations", json::object())}};
    if (st->contains("job")) out["annotations"]["org.moat.job"] = std::to_string(st->value("job", int64_t(0)));
    printf("%s\n", out.dump(2).c_str());
    return 0;
}

// SIGKILL to a running job goes through moatd (cause "stopped", and the shim
// exits with 137); any other signal goes to the shim, which passes it on.
int kill_container(const json& st, const std::string& id, int sig) {
    const pid_t pid = st.value("pid", 0);
    if (sig == SIGKILL && st.value("status", std::string()) == "running" && st.contains("job")) {
        auto c = moat::ipc::Client::connect(socket_path());
        if (c) {
            auto r = c->call({{"op", "signal"}, {"job", st.value("job", int64_t(0))}, {"signal", SIGKILL}});
            if (r) {
                // The shim reports the job's end and exits; wait for that, briefly.
                for (int i = 0; i < 200 && shim_alive(st); ++i) usleep(10000);
                if (!shim_alive(st)) return 0;
            }
        }
    }
    // Through a pidfd taken, then checked to be the shim: a pid reused since
    // the check cannot be signalled by mistake.
    UniqueFd pfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pfd || !shim_alive(st)) return 0;  // it ended meanwhile
    if (syscall(SYS_pidfd_send_signal, pfd.get(), sig, nullptr, 0) < 0 && errno != ESRCH)
        return die("kill " + id + ": " + strerror(errno));
    return 0;
}

int cmd_kill(const std::string& id, const std::string& signame) {
    if (!moat::runtime::valid_container_id(id)) return die("container id is not valid");
    auto st = load_state(id);
    if (!st) return die("container " + id + " does not exist");
    const int sig = moat::parse_signal(signame.empty() ? "TERM" : signame);
    if (sig == 0) return die("unknown signal \"" + signame + "\"");
    if (!moat::job_signal(sig))
        return die(std::string("SIG") + sigabbrev_np(sig) +
                   " is not passed to a Moat job (KILL, TERM, INT, HUP, QUIT, USR1, USR2 and WINCH are)");
    if (!shim_alive(*st)) return die("container " + id + " is not running");
    return kill_container(*st, id, sig);
}

int cmd_delete(const std::string& id, bool force) {
    if (!moat::runtime::valid_container_id(id)) return die("container id is not valid");
    auto st = load_state(id);
    if (!st) {
        struct stat sb{};
        if (::stat(state_dir(id).c_str(), &sb) < 0) return die("container " + id + " does not exist");
        st = json::object();  // half-made by a create that died: removed below
    }
    if (shim_alive(*st)) {
        if (!force) return die("container " + id + " is " + status_of(*st) + "; stop it first, or delete --force");
        kill_container(*st, id, SIGKILL);
        for (int i = 0; i < 300 && shim_alive(*st); ++i) usleep(10000);
        if (shim_alive(*st)) return die("container " + id + ": the shim did not end");
    }
    const std::string dir = state_dir(id);
    for (const char* f : {"/ctl.sock", "/state.json", "/state.json.tmp"}) ::unlink((dir + f).c_str());
    if (::rmdir(dir.c_str()) < 0 && errno != ENOENT) return die("rmdir " + dir + ": " + strerror(errno));
    return 0;
}

int cmd_features() {
    json f = {
        {"ociVersionMin", "1.0.0"},
        {"ociVersionMax", "1.2.0"},
        {"hooks", json::array()},
        {"mountOptions", {"bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate", "private", "size"}},
        {"linux",
         {{"namespaces", {"pid", "network", "ipc", "uts", "mount", "user", "cgroup"}},
          {"capabilities", json::array()},
          {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}}},
          {"seccomp",
           {{"enabled", true},
            {"actions",
             {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
              "SCMP_ACT_TRAP", "SCMP_ACT_LOG"}},
            {"operators",
             {"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
              "SCMP_CMP_MASKED_EQ"}},
            {"archs", {"SCMP_ARCH_X86_64"}}}},
          {"apparmor", {{"enabled", false}}},
          {"selinux", {{"enabled", false}}}}},
        {"annotations",
         {{"org.moat.runtime", "moat-runtime " MOAT_VERSION},
          {"org.moat.limits", "org.moat.limits.wall_time, .cpu_time, .memory set the job's limits"}}}};
    printf("%s\n", f.dump(2).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    moat::ensure_stdio_open();
    CLI::App app{"moat-runtime: an OCI runtime that runs each container as a Moat container-tier job"};
    app.set_version_flag("--version", "moat-runtime " MOAT_VERSION);
    app.require_subcommand(1);
    app.add_option("--root", g.root, "state directory")->capture_default_str();
    app.add_option("--log", g.log, "append errors and notes to this file");
    app.add_option("--log-format", g.log_format, "text or json")->check(CLI::IsMember({"text", "json"}));
    app.add_option("--moat-socket", g.socket, "moatd's socket (else $MOAT_SOCKET, else /run/moat/moatd.sock)");
    bool debug = false, systemd_cgroup = false;
    std::string rootless;
    app.add_flag("--debug", debug, "accepted; moat-runtime logs errors and notes only");
    app.add_flag("--systemd-cgroup", systemd_cgroup, "accepted; moatd places jobs in its own cgroups");
    app.add_option("--rootless", rootless, "accepted; moatd decides the job's identity");
    std::string log_level;
    app.add_option("--log-level", log_level, "accepted (runc's option, passed by CRI-O and containerd); moat-runtime "
                                             "logs errors and notes");

    std::string id, bundle, pid_file, console_socket, signame;
    int preserve_fds = 0;
    bool no_pivot = false, no_new_keyring = false, all = false, force = false;
    auto* create = app.add_subcommand("create", "create a container from an OCI bundle (its shim waits for start)");
    create->add_option("--bundle,-b", bundle, "the bundle directory (default: the current one)");
    create->add_option("--pid-file", pid_file, "write the container's pid (the shim's) here");
    create->add_option("--console-socket", console_socket, "refused: a Moat job has no terminal");
    create->add_option("--preserve-fds", preserve_fds, "refused unless 0: only stdio reaches a Moat job");
    create->add_flag("--no-pivot", no_pivot, "accepted; the job's root is always pivoted");
    create->add_flag("--no-new-keyring", no_new_keyring, "accepted; a Moat job's filter decides the keyring calls");
    create->add_option("id", id)->required();
    auto* start = app.add_subcommand("start", "run the created container's program");
    start->add_option("id", id)->required();
    auto* state = app.add_subcommand("state", "the container's state (OCI JSON)");
    state->add_option("id", id)->required();
    auto* kill = app.add_subcommand("kill", "send the container a signal (default TERM; KILL stops its job)");
    kill->add_flag("--all,-a", all, "accepted; the signal reaches the job's program");
    kill->add_option("id", id)->required();
    kill->add_option("signal", signame);
    auto* del = app.add_subcommand("delete", "remove a stopped container's state");
    del->add_flag("--force,-f", force, "kill it first when it still runs");
    del->add_option("id", id)->required();
    auto* features = app.add_subcommand("features", "what this runtime supports (OCI features JSON)");
    CLI11_PARSE(app, argc, argv);

    if (create->parsed()) {
        if (preserve_fds != 0) return die("--preserve-fds " + std::to_string(preserve_fds) + ": only stdio reaches a Moat job");
        return cmd_create(bundle, pid_file, console_socket, id);
    }
    if (start->parsed()) return cmd_start(id);
    if (state->parsed()) return cmd_state(id);
    if (kill->parsed()) return cmd_kill(id, signame);
    if (del->parsed()) return cmd_delete(id, force);
    if (features->parsed()) return cmd_features();
    return 2;
}
