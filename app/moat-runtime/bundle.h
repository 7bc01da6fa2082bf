#pragma once
// An OCI bundle's config.json as a Moat container-tier job (docs/fleet.md,
// "What moat-runtime takes from config.json"): the seccomp profile through
// the OCI import, rlimits and cgroup resources onto [limits], process.env
// onto [environment].set, tmpfs mounts onto [filesystem].tmpfs, binds and the
// rootfs as trees the runtime passes. What Moat cannot honour is either an
// error (the container would be weaker or broken in a way its author cannot
// see) or a note, written into the policy text and the runtime's log.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "moat/common/error.h"

namespace moat::runtime {

inline constexpr size_t kMaxConfigBytes = 4u << 20;

// OCI container ids this runtime accepts (they name a directory).
bool valid_container_id(std::string_view id);

struct BundleBind {
    std::string source;      // host path, as the engine gave it
    std::string target;      // inside the container
    bool read_only = false;
    bool recursive = false;  // rbind
};

struct BundleJob {
    std::string policy_toml;             // passes parse_policy (checked)
    std::string policy_name;
    std::vector<std::string> argv;
    std::string cwd = "/";
    std::string rootfs;                  // absolute host path
    bool root_read_only = false;
    std::vector<BundleBind> binds;
    std::vector<std::string> mount_points;  // directories the job's mounts need in the rootfs (/proc, /dev, tmpfs targets)
    uint64_t dev_shm_bytes = 0;
    // The network namespace the engine made for the container (its path):
    // the job joins it (network.mode = "engine"). Empty: a new one, lo up.
    std::string netns_path;
    bool terminal = false;
    std::vector<std::string> notes;      // what was not honoured, or changed
};

// `bundle` is the bundle directory (root.path may be relative to it).
Result<BundleJob> convert_bundle(std::string_view config_json, const std::string& bundle, const std::string& id);

}  // namespace moat::runtime
