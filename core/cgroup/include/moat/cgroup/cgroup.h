#pragma once
// Per-job control groups, v2 or v1, chosen at run time (docs/architecture.md).
// v2 is used when the unified hierarchy offers the memory and pids controllers;
// otherwise the v1 memory, pids and cpuacct hierarchies are used together.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::cgroup {

enum class Version { V1, V2 };

struct Layout {
    Version version = Version::V2;
    std::string v2_root;                         // unified mount point (may exist in v1 mode too)
    std::map<std::string, std::string> v1;       // controller -> mount point ("memory" -> /sys/fs/cgroup/memory)
    std::vector<std::string> v2_controllers;     // from cgroup.controllers at v2_root
    // v2, under systemd's Delegate=yes (delegate_v2): the cgroup delegated to
    // moatd, relative to v2_root. Job groups are made below it, and moatd
    // writes no cgroup.subtree_control above it (that is systemd's).
    std::string v2_delegated;

    // Reads /proc/self/mountinfo. `prefer` forces a version (tests, operators).
    static Result<Layout> detect(std::optional<Version> prefer = std::nullopt);
    // A v2 layout rooted at an explicit directory (tests in a cgroup namespace).
    static Layout v2_at(std::string root);
    std::string describe() const;  // "v1 (memory,pids,cpuacct)" / "v2 (/sys/fs/cgroup)"
};

// systemd's Delegate=yes (docs/systemd.md, "cgroups and Delegate=yes"), v2:
// takes the cgroup this process is in (from `self_cgroup`, the text of
// /proc/self/cgroup) as moatd's own subtree. v2 lets only leaves hold
// processes, so the process moves into <own>/<leaf>; the controllers Moat
// uses that <own> offers are enabled for its children; layout.v2_delegated
// and v2_controllers are set. Returns the job parent, "<own>/<parent>"
// relative to the v2 root. Refused for the root cgroup (nothing was
// delegated) and for v1.
Result<std::string> delegate_v2(Layout& layout, const std::string& self_cgroup, pid_t pid, const std::string& parent,
                                const std::string& leaf = "moatd");

struct Limits {
    std::optional<uint64_t> memory_bytes;
    std::optional<uint64_t> pids;
};

struct Sample {
    uint64_t cpu_ns = 0;
    uint64_t memory_bytes = 0;
    uint64_t memory_peak_bytes = 0;  // kernel's own peak where it has one, else 0
    uint64_t pids = 0;
    uint64_t pids_peak = 0;          // kernel's own peak (pids.peak, v1 and v2) where it has one, else 0
    uint64_t oom_kills = 0;          // OOM kills inside the group so far
    uint64_t pids_max_hits = 0;      // fork/clone refused by the pids limit so far
    uint64_t io_read_bytes = 0;      // block I/O (v2 io.stat; v1 blkio, when that hierarchy is mounted)
    uint64_t io_write_bytes = 0;
    bool has_memory = false, has_pids = false, has_cpu = false, has_io = false;
};

class JobCgroup final {
public:
    // Creates <hierarchy>/<parent>/<name> in every hierarchy used and applies the
    // limits. A limit whose controller is missing is an error (never ignored).
    static Result<JobCgroup> create(const Layout& layout, const std::string& parent, const std::string& name,
                                    const Limits& limits);
    JobCgroup(JobCgroup&&) = default;
    JobCgroup& operator=(JobCgroup&&) = default;
    ~JobCgroup() = default;  // removal is explicit (destroy) because it can fail

    Result<void> add_pid(pid_t pid) const;
    // v1: each hierarchy's `tasks` file, open for writing, so that the job's
    // first process moves itself in by writing "0" to each (spawn.cpp). The
    // kernel moves one thread that is the writer itself without taking the
    // global threadgroup lock, whose write side waits for an RCU grace period
    // (5-18 ms measured here, per job, when the lock was idle): add_pid()
    // from moatd costs that, a self-join does not. The process is
    // single-threaded then, so its one thread is the whole process. Empty on
    // v2, where a thread cannot be moved alone across domain cgroups (add_pid
    // there).
    struct SelfJoin {
        UniqueFd fd;
        std::string path;
    };
    // The fds prepare_self_join() opened (moved out: the next call opens anew),
    // or freshly opened ones.
    Result<std::vector<SelfJoin>> open_self_join() const;
    // v2: the group's directory, open, for clone3(CLONE_INTO_CGROUP): the
    // job's first process is born in its group, and the kernel takes the
    // threadgroup lock only for reading, as at every fork (add_pid() from
    // moatd takes it for writing: the RCU grace period above). An empty fd
    // on v1.
    Result<UniqueFd> open_v2_dir() const;
    Result<void> prepare_self_join();

    // v1: a group made before a job needs it ("job-spare-N", no limits, its
    // tasks files already open): the mkdirs and opens, ~0.1 ms of a job's
    // start, happen while no client waits. rename_to() gives it the job's
    // name (rename(2) of a v1 cgroup keeps its processes, counters and open
    // files) and applies the job's limits. On failure the group may be
    // renamed in some hierarchies only (dirs() names each where it is now);
    // the caller removes it. Refused on v2, which cannot rename a cgroup.
    Result<void> rename_to(const std::string& name, const Limits& limits);
    // rename_to() in two halves, for a spare whose job starts before it is
    // renamed (the rename, ~0.1 ms here, then happens while the job runs):
    // the limits first, before any process of the job is in the group, and
    // the name after. v1 only, as rename_to().
    Result<void> apply_limits(const Limits& limits);
    Result<void> rename(const std::string& name);
    // Full: every figure of Sample. Counters: only the four that change from
    // one tick to the next (CPU time, memory and pids now, block I/O): the
    // kernel's peaks and event counts are monotonic, so reading them once a
    // second and at the end loses nothing of the record (docs/store.md).
    // `cpu_ns`: the CPU counter when the caller has just read it (cpu_ns()),
    // so it is not read twice.
    enum class Detail { Full, Counters };
    Result<Sample> sample(Detail detail = Detail::Full, std::optional<uint64_t> cpu_ns = std::nullopt) const;
    // Only the CPU time used so far (the supervisor's CPU-limit check, every
    // tick): one read instead of a whole sample.
    std::optional<uint64_t> cpu_ns() const;
    std::vector<pid_t> pids() const;
    // SIGKILL every process in the group and wait (bounded) until it is empty.
    Result<void> kill_all(int timeout_ms = 2000) const;
    Result<void> destroy() const;
    // One line naming every directory; enough to find and kill the group after a crash.
    std::string describe() const;
    Version version() const { return m_version; }
    const std::vector<std::string>& dirs() const { return m_dirs; }

    // Recovery: kill whatever is left in the directories named by describe(), then remove them.
    static Result<void> reap_described(const std::string& described);
    // Kills every process in every job group under <hierarchy>/<parent>/job-*
    // (the orphan reaper's last act when moatd dies). Returns how many groups held processes.
    static size_t kill_all_jobs(const Layout& layout, const std::string& parent);

    // Under moatd's hold on the parent (lock_cgroup_parent in moatd), every
    // job-* group under it, and every vm-warm-<pid>-* group of a pid other
    // than ours, belongs to an earlier moatd that is gone: their processes are killed and the groups removed
    // (a fresh state dir numbers jobs from 1 again, and job-N must be free).
    // `removed` counts groups, `killed` those that still held processes,
    // `failed` names what could not be removed.
    struct Sweep {
        size_t removed = 0, killed = 0;
        std::vector<std::string> failed;
    };
    static Sweep sweep_stale_groups(const Layout& layout, const std::string& parent);

private:
    JobCgroup() = default;
    Version m_version = Version::V2;
    std::vector<std::string> m_dirs;   // v2: one dir; v1: one per hierarchy
    std::string m_mem, m_pids, m_cpu, m_io;  // the dir that serves each controller ("" when missing)
    // Stat files stay open between samples and are re-read with pread at
    // offset 0 (the kernel renders them afresh): sampling 100 jobs ten times
    // a second is then reads, not opens.
    mutable std::map<std::string, UniqueFd> m_stat_fds;
    mutable std::vector<SelfJoin> m_join;  // prepare_self_join(), until open_self_join() takes them
    Result<void> apply_v1_limits(const Limits& limits);
    std::optional<std::string> read_stat(const std::string& path) const;
    std::optional<uint64_t> stat_u64(const std::string& path) const;
    std::optional<uint64_t> stat_keyed(const std::string& path, const std::string& key) const;
};

}  // namespace moat::cgroup
