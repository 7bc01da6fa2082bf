#include "moat/vm/qemu_jail.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "moat/common/timeutil.h"

namespace moat::vm {

namespace {

constexpr int kFirstFd = 3;  // QEMU finds the ports at 3.., then the console

// Why each piece is there: docs/vm.md#the-qemu-command-line.
constexpr const char* kKernelArgs = "console=ttyS0 quiet panic=-1";

// ---- child side: async-signal-safe only (moatd is multi-threaded) ----------

struct Failure {
    char step[48];
    int err;
};

[[noreturn]] void child_fail(int status_fd, const char* step, int err) {
    Failure f{};
    for (size_t i = 0; step[i] && i + 1 < sizeof f.step; ++i) f.step[i] = step[i];
    f.err = err;
    (void)!::write(status_fd, &f, sizeof f);  // < PIPE_BUF: atomic
    _exit(125);
}

struct ChildArgs {
    const char* exe;
    char* const* argv;
    const int* fds;  // become kFirstFd.. in this order
    int nfds;
    int log_fd;      // -1: /dev/null
    int go_fd;
    int status_fd;
    uid_t uid;
    gid_t gid;
    pid_t parent;
    int last_cap;
};

[[noreturn]] void child_main(ChildArgs a) {
    // 1. Die with moatd; close the race where it died before the prctl.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno);
    if (getppid() != a.parent) _exit(125);
    // 2. Wait until the parent has put us into the job's cgroup: QEMU's
    //    memory (guest RAM included) and threads are charged to the job.
    char b;
    ssize_t n;
    do n = ::read(a.go_fd, &b, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(125);
    // 3. Fds: every fd we keep goes above the target range first, so a dup2
    //    onto 0..kFirstFd+n cannot clobber a source sitting there; then
    //    everything else of moatd's is closed (its sockets, its database,
    //    other jobs' fds), not merely marked close-on-exec.
    int high[64];
    if (a.nfds > 60) child_fail(a.status_fd, "too many fds", E2BIG);
    for (int i = 0; i < a.nfds; ++i) {
        high[i] = fcntl(a.fds[i], F_DUPFD_CLOEXEC, 100);
        if (high[i] < 0) child_fail(a.status_fd, "fcntl(F_DUPFD port)", errno);
    }
    int status = fcntl(a.status_fd, F_DUPFD_CLOEXEC, 100);
    int log = a.log_fd >= 0 ? fcntl(a.log_fd, F_DUPFD_CLOEXEC, 100) : ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (status < 0 || log < 0 || null_in < 0) child_fail(a.status_fd, "fcntl(F_DUPFD)", errno);
    a.status_fd = status;
    if (dup2(null_in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) child_fail(status, "dup2(stdio)", errno);
    for (int i = 0; i < a.nfds; ++i)
        if (dup2(high[i], kFirstFd + i) < 0) child_fail(status, "dup2(port)", errno);  // dup2 clears CLOEXEC
    // Move the status pipe right after the ports and close everything above it.
    int status_final = kFirstFd + a.nfds;
    if (dup3(status, status_final, O_CLOEXEC) < 0) child_fail(status, "dup3(status)", errno);
    a.status_fd = status_final;
    if (syscall(SYS_close_range, unsigned(status_final + 1), ~0U, 0U) < 0)
        child_fail(a.status_fd, "close_range", errno);
    // 4. No controlling terminal; 5. namespaces QEMU has no use for: it gets
    //    no network device, and a fresh network namespace (only a down `lo`)
    //    means a compromised QEMU cannot reach the host's network either
    //    (-sandbox does not forbid socket()). IPC and UTS likewise.
    setsid();
    if (unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        child_fail(a.status_fd, "unshare(NEWNET|NEWIPC|NEWUTS)", errno);
    // 6. No core dumps: one would hold guest memory.
    rlimit core{0, 0};
    if (setrlimit(RLIMIT_CORE, &core) < 0) child_fail(a.status_fd, "setrlimit(RLIMIT_CORE)", errno);
    // 7. Drop privileges as the seccomp tier does (core/sandbox/src/spawn.cpp):
    //    the bounding set while we still hold CAP_SETPCAP, groups before the
    //    gid, the gid before the uid.
    for (int cap = 0; cap <= a.last_cap; ++cap)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            child_fail(a.status_fd, "prctl(PR_CAPBSET_DROP)", errno);
    if (setgroups(0, nullptr) < 0) child_fail(a.status_fd, "setgroups(0)", errno);
    if (setresgid(a.gid, a.gid, a.gid) < 0) child_fail(a.status_fd, "setresgid", errno);
    if (setresuid(a.uid, a.uid, a.uid) < 0) child_fail(a.status_fd, "setresuid", errno);
    // The kernel clears the parent-death signal on a credential change.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno);
    if (getppid() != a.parent) _exit(125);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail(a.status_fd, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capset, &hdr, data) < 0) child_fail(a.status_fd, "capset(0)", errno);
    // setuid binaries and file capabilities stay inert for QEMU and anything
    // it could be tricked into exec'ing (-sandbox spawn=deny forbids that too).
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail(a.status_fd, "prctl(PR_SET_NO_NEW_PRIVS)", errno);
    if (chdir("/") < 0) child_fail(a.status_fd, "chdir(\"/\")", errno);
    // 8. An empty environment: nothing of moatd's (and no QEMU_* variable)
    //    reaches QEMU.
    char* envp[] = {nullptr};
    execve(a.exe, a.argv, envp);
    child_fail(a.status_fd, "execve(qemu)", errno);
}

int read_last_cap() {
    int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 63;
    char buf[16] = {};
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    return n > 0 ? atoi(buf) : 63;
}

bool safe_option_value(const std::string& s) {
    // QEMU's option syntax splits on ',' ("a,,b" escapes it) and our
    // argument on nothing else; refuse rather than escape: names and paths
    // here come from moatd's own configuration.
    return s.find(',') == std::string::npos && s.find('\n') == std::string::npos;
}

}  // namespace

const char* accel_name(Accel a) { return a == Accel::Kvm ? "kvm" : "tcg"; }

std::vector<std::string> qemu_argv(const QemuConfig& cfg) {
    std::vector<std::string> v = {
        cfg.qemu,
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        // microvm: no PCI, no firmware, virtio-mmio devices. isa-serial=on
        // for the console (ttyS0). ACPI stays on: without it this kernel
        // does not find the virtio-mmio devices.
        "-M", "microvm,isa-serial=on",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-m", std::to_string(cfg.memory_mib),
        "-smp", "1",
        "-accel", accel_name(cfg.accel),
        "-kernel", cfg.kernel,
        "-initrd", cfg.initrd,
        "-append", cfg.append.empty() ? std::string(kKernelArgs) : std::string(kKernelArgs) + " " + cfg.append,
    };
    if (cfg.accel == Accel::Tcg) {
        // Instruction counting: the guest's clocks (PIT, TSC, LAPIC timer)
        // advance with the instructions it executes, not with host time.
        // Without it the kernel's early PIT/TSC calibration fails whenever
        // QEMU's thread is descheduled or slowed (two guests on two cores, a
        // verbose console: "tsc: Unable to calibrate against PIT") and the
        // boot then hangs for good with no further console output. With it,
        // 6 of 6 concurrent boot pairs came up (0 of 6 without).
        // shift=4: each instruction is 16 ns of guest time. Not shift=auto:
        // its adaptive rate left the guest idle on its own timers for ~1 s in
        // about half of the warm starts (QEMU's CPU time flat while the job
        // waited); fixed shifts 0-8 measured here (docs/vm.md): 4 gave the
        // fastest boots and warm starts. sleep=on lets an idle guest sleep
        // (sleep=off keeps an idle guest's QEMU busy, which a pool cannot pay).
        v.insert(v.end(), {"-icount", "shift=4,sleep=on"});
    }
    if (!cfg.root_image.empty()) {
        v.insert(v.end(), {"-drive", "id=root,file=" + cfg.root_image + ",format=raw,if=none,read-only=on",
                           "-device", "virtio-blk-device,drive=root"});
    }
    int fd = kFirstFd;
    if (!cfg.ports.empty()) {
        v.insert(v.end(), {"-device", "virtio-serial-device"});
        for (size_t i = 0; i < cfg.ports.size(); ++i, ++fd) {
            std::string id = "port" + std::to_string(i);
            v.insert(v.end(), {"-chardev", "socket,id=" + id + ",fd=" + std::to_string(fd), "-device",
                               "virtserialport,chardev=" + id + ",name=" + cfg.ports[i].name});
        }
    }
    if (cfg.console_fd >= 0)
        v.insert(v.end(), {"-chardev", "socket,id=console,fd=" + std::to_string(fd), "-serial", "chardev:console"});
    else
        v.insert(v.end(), {"-serial", "none"});
    return v;
}

Result<QemuProcess> launch_qemu(const QemuConfig& cfg) {
    if (cfg.uid == 0 || cfg.gid == 0) return fail("refusing to run QEMU as uid or gid 0");
    if (cfg.kernel.empty() || cfg.initrd.empty()) return fail("QEMU needs a kernel and an initrd");
    for (const auto* s : {&cfg.kernel, &cfg.initrd, &cfg.root_image})
        if (!safe_option_value(*s)) return fail("path with ',' or newline: \"" + *s + "\"");
    for (const auto& p : cfg.ports) {
        if (p.fd < 0) return fail("virtio port \"" + p.name + "\" has no fd");
        if (p.name.empty() || !safe_option_value(p.name) || p.name.find('=') != std::string::npos)
            return fail("bad virtio port name \"" + p.name + "\"");
    }
    if (cfg.memory_mib < 32) return fail("guest memory below 32 MiB: the kernel does not boot");

    QemuProcess out;
    out.argv = qemu_argv(cfg);
    std::vector<char*> argv;
    for (auto& s : out.argv) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<int> fds;
    for (const auto& p : cfg.ports) fds.push_back(p.fd);
    if (cfg.console_fd >= 0) fds.push_back(cfg.console_fd);

    int go[2], status[2];
    if (::pipe2(go, O_CLOEXEC) < 0) return fail_sys("pipe2(go)", errno);
    UniqueFd go_r(go[0]), go_w(go[1]);
    if (::pipe2(status, O_CLOEXEC) < 0) return fail_sys("pipe2(status)", errno);
    UniqueFd st_r(status[0]), st_w(status[1]);

    ChildArgs a{};
    a.exe = cfg.qemu.c_str();
    a.argv = argv.data();
    a.fds = fds.data();
    a.nfds = int(fds.size());
    a.log_fd = cfg.log_fd;
    a.go_fd = go_r.get();
    a.status_fd = st_w.get();
    a.uid = cfg.uid;
    a.gid = cfg.gid;
    a.parent = getpid();
    a.last_cap = read_last_cap();

    pid_t pid = ::fork();
    if (pid < 0) return fail_sys("fork", errno);
    if (pid == 0) child_main(a);
    out.pid = pid;
    go_r.reset();
    st_w.reset();
    auto abort_child = [&](Error e) -> Result<QemuProcess> {
        ::kill(pid, SIGKILL);
        int ws;
        while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
        return std::unexpected(std::move(e));
    };
    out.pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!out.pidfd) return abort_child(Error::sys("pidfd_open", errno));
    if (cfg.cgroup)
        if (auto r = cfg.cgroup->add_pid(pid); !r) return abort_child(r.error().wrap("joining the job cgroup"));
    char one = 1;
    if (::write(go_w.get(), &one, 1) != 1) return abort_child(Error::sys("write(go)", errno));
    go_w.reset();
    // The status pipe is O_CLOEXEC: EOF without a record means execve worked.
    Failure f{};
    ssize_t n;
    do n = ::read(st_r.get(), &f, sizeof f);
    while (n < 0 && errno == EINTR);
    if (n == ssize_t(sizeof f)) {
        f.step[sizeof f.step - 1] = 0;
        std::string step = f.step;
        if (step == "execve(qemu)") step = "execve(\"" + cfg.qemu + "\")";
        return abort_child(Error::sys("jailing QEMU: " + step, f.err));
    }
    if (n != 0) return abort_child(Error::msg("jailing QEMU: the child ended before exec"));
    return out;
}

Result<int> wait_qemu(QemuProcess& p, int timeout_ms) {
    // Never waitpid(-1)/kill(-1): a QEMU already reaped has pid -1.
    if (p.pid <= 0) return fail("QEMU was already reaped");
    const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
    for (;;) {
        int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
        if (left <= 0) break;
        pollfd pfd{p.pidfd.get(), POLLIN, 0};
        int r = ::poll(&pfd, 1, int(std::min<int64_t>(left, 1000)));
        if (r > 0) {
            int ws = 0;
            while (::waitpid(p.pid, &ws, 0) < 0)
                if (errno != EINTR) return fail_sys("waitpid(qemu)", errno);
            p.pid = -1;
            return ws;
        }
    }
    ::kill(p.pid, SIGKILL);
    int ws;
    while (::waitpid(p.pid, &ws, 0) < 0 && errno == EINTR) {}
    p.pid = -1;
    return fail("QEMU did not exit within " + std::to_string(timeout_ms) + " ms (killed)");
}

bool ConsoleLog::drain(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK) n = ::read(fd, buf, sizeof buf);  // a pipe (caller made it non-blocking)
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
        if (n == 0) return false;
        m_total += uint64_t(n);
        m_text.append(buf, size_t(n));
        if (m_text.size() > m_max) m_text.erase(0, m_text.size() - m_max);
    }
}

}  // namespace moat::vm
