#pragma once
// Which accelerator the vm tier uses. /dev/kvm existing proves nothing: on
// some hosts it is a nested (PVM) KVM that accepts a VM and then hangs it.
// KVM is chosen only when a short test boot with `-accel kvm` reaches user
// space (the probe init's marker on the console) within the timeout;
// otherwise TCG, with the reason.
#include <sys/types.h>

#include <string>

#include "moat/common/error.h"
#include "moat/vm/qemu_jail.h"

namespace moat::vm {

struct AccelVerdict {
    Accel accel = Accel::Tcg;
    std::string reason;  // "/dev/kvm absent", "test boot did not reach user space in 3 s", "kvm test boot reached user space in 412 ms"
    int64_t probe_ms = 0;
};

struct ProbeConfig {
    std::string qemu = "/usr/bin/qemu-system-x86_64";
    std::string kernel;   // the kit's vmlinux
    std::string initrd;   // a BaseInitramfs whose /init is moat-vm-probe-init (it prints kProbeMarker)
    uid_t uid = 0;        // the test boot is jailed like a job's QEMU
    gid_t gid = 0;
    int timeout_ms = 3000;
    std::string kvm_device = "/dev/kvm";
};

// What moat-vm-probe-init (core/vm/probe) writes to /dev/console.
inline constexpr const char* kProbeMarker = "MOAT-VM-PROBE: user space reached";

// The verdict, computed once per process (the first caller's config counts;
// later calls return the same verdict without booting).
AccelVerdict probe_accelerator(const ProbeConfig& cfg);

// Uncached pieces, for tests and for `moatd --check`:
AccelVerdict probe_accelerator_uncached(const ProbeConfig& cfg);
// Boots the probe guest with `accel`; the time until the marker appeared, or
// why it did not (timeout, QEMU's own error, the guest's last console lines).
Result<int64_t> test_boot(const ProbeConfig& cfg, Accel accel, int timeout_ms);

}  // namespace moat::vm
