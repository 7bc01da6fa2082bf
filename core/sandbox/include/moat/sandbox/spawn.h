#pragma once
// The seccomp tier runner: fork, contain, install the filter last, exec.
// Everything the child needs is prepared here in the parent; after fork() the
// child runs only async-signal-safe code from a fixed plan (moatd is
// multi-threaded: no allocation, no locks, no exceptions in the child).
#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "moat/cgroup/cgroup.h"
#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::sandbox {

struct Rlimits {
    uint64_t file_size = 0;   // RLIMIT_FSIZE
    uint64_t open_files = 0;  // RLIMIT_NOFILE
    uint64_t stack = 0;       // RLIMIT_STACK
    uint64_t core = 0;        // RLIMIT_CORE
    uint64_t cpu_seconds = 0; // RLIMIT_CPU backstop per process (0 = none)
};

struct SpawnPlan {
    std::string exe;                 // absolute path, resolved by the caller
    std::vector<std::string> argv;
    std::vector<std::string> env;    // "K=V", exactly what the job gets
    std::string cwd;                 // tried first; "/" when the job's uid cannot enter it
    uid_t uid = 0;                   // never 0: spawn refuses
    gid_t gid = 0;
    Rlimits rlimits;
    int stdio[3] = {-1, -1, -1};     // become the job's fds 0, 1, 2
    const std::vector<sock_filter>* filter = nullptr;  // required
    int landlock_fd = -1;            // -1: no Landlock
    const cgroup::JobCgroup* cgroup = nullptr;         // joined before the job runs
};

// Written by the child over a pipe (fixed size, one write) when a step fails.
struct SetupRecord {
    char step[32];     // "setresuid", "landlock_restrict_self", "execve", ...
    int err;           // errno
    int fatal;         // 1 = the job did not start; 0 = a warning (e.g. cwd fallback)
    char detail[192];
};

struct Spawned {
    pid_t pid = -1;
    UniqueFd pidfd;
    UniqueFd listener;   // seccomp user-notification fd, owned by the supervisor
    UniqueFd status;     // read end of the setup pipe: SetupRecords, then EOF at exec
    int64_t fork_ns = 0, ready_ns = 0;  // monotonic timestamps, for latency figures
    std::vector<SetupRecord> warnings;  // non-fatal set-up records (e.g. cwd fallback)
};

// Starts the job. On return the child is blocked in its first execve(), waiting
// for the supervisor to answer the notification on `listener`; setup failures
// before that point are returned as errors (the child is reaped).
Result<Spawned> spawn_seccomp_job(const SpawnPlan& plan);

// Reads what the setup pipe has without blocking: records, and whether EOF came.
struct SetupStatus {
    std::vector<SetupRecord> records;
    bool eof = false;
};
SetupStatus read_setup_status(int fd);

}  // namespace moat::sandbox
