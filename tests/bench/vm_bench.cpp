// The vm tier's baseline for tests/bench/run.sh: a bare QEMU boot, without
// moatd, of the same guest kernel with the same initramfs machinery
// (moat::vm::BaseInitramfs) and the same command line the tier uses
// (moat::vm::qemu_argv through launch_qemu: same jail, same -m, same
// accelerator, the same root image attached), to a marker in user space.
// Its /init is a small static test init (tests/vm/guest_test_init.c): it
// loads the virtio modules, finds its port by name and writes READY, which is
// what the guest agent does before it says Hello. Then "bye": the init syncs
// and reboots, and QEMU exits (-no-reboot), as a guest does after its job.
//
//   vm_bench --init PATH [--runs N] [--memory-mib M] [--root-image IMG]
//            [--uid U] [--cgroup-parent NAME] [--qemu PATH] [--guest-dir DIR]
//            [--cache-dir DIR] [--probe-init PATH] [--run PROGRAM]
//
// Prints one line per boot: `boot ready_ms=R exit_ms=E` (R: launch -> READY
// read on the host; E: launch -> QEMU reaped after "bye"), and once
// `argv ...` (QEMU's command line, one argument per tab). With --run, the
// init runs PROGRAM (a path in the root image, chroot there, no sandbox)
// between READY and "bye", and the line adds `run_ms=X` (its round trip):
// the same program a cold job runs, so its own first run under TCG is in
// the baseline, not in Moat's overhead. Not a test: no
// timing is judged here. Exit 77 (and a line saying why) when the tier's
// pieces are missing, so the suite can skip.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "moat/cgroup/cgroup.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/vm/accel.h"
#include "moat/vm/guest_kernel.h"
#include "moat/vm/initramfs.h"
#include "moat/vm/qemu_jail.h"

using namespace moat;

namespace {

[[noreturn]] void skip(const std::string& why) {
    printf("skip %s\n", why.c_str());
    exit(77);
}
[[noreturn]] void die(const std::string& why) {
    fprintf(stderr, "vm_bench: %s\n", why.c_str());
    exit(1);
}

// Reads one line from fd within timeout_ms.
std::optional<std::string> read_line(int fd, std::string& buf, int timeout_ms) {
    const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
    for (;;) {
        if (auto nl = buf.find('\n'); nl != std::string::npos) {
            std::string line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            return line;
        }
        const int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
        if (left <= 0) return std::nullopt;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, int(left)) <= 0) continue;
        char tmp[256];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0) return std::nullopt;
        buf.append(tmp, size_t(n));
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string init, root_image, cgroup_parent, qemu = "/usr/bin/qemu-system-x86_64", guest_dir, cache_dir, probe_init,
        run_program;
    int runs = 5;
    uint32_t memory_mib = 128;
    uid_t uid = 65534;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value for " + a);
            return argv[++i];
        };
        if (a == "--init") init = val();
        else if (a == "--runs") runs = atoi(val().c_str());
        else if (a == "--memory-mib") memory_mib = uint32_t(strtoul(val().c_str(), nullptr, 10));
        else if (a == "--root-image") root_image = val();
        else if (a == "--uid") uid = uid_t(strtoul(val().c_str(), nullptr, 10));
        else if (a == "--cgroup-parent") cgroup_parent = val();
        else if (a == "--qemu") qemu = val();
        else if (a == "--guest-dir") guest_dir = val();
        else if (a == "--cache-dir") cache_dir = val();
        else if (a == "--probe-init") probe_init = val();
        else if (a == "--run") run_program = val();
        else die("unknown argument " + a);
    }
    if (init.empty()) die("--init PATH is required (the vm-test-init target)");
    if (!run_program.empty() && root_image.empty()) die("--run needs --root-image (the program is run from it)");
    if (run_program.find('\n') != std::string::npos) die("--run: a path with a newline");
    if (geteuid() != 0) skip("needs root (QEMU is jailed as an unprivileged uid in a cgroup)");
    if (access(qemu.c_str(), X_OK) != 0) skip(qemu + " missing (Debian package qemu-system-x86)");
    auto kernel = vm::GuestKernel::find(guest_dir.empty() ? vm::default_guest_dir() : guest_dir);
    if (!kernel) skip(kernel.error().message);
    if (cache_dir.empty()) cache_dir = "/tmp";
    auto initrd = vm::BaseInitramfs::build(*kernel, {init, cache_dir + "/initramfs"});
    if (!initrd) die(initrd.error().message);

    // The accelerator as the tier chooses it (the probe boots only where
    // /dev/kvm exists; without a probe init, TCG like the tier).
    vm::Accel accel = vm::Accel::Tcg;
    if (!probe_init.empty()) {
        auto pr = vm::BaseInitramfs::build(*kernel, {probe_init, cache_dir + "/initramfs"});
        if (pr) {
            vm::ProbeConfig pc;
            pc.qemu = qemu;
            pc.kernel = kernel->vmlinux();
            pc.initrd = pr->path();
            pc.uid = uid;
            pc.gid = uid;
            auto v = vm::probe_accelerator(pc);
            accel = v.accel;
            printf("accel %s (%s)\n", vm::accel_name(v.accel), v.reason.c_str());
        }
    }

    std::optional<cgroup::Layout> layout;
    if (!cgroup_parent.empty()) {
        auto l = cgroup::Layout::detect();
        if (!l) die(l.error().message);
        layout = *l;
    }

    for (int r = 0; r < runs; ++r) {
        // The cgroup is made before the clock starts: the baseline is the boot.
        std::optional<cgroup::JobCgroup> cg;
        if (layout) {
            auto c = cgroup::JobCgroup::create(*layout, cgroup_parent, "bare-boot-" + std::to_string(r), {});
            if (!c) die(c.error().message);
            cg.emplace(std::move(*c));
        }
        int p[2], c[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c) < 0)
            die("socketpair");
        UniqueFd port(p[0]), qport(p[1]), console(c[0]), qconsole(c[1]);
        vm::QemuConfig q;
        q.qemu = qemu;
        q.kernel = kernel->vmlinux();
        q.initrd = initrd->path();
        q.root_image = root_image;
        q.memory_mib = memory_mib;
        q.accel = accel;
        q.ports = {{"moat-test", qport.get()}};  // the name guest_test_init looks for
        q.console_fd = qconsole.get();
        q.uid = uid;
        q.gid = uid;
        q.cgroup = cg ? &*cg : nullptr;

        const int64_t t0 = now_monotonic_ns();
        auto proc = vm::launch_qemu(q);
        if (!proc) die("launch_qemu: " + proc.error().message);
        qport.reset();
        qconsole.reset();
        if (r == 0) {
            std::string line = "argv";
            for (const auto& s : proc->argv) line += "\t" + s;
            printf("%s\n", line.c_str());
        }
        std::string buf;
        auto ready = read_line(port.get(), buf, 60000);
        const int64_t t_ready = now_monotonic_ns();
        vm::ConsoleLog log;
        if (ready != "READY") {
            log.drain(console.get());
            (void)vm::wait_qemu(*proc, 100);
            die("the bare guest did not write READY (got " + printable(ready.value_or("nothing")) +
                "); console: " + printable(log.text()));
        }
        double run_ms = -1;
        if (!run_program.empty()) {
            const std::string cmd = "run " + run_program + "\n";
            const int64_t t_run = now_monotonic_ns();
            if (write(port.get(), cmd.data(), cmd.size()) != ssize_t(cmd.size())) die("write(run)");
            auto reply = read_line(port.get(), buf, 60000);
            run_ms = double(now_monotonic_ns() - t_run) / 1e6;
            if (!reply || reply->rfind("EXIT ", 0) != 0) {
                (void)vm::wait_qemu(*proc, 100);
                die("the bare guest did not run " + run_program + ": " + printable(reply.value_or("no reply")));
            }
            if (*reply != "EXIT 0") die("the bare guest ran " + run_program + ": " + printable(*reply) + " (a wait status)");
        }
        if (write(port.get(), "bye\n", 4) != 4) die("write(bye)");
        // With `quiet` the console says next to nothing: its socket buffer
        // never fills, so it is read only after the exit.
        auto ws = vm::wait_qemu(*proc, 30000);
        const int64_t t_exit = now_monotonic_ns();
        if (!ws) {
            log.drain(console.get());
            die("QEMU did not exit after bye: " + ws.error().message + "; console: " + printable(log.text()));
        }
        if (run_ms >= 0)
            printf("boot ready_ms=%.1f exit_ms=%.1f run_ms=%.1f\n", double(t_ready - t0) / 1e6, double(t_exit - t0) / 1e6, run_ms);
        else
            printf("boot ready_ms=%.1f exit_ms=%.1f\n", double(t_ready - t0) / 1e6, double(t_exit - t0) / 1e6);
        fflush(stdout);
        if (cg) {
            (void)cg->destroy();
        }
    }
    if (layout) {
        if (layout->version == cgroup::Version::V2) rmdir((layout->v2_root + "/" + cgroup_parent).c_str());
        else
            for (const auto& [ctl, mnt] : layout->v1) rmdir((mnt + "/" + cgroup_parent).c_str());
    }
    return 0;
}
