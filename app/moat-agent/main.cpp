// moat-agent: pid 1 of a vm-tier guest (see agent.h and docs/vm-protocol.md).
//   moat-agent                          in the guest (started by the kernel)
//   moat-agent --test-mode --ctl-fd N [--root-dir DIR]
//              [--work-dir DIR] [--uid-base N] [--cgroup-parent NAME]
//                                       on a host, for the tests
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent.h"

namespace {
[[noreturn]] void usage(const char* why) {
    fprintf(stderr,
            "moat-agent: %s\n"
            "usage: moat-agent [--test-mode --ctl-fd N [--root-dir DIR] [--work-dir DIR]\n"
            "                   [--uid-base N] [--cgroup-parent NAME]]\n",
            why);
    exit(2);
}
long number(const char* s, long min, long max) {
    char* end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < min || v > max) usage("bad number");
    return v;
}
// The kernel's rootfs (the unpacked initramfs) cannot be pivot_root'ed away
// (pivot_root refuses a root mount without a parent), and moat-init's code
// builds each job's root with pivot_root. So pid 1 bind-mounts rootfs onto a
// directory of itself, moves that mount over "/" and enters it: the root is
// then a mount whose parent is rootfs, which pivot_root accepts. The same
// pages serve (switch_root's copy into a tmpfs cost a copy of every byte of
// the initramfs at each boot under TCG, and the memory twice until the
// copy's source was unlinked). No exec of itself afterwards: the process's
// root and working directory are the new mount, which is all the jobs' clones
// inherit (an exec again was ~9 ms of every boot under TCG). False, with
// errno, when a step failed.
bool leave_rootfs() {
    const char* mnt = "/.moat-root";
    if (mkdir(mnt, 0755) < 0 && errno != EEXIST) return false;
    if (mount("/", mnt, nullptr, MS_BIND, nullptr) < 0) return false;
    return chdir(mnt) == 0 && mount(".", "/", nullptr, MS_MOVE, nullptr) == 0 && chroot(".") == 0 && chdir("/") == 0;
}
}  // namespace

int main(int argc, char** argv) {
    if (getpid() == 1 && !leave_rootfs())
        fprintf(stderr, "moat-agent: could not move off the initramfs root (%s); going on without it\n", strerror(errno));
    moat::agent::Options o;
    // As pid 1 the arguments are the kernel's (command-line words it did not
    // know): none of them is ours.
    for (int i = 1; getpid() != 1 && i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--test-mode") o.test_mode = true;
        else if (a == "--ctl-fd") o.ctl_fd = int(number(val(), 0, 1 << 20));
        else if (a == "--root-dir") o.root_dir = val();
        else if (a == "--work-dir") o.work_dir = val();
        else if (a == "--uid-base") o.uid_base = uid_t(number(val(), 1, 0x7ffffff0));
        else if (a == "--cgroup-parent") o.cgroup_parent = val();
        else usage(("unknown option " + a).c_str());
    }
    if (o.test_mode && o.ctl_fd < 0) usage("--test-mode needs --ctl-fd");
    if (!o.test_mode && o.ctl_fd >= 0) usage("--ctl-fd is for --test-mode");
    if (!o.test_mode && getpid() != 1) usage("outside --test-mode, moat-agent runs only as pid 1 of a guest");
    return moat::agent::run(o);
}
