#pragma once
// The event store: SQLite in WAL mode in the state dir (docs/store.md).
// One writer connection owned by a writer thread that drains a bounded queue
// in batched transactions; synchronous job/policy writes go through the same
// connection under a mutex. Reads use their own connections.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/common/error.h"

namespace moat::store {

struct PolicyRecord {
    int64_t id = 0;
    std::string name;
    int version = 0;        // 1, 2, ... per name, in order of first store
    std::string sha256;
    std::string toml;
    int64_t created_ns = 0;
};

struct Resources {
    uint64_t cpu_time_ns = 0;
    uint64_t peak_memory_bytes = 0;
    uint64_t peak_pids = 0;
};

struct JobRecord {
    int64_t id = 0;                 // assigned by create_job
    std::string tier;               // "seccomp" | "container" | "vm"
    std::vector<std::string> argv;
    std::vector<std::string> env;   // "K=V" as given to the job
    std::string cwd;
    int64_t policy_id = 0;
    std::string policy_name;        // filled by reads
    int policy_version = 0;         // filled by reads
    std::string policy_sha256;      // filled by reads
    int64_t started_ns = 0;
    std::optional<int64_t> ended_ns;
    std::string state = "running";  // "running" | "finished"
    std::optional<int> exit_code;
    std::optional<int> signal;
    std::string cause;              // termination cause (contract table), "" while running
    std::string detail;
    Resources resources;
    uint64_t denial_count = 0;
    int uid = -1;                   // host uid the job ran as
    int pid = -1;                   // host pid of the job's first process
    std::string cgroup;             // description of the job's cgroup(s), for recovery
    std::string accelerator;        // vm tier: "kvm" | "tcg"; else ""
    nlohmann::json info = nlohmann::json::object();  // landlock ABI, cgroup version, warnings...
    int64_t replay_of = 0;          // the job this one replays (0: an original run)
    bool learn = false;             // denials were recorded but not enforced (replay --learn)
    // What replay needs beyond the columns above (docs/replay.md):
    // {"stdin": {"sha256","bytes","truncated"} | null,
    //  "inputs": [{"host","sandbox","sha256","bytes"}], "evicted": "why" (absent while kept)}
    nlohmann::json recording = nlohmann::json::object();
};

// The tail of a job's stdout or stderr as moatd relayed it.
struct JobOutput {
    uint64_t total_bytes = 0;  // everything the job wrote to the stream
    std::string data;          // the last bytes of it (at most the recording limit)
};

enum class EventKind { Lifecycle, Resource, Denial, Limit };
const char* kind_name(EventKind k);  // "lifecycle" | "resource" | "denial" | "limit"

// A denial row's fields as the supervisor has them (the contract's denial
// fields, docs/store.md "events"), typed: a denial carried this way costs
// its strings, not a JSON tree of ~20 allocations built by the producer,
// handed to the writer, walked and freed there. The writer encodes it
// straight into the row; the bytes are those of dump() of to_json() minus
// "syscall" (which has its own column).
struct DenialFields {
    int64_t pid = 0;
    std::string syscall;                  // the name ("syscall_N" when it has none)
    int64_t nr = 0;
    std::string arch;                     // "x86_64" | "x32" | "i386" | "unknown"
    uint64_t args[6] = {};
    std::string action;                   // "errno:EPERM", "kill_process", ...
    std::string rule;                     // "default_action", "seccomp.rule[3]", "abi", ...
    uint64_t ip = 0;                      // "ip": "0x" and lower-case hex
    std::optional<std::string> module;    // "module": null when absent
    std::optional<std::string> decoded;   // "decoded": null when absent
    // Present only when set:
    std::optional<std::string> reason;       // foreign ABI
    std::optional<bool> enforced;            // learn mode: whether the call was refused
    std::optional<std::string> module_note;  // why module was not resolved
    // The same fields as a JSON object (the form they had before the typed
    // payload; for aggregate rows and readers that want a tree).
    nlohmann::json to_json() const;
};

struct Event {
    int64_t id = 0;         // assigned when stored
    int64_t job = 0;
    int64_t time_ns = 0;    // CLOCK_REALTIME
    EventKind kind = EventKind::Lifecycle;
    uint64_t count = 1;     // >1 for a coalesced row
    // Kind-specific fields as in the contract (denial: pid, syscall, nr, arch, args,
    // action, ip, module, decoded; resource: cpu_time_ns, memory_bytes, pids, ...).
    // Null (the default: no allocation, which a typed denial does not need)
    // means no fields, as an empty object does.
    nlohmann::json fields;
    // A denial's fields, typed. When set on a Denial event they are its
    // fields and `fields` is ignored (the store ignores `denial` on other
    // kinds). Events read back from the store never have it: they carry `fields`.
    // Behind a pointer: inline it made every Event (the store's query results
    // too, pages of thousands) 432 bytes instead of 80, and moatd's memory
    // with 1M events read grew by ~3 MiB (run.sh row 7). Shared, so an Event
    // stays copyable; const, so a copy cannot change what the original (maybe
    // queued for the writer thread) holds.
    std::shared_ptr<const DenialFields> denial;
    // The contract's JSON line: {"time","job","kind","count",...fields, "id"}
    nlohmann::json to_json() const;
};

struct EventQuery {
    std::optional<int64_t> job;
    std::optional<EventKind> kind;
    std::optional<std::string> syscall;
    std::optional<int64_t> since_ns, until_ns;
    int64_t after_id = 0;   // keyset paging: events with id > after_id, oldest first
    int limit = 1000;       // capped at 10000
};

// One row of top_syscalls(): denials of one syscall, summed over their counts.
struct SyscallCount {
    std::string syscall;
    uint64_t count = 0;
};

// queued: events waiting in the queue now; written: appended events committed;
// dropped: appended events lost (queue full, failed write, unknown job), each
// also reported by a `limit` event of its job; batches: committed write transactions;
// queued_bytes: the queued events' approximate size; refused: offer()s turned
// down because the job held its share of the queue (not lost: the caller keeps them).
struct StoreStats {
    uint64_t queued = 0, written = 0, dropped = 0, batches = 0;
    uint64_t queued_bytes = 0, refused = 0;
};

// How much the append queue may hold (docs/store.md).
struct QueueLimits {
    size_t events = 1 << 16;      // events queued, all jobs together
    uint64_t bytes = 64ull << 20; // their approximate size (approx_event_bytes)
};

// An event's approximate size in memory and in the database: its strings plus
// a fixed cost per value. Cheap (no serialisation); used for queue accounting.
uint64_t approx_event_bytes(const Event& ev);

// What one committed write changed, for watchers (moatd's pushed updates,
// docs/protocol.md "watch").
struct Committed {
    std::vector<int64_t> event_jobs;  // jobs that got new event rows
    std::vector<int64_t> jobs;        // job rows created or changed (runtime, finish)
    bool policies = false;            // a new policy version was stored
};

class Store {
public:
    // Opens (creating when missing) DIR/moat.db, applies migrations, WAL mode.
    static Result<std::unique_ptr<Store>> open(const std::string& db_path, size_t queue_capacity = 1 << 16);
    static Result<std::unique_ptr<Store>> open(const std::string& db_path, QueueLimits limits);
    // Read-only open of a copied database (no migrations, no writer thread).
    static Result<std::unique_ptr<Store>> open_read_only(const std::string& db_path);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    int schema_version() const;

    // Policies: stores a version when the sha256 is new for that name, else returns the existing one.
    Result<PolicyRecord> put_policy(const std::string& name, const std::string& toml, const std::string& sha256);
    Result<PolicyRecord> get_policy(int64_t id);
    Result<std::vector<PolicyRecord>> list_policies();

    // Jobs.
    Result<int64_t> create_job(JobRecord& job);          // sets job.id
    Result<void> update_job_runtime(int64_t id, int pid, int uid, const std::string& cgroup, const nlohmann::json& info);
    Result<void> finish_job(const JobRecord& job);        // state, ended, exit, signal, cause, detail, resources, denial_count
    Result<JobRecord> get_job(int64_t id);
    Result<std::vector<JobRecord>> list_jobs(int limit = 100, int64_t before_id = 0);  // newest first
    Result<std::vector<JobRecord>> running_jobs();

    // Replay recordings. Blobs are files in the artifact directory named by
    // their sha256; the store keeps their sizes and which job uses which.
    Result<void> put_blob(const std::string& sha256, uint64_t size);
    Result<void> put_blobs(const std::vector<std::pair<std::string, uint64_t>>& blobs);  // one transaction
    Result<void> set_recording(int64_t job, const nlohmann::json& recording, const std::vector<std::string>& blobs);
    Result<void> put_output(int64_t job, const std::string& stream, const JobOutput& out);
    // A job's end in one transaction (one commit instead of four, on the
    // supervisor's loop between the job's exit and its client's answer): the
    // blobs first put as put_blobs (the job's recorded stdin), the stdout and
    // stderr tails as put_output, then the recording as set_recording.
    // With `finished` (this job's record), the job's finish as finish_job goes
    // first in the same commit: a job whose output was all relayed before its
    // end costs one commit at its end, not two (issue 15).
    Result<void> put_outputs_and_recording(int64_t job, const JobOutput& out, const JobOutput& err,
                                           const nlohmann::json& recording, const std::vector<std::string>& blobs,
                                           const std::vector<std::pair<std::string, uint64_t>>& new_blobs = {},
                                           const JobRecord* finished = nullptr);
    Result<std::optional<JobOutput>> get_output(int64_t job, const std::string& stream);
    // Applies the retention and budget: recordings of finished jobs that ended
    // before `ended_before_ns` are dropped, then the oldest until the blobs'
    // total size is at most `budget_bytes`. Each dropped recording is marked
    // {"evicted": why}. Returns the blobs no job refers to any more (their
    // files may be deleted).
    Result<std::vector<std::string>> expire_recordings(int64_t ended_before_ns, uint64_t budget_bytes);
    Result<uint64_t> blob_bytes();  // total size of the stored blobs

    // Events. append() never blocks: when the queue is full the event is counted
    // as dropped for its job, and the writer records one `limit` event per job with
    // the exact number lost as soon as space returns.
    // Meant for events the store must keep (lifecycle, limit, resource, the
    // supervisor's aggregate denial rows): they may use the whole queue.
    void append(Event ev);
    // For bulk events (denial rows): queued only within the job's fair share of
    // the queue, so that one job flooding cannot make the store drop another
    // job's events. A job may hold at most capacity / (jobs with queued events
    // + 1) events and as many bytes; past that (or with the queue full) the
    // offer is refused: false, `ev` is left to the caller and nothing is
    // counted as dropped (the supervisor folds it into its aggregate counts).
    // true: queued (`ev` moved from).
    bool offer(Event& ev);
    // Blocks until everything appended before the call is committed.
    void flush();
    Result<std::vector<Event>> query_events(const EventQuery& q);
    Result<uint64_t> count_denials(int64_t job);  // sum of counts
    // Syscalls by denial count (sum of counts), most denied first; all jobs when job is empty.
    Result<std::vector<SyscallCount>> top_syscalls(std::optional<int64_t> job = std::nullopt, int limit = 10);
    StoreStats stats() const;
    // Called after each commit that changed something, on the committing
    // thread (the writer thread for events, the caller's for job and policy
    // writes), outside the store's locks. It must be cheap (hand the news to
    // another thread) and must not block on the store. It may be set or
    // replaced at any time (under a lock the writer thread also takes).
    void set_commit_hook(std::function<void(const Committed&)> hook);

    Result<std::string> integrity_check();  // "ok" when healthy

private:
    friend struct StoreTestAccess;  // test seam (core/store/src/test_access.h)
    Store();
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace moat::store
