#include "moat/learn/syscall_args.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>
#include <sstream>
#include <utility>

#include "moat/common/error.h"
#include "moat/policy/syscalls.h"

namespace moat::learn {

namespace {

struct Named {
    const char* name;
    uint64_t value;
};
#define N(x) Named{#x, static_cast<uint64_t>(x)}

std::string flags(uint64_t v, std::initializer_list<Named> table, std::string prefix = {}) {
    std::string out = std::move(prefix);
    for (const auto& n : table) {
        if (n.value && (v & n.value) == n.value) {
            out += (out.empty() ? "" : "|") + std::string(n.name);
            v &= ~n.value;
        }
    }
    if (v) {
        std::ostringstream os;
        os << (out.empty() ? "" : "|") << "0x" << std::hex << v;
        out += os.str();
    }
    return out.empty() ? "0" : out;
}

std::optional<std::string> oneOf(uint64_t v, std::initializer_list<Named> table) {
    for (const auto& n : table)
        if (n.value == v) return n.name;
    return std::nullopt;
}

std::string openFlags(uint64_t v) {
    const char* mode = (v & O_ACCMODE) == O_WRONLY ? "O_WRONLY" : (v & O_ACCMODE) == O_RDWR ? "O_RDWR" : "O_RDONLY";
    if ((v & O_ACCMODE) == 3) mode = "O_ACCMODE";
    v &= ~uint64_t(O_ACCMODE);
    // Composite flags first: O_TMPFILE includes O_DIRECTORY, O_SYNC includes O_DSYNC.
    return flags(v,
                 {N(O_TMPFILE), N(O_SYNC), N(O_CREAT), N(O_EXCL), N(O_NOCTTY), N(O_TRUNC), N(O_APPEND), N(O_NONBLOCK),
                  N(O_DSYNC), N(O_DIRECT), N(O_LARGEFILE), N(O_DIRECTORY), N(O_NOFOLLOW), N(O_NOATIME), N(O_CLOEXEC),
                  N(O_PATH), N(FASYNC)},
                 mode);
}

std::string octal(uint64_t v) {
    std::ostringstream os;
    os << "0" << std::oct << v;
    return os.str();
}

std::optional<std::string> family(uint64_t v) {
    return oneOf(v, {N(AF_UNSPEC), N(AF_UNIX), N(AF_INET), N(AF_INET6), N(AF_NETLINK), N(AF_PACKET), N(AF_BLUETOOTH),
                     N(AF_ALG), N(AF_VSOCK), N(AF_KEY), N(AF_APPLETALK), N(AF_X25), N(AF_CAN), N(AF_TIPC), N(AF_XDP)});
}

std::string socketType(uint64_t v) {
    const uint64_t base = v & 0xf;
    const auto t = oneOf(base, {N(SOCK_STREAM), N(SOCK_DGRAM), N(SOCK_RAW), N(SOCK_RDM), N(SOCK_SEQPACKET), N(SOCK_PACKET)});
    return flags(v & ~uint64_t(0xf), {N(SOCK_NONBLOCK), N(SOCK_CLOEXEC)}, t.value_or(std::to_string(base)));
}

bool isAtFdcwd(uint64_t v) { return int32_t(uint32_t(v)) == AT_FDCWD; }

std::string signalName(uint64_t v) {
    if (v == 0) return "0 (check only)";
    if (const char* n = sigabbrev_np(int(v))) return std::string("SIG") + n;
    return {};
}

// Which argument holds what, for the calls the console decodes.
enum class Kind { None, OpenFlags, Mode, Dirfd, Family, SockType, Signal, Prot, MapFlags, CloneFlags, AtFlags };

struct ArgKind {
    const char* syscall;
    unsigned index;
    Kind kind;
};
constexpr ArgKind kArgKinds[] = {
        {"open", 1, Kind::OpenFlags},
        {"open", 2, Kind::Mode},
        {"openat", 0, Kind::Dirfd},
        {"openat", 2, Kind::OpenFlags},
        {"openat", 3, Kind::Mode},
        {"creat", 1, Kind::Mode},
        {"mkdir", 1, Kind::Mode},
        {"mkdirat", 0, Kind::Dirfd},
        {"mkdirat", 2, Kind::Mode},
        {"mknod", 1, Kind::Mode},
        {"mknodat", 0, Kind::Dirfd},
        {"mknodat", 2, Kind::Mode},
        {"chmod", 1, Kind::Mode},
        {"fchmod", 1, Kind::Mode},
        {"fchmodat", 0, Kind::Dirfd},
        {"fchmodat", 2, Kind::Mode},
        {"unlinkat", 0, Kind::Dirfd},
        {"newfstatat", 0, Kind::Dirfd},
        {"newfstatat", 3, Kind::AtFlags},
        {"faccessat", 0, Kind::Dirfd},
        {"faccessat2", 0, Kind::Dirfd},
        {"faccessat2", 3, Kind::AtFlags},
        {"fchownat", 0, Kind::Dirfd},
        {"fchownat", 4, Kind::AtFlags},
        {"linkat", 0, Kind::Dirfd},
        {"linkat", 2, Kind::Dirfd},
        {"linkat", 4, Kind::AtFlags},
        {"renameat", 0, Kind::Dirfd},
        {"renameat", 2, Kind::Dirfd},
        {"renameat2", 0, Kind::Dirfd},
        {"renameat2", 2, Kind::Dirfd},
        {"symlinkat", 1, Kind::Dirfd},
        {"readlinkat", 0, Kind::Dirfd},
        {"socket", 0, Kind::Family},
        {"socket", 1, Kind::SockType},
        {"socketpair", 0, Kind::Family},
        {"socketpair", 1, Kind::SockType},
        {"kill", 1, Kind::Signal},
        {"tkill", 1, Kind::Signal},
        {"tgkill", 2, Kind::Signal},
        {"mmap", 2, Kind::Prot},
        {"mmap", 3, Kind::MapFlags},
        {"mprotect", 2, Kind::Prot},
        {"pkey_mprotect", 2, Kind::Prot},
        {"clone", 0, Kind::CloneFlags},
        {"unshare", 0, Kind::CloneFlags},
        {"setns", 1, Kind::CloneFlags},
};

Kind kindOf(const std::string& s, unsigned i) {
    for (const auto& a : kArgKinds)
        if (a.index == i && s == a.syscall) return a.kind;
    return Kind::None;
}

}  // namespace

std::optional<std::vector<std::string>> argNames(const std::string& syscall) {
    struct Entry {
        const char* name;
        std::vector<const char*> args;
    };
    // The kernel's own names, generated from its syscall metadata (see the
    // .inc's header); a syscall it does not list there is nullopt, not "no arguments".
    static const std::vector<Entry> kTable = {
#include "syscall_arg_names.inc"
    };
    for (const auto& e : kTable)
        if (syscall == e.name) return std::vector<std::string>(e.args.begin(), e.args.end());
    return std::nullopt;
}

std::string argMeaning(const std::string& syscall, unsigned index, uint64_t value, const std::vector<uint64_t>& all) {
    switch (kindOf(syscall, index)) {
        case Kind::None:
            // ioctl requests (TCGETS), prctl options, fcntl commands: the names
            // a policy rule accepts, from the system headers.
            return moat::policy::arg_constant_name(syscall, index, value).value_or("");
        case Kind::OpenFlags: return openFlags(value);
        case Kind::Mode: {
            // open/openat only use the mode with O_CREAT or O_TMPFILE.
            const unsigned flagsAt = syscall == "openat" ? 2 : syscall == "open" ? 1 : 99;
            if (flagsAt < all.size() && !(all[flagsAt] & (O_CREAT | __O_TMPFILE))) return "unused (no O_CREAT)";
            return octal(value & 07777);
        }
        case Kind::Dirfd: return isAtFdcwd(value) ? "AT_FDCWD" : "fd " + std::to_string(int32_t(uint32_t(value)));
        case Kind::Family: return family(value).value_or("");
        case Kind::SockType: return socketType(value);
        case Kind::Signal: return signalName(value);
        case Kind::Prot:
            return value == PROT_NONE ? "PROT_NONE" : flags(value, {N(PROT_READ), N(PROT_WRITE), N(PROT_EXEC)});
        case Kind::MapFlags: {
            const auto type = oneOf(value & 0xf, {N(MAP_SHARED), N(MAP_PRIVATE), N(MAP_SHARED_VALIDATE)});
            return flags(value & ~uint64_t(0xf),
                         {N(MAP_FIXED), N(MAP_ANONYMOUS), N(MAP_GROWSDOWN), N(MAP_DENYWRITE), N(MAP_EXECUTABLE),
                          N(MAP_LOCKED), N(MAP_NORESERVE), N(MAP_POPULATE), N(MAP_NONBLOCK), N(MAP_STACK),
                          N(MAP_HUGETLB), N(MAP_FIXED_NOREPLACE)},
                         type.value_or(""));
        }
        case Kind::CloneFlags:
            return flags(value & ~uint64_t(0xff),
                         {N(CLONE_VM), N(CLONE_FS), N(CLONE_FILES), N(CLONE_SIGHAND), N(CLONE_PIDFD), N(CLONE_PTRACE),
                          N(CLONE_VFORK), N(CLONE_PARENT), N(CLONE_THREAD), N(CLONE_NEWNS), N(CLONE_SYSVSEM),
                          N(CLONE_SETTLS), N(CLONE_PARENT_SETTID), N(CLONE_CHILD_CLEARTID), N(CLONE_UNTRACED),
                          N(CLONE_CHILD_SETTID), N(CLONE_NEWCGROUP), N(CLONE_NEWUTS), N(CLONE_NEWIPC), N(CLONE_NEWUSER),
                          N(CLONE_NEWPID), N(CLONE_NEWNET), N(CLONE_IO)}) +
                   ((value & 0xff) ? " (exit signal " + signalName(value & 0xff) + ")" : "");
        case Kind::AtFlags:
            return flags(value, {N(AT_SYMLINK_NOFOLLOW), N(AT_REMOVEDIR), N(AT_SYMLINK_FOLLOW), N(AT_NO_AUTOMOUNT),
                                 N(AT_EMPTY_PATH), N(AT_EACCESS)});
    }
    return {};
}

std::optional<std::string> argSymbol(const std::string& syscall, unsigned index, uint64_t value) {
    if (kindOf(syscall, index) == Kind::Family) return family(value);
    // The names a policy rule accepts (from the system headers, via moat_policy).
    return moat::policy::arg_constant_name(syscall, index, value);
}

std::string errnoText(const std::string& action) {
    if (action.rfind("errno:", 0) != 0) return {};
    const std::string name = action.substr(6);
    const int e = moat::errno_from_name(name);
    if (e <= 0) return name;
    return name + " (" + std::to_string(e) + "): " + strerror(e);
}

}  // namespace moat::learn
