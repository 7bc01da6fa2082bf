#include "path_learn.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <deque>
#include <future>
#include <thread>

#include "moat/common/fd.h"
#include "moat/common/paths.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/guest/prefetch.h"
#include "moat/sandbox/path_walk.h"
#include "moat/supervisor/decode.h"
#include "creds.h"

namespace moat::supervisor {

namespace {

using nlohmann::json;

struct Watched {
    const char* name;
    PathArg arg;
};
// Calls that look a path up for reading or running; calls that create or
// change a path are left to the policy's read_write entries.
const Watched kWatched[] = {
    {"open", {-1, 0, -1, false, true, 1}},
    {"openat", {0, 1, -1, false, true, 2}},
    {"creat", {-1, 0, -1, false, false, -2}},  // -2: always creates
    {"openat2", {0, 1, -1, false, true}},
    {"execve", {-1, 0, -1, false, true}},
    {"execveat", {0, 1, 4, false, true}},
    {"stat", {-1, 0, -1, false, false}},
    {"lstat", {-1, 0, -1, true, false}},
    {"newfstatat", {0, 1, 3, false, false}},
    {"statx", {0, 1, 2, false, false}},
    {"access", {-1, 0, -1, false, false}},
    {"faccessat", {0, 1, -1, false, false}},
    {"faccessat2", {0, 1, 3, false, false}},
    {"readlink", {-1, 0, -1, true, false}},
    {"readlinkat", {0, 1, -1, true, false}},
    {"chdir", {-1, 0, -1, false, false}},
};

// Paths the sandbox makes itself; a policy cannot bind them from the host.
bool sandbox_own(const std::string& path) {
    for (const char* p : {"/proc", "/sys", "/dev"}) {
        const size_t n = strlen(p);
        if (path.compare(0, n, p) == 0 && (path.size() == n || path[n] == '/')) return true;
    }
    return false;
}

// Lexically normalised: "//" and "/./" folded; ".." is kept (only the kernel
// knows where it leads once links are involved).
std::string normalised(const std::string& path) {
    std::string out;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        std::string c = path.substr(i, j - i);
        if (!c.empty() && c != ".") out += "/" + c;
        i = j + 1;
    }
    return out.empty() ? "/" : out;
}

// What executing `file` loads before the program's first instruction: a
// script's interpreter, an ELF's PT_INTERP and its DT_NEEDED libraries
// (transitively, in the standard directories). Runs with the client's rights.
std::vector<std::pair<std::string, std::string>> exec_deps(const std::string& file) {
    constexpr size_t kMaxDeps = 64;
    std::vector<std::pair<std::string, std::string>> out;  // path, why
    std::deque<std::string> todo{file};
    std::set<std::string> seen{file};
    const auto dirs = guest::library_dirs();
    while (!todo.empty() && out.size() < kMaxDeps) {
        const std::string f = todo.front();
        todo.pop_front();
        UniqueFd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        if (!fd) continue;
        struct stat st{};
        if (fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) continue;
        // A script's interpreter, or an ELF's PT_INTERP and its libraries.
        const guest::ElfDeps deps = guest::elf_deps(fd.get());
        const std::string interp = sandbox::interpreter_of(fd.get());
        if (!interp.empty() && interp[0] == '/' && seen.insert(interp).second) {
            out.emplace_back(interp, (deps.interp.empty() ? "the interpreter of " : "the ELF interpreter of ") + f);
            todo.push_back(interp);
        }
        for (const auto& name : deps.needed) {
            for (const auto& dir : dirs) {
                const std::string cand = dir + "/" + name;
                if (access(cand.c_str(), F_OK) != 0) continue;
                if (seen.insert(cand).second) {
                    out.emplace_back(cand, "a library " + f + " needs (" + name + ")");
                    todo.push_back(cand);
                }
                break;
            }
        }
    }
    return out;
}

}  // namespace

std::optional<PathArg> watched_path_arg(const std::string& syscall) {
    for (const auto& w : kWatched)
        if (syscall == w.name) return w.arg;
    return std::nullopt;
}

const std::vector<std::string>& watched_path_syscalls() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const auto& w : kWatched)
            if (std::string_view(w.name).substr(0, 6) != "execve") v.emplace_back(w.name);  // always notified
        return v;
    }();
    return names;
}

bool PathLearner::View::covers(const std::string& path) const {
    for (const auto* list : {&visible, &scratch})
        for (const auto& v : *list)
            if (path_under(path, v)) return true;
    return false;
}

bool PathLearner::same_cwd(pid_t tid) const {
    char cwd[64];
    snprintf(cwd, sizeof cwd, "/proc/%d/cwd", int(tid));
    struct stat a{}, b{};
    if (stat(cwd, &a) < 0) return false;
    if (!m_view.mount_namespace) return stat(m_view.cwd.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    char root[64];
    snprintf(root, sizeof root, "/proc/%d/root", int(tid));
    UniqueFd r(::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!r) return false;
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd d(int(syscall(SYS_openat2, r.get(), m_view.cwd.c_str(), &how, sizeof how)));
    return d && fstat(d.get(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

bool PathLearner::missing_inside(pid_t tid, const std::string& path, bool nofollow, bool opens) const {
    if (m_view.mount_namespace) {
        // Looked up in the job's own root: its mounts, its symlinks.
        char root[64];
        snprintf(root, sizeof root, "/proc/%d/root", int(tid));
        UniqueFd r(::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!r) return false;
        open_how how{};
        how.flags = O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0);
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        UniqueFd f(int(syscall(SYS_openat2, r.get(), path.c_str(), &how, sizeof how)));
        if (f) return false;
        return errno == ENOENT || errno == ENOTDIR;
    }
    // No mount namespace (seccomp tier): the job sees the host's tree and
    // Landlock decides what it may open or run. Nothing is looked up here
    // with moatd's rights: a path outside the rules' names is a candidate, and
    // report() resolves it with the client's (where it really leads decides).
    (void)nofollow;
    return opens && !covered(path);
}

void PathLearner::observe(pid_t tid, const std::string& syscall, const uint64_t args[6]) {
    auto pa = watched_path_arg(syscall);
    if (!pa) return;
    auto raw = read_remote_string(tid, args[pa->path], PATH_MAX);
    if (!raw || raw->empty()) return;
    std::string path = *raw;
    // Control bytes (a newline in a path would reach a proposal's comment
    // lines), bytes that are not UTF-8 (no policy file can name them), "..",
    // or a long path: not followed, only counted.
    const bool hostile = path.size() > kMaxPathBytes || !valid_utf8(path) ||
                         std::any_of(path.begin(), path.end(), [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; }) ||
                         path == ".." || path.starts_with("../") || path.find("/../") != std::string::npos ||
                         path.ends_with("/..");
    if (hostile) {
        ++m_unfollowed;
        return;
    }
    if (path[0] != '/') {
        const bool from_cwd = pa->dirfd < 0 || int(args[pa->dirfd]) == AT_FDCWD;
        if (!from_cwd || !same_cwd(tid)) {
            ++m_relative;
            return;
        }
        path = m_view.cwd + "/" + path;
    }
    path = normalised(path);
    if (auto it = m_missing.find(path); it != m_missing.end()) {
        ++it->second.calls;
        return;
    }
    if (sandbox_own(path)) return;
    for (const auto& s : m_view.scratch)
        if (path_under(path, s)) return;  // the job's own tmpfs
    if (pa->open_flags != -1) {
        const uint64_t f = pa->open_flags >= 0 ? args[pa->open_flags] : uint64_t(O_CREAT);
        if ((f & __O_TMPFILE) == __O_TMPFILE) {  // an unnamed file in the directory `path`
            observe_write(tid, syscall, path + "/.");
            return;
        }
        if (f & (O_CREAT | O_WRONLY | O_RDWR)) {
            observe_write(tid, syscall, path);
            return;
        }
    }
    const uint64_t h = std::hash<std::string>{}(path);
    if (m_present.count(h)) return;
    const bool nofollow = pa->nofollow || (pa->flags >= 0 && (args[pa->flags] & AT_SYMLINK_NOFOLLOW));
    if (!missing_inside(tid, path, nofollow, pa->opens)) {
        if (m_present.size() < kMaxLookups) m_present.insert(h);
        return;
    }
    missing(path, syscall, syscall.starts_with("execve"));
}

void PathLearner::observe_write(pid_t tid, const std::string& syscall, const std::string& path) {
    // Only the container tier has a view of its own to be read-only in.
    if (!m_view.mount_namespace || path == "/") return;
    const size_t slash = path.rfind('/');
    const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    if (auto it = m_write_dirs.find(dir); it != m_write_dirs.end()) {
        ++it->second.calls;
        return;
    }
    const uint64_t h = std::hash<std::string>{}("\1" + dir);
    if (m_present.count(h)) return;  // known writable
    char root[64];
    snprintf(root, sizeof root, "/proc/%d/root", int(tid));
    UniqueFd r(::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!r) return;
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd d(int(::syscall(SYS_openat2, r.get(), dir.c_str(), &how, sizeof how)));
    struct statvfs sv{};
    const bool writable = d && fstatvfs(d.get(), &sv) == 0 && !(sv.f_flag & ST_RDONLY);
    if (writable || (!d && errno != ENOENT && errno != ENOTDIR)) {
        if (m_present.size() < kMaxLookups) m_present.insert(h);
        return;
    }
    if (m_write_dirs.size() >= kMaxPaths) {
        ++m_dropped;
        return;
    }
    m_write_dirs.emplace(dir, WriteDir{syscall, path, 1});
}

void PathLearner::missing(const std::string& path, const std::string& syscall, bool exec, uint64_t calls) {
    auto it = m_missing.find(path);
    if (it == m_missing.end()) {
        if (m_missing.size() >= kMaxPaths) {
            m_dropped += calls;
            return;
        }
        it = m_missing.emplace(path, Seen{syscall, 0, false}).first;
    }
    it->second.calls += calls;
    it->second.exec = it->second.exec || exec;
}

json PathLearner::report(const ClientCreds& who) const {
    // The lookups run on a thread of their own with the client's rights, on
    // a copy of what they need: moatd's loop waits at most kReportBudgetNs
    // (a hung NFS or FUSE mount the job named must not stall every job), and
    // a thread that overruns finishes alone and is forgotten.
    struct State {
        std::map<std::string, Seen> missing;
        View view;
        ClientCreds who;
        json paths = json::array();
        std::string failed;
        bool truncated = false;
        std::promise<void> done;
    };
    auto st = std::make_shared<State>();
    st->missing = m_missing;
    st->view = m_view;
    st->who = who;
    const int64_t deadline = now_monotonic_ns() + kReportBudgetNs;
    std::future<void> finished = st->done.get_future();
    try {
        std::thread([st, deadline] {
            State& S = *st;
            auto priv = [&](const std::string& p) {
                for (const auto& d : S.view.private_dirs)
                    if (path_under(p, d) || path_under(d, p)) return true;
                return false;
            };
            auto add_path = [&](json& add, const std::string& p, const char* kind, const std::string& why) {
                json a = {{"path", p}, {"kind", kind}, {"why", why}};
                if (priv(p)) a["private"] = true;
                add.push_back(std::move(a));
            };
            // Under Landlock a symlink is followed freely: only where it leads matters.
            const bool links_matter = S.view.mount_namespace;
            auto hops = [&](const sandbox::PathWalk& w, json& add, const std::string& why_final) {
                if (links_matter)
                    for (const auto& l : w.links)
                        if (!S.view.covers(l.path))
                            add_path(add, l.path, "symlink", "a symlink on the way: " + l.path + " -> " + l.target);
                if (w.err == 0 && !S.view.covers(w.resolved))
                    add_path(add, w.resolved, w.is_dir ? "directory" : "file", why_final);
            };
            ThreadCreds creds;
            if (auto r = creds.take(S.who); !r) {
                S.failed = r.error().message;
                S.done.set_value();
                return;
            }
            std::set<std::string> exec_done;  // programs whose interpreter and libraries were added
            size_t bytes = 0;
            for (const auto& [path, seen] : S.missing) {
                if (now_monotonic_ns() > deadline || bytes > kMaxReportBytes) {
                    S.truncated = true;
                    break;
                }
                json e = {{"path", path}, {"syscall", seen.syscall}, {"calls", seen.calls}};
                if (priv(path)) {  // as the job spelt it; where links lead is checked per addition
                    e["host"] = "moatd's own";
                    e["add"] = json::array();
                    S.paths.push_back(std::move(e));
                    continue;
                }
                const sandbox::PathWalk w = sandbox::walk_path(path);
                json add = json::array();
                if (w.err) {
                    e["host"] = w.err == ENOENT || w.err == ENOTDIR ? std::string("absent") : std::string(strerror(w.err));
                } else {
                    e["host"] = w.is_dir ? "directory" : "file";
                    hops(w, add, w.links.empty() ? "the path itself" : "where " + path + " leads");
                    if (seen.exec && !w.is_dir && exec_done.insert(w.resolved).second)
                        for (const auto& [dep, why] : exec_deps(w.resolved)) {
                            if (!exec_done.insert(dep).second) continue;
                            const sandbox::PathWalk dw = sandbox::walk_path(dep);
                            if (dw.err == 0) hops(dw, add, why);
                        }
                }
                if (!w.links.empty()) {
                    json chain = json::array();
                    for (const auto& l : w.links) chain.push_back(l.path + " -> " + l.target);
                    e["links"] = std::move(chain);
                }
                e["add"] = std::move(add);
                bytes += e.dump(-1, ' ', false, json::error_handler_t::replace).size();
                S.paths.push_back(std::move(e));
            }
            S.done.set_value();
        }).detach();
    } catch (const std::exception& ex) {
        return {{"paths", json::array()}, {"error", std::string("starting the host lookups: ") + ex.what()}};
    }
    json out;
    if (finished.wait_for(std::chrono::nanoseconds(std::max<int64_t>(0, deadline - now_monotonic_ns()) + 50'000'000)) !=
        std::future_status::ready) {
        out = {{"paths", json::array()},
               {"error", "the host lookups took longer than " + format_duration_ns(kReportBudgetNs) +
                             " (a path on a hung or slow mount?); nothing is proposed for the paths"}};
    } else {
        out = {{"paths", std::move(st->paths)}};
        if (!st->failed.empty()) out["error"] = st->failed;
        if (st->truncated) out["truncated"] = true;
    }
    json writes = json::array();
    for (const auto& [dir, w] : m_write_dirs) {
        // A fresh tmpfs over an ancestor of moatd's directories hides them
        // (moatd's state under /tmp must not cost a job its /tmp): only a
        // directory inside them is refused.
        bool priv = false;
        for (const auto& d : m_view.private_dirs) priv = priv || path_under(dir, d);
        writes.push_back({{"path", dir}, {"syscall", w.syscall}, {"calls", w.calls}, {"example", w.example},
                          {"in_view", std::any_of(m_view.visible.begin(), m_view.visible.end(),
                                                  [&](const std::string& v) { return path_under(dir, v); })},
                          {"private", priv}});
    }
    out["write_dirs"] = std::move(writes);
    out["dropped"] = m_dropped;
    out["relative_not_followed"] = m_relative;
    out["not_followed"] = m_unfollowed;
    out["tier_view"] = m_view.mount_namespace ? "mount namespace" : "landlock";
    return out;
}

}  // namespace moat::supervisor
