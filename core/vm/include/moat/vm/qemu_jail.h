#pragma once
// Starts QEMU's microvm machine as a jailed, unprivileged process, modelled
// on Firecracker's jailer: the privileged caller (moatd) prepares everything,
// the child joins the job's cgroup, enters fresh network/IPC/UTS namespaces,
// drops to the caller's uid/gid with no groups and no capabilities, keeps only
// the fds it was given, and execs QEMU with an empty environment; QEMU then
// confines itself with its own seccomp filter (-sandbox). See docs/vm.md#the-jail.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "moat/cgroup/cgroup.h"
#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::vm {

enum class Accel { Tcg, Kvm };
const char* accel_name(Accel a);  // "tcg" / "kvm"

// A virtio-serial port: the guest sees /dev/vport0pN whose
// /sys/class/virtio-ports/vport0pN/name is `name`. `fd` is QEMU's end of a
// connected AF_UNIX stream socketpair (QEMU's `-chardev socket,fd=N`); the
// caller keeps the other end. The fd is only borrowed: launch_qemu dups it.
struct SerialPort {
    std::string name;
    int fd = -1;
};

struct QemuConfig {
    std::string qemu = "/usr/bin/qemu-system-x86_64";
    std::string kernel;      // the kit's vmlinux (booted as PVH)
    std::string initrd;      // BaseInitramfs::path()
    std::string root_image;  // RootImage::path(), attached read-only as /dev/vda; "" = no disk
    std::string append;      // extra kernel arguments, after the fixed ones (qemu_argv)
    uint32_t memory_mib = 128;
    Accel accel = Accel::Tcg;
    std::vector<SerialPort> ports;
    // QEMU's end of a socketpair for the guest's ttyS0 (kernel messages: read
    // them for boot-failure diagnostics, ConsoleLog keeps a bounded tail).
    // -1: the serial port has no backend and the console goes nowhere.
    int console_fd = -1;
    // Where QEMU's own stdout and stderr go (its errors: a missing kernel, a
    // rejected option). -1: /dev/null.
    int log_fd = -1;
    uid_t uid = 0;  // QEMU runs as uid:gid, no supplementary groups; never 0
    gid_t gid = 0;
    // Joined before QEMU runs (memory, pids and CPU of QEMU and its threads
    // are the job's). nullptr: stay in the caller's cgroup (tests only).
    const cgroup::JobCgroup* cgroup = nullptr;
};

// The command line launch_qemu execs, with the fd numbers QEMU will see
// (ports at 3, 4, ...; then the console). For logs and tests.
std::vector<std::string> qemu_argv(const QemuConfig& cfg);

struct QemuProcess {
    pid_t pid = -1;
    UniqueFd pidfd;
    std::vector<std::string> argv;
};

// Forks, jails and execs QEMU. Returns once QEMU has been exec'ed (or with
// the step that failed: "setresuid: EPERM", "execve(/usr/bin/qemu...): ENOENT").
Result<QemuProcess> launch_qemu(const QemuConfig& cfg);

// Waits up to timeout_ms for QEMU to exit and reaps it: its wait status.
// On timeout it is SIGKILLed, reaped, and the result is an error.
Result<int> wait_qemu(QemuProcess& p, int timeout_ms);

// The last `max_bytes` of what arrived on a console fd (kernel messages are
// untrusted guest output: bounded, and shown through moat::printable()).
class ConsoleLog final {
public:
    explicit ConsoleLog(size_t max_bytes = 64 * 1024) : m_max(max_bytes) {}
    // Reads what is available now without blocking; false at EOF or error.
    bool drain(int fd);
    const std::string& text() const { return m_text; }
    bool contains(std::string_view s) const { return m_text.find(s) != std::string::npos; }
    uint64_t total_bytes() const { return m_total; }

private:
    size_t m_max;
    uint64_t m_total = 0;
    std::string m_text;
};

}  // namespace moat::vm
