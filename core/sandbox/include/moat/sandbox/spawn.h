#pragma once
// The seccomp tier runner: clone, contain, install the filter last, exec.
// Everything the child needs is prepared here in the parent; the child runs
// only async-signal-safe code from a fixed plan (moatd is multi-threaded: no
// allocation, no locks, no exceptions in the child). The child shares moatd's
// memory until its execve (clone(CLONE_VM), as posix_spawn does; see
// ChildMemory), so it also writes nothing of moatd's but its own stack and
// runs no glibc call that acts on "all threads" (the setxid family).
#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
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
    bool all_cpus = false;           // learn mode: run on every CPU the cgroup allows (see place_cpus_self)
};

// Written by the child over a pipe (fixed size, one write) when a step fails.
struct SetupRecord {
    char step[96];     // "setresuid", "landlock_restrict_self", "execve", ...
    int err;           // errno
    int fatal;         // 1 = the job did not start; 0 = a warning (e.g. cwd fallback);
                       // kSetupFilterNext = progress: the filter is being installed now, and
                       // err is the fd number its listener will get (-1: unknown);
                       // kSetupCpus = the CPUs the job's first process may run on:
                       // err after place_cpus_self, extra before (see Spawned::cpus);
                       // kSetupTiming = a step inside the container's init reached
                       // (step: its name; err, extra: CLOCK_MONOTONIC ns, low and high half)
    int extra;
    char detail[480];  // the record stays far below PIPE_BUF: one write is atomic
};

static_assert(sizeof(SetupRecord) <= 4096, "one write of a SetupRecord must stay atomic (PIPE_BUF)");

inline constexpr int kSetupFilterNext = 2;
inline constexpr int kSetupCpus = 3;
inline constexpr int kSetupTiming = 4;
// The spawn helper cloned the job's init: err is its pid (so that moatd can
// reap an init whose answer never came; not a warning).
inline constexpr int kSetupCloned = 5;

// Container tier: a kSetupTiming record saying that `step` was reached now.
// The steps moatd takes (Spawned::timings, sandbox.startup_us): "init" (the
// init runs), "go" (moatd wrote its id maps and let it go), "plan" (the plan
// read, the root's tmpfs or tree in place), "mounts" (the policy's mounts
// made), "root" (/dev, /proc, pivot_root, hostname, network done), "forked"
// (the job's process runs); at the end "reaped" (the init reaped the job)
// and "emptied" (every other process of the namespace gone; the init exits
// next). Async-signal-safe.
void report_timing(int status_fd, const char* step);
// Timing records held back and written together with the next record that
// matters (each write to the status pipe wakes moatd, and on a VM every
// wake-up costs a few microseconds of CPU on both sides): stamped when the
// step is reached, sent in one write of at most kMax records, which stays
// within PIPE_BUF and so is atomic. Lives on the writer's stack (the seccomp
// tier's child shares moatd's memory); async-signal-safe. Held records are
// lost if the process dies before sending them: only timings are held,
// never a failure, a warning or the listener's number.
struct HeldTimings {
    static constexpr int kMax = 6;
    SetupRecord recs[kMax];
    int n = 0;
    // Stamps `step` now; writes what is held first if there is no room.
    void note(int status_fd, const char* step);
    // Writes what is held, followed by `also` if given, in one write when
    // they fit (two otherwise).
    void send(int status_fd, const SetupRecord* also = nullptr);
};
static_assert(sizeof(SetupRecord) * HeldTimings::kMax <= 4096, "held timings must go in one atomic write");
// The static name of a timing step, or nullptr for one moatd does not know.
const char* timing_step(const char* step);
// Progress, not a warning or a failure: the kinds above that say how the
// start goes (the listener's number, CPUs, timings, the helper's clone).
// Every reader of the status pipe skips them (or takes what it needs first).
inline bool is_progress_record(const SetupRecord& r) {
    return r.fatal == kSetupFilterNext || r.fatal == kSetupCpus || r.fatal == kSetupTiming || r.fatal == kSetupCloned;
}
// A kSetupTiming record's CLOCK_MONOTONIC ns.
inline int64_t timing_ns(const SetupRecord& r) {
    return int64_t(uint64_t(uint32_t(r.err)) | (uint64_t(uint32_t(r.extra)) << 32));
}

// The fd number the next seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER) in this
// process will return: the kernel always hands out the lowest free number. The
// job's process sends it with the kSetupFilterNext record, so the supervisor
// copies the listener with pidfd_getfd() at that number instead of searching
// /proc/PID/fd. Async-signal-safe (fcntl and close only); -1 when no fd is free
// (seccomp() will then fail with EMFILE and say so).
int predict_listener_fd();

// Whether a child may run on its parent's memory (clone(CLONE_VM)) until its
// execve: not in a sanitizer build (per-thread state lives with the parent),
// and not while fs.suid_dumpable is 1 (the child's setresuid sets the shared
// memory's dumpable flag from it, and at 1 the job's uid could ptrace that
// memory before the exec). Read at every call: a sysctl can change.
bool child_may_share_memory();

// How a failed execve() after the filter is reported (issue 11, item 7). Once
// the job's filter is installed, any syscall may be denied (a policy may allow
// only execve and exit_group), so the job's process reports the failure with
// no syscall at all: it stores errno in a page it shares with its parent
// (MAP_SHARED, set up before fork) and exits 125 (exit_group is always
// allowed). A successful execve drops the mapping, so a set word always means
// "the program never ran". The parent (moatd in the seccomp tier, moat-init
// in the container tier) reads it once the process has exited.
class ExecFailureWord {
public:
    ExecFailureWord() = default;
    static Result<ExecFailureWord> create();
    ~ExecFailureWord();
    ExecFailureWord(ExecFailureWord&& o) noexcept : m_word(o.m_word) { o.m_word = nullptr; }
    ExecFailureWord& operator=(ExecFailureWord&& o) noexcept;
    ExecFailureWord(const ExecFailureWord&) = delete;
    ExecFailureWord& operator=(const ExecFailureWord&) = delete;
    explicit operator bool() const { return m_word != nullptr; }
    // In the job's process after the filter: plain memory stores only.
    void set(int err) const noexcept;
    // A plain handle on the same word, for a child that shares moatd's memory
    // and may outlive the place this object had (it must not outlive the word).
    struct Ref {
        int* word = nullptr;
        void set(int err) const noexcept;
    };
    Ref ref() const { return Ref{m_word}; }
    // In the parent after the process exited: the errno, when execve failed.
    std::optional<int> get() const;

private:
    int* m_word = nullptr;  // [0]: set flag, [1]: errno
};

// Why execve(`exe`) failed with `err`, for the operator: the chain of
// symlinks followed and the component that is missing (a link to a path that
// is not mounted in the container: "/usr/bin/awk -> /etc/alternatives/awk:
// /etc/alternatives/awk does not exist in the sandbox"), or a missing ELF or
// #! interpreter. Walks the path with lstat/readlink in the caller's mount
// namespace and root; ordinary (allocating) code, never in a forked child.
std::string describe_exec_failure(const std::string& exe, int err);

// The memory a job's first process uses while it shares moatd's: a stack
// above a guard page, then the copies of what its execve reads (the program's
// path, argv, envp). The kernel reads those only once the supervisor has
// answered the execve notification, after spawn_*() returned, so Spawned
// keeps this until the job is gone. Without CLONE_VM (a ThreadSanitizer
// build) the child has its own copy and this is only a scratch area.
class ChildMemory {
public:
    ChildMemory() = default;
    static Result<ChildMemory> create(size_t data_bytes);
    ~ChildMemory();
    ChildMemory(ChildMemory&& o) noexcept;
    ChildMemory& operator=(ChildMemory&& o) noexcept;
    ChildMemory(const ChildMemory&) = delete;
    ChildMemory& operator=(const ChildMemory&) = delete;
    explicit operator bool() const { return m_base != nullptr; }
    void* stack_top() const;
    // Bump allocation from the data part: nullptr when it does not fit.
    void* alloc(size_t bytes, size_t align);
    char* copy(const std::string& s);
    char** strings(const std::vector<std::string>& v);  // NULL-terminated
    // What alloc, copy and strings of these need, alignment included.
    static size_t bytes_for(const std::string& s) { return s.size() + 1; }
    static size_t bytes_for(const std::vector<std::string>& v);
    // The process using this memory: its pidfd and the read end of its
    // O_CLOEXEC status pipe (both duplicated). Released while that pipe has
    // not hung up (no exec yet, the process alive), the process is killed and
    // waited for first, so it never runs on memory moatd has reused. False
    // when they could not be duplicated: the caller must not keep the process.
    bool watch(int pidfd, int status_fd);

private:
    void release() noexcept;
    UniqueFd m_pidfd, m_status;
    char* m_base = nullptr;
    size_t m_size = 0;  // the whole mapping
    size_t m_used = 0;  // offset of the data part's free space
};

struct Spawned {
    pid_t pid = -1;
    UniqueFd pidfd;
    UniqueFd listener;   // seccomp user-notification fd, owned by the supervisor
    UniqueFd status;     // read end of the setup pipe: SetupRecords, then EOF at exec
    int64_t fork_ns = 0, ready_ns = 0;  // monotonic timestamps, for latency figures
    std::vector<SetupRecord> warnings;  // non-fatal set-up records (e.g. cwd fallback)
    ExecFailureWord exec_word;          // seccomp tier: set by the child when execve failed
    std::string exe;                    // seccomp tier: what it executed (for exec_failure)
    // The CPUs the job's first process may run on (sched_getaffinity once it
    // joined its cgroup, so the cgroup's cpuset is applied), and before
    // place_cpus_self widened them (equal unless all_cpus); 0 when unknown.
    int cpus = 0, cpus_before = 0;
    // How the job's first process entered its cgroup: "self" (v1: it wrote
    // to each hierarchy's tasks file), "clone3" (v2: born in it,
    // CLONE_INTO_CGROUP), "moatd" (v2 on a kernel without that: moved by
    // moatd), "" without a cgroup. Static strings.
    const char* cgroup_join = "";
    // Container tier: who cloned the job's init: "spawn-helper" (SpawnHelper,
    // no exec of moat-init) or "moatd" (moatd, then an exec of moat-init).
    // "" in the seccomp tier. Static strings.
    const char* init_by = "";
    // Container tier: steps inside the init and when they were reached
    // (report_timing; CLOCK_MONOTONIC ns), in the order they came.
    std::vector<std::pair<const char*, int64_t>> timings;
    // Container tier: the job's new network namespace was made ahead by the
    // spawn helper (owned by the host's user namespace, not the job's).
    bool net_made_ahead = false;
    // Container tier: the init was made ahead by the spawn helper and waited
    // for this job (SpawnHelper::Cloned::made_ahead).
    bool init_made_ahead = false;
    // Why the spawn helper could not clone the init (it died, or answered
    // nonsense), when moatd then cloned it itself; "" otherwise.
    std::string helper_failure;
    ChildMemory child_memory;  // the first process's stack and exec arguments (see ChildMemory)
};

// The job's first process, once in its cgroup (so the cgroup's cpuset
// applies) and before anything of the job runs: counts the CPUs it may run on
// and, with `all_cpus`, takes every CPU its cgroup allows (the kernel
// intersects the full mask with the task's cpuset), so a moatd started under
// `taskset` does not pass its own narrow affinity on to a learn replay. All it
// starts inherits the mask. Sends both counts to moatd as a kSetupCpus record
// (Spawned::cpus, cpus_before). Async-signal-safe (raw syscalls, no errno).
// Failures only leave the counts as read (0: unknown).
void place_cpus_self(int status_fd, bool all_cpus);

// Seccomp tier, after the job's first process exited: the "execve" record of a
// failed exec (detail: describe_exec_failure), or nothing.
std::optional<SetupRecord> exec_failure(const Spawned& s);

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

struct ContainerPlan;
class SpawnHelper;

// The container tier: moatd clones a child into new user, mount, pid, network,
// ipc and uts namespaces, writes its uid/gid maps, places it in the job cgroup
// and lets it exec the stage-2 helper (moat-init), which builds the root from
// the plan, becomes pid 1 (init) and starts the job. See container_init.h.
struct ContainerSpawnPlan {
    int init_exe_fd = -1;        // moat-init, opened by moatd at start
    int plan_fd = -1;            // memfd holding the plan JSON (becomes fd 3 of moat-init)
    uid_t host_root_uid = 0;     // container root maps here (never 0)
    uid_t host_job_uid = 0;      // the job's uid inside maps here
    gid_t host_root_gid = 0, host_job_gid = 0;
    uint32_t inside_uid = 1000, inside_gid = 1000;
    int stdio[3] = {-1, -1, -1};
    const cgroup::JobCgroup* cgroup = nullptr;
    bool all_cpus = false;       // as SpawnPlan::all_cpus (moat-init and the job inherit it)
    // Instead of init_exe_fd and plan_fd: the cloned child calls
    // run_in_process(*plan_in_process) (container_init_run: moat-init's code)
    // itself, with no exec of moat-init and no JSON round trip of the plan.
    // Only for a single-threaded caller (the vm tier's guest agent; spawn
    // refuses otherwise): the child of a raw clone of a multi-threaded process
    // may only make async-signal-safe calls, and moat-init's code allocates.
    const ContainerPlan* plan_in_process = nullptr;
    void (*run_in_process)(const ContainerPlan&) = nullptr;  // does not return
    // false: the job keeps the caller's network and ipc namespaces. Only the
    // vm tier's guest agent asks for it (a guest with no network device,
    // whose agent uses no socket and no SysV/POSIX ipc): a new network
    // namespace was ~20 ms of a cold guest's job set-up under TCG, and would
    // isolate the job from nothing. Every host tier keeps both.
    bool new_net_ipc = true;
    // Mount trees the client passed (ContainerPlan::trees): moat-init finds
    // them at kInitTreeFd0 onwards, in this order.
    std::vector<int> tree_fds;
    // >= 0: the job joins this network namespace instead of a new one
    // (new_net_ipc still gives it a new ipc namespace). moatd's calling
    // thread enters it for the clone and returns at once.
    int join_netns_fd = -1;
    // Not null: the job's init is cloned by this helper (a single-threaded
    // `moat-init --spawn-helper` started once) and runs moat-init's code with
    // no exec; see SpawnHelper. Null, or the helper gone: moatd clones it and
    // it executes moat-init (init_exe_fd, plan_fd are needed either way).
    SpawnHelper* helper = nullptr;
    // The plan's network is "loopback" (ContainerPlan::loopback): in a network
    // namespace the helper made ahead, the helper brings lo up.
    bool loopback = false;
};

// fd numbers moat-init finds its inputs at.
inline constexpr int kInitPlanFd = 3;
inline constexpr int kInitStatusFd = 4;
inline constexpr int kInitTreeFd0 = 5;

// On return the job (a grandchild: moatd -> init -> job) is blocked in its
// first execve() with its listener copied into `listener`; `pid`/`pidfd` are
// init's. Setup failures before that are returned as errors.
Result<Spawned> spawn_container_job(const ContainerSpawnPlan& plan);

// After a spawn-helper request that went out and was never answered: closes
// the job's go and status write ends, reads the status pipe (st_r) until EOF
// or 2 s, and reaps every init the helper noted there (kSetupCloned; our
// children), SIGKILLing one that did not exit. Used by spawn_container_job;
// declared for its test.
void reap_unanswered_init(UniqueFd& go_w, UniqueFd& st_w, int st_r);

namespace helper_wire {
struct HelperReply;  // spawn_helper_wire.h (internal)
}

// The container tier's spawn helper: `moat-init --spawn-helper`, a
// single-threaded process moatd starts once (and again if it dies). For each
// job it clones the job's init into the new namespaces with CLONE_PARENT, so
// the init is moatd's child as before (moatd reaps it with waitid(P_PIDFD)),
// and the init runs moat-init's code in that copy of the helper: no exec of
// moat-init and no second start-up of glibc per job (docs/performance.md).
// moatd still writes the id maps, lets the init go and takes the listener,
// as for an init it cloned itself. The helper trusts only its socket (a
// socketpair with moatd: no path, no other client), checks every request's
// size and fd count, and serves one request at a time.
//
// Inits made ahead: once a job came that one could take (a new network
// namespace, no client's network, no v2 group: v1 or no cgroup), moatd keeps
// up to `inits_ahead` (default two) inits the helper cloned ahead while idle, at SCHED_IDLE, in new
// user, pid, uts, ipc and network namespaces but still in moatd's mount
// namespace (a copy made ahead would pin every host mount of that moment).
// Each is moatd's child waiting on a socketpair; a job's request goes to one
// directly (no clone on the start's path), moatd gives it the normal policy
// back, and it copies the mount table then. The rest is as for a cloned
// init. Those not used are reaped when the helper object goes.
class SpawnHelper {
public:
    // Starts the helper from moat-init's fd. Call on the thread that starts
    // jobs: the helper and every init it clones die with that thread
    // (PR_SET_PDEATHSIG), as the inits moatd clones itself do.
    // answer_ms bounds each wait for its answer (a helper that takes longer
    // is killed and that job fails).
    // inits_ahead: how many inits made ahead moatd keeps (at most
    // kMaxInitsAhead; 0: none).
    static constexpr int kAnswerMs = 10000;
    static constexpr size_t kDefaultInitsAhead = 2, kMaxInitsAhead = 8;
    static Result<std::unique_ptr<SpawnHelper>> start(int init_exe_fd, int answer_ms = kAnswerMs,
                                                      size_t inits_ahead = kDefaultInitsAhead);
    // False in a ThreadSanitizer build: its runtime's own thread lives in the
    // helper too, and the helper's raw clone would copy a half-held lock.
    static constexpr bool supported() {
#if defined(__SANITIZE_THREAD__)
        return false;
#else
        return true;
#endif
    }
    ~SpawnHelper();  // the helper sees EOF, exits, and is reaped
    SpawnHelper(const SpawnHelper&) = delete;
    SpawnHelper& operator=(const SpawnHelper&) = delete;
    pid_t pid() const { return m_pid; }
    // False once the helper has exited (its pidfd says so) or a request
    // failed for the transport (no answer in time, or nonsense): the caller
    // starts a new one.
    bool usable();
    // A request failed for the transport (not just: it died while idle).
    bool failed_a_request() const { return m_failed_request; }

    struct Cloned {
        pid_t pid = -1;
        bool born_in_group = false;
        bool net_made_ahead = false;  // its network namespace came from the helper's pool
        bool made_ahead = false;      // an init made ahead took the job (no clone on the start's path)
    };
    // One init: sends the request with its fds, waits (bounded: answer_ms)
    // for the answer. On a failure of the transport the helper is unusable (and
    // killed); with retry=true the request never reached it, so the caller
    // may clone the init itself. After a request went out unanswered an init
    // may exist that holds this job's pipes: the job must not start another
    // (it fails; closing its go pipe makes such an init exit).
    struct Failure {
        Error error;
        bool transport = false;
        bool retry = false;
    };
    std::expected<Cloned, Failure> clone_init(const ContainerSpawnPlan& plan, int go_fd, int status_fd,
                                              int v2_group_fd, const std::vector<int>& join_fds,
                                              const std::vector<std::string>& join_paths);

    // Inits made ahead that moatd holds, after taking what the helper has
    // answered meanwhile (for tests and measurements).
    std::vector<pid_t> inits_ahead();

private:
    SpawnHelper() = default;
    // An init made ahead (helper_wire::kReqAhead): moatd's child, waiting on
    // `ctl` for a job's request.
    struct Ahead {
        pid_t pid = -1;
        UniqueFd pidfd, ctl;
    };
    struct Dropped {
        pid_t pid = -1;
        UniqueFd pidfd;  // may be empty (pidfd_open failed): waited for by pid
    };
    int recv_message(helper_wire::HelperReply& rep, std::vector<UniqueFd>& fds);
    Result<helper_wire::HelperReply> next_reply(int timeout_ms);
    void take_ahead_answers();
    void on_ahead_answer(const helper_wire::HelperReply& rep, std::vector<UniqueFd>& fds);
    void drop(Ahead& a);
    void ask_ahead();
    void reap_dropped(bool wait);
    UniqueFd m_sock, m_pidfd;
    pid_t m_pid = -1;
    int m_answer_ms = kAnswerMs;
    bool m_usable = true, m_failed_request = false;
    std::vector<Ahead> m_ahead;
    std::vector<Dropped> m_dropped;   // inits made ahead that were let go and not reaped yet
    size_t m_ahead_asked = 0;         // kReqAhead requests not answered yet
    size_t m_ahead_keep = kDefaultInitsAhead;
    bool m_ahead_wanted = false;      // a job that an init made ahead could take was seen
    bool m_ahead_off = false;         // moatd may not give one its normal priority back: none is used
    int64_t m_ahead_retry_ns = 0;     // after a refused one: not asked again before
};

// The helper's side (moat-init --spawn-helper): serves requests on `sock`
// until EOF; each cloned init calls init_main() (container_init_main) after
// taking its fds. Returns the helper's exit status.
int spawn_helper_main(int sock, int (*init_main)());

}  // namespace moat::sandbox
