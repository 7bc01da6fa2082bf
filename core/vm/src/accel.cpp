#include "moat/vm/accel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

#include "moat/common/text.h"
#include "moat/common/timeutil.h"

namespace moat::vm {

namespace {
std::string last_lines(const std::string& text, size_t max_bytes = 600) {
    std::string t = text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
    return printable(t);
}
}  // namespace

Result<int64_t> test_boot(const ProbeConfig& cfg, Accel accel, int timeout_ms) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return fail_sys("socketpair(console)", errno);
    UniqueFd mine(sv[0]), qemus(sv[1]);
    int lp[2];
    if (::pipe2(lp, O_CLOEXEC | O_NONBLOCK) < 0) return fail_sys("pipe2(log)", errno);
    UniqueFd log_r(lp[0]), log_w(lp[1]);

    QemuConfig q;
    q.qemu = cfg.qemu;
    q.kernel = cfg.kernel;
    q.initrd = cfg.initrd;
    q.memory_mib = 96;
    q.accel = accel;
    q.console_fd = qemus.get();
    q.log_fd = log_w.get();
    q.uid = cfg.uid;
    q.gid = cfg.gid;
    const int64_t t0 = now_monotonic_ns();
    auto proc = launch_qemu(q);
    if (!proc) return std::unexpected(proc.error());
    qemus.reset();
    log_w.reset();

    ConsoleLog console, log(4096);
    const int64_t deadline = t0 + int64_t(timeout_ms) * 1'000'000;
    bool exited = false;
    for (;;) {
        int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
        if (left <= 0) break;
        pollfd p[2] = {{mine.get(), POLLIN, 0}, {proc->pidfd.get(), POLLIN, 0}};
        ::poll(p, 2, int(left));
        console.drain(mine.get());
        if (console.contains(kProbeMarker)) break;
        if (p[1].revents & POLLIN) {
            exited = true;
            break;
        }
    }
    const int64_t ms = (now_monotonic_ns() - t0) / 1'000'000;
    log.drain(log_r.get());
    // The probe guest reboots by itself after the marker; a hung one is killed.
    (void)wait_qemu(*proc, console.contains(kProbeMarker) ? 2000 : 0);
    if (console.contains(kProbeMarker)) return ms;
    char secs[32];
    if (timeout_ms % 1000 == 0) snprintf(secs, sizeof secs, "%d s", timeout_ms / 1000);
    else snprintf(secs, sizeof secs, "%.1f s", timeout_ms / 1000.0);
    std::string why = exited ? std::string("QEMU exited before user space")
                             : std::string("test boot did not reach user space in ") + secs;
    if (!log.text().empty()) why += "; QEMU said: " + last_lines(log.text());
    if (!console.text().empty()) why += "; console: " + last_lines(console.text());
    return fail(why);
}

AccelVerdict probe_accelerator_uncached(const ProbeConfig& cfg) {
    AccelVerdict v;
    const int64_t t0 = now_monotonic_ns();
    struct stat st;
    if (::stat(cfg.kvm_device.c_str(), &st) < 0) {
        v.reason = cfg.kvm_device + (errno == ENOENT ? " absent" : " not accessible: " + Error::sys("stat", errno).message);
    } else if (!S_ISCHR(st.st_mode)) {
        v.reason = cfg.kvm_device + " is not a character device";
    } else {
        auto r = test_boot(cfg, Accel::Kvm, cfg.timeout_ms);
        if (r) {
            v.accel = Accel::Kvm;
            v.reason = "kvm test boot reached user space in " + std::to_string(*r) + " ms";
        } else {
            v.reason = r.error().message;
        }
    }
    v.probe_ms = (now_monotonic_ns() - t0) / 1'000'000;
    return v;
}

AccelVerdict probe_accelerator(const ProbeConfig& cfg) {
    static std::once_flag once;
    static AccelVerdict verdict;
    std::call_once(once, [&] { verdict = probe_accelerator_uncached(cfg); });
    return verdict;
}

}  // namespace moat::vm
