// Symbolic constants for [[seccomp.rule]] argument values. The numbers come from
// the system headers (the compiler supplies them), never from a hand-copied
// table, so they match the x86_64 ABI the filter is compiled for.
#include <asm/prctl.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#include <charconv>

#include "internal.h"
#include "moat/policy/syscalls.h"

namespace moat::policy::detail {

#define MOAT_CONST(x) NamedConstant{#x, static_cast<uint64_t>(x)}

const std::vector<NamedConstant>& arg_constants() {
    static const std::vector<NamedConstant> table = {
        // socket(2) domain, type and type flags
        MOAT_CONST(AF_UNSPEC), MOAT_CONST(AF_UNIX), MOAT_CONST(AF_LOCAL), MOAT_CONST(AF_INET),
        MOAT_CONST(AF_INET6), MOAT_CONST(AF_NETLINK), MOAT_CONST(AF_PACKET), MOAT_CONST(AF_VSOCK),
        MOAT_CONST(SOCK_STREAM), MOAT_CONST(SOCK_DGRAM), MOAT_CONST(SOCK_RAW), MOAT_CONST(SOCK_SEQPACKET),
        MOAT_CONST(SOCK_CLOEXEC), MOAT_CONST(SOCK_NONBLOCK),
        // open(2) flags
        MOAT_CONST(O_RDONLY), MOAT_CONST(O_WRONLY), MOAT_CONST(O_RDWR), MOAT_CONST(O_ACCMODE),
        MOAT_CONST(O_CREAT), MOAT_CONST(O_EXCL), MOAT_CONST(O_NOCTTY), MOAT_CONST(O_TRUNC),
        MOAT_CONST(O_APPEND), MOAT_CONST(O_NONBLOCK), MOAT_CONST(O_DIRECTORY), MOAT_CONST(O_NOFOLLOW),
        MOAT_CONST(O_CLOEXEC), MOAT_CONST(O_PATH), MOAT_CONST(O_TMPFILE), MOAT_CONST(O_SYNC),
        MOAT_CONST(O_DIRECT), MOAT_CONST(O_NOATIME),
        // mmap(2) / mprotect(2)
        MOAT_CONST(PROT_NONE), MOAT_CONST(PROT_READ), MOAT_CONST(PROT_WRITE), MOAT_CONST(PROT_EXEC),
        MOAT_CONST(MAP_SHARED), MOAT_CONST(MAP_PRIVATE), MOAT_CONST(MAP_FIXED), MOAT_CONST(MAP_ANONYMOUS),
        MOAT_CONST(MAP_NORESERVE), MOAT_CONST(MAP_STACK),
        // clone(2) flags, including every namespace flag
        MOAT_CONST(CLONE_VM), MOAT_CONST(CLONE_FS), MOAT_CONST(CLONE_FILES), MOAT_CONST(CLONE_SIGHAND),
        MOAT_CONST(CLONE_PIDFD), MOAT_CONST(CLONE_PTRACE), MOAT_CONST(CLONE_VFORK), MOAT_CONST(CLONE_PARENT),
        MOAT_CONST(CLONE_THREAD), MOAT_CONST(CLONE_SYSVSEM), MOAT_CONST(CLONE_SETTLS),
        MOAT_CONST(CLONE_PARENT_SETTID), MOAT_CONST(CLONE_CHILD_CLEARTID), MOAT_CONST(CLONE_CHILD_SETTID),
        MOAT_CONST(CLONE_NEWNS), MOAT_CONST(CLONE_NEWCGROUP), MOAT_CONST(CLONE_NEWUTS), MOAT_CONST(CLONE_NEWIPC),
        MOAT_CONST(CLONE_NEWUSER), MOAT_CONST(CLONE_NEWPID), MOAT_CONST(CLONE_NEWNET), MOAT_CONST(CLONE_NEWTIME),
        MOAT_CONST(CLONE_IO),
        // ioctl(2) requests
        MOAT_CONST(TIOCSTI), MOAT_CONST(TIOCGWINSZ), MOAT_CONST(TIOCSWINSZ), MOAT_CONST(TCGETS),
        MOAT_CONST(TCSETS), MOAT_CONST(TIOCGPGRP), MOAT_CONST(TIOCSPGRP), MOAT_CONST(TIOCLINUX),
        MOAT_CONST(FIONREAD), MOAT_CONST(FIONBIO), MOAT_CONST(FIOCLEX), MOAT_CONST(FIONCLEX),
        MOAT_CONST(TCSETSW), MOAT_CONST(TCSETSF), MOAT_CONST(TCFLSH), MOAT_CONST(TCSBRK), MOAT_CONST(TCXONC),
        MOAT_CONST(TIOCSCTTY), MOAT_CONST(TIOCNOTTY), MOAT_CONST(TIOCGSID), MOAT_CONST(TIOCEXCL),
        MOAT_CONST(TIOCNXCL), MOAT_CONST(TIOCGPTN), MOAT_CONST(TIOCSPTLCK), MOAT_CONST(TIOCOUTQ),
        MOAT_CONST(FIOASYNC),
        // fcntl(2) commands and flags
        MOAT_CONST(F_DUPFD), MOAT_CONST(F_DUPFD_CLOEXEC), MOAT_CONST(F_GETFD), MOAT_CONST(F_SETFD),
        MOAT_CONST(F_GETFL), MOAT_CONST(F_SETFL), MOAT_CONST(F_GETLK), MOAT_CONST(F_SETLK),
        MOAT_CONST(F_SETLKW), MOAT_CONST(FD_CLOEXEC), MOAT_CONST(F_GETOWN), MOAT_CONST(F_SETOWN),
        MOAT_CONST(F_GETSIG), MOAT_CONST(F_SETSIG), MOAT_CONST(F_OFD_GETLK), MOAT_CONST(F_OFD_SETLK),
        MOAT_CONST(F_OFD_SETLKW), MOAT_CONST(F_SETLEASE), MOAT_CONST(F_GETLEASE), MOAT_CONST(F_NOTIFY),
        MOAT_CONST(F_SETPIPE_SZ), MOAT_CONST(F_GETPIPE_SZ), MOAT_CONST(F_ADD_SEALS), MOAT_CONST(F_GET_SEALS),
        // arch_prctl(2) codes
        MOAT_CONST(ARCH_SET_GS), MOAT_CONST(ARCH_SET_FS), MOAT_CONST(ARCH_GET_FS), MOAT_CONST(ARCH_GET_GS),
        MOAT_CONST(ARCH_GET_CPUID), MOAT_CONST(ARCH_SET_CPUID),
        // prctl(2) options
        MOAT_CONST(PR_SET_NAME), MOAT_CONST(PR_GET_NAME), MOAT_CONST(PR_SET_NO_NEW_PRIVS),
        MOAT_CONST(PR_GET_NO_NEW_PRIVS), MOAT_CONST(PR_SET_PDEATHSIG), MOAT_CONST(PR_GET_PDEATHSIG),
        MOAT_CONST(PR_SET_DUMPABLE), MOAT_CONST(PR_GET_DUMPABLE), MOAT_CONST(PR_SET_SECCOMP),
        MOAT_CONST(PR_CAPBSET_READ), MOAT_CONST(PR_SET_KEEPCAPS), MOAT_CONST(PR_GET_KEEPCAPS),
        MOAT_CONST(PR_GET_SECCOMP), MOAT_CONST(PR_SET_CHILD_SUBREAPER), MOAT_CONST(PR_GET_CHILD_SUBREAPER),
        MOAT_CONST(PR_SET_TIMERSLACK), MOAT_CONST(PR_GET_TIMERSLACK), MOAT_CONST(PR_SET_THP_DISABLE),
        MOAT_CONST(PR_GET_THP_DISABLE), MOAT_CONST(PR_CAP_AMBIENT), MOAT_CONST(PR_SET_MM),
        MOAT_CONST(PR_SET_PTRACER), MOAT_CONST(PR_GET_TID_ADDRESS),
    };
    return table;
}

#undef MOAT_CONST

std::vector<std::string> arg_constant_names() {
    std::vector<std::string> v;
    for (const NamedConstant& c : arg_constants()) v.emplace_back(c.name);
    return v;
}

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::optional<uint64_t> resolve_one(std::string_view t, std::string* why) {
    if (t.empty()) {
        if (why) *why = "empty argument value";
        return std::nullopt;
    }
    if (t.front() >= '0' && t.front() <= '9') {
        int base = 10;
        std::string_view digits = t;
        if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
            base = 16;
            digits = t.substr(2);
        }
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
        if (ec == std::errc::result_out_of_range) {
            if (why) *why = "argument value \"" + std::string(t) + "\" does not fit in 64 bits";
            return std::nullopt;
        }
        if (ec != std::errc() || p != digits.data() + digits.size()) {
            if (why) *why = "argument value \"" + std::string(t) + "\" is not a number (write decimal or 0x hex)";
            return std::nullopt;
        }
        return v;
    }
    for (const NamedConstant& c : arg_constants())
        if (c.name == t) return c.value;
    if (why) {
        *why = "unknown constant \"" + std::string(t) + "\"";
        std::string near = closest(t, arg_constant_names());
        if (!near.empty()) *why += " (did you mean \"" + near + "\"?)";
        else *why += " (use a number, or see docs/policy.md for the constants Moat knows)";
    }
    return std::nullopt;
}

}  // namespace

std::optional<uint64_t> resolve_arg_value(std::string_view text, std::string* why) {
    // "A|B|C": flags combined with bitwise or, as in C.
    uint64_t acc = 0;
    std::string_view rest = text;
    while (true) {
        size_t bar = rest.find('|');
        std::optional<uint64_t> v = resolve_one(trim(rest.substr(0, bar)), why);
        if (!v) return std::nullopt;
        acc |= *v;
        if (bar == std::string_view::npos) break;
        rest.remove_prefix(bar + 1);
    }
    return acc;
}

}  // namespace moat::policy::detail

namespace moat::policy {

std::optional<std::string> arg_constant_name(std::string_view syscall, unsigned index, uint64_t value) {
    std::vector<std::string_view> prefixes;
    if ((syscall == "socket" || syscall == "socketpair") && index == 0) prefixes = {"AF_"};
    else if (syscall == "ioctl" && index == 1) prefixes = {"TIOC", "TC", "FIO"};
    else if (syscall == "prctl" && index == 0) prefixes = {"PR_"};
    else if (syscall == "fcntl" && index == 1) prefixes = {"F_"};
    else if (syscall == "arch_prctl" && index == 0) prefixes = {"ARCH_"};
    else return std::nullopt;
    for (const auto& c : detail::arg_constants())
        for (auto p : prefixes)
            if (c.value == value && std::string_view(c.name).substr(0, p.size()) == p) return std::string(c.name);
    return std::nullopt;
}

}  // namespace moat::policy
