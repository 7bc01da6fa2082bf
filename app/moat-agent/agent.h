#pragma once
// moat-agent: pid 1 of a vm-tier guest (docs/vm-protocol.md). It brings the
// guest up (mounts, virtio modules, the control port, the root image), says
// Hello, takes one Job from the host, runs it the way moatd's container tier
// does (spawn_container_job + moat-init, a guest cgroup, uid maps), forwards
// every seccomp notification to the host as a Notice and applies the host's
// Verdict, relays stdio, samples the cgroup, reports Exit, then reboots the
// guest (QEMU runs with -no-reboot, so that ends the VM).
//
// The agent trusts the host: it parses the host's messages strictly (a bug is
// an error, not UB) but does not second-guess them.
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace moat::agent {

struct Options {
    // Test mode (runs on a host, for the test suites): nothing is mounted,
    // no module is loaded, no reboot; the control channel is ctl_fd and the
    // root image is root_dir. Host cgroups are used when they can be, else
    // the job runs without one (a Log says so).
    bool test_mode = false;
    int ctl_fd = -1;
    std::string root_dir = "/mnt/root";  // where bind sources "/mnt/root/..." really are
    std::string work_dir;                // inputs and the job's new root; default /run/moat (guest) or a temp dir
    uid_t uid_base = 100000;             // container root -> uid_base, the job (uid 1000 inside) -> uid_base + 1
    std::string cgroup_parent;           // default "moat" (guest) / "moat-agent-test-<pid>" (test mode)
};

// Returns the process exit code in test mode; in the guest it never returns.
int run(const Options& opt);

}  // namespace moat::agent
