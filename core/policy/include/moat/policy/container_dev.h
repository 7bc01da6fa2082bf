#pragma once
// Header-only: moat-agent (the vm guest's static program, core/guest) plans
// container mounts too and links none of moat_policy.
#include <string>

namespace moat::policy {

// The container tier's /dev (and the vm tier's, whose guest runs the job the
// same way) is its own: a read-only tmpfs, mounted after the
// policy's binds, with these host devices bound in (a user namespace cannot
// mknod). A read_only/read_write entry naming one of them is satisfied by it
// (the seccomp tier needs them listed for Landlock, so one policy serves both).
inline constexpr const char* kContainerDevices[] = {"null", "zero", "full", "random", "urandom"};

enum class ContainerDev { Ordinary, OwnDevice, Refused };

// For a normalised absolute path: Ordinary (not under /dev), OwnDevice (one of
// the above; never for a tmpfs entry) or Refused: anything else at or under
// /dev would be hidden by that tmpfs, so lint and moatd refuse it.
inline ContainerDev container_dev(const std::string& path, bool tmpfs) {
    if (path != "/dev" && path.rfind("/dev/", 0) != 0) return ContainerDev::Ordinary;
    if (!tmpfs)
        for (const char* d : kContainerDevices)
            if (path == std::string("/dev/") + d) return ContainerDev::OwnDevice;
    return ContainerDev::Refused;
}

inline std::string container_dev_message(const std::string& path) {
    return path +
           ": a container or vm job has its own /dev (null, zero, full, random, urandom are in it); nothing else can "
           "be mounted at or under /dev there";
}

}  // namespace moat::policy
