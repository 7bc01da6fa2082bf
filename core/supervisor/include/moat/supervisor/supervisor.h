#pragma once
// The supervisor: owns running jobs on moatd's event loop. It starts a job
// from a validated policy, answers every notified syscall (decode -> record ->
// apply the policy's action), samples the job's cgroup, enforces wall and CPU
// time, and turns every ending into a termination cause.
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "moat/cgroup/cgroup.h"
#include "moat/common/event_loop.h"
#include "moat/common/fd.h"
#include "moat/compiler/seccomp_compiler.h"
#include "moat/policy/policy.h"
#include "moat/store/artifacts.h"
#include "moat/store/store.h"

namespace moat::supervisor {

struct RelayResult;
class Relay;
class Tier;
struct Identities;
struct Notice;
struct Answer;

struct Config {
    store::Store* store = nullptr;
    EventLoop* loop = nullptr;
    cgroup::Layout cgroups;
    std::string cgroup_parent = "moat";  // jobs live in <hierarchy>/moat/job-<id>
    uid_t uid_base = 700000;             // jobs run as uid_base .. uid_base+uid_count-1
    uint32_t uid_count = 65536;
    uint64_t coalesce_window_ns = 200'000'000;  // identical denials within it share one row
    size_t max_jobs = 1024;
    // Container tier: moat-init (opened once by moatd; -1 = tier unavailable)
    // and an empty host directory the job's root tmpfs is mounted on (inside
    // each job's own mount namespace, so all jobs share it).
    int init_exe_fd = -1;
    std::string newroot_dir = "/run/moat/newroot";
    // Container tier: a job's init is cloned by the spawn helper (moat-init
    // --spawn-helper, started on the first container job, again if it dies)
    // and runs moat-init's code without an exec; false: moatd clones every
    // init and it executes moat-init (moatd --no-spawn-helper).
    bool spawn_helper = true;
    // How many inits the spawn helper keeps made ahead (SpawnHelper; moatd
    // --inits-ahead, 0-8).
    uint32_t inits_ahead = 2;
    // Replay recordings (docs/replay.md). Without artifacts nothing is recorded
    // but stdout/stderr tails.
    const store::Artifacts* artifacts = nullptr;
    // moatd's own directories (state, runtime): learn never proposes a path in them.
    std::vector<std::string> private_dirs;
    std::string stage_dir = "/run/moat/stage";   // replay: snapshots put back for the container tier
    uint64_t record_stdin_max = 16ull << 20;     // stdin kept for replay; beyond it the recording is marked cut
    uint64_t record_output_max = 1ull << 20;     // tail of stdout and of stderr kept per job
    uint64_t record_input_max = 1ull << 30;      // largest --input file (or directory tree's files) snapshotted
    uint64_t record_input_entries = 100000;      // most entries of a directory input snapshotted
    // The vm tier (docs/vm.md). Without a guest kernel kit and the static
    // agent the tier is unavailable, with the reason.
    struct Vm {
        bool enabled = true;
        std::string guest_dir;              // the kit (packaging/moat.sh guest-kernel); "" = the default
        std::string agent_exe;              // static moat-agent, the guest's /init
        std::string probe_exe;              // static moat-vm-probe-init: the KVM test boot's /init
        std::string cache_dir = "/var/cache/moat";  // initramfs and root images
        std::string qemu = "/usr/bin/qemu-system-x86_64";
        uint32_t pool_size = 1;             // warm guests kept per recently used (image, memory); 0 = off
        uint64_t pool_idle_ns = 300'000'000'000;  // a warm guest unused this long is destroyed
        uint64_t guest_overhead_bytes = 64ull << 20;  // guest RAM on top of limits.memory (kernel, agent)
        uint64_t vmm_overhead_bytes = 160ull << 20;   // QEMU's own memory in the job cgroup, on top of guest RAM
        uint64_t boot_timeout_ns = 30'000'000'000;    // a guest not talking by then is a setup failure
        uid_t image_uid = 65534, image_gid = 65534;   // who reads host files into root images (nobody)
    } vm;
};


struct TreeManifest;

struct InputFile {
    std::string host_path;     // as the client named it (its canonical path when the client sent an fd)
    std::string sandbox_path;  // where the job sees it (== host_path in the seccomp tier)
    std::string snapshot;      // replay: the recorded blob's sha256 to put there instead
    bool directory = false;    // replay: `snapshot` is a directory tree's manifest (recording kind "directory")
    std::shared_ptr<const TreeManifest> tree;  // replay: that manifest, read by prepare_inputs
    // The file as the client opened it with its own rights (SCM_RIGHTS). moatd
    // snapshots from it and grants exactly it; it never opens host_path with
    // its own rights. Empty: a host-path request, opened with the client's
    // credentials (ClientCreds) on a worker thread.
    UniqueFd fd;
};

// A filesystem the client built and passed as mount trees (SCM_RIGHTS), the
// way an OCI bundle's rootfs and mounts reach moatd through moat-runtime
// (docs/fleet.md): moatd never looks their paths up. Container tier only.
struct ClientTree {
    UniqueFd fd;             // a mount tree (open_tree) or a directory/file the client opened
    std::string target;      // where the job sees it ("/" for the root)
    bool read_only = true;
};
struct ClientRootfs {
    ClientTree root;
    std::vector<ClientTree> binds;  // mounted on top, parent before child
    uint64_t dev_shm_bytes = 0;     // > 0: a tmpfs of this size at /dev/shm
    // A network namespace to join (network.mode = "engine"): never moatd's own.
    UniqueFd netns;
    std::string origin;             // what the client says it is (e.g. "oci:ID bundle"), recorded
};

// Who asked: opening a client-named path happens with these credentials
// (SO_PEERCRED / SO_PEERGROUPS), never with moatd's.
struct ClientCreds {
    uid_t uid = 65534;
    gid_t gid = 65534;
    std::vector<gid_t> groups;
};

// Opens `path` with the credentials of `who` (its uid, gid and groups; no
// capability of moatd's applies), on a short-lived thread whose credentials
// are changed alone. The last component is never followed (O_NOFOLLOW); only
// regular files and directories are opened (checked on an O_PATH descriptor
// first, so a FIFO or device is never opened). Returns an O_RDONLY fd.
Result<UniqueFd> open_as_client(const ClientCreds& who, const std::string& path);

struct JobRequest {
    std::shared_ptr<const policy::Policy> policy;  // parsed and validated by the caller (shared: see ipc's cache)
    int64_t policy_id = 0;          // stored version
    std::optional<policy::Tier> tier_override;
    std::vector<std::string> argv;  // argv[0] is resolved against PATH from the job's environment
    std::vector<std::string> client_env;  // "K=V" from the client; filtered by the policy
    std::string cwd;
    // The client's stdin/stdout/stderr, relayed (never given to the job).
    // Empty stdin: EOF; empty stdout/stderr: only recorded (replays).
    UniqueFd stdio[3];
    bool require_stdio = true;      // `run` must pass all three
    std::vector<InputFile> inputs;
    ClientCreds client;             // for inputs named by path only
    int64_t replay_of = 0;
    std::string stdin_snapshot;     // replay: the recorded stdin blob (sha256)
    bool learn = false;             // denials recorded, not enforced (container/vm, or forced)
    // Learn mode: an explicit deny ([[seccomp.rule]] with errno/trap/kill) is
    // still enforced unless this is set (moatctl replay --override-deny-rules).
    bool learn_through_rules = false;
    // The job's root filesystem from the client (container tier), or none.
    std::shared_ptr<ClientRootfs> rootfs;
    // Called on the loop thread.
    std::function<void(const store::JobRecord&)> on_finished;
};

// Part of a running job's live output (Supervisor::live_output).
struct OutputSlice {
    uint64_t from = 0;     // stream offset of data's first byte
    uint64_t total = 0;    // bytes the job has written to the stream so far
    uint64_t skipped = 0;  // bytes before `from` the caller asked for but that are no longer kept
    std::string data;
};

// A job that could not be built still gets a record (cause setup-failed).
struct StartResult {
    int64_t job_id = 0;
    std::optional<Error> setup_error;
};

// What moatd has done since it started, for its metrics endpoint
// (docs/metrics.md): counters only grow while moatd runs.
struct Metrics {
    // Job start latency buckets, in seconds: from moatd taking the request to
    // the job's clock starting (its process launched; vm tier: the guest took it).
    static constexpr double kStartBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    // Denial series (policy, syscall) beyond this many are counted under
    // ("_other", "_other"): a job cannot grow the scrape without bound.
    static constexpr size_t kMaxDenialSeries = 2048;
    struct PerTier {
        uint64_t running = 0;                   // jobs running now
        uint64_t created = 0;                   // jobs recorded (also those that failed to set up)
        std::map<std::string, uint64_t> ended;  // by termination cause
        uint64_t start_buckets[std::size(kStartBuckets)] = {};  // not cumulative: bucket i = (b[i-1], b[i]]
        uint64_t start_count = 0;
        double start_sum_s = 0;
    };
    std::map<std::string, PerTier> tiers;
    std::map<std::pair<std::string, std::string>, uint64_t> denials;  // (policy name, syscall)
};

// The counter for denials of (policy, syscall): its own series while fewer
// than kMaxDenialSeries exist, else ("_other", "_other"). A series, once made, is never moved or removed, so the
// reference stays valid and a counter never jumps between series.
uint64_t& denial_slot(Metrics& m, const std::string& policy, const std::string& syscall);
inline void count_denials_into(Metrics& m, const std::string& policy, const std::string& syscall, uint64_t n) {
    denial_slot(m, policy, syscall) += n;
}

// The Prometheus text exposition (format 0.0.4) of moatd's figures.
struct StoreFigures {
    store::StoreStats stats;
    uint64_t db_bytes = 0, wal_bytes = 0;  // moat.db and moat.db-wal on disk
};
// spin: the event loop's polling after seccomp notifications (EventLoop::spin_before_sleep).
std::string render_metrics(const Metrics& m, const StoreFigures& store, const EventLoop::SpinStats& spin = {});

class Supervisor final {
public:
    explicit Supervisor(Config cfg);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // Marks jobs left "running" by a crashed predecessor as supervisor-lost and
    // kills whatever is left of them (found through their cgroups).
    Result<size_t> recover();

    StartResult start(JobRequest req);
    // Operator stop: kills the job, cause "stopped" with `why` as detail.
    Result<void> stop(int64_t job_id, const std::string& why);
    // Operator signal (moat-runtime kill, podman stop): SIGKILL is a stop;
    // SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH reach
    // the job's program (through the container's init). A job that then dies
    // of that signal ends with cause "stopped" and `why` in the detail.
    Result<void> signal(int64_t job_id, int sig, const std::string& why);
    // Stops every job (moatd shutdown); on_all_done runs once none is left.
    void stop_all(const std::string& why, std::function<void()> on_all_done);

    size_t running() const { return m_jobs.size(); }
    // A snapshot of the metrics (running counts added).
    Metrics metrics() const;
    // Each tier this moatd knows and why it cannot run it ("" when it can).
    std::vector<std::pair<std::string, std::string>> tiers() const;
    std::vector<int64_t> running_ids() const;
    // Live figures for a running job (show of a running job).
    std::optional<store::JobRecord> live(int64_t job_id) const;
    // A running job's last resource sample (the `resource` event's fields), or null.
    nlohmann::json last_sample(int64_t job_id) const;
    // A running job's output (stream 0 stdout, 1 stderr) from offset `from`,
    // at most max_bytes; the last 64 KiB of each stream are kept while it is
    // relayed. nullopt once the relay is done (the recorded tail is in the
    // store: op "output").
    std::optional<OutputSlice> live_output(int64_t job_id, int stream, uint64_t from, size_t max_bytes) const;
    // Called on the loop when a running job's output grew (coalesced).
    void set_output_hook(std::function<void(int64_t job_id)> hook) { m_output_hook = std::move(hook); }

    // Resolves a program name the way execvp would, with PATH from env.
    static Result<std::string> resolve_program(const std::string& name, const std::vector<std::string>& env,
                                               const std::string& cwd);
    // The environment the job gets: policy.set plus the passed names from the client.
    static std::vector<std::string> build_env(const policy::Environment& pol, const std::vector<std::string>& client);

    struct Job;

private:
    // Decides a notified syscall, records it and says what the tier answers.
    Answer judge(Job& job, const Notice& n);
    void sample(Job& job, bool final);
    // Resource sampling: one timer per sample interval for all its jobs
    // (docs/policy.md, monitor.sample_interval).
    struct Sampler;
    void add_to_sampler(Job& job);
    void remove_from_sampler(Job& job);
    void run_sampler(uint64_t interval_ns);
    void record_learned_paths(Job& job);
    void kill_job(Job& job, const std::string& cause, const std::string& detail);
    void flush_denials(Job& job);
    void finish(Job& job);
    void store_runtime(Job& job);
    void relay_done(int64_t job_id, RelayResult res);
    // The job's answer once its relay is done and it ended; its finish, when
    // not stored yet, goes in the same commit as its outputs (finish()).
    void complete(int64_t job_id);
    void record_finish(const store::JobRecord& r);  // finish_job, or kept for retry
    void maybe_all_done();
    struct Ending;
    struct Events;
    struct Preparing;
    struct Prepared;
    // Off the loop (a worker thread per job): opens, snapshots and stages the
    // job's inputs. Touches only files and its own Prepared.
    static void prepare_inputs(const Config& cfg, int64_t job_id, std::vector<InputFile>& inputs, const Tier& tier,
                               const Identities& ids, const ClientCreds& who, const std::atomic<bool>& cancel,
                               Prepared& out);
    // Back on the loop once prepare_inputs is done: registers the snapshots and
    // starts the job (or records why it could not).
    void inputs_ready(int64_t job_id);
    // Everything after the inputs: builds the sandbox and spawns. An error is
    // recorded as setup-failed by the caller.
    std::optional<Error> launch(std::unique_ptr<Job>& job, std::unique_ptr<Ending>& ending, JobRequest& req,
                                Prepared& prep);
    void fail_setup(Job& job, Ending* ending, const Error& e);
    // Arms the job's limits.wall_time timer (once).
    void start_wall_clock(Job& job);
    // Records the end of a job that never ran (setup-failed, or stopped while preparing).
    void end_unstarted(Job& job, Ending* ending, const std::string& cause, const std::string& detail);
    void emit(int64_t job, store::EventKind kind, nlohmann::json fields, uint64_t count = 1, int64_t time_ns = 0);
    Result<uid_t> allocate_uid();
    void retry_unrecorded();

    Config m_cfg;
    std::vector<std::unique_ptr<Tier>> m_tiers;  // src/tiers/: what differs per isolation tier
    compiler::FilterCache m_filters;
    std::map<int64_t, std::unique_ptr<Job>> m_jobs;
    std::set<uid_t> m_uids_in_use;
    std::vector<store::JobRecord> m_unrecorded;  // ended jobs the store could not take yet
    uint32_t m_next_uid = 0;
    std::function<void()> m_on_all_done;
    EventLoop::TimerId m_tick = 0;
    std::map<uint64_t, std::unique_ptr<Sampler>> m_samplers;  // by sample interval (ns)
    // Jobs whose process has ended but whose output relay is still
    // delivering; the client's "finished" answer waits for both.
    std::map<int64_t, std::unique_ptr<Ending>> m_ending;
    // Container jobs recorded and answered while their init still exits
    // (Running::take_exiting): the init is reaped here, and only then is the
    // job's cgroup removed and are its uids free again.
    struct Exiting;
    std::map<int64_t, std::unique_ptr<Exiting>> m_exiting;
    void watch_exiting(int64_t job_id, UniqueFd pidfd, std::shared_ptr<cgroup::JobCgroup> cg, std::vector<uid_t> uids);
    void reap_exiting(int64_t job_id);
    // Jobs whose inputs are being opened and copied off the loop.
    std::map<int64_t, std::unique_ptr<Preparing>> m_preparing;
    std::function<void(int64_t)> m_output_hook;
    std::shared_ptr<std::atomic<bool>> m_alive = std::make_shared<std::atomic<bool>>(true);  // read by relay threads
    // cgroup v1: groups made ahead of need (JobCgroup::rename_to), refilled
    // on the loop while a job's program starts, never while a client waits.
    static constexpr size_t kSpareCgroups = 2;
    std::deque<cgroup::JobCgroup> m_spare_cgroups;
    uint64_t m_spare_seq = 0;
    bool m_spares_off = false;  // a spare refused its limits or its rename once
    // The job's group: a spare with the job's limits (its name, `name`, set
    // in *name_pending for settle_cgroup()), or one made now.
    Result<cgroup::JobCgroup> job_cgroup(const std::string& name, const cgroup::Limits& limits,
                                         std::string* name_pending);
    void spares_off(const std::string& name, const Error& why, std::optional<cgroup::JobCgroup> refused);
    void settle_cgroup(Job& job);  // a pending rename of the job's spare group, and its description
    void refill_spare_cgroups();

    // Event budget and aggregate rows (docs/store.md, "Event budget").
    bool take_budget(Job& job, uint64_t bytes);
    void fold(Job& job, const std::string& key, const store::DenialFields* fields, uint64_t count, int64_t time_ns);
    void flush_aggregate(Job& job);
    uint64_t m_pending_bytes = 0;  // Σ pending_bytes of all jobs (kMaxPendingBytes)
    uint64_t m_cpus = 1;           // the machine's CPUs (get_nprocs_conf): the most CPU time a job gains per second

    Metrics m_metrics;  // running counts are added by metrics()
    void count_end(const std::string& tier, const std::string& cause) { ++m_metrics.tiers[tier].ended[cause]; }
};

}  // namespace moat::supervisor
