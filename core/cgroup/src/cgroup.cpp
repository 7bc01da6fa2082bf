#include "moat/cgroup/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "moat/common/fd.h"

namespace moat::cgroup {

namespace {

Result<std::string> read_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + path + "\")", errno);
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_sys("read(\"" + path + "\")", errno);
        }
        if (n == 0) break;
        out.append(buf, size_t(n));
        if (out.size() > (1 << 20)) break;  // cgroup files are small; bound anyway
    }
    return out;
}

Result<void> write_file(const std::string& path, const std::string& value) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + path + "\", O_WRONLY)", errno);
    if (::write(fd.get(), value.data(), value.size()) != ssize_t(value.size()))
        return fail_sys("write(\"" + path + "\", \"" + value + "\")", errno);
    return {};
}

bool exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

Result<void> mkdir_p(const std::string& path) {
    std::string cur;
    std::istringstream in(path);
    std::string part;
    while (std::getline(in, part, '/')) {
        if (part.empty()) continue;
        cur += "/" + part;
        if (::mkdir(cur.c_str(), 0755) < 0 && errno != EEXIST) return fail_sys("mkdir(\"" + cur + "\")", errno);
    }
    return {};
}

// rmdir of a cgroup can briefly fail with EBUSY while exiting tasks are
// released: retried for up to a second. ENOENT counts as removed.
Result<void> rmdir_group(const std::string& dir) {
    for (int tries = 0; ::rmdir(dir.c_str()) < 0; ++tries) {
        if (errno == ENOENT) return {};
        if (errno != EBUSY || tries >= 200) return fail_sys("rmdir(\"" + dir + "\")", errno);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return {};
}

std::vector<std::string> split_ws(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string w;
    while (in >> w) out.push_back(w);
    return out;
}

std::vector<pid_t> procs_of(const std::string& dir) {
    std::vector<pid_t> out;
    auto s = read_file(dir + "/cgroup.procs");
    if (!s) return out;
    std::istringstream in(*s);
    long p;
    while (in >> p) out.push_back(pid_t(p));
    return out;
}

}  // namespace

Result<Layout> Layout::detect(std::optional<Version> prefer) {
    auto info = read_file("/proc/self/mountinfo");
    if (!info) return std::unexpected(info.error());
    Layout l;
    std::istringstream in(*info);
    std::string line;
    while (std::getline(in, line)) {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        auto left = split_ws(line.substr(0, dash));
        auto right = split_ws(line.substr(dash + 3));
        if (left.size() < 5 || right.size() < 3) continue;
        const std::string& mnt = left[4];
        if (right[0] == "cgroup2" && l.v2_root.empty()) l.v2_root = mnt;
        if (right[0] == "cgroup") {
            for (auto& opt : std::vector<std::string>{"memory", "pids", "cpuacct", "cpu", "freezer", "blkio"}) {
                std::string so = "," + right[2] + ",";
                if (so.find("," + opt + ",") != std::string::npos && !l.v1.count(opt)) l.v1[opt] = mnt;
            }
        }
    }
    if (!l.v2_root.empty()) {
        if (auto c = read_file(l.v2_root + "/cgroup.controllers")) l.v2_controllers = split_ws(*c);
    }
    auto has = [&](const char* c) {
        return std::find(l.v2_controllers.begin(), l.v2_controllers.end(), c) != l.v2_controllers.end();
    };
    bool v2_ok = !l.v2_root.empty() && has("memory") && has("pids");
    bool v1_ok = l.v1.count("memory") && l.v1.count("pids") && l.v1.count("cpuacct");
    if (prefer == Version::V2) {
        if (l.v2_root.empty()) return fail("cgroup v2 requested but no cgroup2 file system is mounted");
        l.version = Version::V2;
    } else if (prefer == Version::V1) {
        if (!v1_ok) return fail("cgroup v1 requested but the memory, pids and cpuacct hierarchies are not all mounted");
        l.version = Version::V1;
    } else if (v2_ok) {
        l.version = Version::V2;
    } else if (v1_ok) {
        l.version = Version::V1;
    } else {
        return fail("no usable cgroup hierarchy: need cgroup v2 with the memory and pids controllers, "
                    "or cgroup v1 memory, pids and cpuacct hierarchies");
    }
    return l;
}

Layout Layout::v2_at(std::string root) {
    Layout l;
    l.version = Version::V2;
    l.v2_root = std::move(root);
    if (auto c = read_file(l.v2_root + "/cgroup.controllers")) l.v2_controllers = split_ws(*c);
    return l;
}

Result<std::string> delegate_v2(Layout& layout, const std::string& self_cgroup, pid_t pid, const std::string& parent,
                                const std::string& leaf) {
    if (layout.version != Version::V2) return fail("cgroup delegation is used on cgroup v2 only");
    std::string own;
    std::istringstream in(self_cgroup);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("0::", 0) == 0) own = line.substr(3);
    if (own.empty() || own[0] != '/') return fail("no cgroup v2 entry (0::) in /proc/self/cgroup");
    if (own == "/") return fail("moatd runs in the root cgroup: nothing was delegated to it (run it from moatd.service)");
    own = own.substr(1);
    // Already in the leaf (moved there earlier in this process's life): its
    // parent is the delegated cgroup.
    const std::string suffix = "/" + leaf;
    if (own.size() > suffix.size() && own.compare(own.size() - suffix.size(), suffix.size(), suffix) == 0)
        own.resize(own.size() - suffix.size());
    const std::string dir = layout.v2_root + "/" + own;
    auto controllers = read_file(dir + "/cgroup.controllers");
    if (!controllers) return std::unexpected(controllers.error().wrap("the delegated cgroup " + dir));
    auto have = split_ws(*controllers);
    auto has = [&](const char* c) { return std::find(have.begin(), have.end(), c) != have.end(); };
    if (!has("memory") || !has("pids"))
        return fail("the delegated cgroup " + dir + " offers no memory or pids controller (cgroup.controllers: \"" +
                    *controllers + "\"); is Delegate=yes set?");
    const std::string leaf_dir = dir + "/" + leaf;
    if (::mkdir(leaf_dir.c_str(), 0755) < 0 && errno != EEXIST) return fail_sys("mkdir(\"" + leaf_dir + "\")", errno);
    if (auto r = write_file(leaf_dir + "/cgroup.procs", std::to_string(pid)); !r)
        return std::unexpected(r.error().wrap("moving moatd into its leaf"));
    std::string enable;
    for (const char* c : {"memory", "pids", "cpu", "io"})
        if (has(c)) enable += std::string(enable.empty() ? "" : " ") + "+" + c;
    if (auto r = write_file(dir + "/cgroup.subtree_control", enable); !r)
        return std::unexpected(r.error().wrap("enabling controllers in the delegated cgroup"));
    layout.v2_delegated = own;
    layout.v2_controllers = have;
    return own + "/" + parent;
}

std::string Layout::describe() const {
    if (version == Version::V2) {
        std::string c;
        for (auto& x : v2_controllers) c += (c.empty() ? "" : ",") + x;
        return "v2 (" + v2_root + "; controllers: " + (c.empty() ? "none" : c) +
               (v2_delegated.empty() ? "" : "; delegated: /" + v2_delegated) + ")";
    }
    std::string c;
    for (auto& [k, v] : v1) c += (c.empty() ? "" : ",") + k;
    return "v1 (" + c + ")";
}

Result<JobCgroup> JobCgroup::create(const Layout& layout, const std::string& parent, const std::string& name,
                                    const Limits& limits) {
    JobCgroup cg;
    cg.m_version = layout.version;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return fail("invalid cgroup name \"" + name + "\"");
    if (layout.version == Version::V2) {
        auto has = [&](const char* c) {
            return std::find(layout.v2_controllers.begin(), layout.v2_controllers.end(), c) !=
                   layout.v2_controllers.end();
        };
        std::string pdir = layout.v2_root + "/" + parent;
        if (auto r = mkdir_p(pdir); !r) return std::unexpected(r.error());
        // Delegate the controllers we need to the parent's children. The root is
        // exempt from the no-internal-process rule; `parent` holds no processes.
        std::string enable;
        for (const char* c : {"memory", "pids", "cpu", "io"})
            if (has(c)) enable += std::string(enable.empty() ? "" : " ") + "+" + c;
        if (!enable.empty()) {
            // Enable at each level from the root down to the parent; under a
            // delegation, from moatd's own cgroup down (above it is systemd's).
            std::string cur = layout.v2_root;
            std::string below = parent;
            const std::string& own = layout.v2_delegated;
            if (!own.empty() && parent.size() > own.size() && parent.compare(0, own.size(), own) == 0 &&
                parent[own.size()] == '/') {
                cur += "/" + own;
                below = parent.substr(own.size() + 1);
            }
            std::istringstream in(below);
            std::string part;
            if (auto r = write_file(cur + "/cgroup.subtree_control", enable); !r) return std::unexpected(r.error());
            while (std::getline(in, part, '/')) {
                if (part.empty()) continue;
                cur += "/" + part;
                if (auto r = write_file(cur + "/cgroup.subtree_control", enable); !r)
                    return std::unexpected(r.error());
            }
        }
        std::string dir = pdir + "/" + name;
        if (::mkdir(dir.c_str(), 0755) < 0) return fail_sys("mkdir(\"" + dir + "\")", errno);
        cg.m_dirs.push_back(dir);
        if (has("memory")) cg.m_mem = dir;
        if (has("io")) cg.m_io = dir;
        if (has("pids")) cg.m_pids = dir;
        cg.m_cpu = dir;  // cpu.stat usage_usec exists without the cpu controller
        if (limits.memory_bytes) {
            if (cg.m_mem.empty()) {
                (void)cg.destroy();
                return fail("cgroup v2 at " + layout.v2_root + " has no memory controller: cannot apply the memory limit");
            }
            if (auto r = write_file(dir + "/memory.max", std::to_string(*limits.memory_bytes)); !r) {
                (void)cg.destroy();
                return std::unexpected(r.error());
            }
            // Swap must not extend the limit.
            if (exists(dir + "/memory.swap.max")) (void)write_file(dir + "/memory.swap.max", "0");
        }
        if (limits.pids) {
            if (cg.m_pids.empty()) {
                (void)cg.destroy();
                return fail("cgroup v2 at " + layout.v2_root + " has no pids controller: cannot apply the pids limit");
            }
            if (auto r = write_file(dir + "/pids.max", std::to_string(*limits.pids)); !r) {
                (void)cg.destroy();
                return std::unexpected(r.error());
            }
        }
        return cg;
    }

    // v1: one directory per hierarchy.
    for (const char* ctl : {"memory", "pids", "cpuacct"}) {
        auto it = layout.v1.find(ctl);
        if (it == layout.v1.end()) {
            (void)cg.destroy();
            return fail(std::string("cgroup v1 hierarchy \"") + ctl + "\" is not mounted");
        }
        std::string dir = it->second + "/" + parent + "/" + name;
        if (std::find(cg.m_dirs.begin(), cg.m_dirs.end(), dir) == cg.m_dirs.end()) {
            // The parent exists after the first job: one mkdir, not one per level.
            if (::mkdir(dir.c_str(), 0755) < 0) {
                int e = errno;
                if (e == ENOENT) {
                    if (auto r = mkdir_p(it->second + "/" + parent); !r) {
                        (void)cg.destroy();
                        return std::unexpected(r.error());
                    }
                    e = ::mkdir(dir.c_str(), 0755) < 0 ? errno : 0;
                }
                if (e) {
                    (void)cg.destroy();
                    return fail_sys("mkdir(\"" + dir + "\")", e);
                }
            }
            cg.m_dirs.push_back(dir);
        }
        if (std::string(ctl) == "memory") cg.m_mem = dir;
        if (std::string(ctl) == "pids") cg.m_pids = dir;
        if (std::string(ctl) == "cpuacct") cg.m_cpu = dir;
    }
    // blkio is optional: it only feeds the I/O figures, never a limit.
    if (auto it = layout.v1.find("blkio"); it != layout.v1.end()) {
        std::string dir = it->second + "/" + parent + "/" + name;
        if (std::find(cg.m_dirs.begin(), cg.m_dirs.end(), dir) == cg.m_dirs.end() &&
            (::mkdir(dir.c_str(), 0755) == 0 ||
             (errno == ENOENT && mkdir_p(it->second + "/" + parent) && ::mkdir(dir.c_str(), 0755) == 0))) {
            cg.m_dirs.push_back(dir);
            cg.m_io = dir;
        }
    }
    if (auto r = cg.apply_v1_limits(limits); !r) {
        (void)cg.destroy();
        return std::unexpected(r.error());
    }
    return cg;
}

Result<void> JobCgroup::apply_v1_limits(const Limits& limits) {
    if (limits.memory_bytes) {
        if (auto r = write_file(m_mem + "/memory.limit_in_bytes", std::to_string(*limits.memory_bytes)); !r) return r;
        // Swap must not extend the limit (memsw = memory + swap).
        if (exists(m_mem + "/memory.memsw.limit_in_bytes"))
            (void)write_file(m_mem + "/memory.memsw.limit_in_bytes", std::to_string(*limits.memory_bytes));
    }
    if (limits.pids)
        if (auto r = write_file(m_pids + "/pids.max", std::to_string(*limits.pids)); !r) return r;
    return {};
}

Result<void> JobCgroup::rename_to(const std::string& name, const Limits& limits) {
    if (auto r = rename(name); !r) return r;
    return apply_v1_limits(limits);
}

Result<void> JobCgroup::apply_limits(const Limits& limits) {
    if (m_version != Version::V1) return fail("only a cgroup v1 spare group takes its limits after it was made");
    return apply_v1_limits(limits);
}

Result<void> JobCgroup::rename(const std::string& name) {
    if (m_version != Version::V1) return fail("only a cgroup v1 group can be renamed");
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return fail("invalid cgroup name \"" + name + "\"");
    for (auto& d : m_dirs) {
        const std::string to = d.substr(0, d.rfind('/') + 1) + name;
        if (::rename(d.c_str(), to.c_str()) < 0) return fail_sys("rename(\"" + d + "\", \"" + to + "\")", errno);
        for (std::string* role : {&m_mem, &m_pids, &m_cpu, &m_io})
            if (*role == d) *role = to;
        for (auto& j : m_join)
            if (j.path.compare(0, d.size() + 1, d + "/") == 0) j.path = to + j.path.substr(d.size());
        d = to;
    }
    m_stat_fds.clear();  // keyed by path
    return {};
}

Result<void> JobCgroup::prepare_self_join() {
    auto j = open_self_join();
    if (!j) return std::unexpected(j.error());
    m_join = std::move(*j);
    return {};
}

Result<void> JobCgroup::add_pid(pid_t pid) const {
    for (const auto& d : m_dirs)
        if (auto r = write_file(d + "/cgroup.procs", std::to_string(pid)); !r) return r;
    return {};
}

Result<std::vector<JobCgroup::SelfJoin>> JobCgroup::open_self_join() const {
    std::vector<SelfJoin> out;
    if (!m_join.empty()) {
        out = std::move(m_join);
        m_join.clear();
        return out;
    }
    if (m_version != Version::V1) return out;
    for (const auto& d : m_dirs) {
        SelfJoin j;
        j.path = d + "/tasks";
        j.fd.reset(::open(j.path.c_str(), O_WRONLY | O_CLOEXEC));
        if (!j.fd) return fail_sys("open(\"" + j.path + "\")", errno);
        out.push_back(std::move(j));
    }
    return out;
}

Result<UniqueFd> JobCgroup::open_v2_dir() const {
    if (m_version != Version::V2 || m_dirs.empty()) return UniqueFd();
    UniqueFd fd(::open(m_dirs.front().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + m_dirs.front() + "\")", errno);
    return fd;
}

std::optional<std::string> JobCgroup::read_stat(const std::string& path) const {
    auto it = m_stat_fds.find(path);
    if (it == m_stat_fds.end()) {
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return std::nullopt;
        it = m_stat_fds.emplace(path, std::move(fd)).first;
    }
    std::string out;
    char buf[4096];
    for (off_t off = 0;;) {
        ssize_t n = ::pread(it->second.get(), buf, sizeof buf, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {  // the group went away (ENODEV...): forget the fd
            m_stat_fds.erase(it);
            return std::nullopt;
        }
        if (n == 0) break;
        out.append(buf, size_t(n));
        off += n;
        // A cgroup file is a seq_file: one read returns all of it that fits
        // the buffer, so a short read is the end. Stopping here saves the
        // second pread (which would return 0) on every sample of every job.
        if (size_t(n) < sizeof buf) break;
        if (out.size() > (1 << 20)) break;  // cgroup files are small; bound anyway
    }
    return out;
}

std::optional<uint64_t> JobCgroup::stat_u64(const std::string& path) const {
    auto s = read_stat(path);
    if (!s) return std::nullopt;
    if (s->rfind("max", 0) == 0) return UINT64_MAX;
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc() || p == s->data()) return std::nullopt;
    return v;
}

std::optional<uint64_t> JobCgroup::stat_keyed(const std::string& path, const std::string& key) const {
    auto s = read_stat(path);
    if (!s) return std::nullopt;
    // "key value" lines; no stream parsing on the sampling path.
    std::string_view t(*s);
    while (!t.empty()) {
        size_t eol = t.find('\n');
        std::string_view line = t.substr(0, eol);
        t = eol == std::string_view::npos ? std::string_view() : t.substr(eol + 1);
        size_t sp = line.find(' ');
        if (sp == std::string_view::npos || line.substr(0, sp) != key) continue;
        uint64_t v = 0;
        auto val = line.substr(sp + 1);
        if (std::from_chars(val.data(), val.data() + val.size(), v).ec == std::errc()) return v;
    }
    return std::nullopt;
}

std::optional<uint64_t> JobCgroup::cpu_ns() const {
    if (m_version == Version::V2) {
        if (m_dirs.empty()) return std::nullopt;
        auto v = stat_keyed(m_dirs.front() + "/cpu.stat", "usage_usec");
        return v ? std::optional<uint64_t>(*v * 1000) : std::nullopt;
    }
    if (m_cpu.empty()) return std::nullopt;
    return stat_u64(m_cpu + "/cpuacct.usage");
}

Result<Sample> JobCgroup::sample(Detail detail, std::optional<uint64_t> cpu_ns) const {
    Sample s;
    const bool full = detail == Detail::Full;
    if (cpu_ns) {
        s.cpu_ns = *cpu_ns;
        s.has_cpu = true;
    }
    if (m_version == Version::V2) {
        const std::string& d = m_dirs.front();
        if (!s.has_cpu)
            if (auto v = stat_keyed(d + "/cpu.stat", "usage_usec")) { s.cpu_ns = *v * 1000; s.has_cpu = true; }
        if (!m_mem.empty()) {
            if (auto v = stat_u64(d + "/memory.current")) { s.memory_bytes = *v; s.has_memory = true; }
            if (full) {
                if (auto v = stat_u64(d + "/memory.peak")) s.memory_peak_bytes = *v;
                if (auto v = stat_keyed(d + "/memory.events", "oom_kill")) s.oom_kills = *v;
            }
        }
        if (!m_pids.empty()) {
            if (auto v = stat_u64(d + "/pids.current")) { s.pids = *v; s.has_pids = true; }
            if (full) {
                if (auto v = stat_u64(d + "/pids.peak")) s.pids_peak = *v;
                if (auto v = stat_keyed(d + "/pids.events", "max")) s.pids_max_hits = *v;
            }
        }
        if (!s.has_pids) s.pids = procs_of(d).size();
        if (!m_io.empty()) {
            // io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ..." per device.
            if (auto t = read_stat(d + "/io.stat")) {
                s.has_io = true;
                std::istringstream in(*t);
                std::string w;
                while (in >> w) {
                    if (w.rfind("rbytes=", 0) == 0) s.io_read_bytes += std::strtoull(w.c_str() + 7, nullptr, 10);
                    if (w.rfind("wbytes=", 0) == 0) s.io_write_bytes += std::strtoull(w.c_str() + 7, nullptr, 10);
                }
            }
        }
        return s;
    }
    if (!s.has_cpu)
        if (auto v = stat_u64(m_cpu + "/cpuacct.usage")) { s.cpu_ns = *v; s.has_cpu = true; }
    if (auto v = stat_u64(m_mem + "/memory.usage_in_bytes")) { s.memory_bytes = *v; s.has_memory = true; }
    if (auto v = stat_u64(m_pids + "/pids.current")) { s.pids = *v; s.has_pids = true; }
    if (full) {
        if (auto v = stat_u64(m_mem + "/memory.max_usage_in_bytes")) s.memory_peak_bytes = *v;
        if (auto v = stat_keyed(m_mem + "/memory.oom_control", "oom_kill")) s.oom_kills = *v;
        if (auto v = stat_u64(m_pids + "/pids.peak")) s.pids_peak = *v;
        if (auto v = stat_keyed(m_pids + "/pids.events", "max")) s.pids_max_hits = *v;
    }
    if (!m_io.empty()) {
        // "MAJ:MIN Read N" / "MAJ:MIN Write N" lines per device, then "Total N".
        if (auto t = read_stat(m_io + "/blkio.throttle.io_service_bytes_recursive")) {
            s.has_io = true;
            std::istringstream in(*t);
            std::string line;
            while (std::getline(in, line)) {
                std::istringstream ls(line);
                std::string dev, op;
                uint64_t v = 0;
                if (!(ls >> dev >> op >> v)) continue;
                if (op == "Read") s.io_read_bytes += v;
                if (op == "Write") s.io_write_bytes += v;
            }
        }
    }
    return s;
}

std::vector<pid_t> JobCgroup::pids() const {
    return m_dirs.empty() ? std::vector<pid_t>{} : procs_of(m_pids.empty() ? m_dirs.front() : m_pids);
}

namespace {

Result<void> kill_dirs(const std::vector<std::string>& dirs, bool v2, int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        bool any = false;
        for (const auto& d : dirs) {
            if (!exists(d)) continue;
            if (v2 && exists(d + "/cgroup.kill")) {
                // cgroup.kill (5.14+) kills atomically, including processes being forked.
                auto procs = procs_of(d);
                if (!procs.empty()) {
                    any = true;
                    (void)write_file(d + "/cgroup.kill", "1");
                }
                continue;
            }
            // v1 has no atomic kill: repeat until a pass finds nobody. New forks
            // land in the same group, and the pids limit bounds how many appear.
            for (pid_t p : procs_of(d)) {
                any = true;
                ::kill(p, SIGKILL);
            }
        }
        if (!any) return {};
        if (std::chrono::steady_clock::now() > deadline)
            return fail("cgroup still has processes after " + std::to_string(timeout_ms) + " ms of SIGKILL");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

}  // namespace

namespace {

// <hierarchy>/<parent> for every hierarchy a job group is made in (create()),
// each once (co-mounted controllers share a directory).
std::vector<std::string> parent_dirs(const Layout& layout, const std::string& parent) {
    std::vector<std::string> roots;
    if (layout.version == Version::V2) roots.push_back(layout.v2_root + "/" + parent);
    else
        for (auto& [ctl, mnt] : layout.v1)
            if (ctl == "memory" || ctl == "pids" || ctl == "cpuacct" || ctl == "blkio") {
                std::string r = mnt + "/" + parent;
                if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
            }
    return roots;
}

// The child groups of `root` whose names start with `prefix`.
std::vector<std::string> groups_under(const std::string& root, const char* prefix) {
    std::vector<std::string> dirs;
    DIR* d = opendir(root.c_str());
    if (!d) return dirs;
    const size_t n = strlen(prefix);
    while (dirent* e = readdir(d))
        if (e->d_type == DT_DIR && strncmp(e->d_name, prefix, n) == 0) dirs.push_back(root + "/" + e->d_name);
    closedir(d);
    return dirs;
}

}  // namespace

JobCgroup::Sweep JobCgroup::sweep_stale_groups(const Layout& layout, const std::string& parent) {
    Sweep s;
    // This moatd's own warm guests (vm-warm-<pid>-N) are not stale.
    const std::string own_warm = "vm-warm-" + std::to_string(getpid()) + "-";
    std::set<std::string> names, with_procs;  // each group once over the hierarchies
    for (const auto& root : parent_dirs(layout, parent)) {
        auto dirs = groups_under(root, "job-");
        for (auto& w : groups_under(root, "vm-warm-"))
            if (w.compare(root.size() + 1, own_warm.size(), own_warm) != 0) dirs.push_back(std::move(w));
        for (const auto& dir : dirs) {
            std::string name = dir.substr(dir.rfind('/') + 1);
            names.insert(name);
            if (!procs_of(dir).empty()) {
                with_procs.insert(name);
                if (auto r = kill_dirs({dir}, layout.version == Version::V2, 2000); !r)
                    s.failed.push_back(dir + ": " + r.error().message);
            }
            if (auto r = rmdir_group(dir); !r) s.failed.push_back(r.error().message);
        }
    }
    s.removed = names.size();
    s.killed = with_procs.size();
    return s;
}

size_t JobCgroup::kill_all_jobs(const Layout& layout, const std::string& parent) {
    size_t n = 0;
    for (const auto& root : parent_dirs(layout, parent)) {
        for (const auto& dir : groups_under(root, "job-")) {
            if (procs_of(dir).empty()) continue;
            ++n;
            (void)kill_dirs({dir}, layout.version == Version::V2, 2000);
        }
    }
    return n;
}

Result<void> JobCgroup::kill_all(int timeout_ms) const {
    // The common end of a job: nothing left in it. The pids controller counts
    // every task of the group (zombies until they are reaped) in one number,
    // read through the fd the sampler keeps open: one pread instead of a
    // cgroup.procs read (and a stat) per hierarchy, ~50 us of every job's end.
    // A job's processes are in each of its hierarchies (none can move itself
    // out), so zero here is zero everywhere.
    if (!m_pids.empty())
        if (auto n = stat_u64(m_pids + "/pids.current"); n && *n == 0) return {};
    return kill_dirs(m_dirs, m_version == Version::V2, timeout_ms);
}

Result<void> JobCgroup::destroy() const {
    m_stat_fds.clear();  // nothing of ours stays open in a group being removed
    m_join.clear();
    Result<void> res;
    for (const auto& d : m_dirs)
        if (auto r = rmdir_group(d); !r && res) res = r;
    return res;
}

std::string JobCgroup::describe() const {
    std::string s = m_version == Version::V2 ? "v2" : "v1";
    for (const auto& d : m_dirs) s += ":" + d;
    return s;
}

Result<void> JobCgroup::reap_described(const std::string& described) {
    std::vector<std::string> parts;
    std::istringstream in(described);
    std::string p;
    while (std::getline(in, p, ':')) parts.push_back(p);
    if (parts.size() < 2 || (parts[0] != "v1" && parts[0] != "v2")) return fail("not a cgroup description: " + described);
    std::vector<std::string> dirs(parts.begin() + 1, parts.end());
    for (const auto& d : dirs)
        if (d.find("/../") != std::string::npos || d.rfind("/sys/fs/cgroup", 0) != 0)
            return fail("refusing to touch cgroup outside /sys/fs/cgroup: " + d);
    auto r = kill_dirs(dirs, parts[0] == "v2", 2000);
    for (const auto& d : dirs) ::rmdir(d.c_str());
    return r;
}

}  // namespace moat::cgroup
