#pragma once
// moat-init: the container tier's stage-2 helper. It starts as root of a fresh
// user namespace (mapped to an unprivileged host uid) inside new mount, pid,
// network, ipc and uts namespaces, reads its plan from fd 3, builds the job's
// root, becomes the namespace's pid 1, and starts the job. Failures are
// reported on fd 4 as SetupRecords naming the step, the path and the errno.
#include <string>

namespace moat::sandbox {
int container_init_main();
// For the spawn helper, once at its start: moves it into a mount namespace of
// its own (a slave of the host's) and mounts there, on the empty directory
// `path`, the /dev every container job gets (a read-only tmpfs with the
// devices bound in and the /proc/self/fd links), which each init clones
// (ContainerPlan::dev_template). Empty on success, else what failed.
std::string make_dev_template(const std::string& path);
// The same on a plan already in memory (ContainerSpawnPlan::plan_in_process):
// fds 0-2 are the job's stdio and 4 the status pipe.
struct ContainerPlan;
[[noreturn]] void container_init_run(const ContainerPlan& plan);
}
