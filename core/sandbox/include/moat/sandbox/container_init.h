#pragma once
// moat-init: the container tier's stage-2 helper. It starts as root of a fresh
// user namespace (mapped to an unprivileged host uid) inside new mount, pid,
// network, ipc and uts namespaces, reads its plan from fd 3, builds the job's
// root, becomes the namespace's pid 1, and starts the job. Failures are
// reported on fd 4 as SetupRecords naming the step, the path and the errno.
namespace moat::sandbox {
int container_init_main();
// The same on a plan already in memory (ContainerSpawnPlan::plan_in_process):
// fds 0-2 are the job's stdio and 4 the status pipe.
struct ContainerPlan;
[[noreturn]] void container_init_run(const ContainerPlan& plan);
}
