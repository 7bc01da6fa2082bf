#pragma once
// What moatd hands the container tier's stage-2 helper (moat-init). Built and
// validated in moatd; the helper trusts only this plan (docs/container.md).
#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/common/error.h"
#include "moat/sandbox/spawn.h"

namespace moat::sandbox {

struct MountSpec {
    // TreeRo/TreeRw: a mount tree the client passed as an fd (a bind of an OCI
    // bundle's mount source: moatd never looks the path up); `tree` says which.
    enum class Kind { BindRo, BindRw, Tmpfs, Symlink, TreeRo, TreeRw };
    Kind kind = Kind::BindRo;
    std::string source;   // host path (bind) or link text (symlink)
    std::string target;   // absolute path inside the job's root
    uint64_t size = 0;    // tmpfs size in bytes
    // Bind of an --input: the source must be this inode when moat-init opens it.
    bool verify = false;
    uint64_t dev = 0, ino = 0;
    int tree = -1;        // TreeRo/TreeRw: index into the plan's tree fds
};

// moat-init finds the plan's tree fds at kInitTreeFd0 + index (spawn.h).
inline constexpr size_t kMaxTrees = 33;  // a root and 32 binds

struct ContainerPlan {
    std::string hostname;
    bool loopback = false;           // bring `lo` up in the job's empty network namespace
    std::string newroot;             // empty host directory the job's root tmpfs is mounted on
    uint64_t root_size = 1 << 20;    // the root tmpfs holds only mount points
    std::vector<MountSpec> mounts;   // applied in order (moatd sorts parent before child)
    // >= 0: the job's root is this tree fd (a client's root filesystem, e.g.
    // an OCI bundle's rootfs) instead of a tmpfs of mount points; its mount
    // points must exist in it (moat-init never writes into it).
    int root_tree = -1;
    bool root_read_only = true;      // for a root tree (a tmpfs root is always read-only)
    uint64_t dev_shm_size = 0;       // > 0: a tmpfs of this size at /dev/shm
    // `exe` is a bare name looked up in the PATH of `env` inside the root
    // (a client's root, which moatd cannot look into).
    bool resolve_exe = false;
    size_t trees = 0;                // tree fds passed (root and binds)
    uint32_t uid = 1000, gid = 1000; // the job's ids inside the user namespace
    Rlimits rlimits;
    std::vector<std::string> argv, env;
    std::string exe;                 // path inside the job's root
    std::string cwd;
    std::vector<sock_filter> filter;

    nlohmann::json to_json() const;
    static Result<ContainerPlan> from_json(const nlohmann::json& j);
};

// /proc paths hidden (masked) or made read-only in every container, following
// what OCI runtimes do (runc/crun defaults).
const std::vector<std::string>& proc_masked_paths();
const std::vector<std::string>& proc_readonly_paths();

// Turns a policy's filesystem section plus --input files into ordered mounts
// (parent before child, whatever the order in the file). Host symlinks named
// by the policy (e.g. /bin -> usr/bin on merged-/usr systems) are recreated as
// the same symlink inside the root; a symlink in the middle of a path is an error.
struct InputMount {
    std::string host, sandbox;
    // The inode the client opened: moat-init refuses to bind anything else
    // (the path was swapped after the client's open).
    bool verify = false;
    uint64_t dev = 0, ino = 0;
};
Result<std::vector<MountSpec>> plan_mounts(const std::vector<std::string>& read_only,
                                           const std::vector<std::string>& read_write,
                                           const std::vector<std::string>& tmpfs, uint64_t tmpfs_size,
                                           const std::vector<InputMount>& inputs);

}  // namespace moat::sandbox
