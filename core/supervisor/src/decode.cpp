#include "moat/supervisor/decode.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include "moat/common/timeutil.h"
#include <sstream>

#include "moat/common/text.h"

namespace moat::supervisor {

namespace {
constexpr uint64_t kPage = 4096;
constexpr int kAtFdcwd = -100;

std::string read_link(const std::string& p) {
    char buf[4096];
    ssize_t n = readlink(p.c_str(), buf, sizeof buf - 1);
    if (n <= 0) return {};
    return std::string(buf, size_t(n));
}

std::string read_small_file(const std::string& path, size_t max) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, size_t(n));
        if (out.size() >= max) break;
    }
    ::close(fd);
    return out;
}

std::map<int, ArgShape> build_shapes() {
    using K = ArgShape::Kind;
    std::map<int, ArgShape> m;
    auto put = [&](const char* name, std::vector<ArgShape::Arg> args) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name);
        if (nr >= 0) m[nr] = ArgShape{std::move(args)};
    };
    for (const char* n : {"open", "creat", "mkdir", "rmdir", "unlink", "chdir", "chmod", "chown", "lchown",
                          "access", "stat", "lstat", "readlink", "truncate", "execve", "chroot", "mknod", "utime",
                          "utimes", "statfs", "acct", "swapon", "swapoff", "umount2", "setxattr", "lsetxattr",
                          "getxattr", "lgetxattr", "listxattr", "llistxattr", "removexattr", "lremovexattr",
                          "uselib", "delete_module"})
        put(n, {{K::Path, 0, 0}});
    for (const char* n : {"rename", "link", "symlink", "pivot_root"}) put(n, {{K::Path, 0, 0}, {K::Path, 1, 0}});
    put("mount", {{K::Path, 0, 0}, {K::Path, 1, 0}});
    for (const char* n : {"openat", "openat2", "mkdirat", "unlinkat", "fchmodat", "fchownat", "faccessat",
                          "faccessat2", "newfstatat", "readlinkat", "mknodat", "execveat", "utimensat", "statx",
                          "name_to_handle_at", "open_tree", "fspick", "futimesat"})
        put(n, {{K::DirfdPath, 1, 0}});
    put("inotify_add_watch", {{K::Path, 1, 0}});
    for (const char* n : {"renameat", "renameat2", "linkat"}) put(n, {{K::DirfdPath, 1, 0}, {K::DirfdPath, 3, 2}});
    put("symlinkat", {{K::Path, 0, 0}, {K::DirfdPath, 2, 1}});
    put("connect", {{K::Sockaddr, 1, 2}});
    put("bind", {{K::Sockaddr, 1, 2}});
    put("sendto", {{K::Sockaddr, 4, 5}});
    return m;
}

const std::map<int, ArgShape>& shapes() {
    static const std::map<int, ArgShape> s = build_shapes();
    return s;
}

}  // namespace

// Paths and names come from the job: any bytes. JSON needs UTF-8, so invalid
// bytes are written as \xNN (the path stays recognisable and unambiguous).
std::string printable(const std::string& in) { return moat::printable(in); }

std::optional<std::vector<uint8_t>> read_remote(pid_t pid, uint64_t addr, size_t len) {
    if (len == 0 || len > 65536 || addr == 0) return std::nullopt;
    std::vector<uint8_t> out(len);
    iovec local{out.data(), len};
    iovec remote{reinterpret_cast<void*>(addr), len};  // the job's address, never dereferenced here
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n != ssize_t(len)) return std::nullopt;
    return out;
}

std::optional<std::string> read_remote_string(pid_t pid, uint64_t addr, size_t max) {
    if (addr == 0) return std::nullopt;
    std::string out;
    char buf[kPage];
    uint64_t cur = addr;
    while (out.size() < max) {
        // Read up to the end of the current page only: the next may be unmapped.
        size_t chunk = size_t(kPage - (cur % kPage));
        if (chunk > max - out.size()) chunk = max - out.size();
        iovec local{buf, chunk};
        iovec remote{reinterpret_cast<void*>(cur), chunk};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n <= 0) return out.empty() ? std::nullopt : std::optional<std::string>(out);
        const void* nul = memchr(buf, 0, size_t(n));
        if (nul) {
            out.append(buf, size_t(static_cast<const char*>(nul) - buf));
            return out;
        }
        out.append(buf, size_t(n));
        cur += uint64_t(n);
    }
    out += "...";  // longer than PATH_MAX: say it was cut
    return out;
}

std::string format_sockaddr(const uint8_t* data, size_t len) {
    if (len < sizeof(sa_family_t)) return "(short sockaddr)";
    sa_family_t fam;
    memcpy(&fam, data, sizeof fam);
    char buf[INET6_ADDRSTRLEN + 16];
    if (fam == AF_INET && len >= sizeof(sockaddr_in)) {
        sockaddr_in a;
        memcpy(&a, data, sizeof a);
        inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
        return "AF_INET " + std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
    }
    if (fam == AF_INET6 && len >= sizeof(sockaddr_in6)) {
        sockaddr_in6 a;
        memcpy(&a, data, sizeof a);
        inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
        return "AF_INET6 [" + std::string(buf) + "]:" + std::to_string(ntohs(a.sin6_port));
    }
    if (fam == AF_UNIX) {
        size_t off = offsetof(sockaddr_un, sun_path);
        if (len <= off) return "AF_UNIX (unnamed)";
        std::string path(reinterpret_cast<const char*>(data) + off, len - off);
        if (!path.empty() && path[0] == '\0') {
            path[0] = '@';  // abstract namespace, printed the way ss(8) does
            return "AF_UNIX " + path;
        }
        auto z = path.find('\0');
        if (z != std::string::npos) path.resize(z);
        return "AF_UNIX " + path;
    }
    return "family " + std::to_string(fam);
}

const ArgShape* arg_shape(int nr) {
    auto it = shapes().find(nr);
    return it == shapes().end() ? nullptr : &it->second;
}

std::optional<std::string> decode_args(pid_t pid, int nr, const uint64_t args[6]) {
    const ArgShape* shape = arg_shape(nr);
    if (!shape) return std::nullopt;
    std::string out;
    for (const auto& a : shape->args) {
        std::string part;
        if (a.kind == ArgShape::Kind::Path || a.kind == ArgShape::Kind::DirfdPath) {
            const bool null_path = args[a.arg] == 0;
            auto s = null_path ? std::optional<std::string>(std::string()) : read_remote_string(pid, args[a.arg]);
            if (s && s->empty() && a.kind == ArgShape::Kind::DirfdPath) {
                // NULL or "" (AT_EMPTY_PATH): the call acts on the dirfd itself
                // (futimens is utimensat(fd, NULL, ...)); name what it refers to.
                int dirfd = int(int32_t(args[a.extra]));
                std::string target = read_link("/proc/" + std::to_string(pid) +
                                               (dirfd == kAtFdcwd ? std::string("/cwd") : "/fd/" + std::to_string(dirfd)));
                part = target.empty() ? "(fd " + std::to_string(dirfd) + ")" : target;
            } else if (null_path) part = "(null)";
            else if (!s) part = "(unreadable)";
            else {
                part = *s;
                // Relative paths are made absolute the way the kernel would resolve them.
                if (!part.empty() && part[0] != '/') {
                    int dirfd = a.kind == ArgShape::Kind::DirfdPath ? int(int32_t(args[a.extra])) : kAtFdcwd;
                    std::string base = dirfd == kAtFdcwd
                                           ? read_link("/proc/" + std::to_string(pid) + "/cwd")
                                           : read_link("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(dirfd));
                    if (!base.empty()) part = base + (base.back() == '/' ? "" : "/") + part;
                }
            }
        } else if (a.kind == ArgShape::Kind::Sockaddr) {
            uint64_t len = args[a.extra];
            if (args[a.arg] == 0) continue;  // sendto on a connected socket
            if (len > 128) len = 128;  // sizeof(sockaddr_storage)
            auto bytes = read_remote(pid, args[a.arg], size_t(len));
            part = bytes ? format_sockaddr(bytes->data(), bytes->size()) : "(unreadable)";
        }
        if (!out.empty()) out += " -> ";
        out += part;
    }
    if (out.empty()) return std::nullopt;
    return out;
}

std::vector<ModuleResolver::Mapping> ModuleResolver::parse_maps(const std::string& text) {
    std::vector<Mapping> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        // start-end perms offset dev inode [path]
        unsigned long long start, end, offset;
        char perms[8];
        int consumed = 0;
        if (sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &offset, &consumed) < 4)
            continue;
        std::string path = consumed > 0 && size_t(consumed) <= line.size() ? line.substr(size_t(consumed)) : "";
        while (!path.empty() && path.front() == ' ') path.erase(path.begin());
        if (path.empty()) continue;
        std::string name = path;
        if (name[0] == '/') {
            auto slash = name.rfind('/');
            name = name.substr(slash + 1);
            auto del = name.find(" (deleted)");
            if (del != std::string::npos) name.resize(del);
        }
        out.push_back({start, end, offset, name, perms[2] == 'x'});
    }
    return out;
}

ModuleResolver::ModuleResolver()
    : m_reader([](pid_t pid, size_t max) { return read_small_file("/proc/" + std::to_string(pid) + "/maps", max); }) {}

ModuleResolver::ModuleResolver(Reader reader) : m_reader(std::move(reader)) {}

std::optional<std::string> ModuleResolver::resolve(pid_t pid, uint64_t ip) {
    return resolve(pid, ip, now_monotonic_ns());
}

std::optional<std::string> ModuleResolver::resolve(pid_t pid, uint64_t ip, int64_t now_ns) {
    auto lookup = [&](const std::vector<Mapping>& maps) -> std::optional<std::string> {
        for (const auto& m : maps)
            if (ip >= m.start && ip < m.end) {
                char buf[64];
                snprintf(buf, sizeof buf, "+0x%llx", (unsigned long long)(ip - m.start + m.offset));
                return m.name + buf;
            }
        return std::nullopt;
    };
    auto it = m_maps.find(pid);
    if (it != m_maps.end()) {
        if (auto r = lookup(it->second.maps)) return r;
        // Not in any mapping we know. Anonymous executable memory (a JIT, or
        // a job making us work) is never in one: re-reading on every such
        // denial would cost a full maps read each time. Read again only when
        // the copy is old enough that a new mapping may be the reason.
        if (now_ns - it->second.read_ns < kRereadNs) return std::nullopt;
        ++m_generation;
        m_mappings -= it->second.maps.size();
        m_maps.erase(it);
    }
    ++m_reads;
    ++m_generation;
    // Cut at kMaxMapsBytes: a job with more mappings than that gets "no
    // module" for addresses past the cut, never an unbounded read.
    auto all = parse_maps(m_reader(pid, kMaxMapsBytes));
    Entry e;
    e.read_ns = now_ns;
    for (auto& m : all)
        if (m.exec && e.maps.size() < kMaxMappings) e.maps.push_back(std::move(m));
    auto r = lookup(e.maps);
    // Room for it: the least recently read pids go.
    while (!m_maps.empty() && (m_maps.size() >= kMaxProcesses || m_mappings + e.maps.size() > kMaxMappings)) {
        auto oldest = m_maps.begin();
        for (auto o = m_maps.begin(); o != m_maps.end(); ++o)
            if (o->second.read_ns < oldest->second.read_ns) oldest = o;
        m_mappings -= oldest->second.maps.size();
        m_maps.erase(oldest);
    }
    m_mappings += e.maps.size();
    m_maps[pid] = std::move(e);
    return r;
}

void ModuleResolver::forget(pid_t pid) {
    auto it = m_maps.find(pid);
    if (it == m_maps.end()) return;
    ++m_generation;
    m_mappings -= it->second.maps.size();
    m_maps.erase(it);
}

}  // namespace moat::supervisor
