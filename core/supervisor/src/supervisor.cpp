#include "moat/supervisor/supervisor.h"

#include <charconv>

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "moat/common/log.h"
#include "moat/common/signals.h"
#include "moat/common/sha256.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/policy/syscalls.h"
#include "moat/sandbox/spawn.h"
#include "moat/supervisor/decode.h"
#include "creds.h"
#include "path_learn.h"
#include "relay.h"
#include "tier.h"

namespace moat::supervisor {

namespace {

constexpr uint64_t kTickNs = 100'000'000;  // CPU-limit checks and denial flushes
constexpr size_t kMaxPendingKeys = 4096;   // distinct denials buffered per job before a forced flush
// Denial rows buffered for coalescing, all jobs together (approximate bytes):
// past it the job adding one is flushed to the store first. With the store's
// queue (store::QueueLimits) this bounds what denials can make moatd hold.
constexpr uint64_t kMaxPendingBytes = 16ull << 20;
// Past its event budget a job's denials are counted per (syscall, arch,
// action, rule) in aggregate rows: at most this many keys per job (the syscall
// number is the job's choice), the rest share one "(other)" key.
constexpr size_t kMaxAggregateKeys = 128;
constexpr int64_t kAggregateFlushNs = 30'000'000'000;  // aggregate rows are stored this often, and at the end
// Resource sampling (docs/policy.md, monitor.sample_interval): at most this
// long between two reads of the kernel's peaks and event counts, and between
// two stored resource events of a job whose figures do not change.
constexpr int64_t kSampleHeartbeatNs = 1'000'000'000;

// An idle job's sampling backs off: after each sample that finds its CPU
// counter unchanged, the next one is twice as far away (in intervals), never
// past the once-a-second sample (kSampleHeartbeatNs); any CPU use brings it
// back to every interval. This caps the doubling.
constexpr uint32_t kMaxIdleBackoff = 64;

// The first expiry of a periodic timer, on the next multiple of its period on
// the monotonic clock plus one of kTimerSlots phases (at least half a period
// away). Jobs are sampled by one timer per sample interval (Sampler), which
// expires kTimerSlots times per interval and samples one slot of its jobs
// each time: 100 jobs at 100 ms cost 80 wake-ups and 80 timer reads a
// second, not 1,000, and no single wake-up samples more than 1/kTimerSlots
// of them, so a burst of samples never holds client requests back for long.
constexpr uint64_t kTimerSlots = 8;
// A Sampler's timer period. The policy parser allows 50 ms at least (6.25 ms
// here); the floor only keeps a zero or tiny interval from a caller that
// skipped it from dividing by zero or spinning the loop.
uint64_t sampler_period(uint64_t interval_ns) { return std::max<uint64_t>(interval_ns / kTimerSlots, 1'000'000); }
uint64_t aligned_first(uint64_t period_ns, uint64_t slot = 0) {
    const uint64_t now = uint64_t(now_monotonic_ns());
    const uint64_t phase = (slot % kTimerSlots) * (period_ns / kTimerSlots);
    uint64_t first = period_ns - (now + period_ns - phase) % period_ns;
    if (first < period_ns / 2) first += period_ns;
    return first;
}

constexpr uint64_t kRowOverhead = 256;                 // a denial row's fixed part, for the byte budget
const char* arch_name(uint32_t arch) {
    switch (arch) {
        case AUDIT_ARCH_X86_64: return "x86_64";
        case AUDIT_ARCH_I386: return "i386";
        default: return "unknown";
    }
}

// libseccomp's number-to-name lookup walks its whole table and allocates: on
// the denial path (one lookup per denial) the names of the numbers a job can
// pick are kept, per thread, after the first lookup. Numbers past the table
// (any value a job passes) are looked up each time, as before.
const std::string& native_syscall_name(int nr) {
    constexpr int kCached = 1024;
    thread_local std::vector<std::optional<std::string>> names(kCached);
    if (nr < 0 || nr >= kCached) {
        thread_local std::string uncached;
        uncached = policy::syscall_name(nr);
        return uncached;
    }
    auto& n = names[size_t(nr)];
    if (!n) n = policy::syscall_name(nr);
    return *n;
}

// Appends v in hex and a ':' (a coalescing key's fields).
void put_hex(std::string& s, uint64_t v) {
    char b[20];
    auto r = std::to_chars(b, b + sizeof b, v, 16);
    s.append(b, r.ptr);
    s += ':';
}

}  // namespace

struct Supervisor::Job {
    int64_t id = 0;
    store::JobRecord rec;
    std::shared_ptr<const policy::Policy> policy;
    std::shared_ptr<const compiler::CompiledFilter> filter;
    std::optional<cgroup::JobCgroup> cg;
    // A spare group the job runs in before it is renamed to its own name
    // (settle_cgroup(), once the job runs): the name it gets.
    std::string cg_name_pending;
    const Tier* tier = nullptr;
    std::unique_ptr<Running> run;        // once launched
    std::unique_ptr<JobEvents> events;   // what `run` reports to
    uid_t uid = 0;
    Identities ids;                      // host uids the tier reserved
    bool started = false;
    // The row's runtime fields (pid, uid, cgroup, sandbox info) are not in the
    // store yet: written once the job's first syscall reached moatd (judge),
    // or by finish() if that never happened.
    bool runtime_unstored = false, runtime_posted = false;
    bool info_made = false;  // launch built the job's info (a tier's patch before that is only merged)
    int64_t start_mono = 0;
    size_t inner_steps_taken = 0;  // Running::inner_steps() already in `steps`
    void take_inner_steps() {
        if (!run) return;
        const auto inner = run->inner_steps();
        for (size_t i = inner_steps_taken; i < inner.size(); ++i)
            if (inner[i].second >= start_mono) steps.emplace_back(inner[i].first, (inner[i].second - start_mono) / 1000);
        inner_steps_taken = inner.size();
    }
    // Where the job's start went (docs/protocol.md, sandbox.startup_us): step
    // name and microseconds since moatd took the request, in order.
    std::vector<std::pair<const char*, int64_t>> steps;
    void mark(const char* step) { steps.emplace_back(step, (now_monotonic_ns() - start_mono) / 1000); }
    nlohmann::json steps_json() const {
        nlohmann::json j = nlohmann::json::object();
        for (const auto& [k, v] : steps) j[k] = v;
        return j;
    }
    EventLoop::TimerId wall_timer = 0;
    bool sampled = false;  // in a Sampler (add_to_sampler)
    bool wall_started = false;
    uint64_t cpu_at_clock = 0;  // the cgroup's CPU time when the job's clock started (a VM's boot is not the job's)
    std::string kill_cause, kill_detail;
    bool killed = false;  // kill_job ran (with or without a cause: the job may have ended on its own first)
    int sent_signal = 0;        // the last operator signal (Supervisor::signal)
    std::string sent_why;
    bool execs = false;
    bool learn_through_rules = false;  // JobRequest::learn_through_rules
    std::unique_ptr<PathLearner> learner;  // learn mode in the container and seccomp tiers
    ClientCreds client;                    // who asked (the learner looks host paths up as them)
    uint64_t peak_mem = 0, peak_pids = 0, cpu_ns = 0, last_cpu_ns = 0, pid_hits = 0, ooms = 0;
    int64_t last_sample_mono = 0;
    // The last time the kernel's peaks and event counts were known current:
    // read then, or unchanged since because the job used no CPU.
    int64_t last_full_mono = 0;
    std::optional<uint64_t> full_raw_cpu;  // the cgroup's CPU counter when the peaks were last read
    // Idle back-off (kMaxIdleBackoff): the sampler skips the job before
    // next_sample_mono; idle_backoff is the current gap in intervals.
    int64_t next_sample_mono = 0;
    uint32_t idle_backoff = 1;
    size_t sample_slot = 0;  // its Sampler slot
    int64_t next_cpu_check_mono = 0;  // the tick's CPU-limit check: not before then (see the tick)
    std::optional<uint64_t> sampled_raw_cpu;  // the cgroup's CPU counter at the last sample
    int64_t last_stored_mono = 0;  // the last resource event stored (0: none yet)
    // What the last stored resource event said: a sample that says the same
    // again within kSampleHeartbeatNs is not stored (an idle job).
    cgroup::Sample stored;
    nlohmann::json last_sample;  // the last resource event's fields (null before the first)
    uint64_t denials = 0;
    // The metrics' denial counters this job has used, by syscall name (a
    // cache of denial_slot: one hash lookup per denial). Past kMaxSyscallKeys
    // names the job makes no new series (its new names count as _other).
    std::unordered_map<std::string, uint64_t*> denial_slots;
    static constexpr size_t kMaxSyscallKeys = 512;
    struct Pending {
        int64_t first_ns;
        uint64_t count;
        store::DenialFields fields;  // typed: no JSON tree per row (docs/store.md, "Events: the queue")
        uint64_t bytes = 0;  // its share of the event budget and of kMaxPendingBytes
    };
    std::unordered_map<std::string, Pending> pending;
    int64_t oldest_pending_mono = 0;
    std::function<void(const store::JobRecord&)> on_finished;
    // Event budget (policy [monitor] max_events / max_event_bytes; docs/store.md).
    uint64_t budget_rows = 0, budget_bytes = 0;  // denial rows and exec events stored or pending
    bool over_budget = false;
    bool queue_refused = false;                   // the store refused a row (job's queue share): reported once
    struct Aggregate {
        nlohmann::json fields;  // the first denial folded under this key (representative)
        uint64_t count = 0;     // denials since the key's last aggregate row
        int64_t first_ns = 0;   // time of the first of them
    };
    std::map<std::string, Aggregate> aggregate;
    uint64_t aggregated = 0;      // denials counted only in aggregate rows
    uint64_t execs_unstored = 0;  // exec events past the budget
    int64_t aggregate_flushed_mono = 0;
    uint64_t pending_bytes = 0;
};

// How a running job reaches the supervisor (tier.h).
struct Supervisor::Events final : JobEvents {
    Supervisor* sup;
    Job* job;
    Events(Supervisor* s, Job* j) : sup(s), job(j) {}
    Answer notice(const Notice& n) override { return sup->judge(*job, n); }
    void exited() override { sup->finish(*job); }
    void event(store::EventKind kind, nlohmann::json fields) override { sup->emit(job->id, kind, std::move(fields)); }
    void start_clock() override { sup->start_wall_clock(*job); }
    void info(const nlohmann::json& patch) override {
        if (!job->rec.info.is_object()) job->rec.info = nlohmann::json::object();
        job->rec.info.update(patch);
        // Before launch made the rest of the info, it writes the whole row.
        if (job->info_made)
            (void)sup->m_cfg.store->update_job_runtime(job->id, job->rec.pid, job->rec.uid, job->rec.cgroup,
                                                       job->rec.info);
    }
};

// From the spawn until the job's record and its output are both complete.
struct Supervisor::Ending {
    std::unique_ptr<Relay> relay;
    std::function<void(const store::JobRecord&)> on_finished;
    store::JobRecord rec;
    bool job_done = false, relay_done = false;
    RelayResult result;
    nlohmann::json recording = nlohmann::json::object();
    std::vector<std::string> blobs;  // referenced by the recording
    std::string stdin_temp;          // the relay's stdin recording, adopted at the end
    bool stdin_recorded = false;     // the relay records stdin (into stdin_temp, once a byte came)
    std::string stage;               // replay: per-job directory of snapshots put back
    EventLoop::TimerId drain_timer = 0;
    std::shared_ptr<LiveOutput> live;  // the output's last bytes while it is relayed (watchers)
    // The job ended and its finish (rec) is not stored yet: it goes with the
    // outputs in complete(), or alone when finish_timer fires first.
    bool finish_pending = false;
    EventLoop::TimerId finish_timer = 0;
};

// How long a job's finish waits for its relay to be done, so both are stored
// in one commit (finish()). A relay still busy then (a client that reads
// slowly, an orphan holding the output) gets its finish stored alone: the
// row never says "running" for longer than this after the job ended.
constexpr uint64_t kFinishWaitsForOutputNs = 50'000'000;

// A container job's init after the job's end was recorded (finish): reaped
// through its pidfd, then the job's cgroup goes and its uids are free.
struct Supervisor::Exiting {
    UniqueFd pidfd;
    std::shared_ptr<cgroup::JobCgroup> cg;
    std::vector<uid_t> uids;
    EventLoop::TimerId late_timer = 0;
};

// What prepare_inputs produced, per input in request order.
struct Supervisor::Prepared {
    std::optional<Error> error;
    nlohmann::json list = nlohmann::json::array();          // recording.inputs
    std::vector<std::string> blobs;                         // referenced by the recording
    std::vector<std::pair<std::string, uint64_t>> new_blobs;  // snapshots taken now, to register in the store
    std::string stage;                                      // replay: the tier's staging directory
    std::vector<UniqueFd> fds;                              // the file each input grants
    std::vector<struct stat> st;                            // and its identity (dev, ino)
    std::shared_ptr<void> tier_data;                        // Tier::prepare()
};

// A job between its record and its spawn while its inputs are prepared.
struct Supervisor::Preparing {
    std::unique_ptr<Job> job;
    std::unique_ptr<Ending> ending;
    JobRequest req;
    const Tier* tier = nullptr;
    Prepared prepared;
    std::atomic<bool> cancel{false};
    std::string stop_why;  // set by stop(): the job ends "stopped" instead of starting
    std::thread thread;
};

// Every job sampled at one interval shares one timer, which expires
// kTimerSlots times per interval; each expiry samples the jobs of one slot
// (the job's id modulo kTimerSlots), so each job is visited once per interval.
struct Supervisor::Sampler {
    EventLoop::TimerId timer = 0;
    std::array<std::vector<Job*>, kTimerSlots> slots;
    size_t jobs = 0;
    uint64_t last_turn = 0;  // the last expiry sampled, in periods of the monotonic clock
};

Supervisor::Supervisor(Config cfg) : m_cfg(std::move(cfg)) {
    m_cpus = uint64_t(std::max(1, get_nprocs_conf()));
    TierHost host;
    host.loop = m_cfg.loop;
    host.allocate_uid = [this] { return allocate_uid(); };
    host.release_uid = [this](uid_t u) { m_uids_in_use.erase(u); };
    m_tiers = make_tiers(m_cfg, std::move(host));
    auto t = m_cfg.loop->add_timer(aligned_first(kTickNs), kTickNs, [this] {
        const int64_t now = now_monotonic_ns();
        retry_unrecorded();
        std::vector<Job*> over;
        for (auto& [id, job] : m_jobs) {
            if (!job->pending.empty() && now - job->oldest_pending_mono >= int64_t(m_cfg.coalesce_window_ns))
                flush_denials(*job);
            if (!job->aggregate.empty() && now - job->aggregate_flushed_mono >= kAggregateFlushNs)
                flush_aggregate(*job);
            if (job->cg && !job->killed && now >= job->next_cpu_check_mono) {
                job->next_cpu_check_mono = now;
                if (auto cpu = job->cg->cpu_ns()) {
                    // The job's CPU time counts from its clock's start (a VM's boot is not the job's).
                    job->cpu_ns = job->wall_started ? *cpu - std::min(*cpu, job->cpu_at_clock) : 0;
                    const uint64_t limit = job->policy->limits.cpu_time_ns;
                    if (job->wall_started && job->cpu_ns >= limit) over.push_back(job.get());
                    // The job cannot use more than every CPU of the machine:
                    // it cannot reach its limit before (limit - used) / CPUs
                    // has passed, so it is not read again before then (a job
                    // near its limit is read every tick, as before).
                    else if (job->wall_started)
                        job->next_cpu_check_mono = now + int64_t((limit - job->cpu_ns) / m_cpus);
                }
            }
        }
        for (Job* j : over) {
            emit(j->id, store::EventKind::Limit,
                 {{"limit", "cpu-time"}, {"value_ns", j->policy->limits.cpu_time_ns}, {"used_ns", j->cpu_ns}});
            kill_job(*j, "cpu-time",
                     "CPU time " + format_duration_ns(j->cpu_ns) + " reached the limit of " +
                         format_duration_ns(j->policy->limits.cpu_time_ns) + " (limits.cpu_time)");
        }
    });
    if (t) m_tick = *t;
}

void Supervisor::retry_unrecorded() {
    for (auto it = m_unrecorded.begin(); it != m_unrecorded.end();) {
        if (m_cfg.store->finish_job(*it)) {
            moat::logf(moat::LogLevel::Notice, "the end of job %lld is recorded now\n", (long long)it->id);
            it = m_unrecorded.erase(it);
        } else {
            ++it;
        }
    }
}

Supervisor::~Supervisor() {
    *m_alive = false;
    for (auto& [id, p] : m_preparing) p->cancel = true;
    for (auto& [id, p] : m_preparing) {
        if (p->thread.joinable()) p->thread.join();
        if (!p->prepared.stage.empty()) remove_tree(p->prepared.stage);
    }
    for (auto& [id, e] : m_ending) {
        if (e->drain_timer) m_cfg.loop->cancel_timer(e->drain_timer);
        if (e->finish_timer) m_cfg.loop->cancel_timer(e->finish_timer);
        // A job that ended while its output still drained: its finish waited
        // to go with the outputs (finish()); stored now, alone.
        if (e->finish_pending) {
            e->finish_pending = false;
            record_finish(e->rec);
        }
        e->relay.reset();  // cancels and waits for it
        if (!e->stage.empty()) remove_tree(e->stage);
    }
    retry_unrecorded();
    if (m_tick) m_cfg.loop->cancel_timer(m_tick);
    for (auto& [interval, s] : m_samplers) m_cfg.loop->cancel_timer(s->timer);
    m_samplers.clear();
    for (auto& cg : m_spare_cgroups) (void)cg.destroy();
    m_spare_cgroups.clear();
    // Inits on their way out (normally within a millisecond): up to 2 s in
    // all, as finish() used to wait for a cgroup to empty, then their
    // cgroups go. One that has not exited by then keeps its cgroup (removed
    // at moatd's next start, like any job's left behind).
    const int64_t exit_deadline = now_monotonic_ns() + 2'000'000'000;
    for (auto& [id, e] : m_exiting) {
        if (e->late_timer) m_cfg.loop->cancel_timer(e->late_timer);
        m_cfg.loop->remove_fd(e->pidfd.get());
        pollfd p{e->pidfd.get(), POLLIN, 0};
        const int64_t left_ms = std::max<int64_t>(0, (exit_deadline - now_monotonic_ns()) / 1'000'000);
        siginfo_t si{};
        if (::poll(&p, 1, int(left_ms)) == 1 && waitid(idtype_t(3), id_t(e->pidfd.get()), &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid != 0 && e->cg)
            (void)e->cg->destroy();
    }
    m_exiting.clear();
    for (auto& [id, job] : m_jobs) {
        if (job->cg) {
            (void)job->cg->kill_all();
            (void)job->cg->destroy();
        }
    }
    // Tiers last: a running job's Running may still refer to its tier, and a
    // tier gives its uids back to m_uids_in_use.
    m_jobs.clear();
    m_tiers.clear();
}

std::vector<std::pair<std::string, std::string>> Supervisor::tiers() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& t : m_tiers) {
        auto why = t->unavailable();
        out.emplace_back(policy::tier_name(t->kind()), why ? why->message : "");
    }
    return out;
}

std::vector<int64_t> Supervisor::running_ids() const {
    std::vector<int64_t> out;
    for (auto& [id, j] : m_jobs) out.push_back(id);
    return out;
}

void Supervisor::emit(int64_t job, store::EventKind kind, nlohmann::json fields, uint64_t count, int64_t time_ns) {
    store::Event ev;
    ev.job = job;
    ev.time_ns = time_ns ? time_ns : now_realtime_ns();
    ev.kind = kind;
    ev.count = count;
    ev.fields = std::move(fields);
    m_cfg.store->append(std::move(ev));
}

Result<cgroup::JobCgroup> Supervisor::job_cgroup(const std::string& name, const cgroup::Limits& limits,
                                                 std::string* name_pending) {
    name_pending->clear();
    if (!m_spare_cgroups.empty()) {
        cgroup::JobCgroup cg = std::move(m_spare_cgroups.front());
        m_spare_cgroups.pop_front();
        // The job's limits now; its name once it runs (settle_cgroup): the
        // renames, one per hierarchy, are ~0.1 ms the start need not wait for.
        auto r = cg.apply_limits(limits);
        if (r) {
            *name_pending = name;
            return cg;
        }
        spares_off(name, r.error(), std::move(cg));
    }
    return cgroup::JobCgroup::create(m_cfg.cgroups, m_cfg.cgroup_parent, name, limits);
}

void Supervisor::spares_off(const std::string& name, const Error& why, std::optional<cgroup::JobCgroup> refused) {
    // Whatever refused this spare (an LSM, a limit the group takes only at
    // mkdir, a rename) would refuse the next: no more spares in this moatd,
    // and the groups go after this job's start, not before it.
    moat::logf(moat::LogLevel::Warning, "a spare cgroup could not become %s (%s): spare cgroups are off\n", name.c_str(),
               why.message.c_str());
    m_spares_off = true;
    auto gone = std::make_shared<std::deque<cgroup::JobCgroup>>(std::move(m_spare_cgroups));
    m_spare_cgroups.clear();
    if (refused) gone->push_back(std::move(*refused));
    m_cfg.loop->post([gone] {
        for (auto& g : *gone) (void)g.destroy();
    });
}

void Supervisor::settle_cgroup(Job& job) {
    if (job.cg_name_pending.empty() || !job.cg) return;
    const std::string name = std::move(job.cg_name_pending);
    job.cg_name_pending.clear();
    // On failure the job keeps running in its group under the name it has
    // (which its record then says, as the cgroup's description); later jobs
    // get groups made with their own names.
    if (auto r = job.cg->rename(name); !r) spares_off(name, r.error(), std::nullopt);
    job.rec.cgroup = job.cg->describe();
}

void Supervisor::refill_spare_cgroups() {
    if (m_cfg.cgroups.version != cgroup::Version::V1 || m_spares_off) return;
    while (m_spare_cgroups.size() < kSpareCgroups) {
        // "job-*": a spare left by a moatd that died goes with the stale job
        // groups at the next start (JobCgroup::sweep_stale_groups).
        auto cg = cgroup::JobCgroup::create(m_cfg.cgroups, m_cfg.cgroup_parent,
                                            "job-spare-" + std::to_string(++m_spare_seq), {});
        if (!cg) return;  // the job's own create() says why, if it matters
        if (!cg->prepare_self_join()) {
            (void)cg->destroy();
            return;
        }
        m_spare_cgroups.push_back(std::move(*cg));
    }
}

Result<uid_t> Supervisor::allocate_uid() {
    // Concurrent jobs never share a uid: a job must not be able to signal,
    // ptrace or read the files of another job through the same identity.
    for (uint32_t i = 0; i < m_cfg.uid_count; ++i) {
        uid_t u = m_cfg.uid_base + (m_next_uid + i) % m_cfg.uid_count;
        if (u == 0 || m_uids_in_use.count(u)) continue;
        m_uids_in_use.insert(u);
        m_next_uid = (m_next_uid + i + 1) % m_cfg.uid_count;
        return u;
    }
    return fail("no free job uid in " + std::to_string(m_cfg.uid_base) + ".." +
                std::to_string(m_cfg.uid_base + m_cfg.uid_count - 1));
}

Result<size_t> Supervisor::recover() {
    auto running = m_cfg.store->running_jobs();
    if (!running) return std::unexpected(running.error());
    size_t n = 0;
    for (auto& job : *running) {
        std::string detail = "moatd ended while the job ran; found at the next start";
        if (!job.cgroup.empty()) {
            if (auto r = cgroup::JobCgroup::reap_described(job.cgroup); !r)
                detail += "; cleaning its cgroup failed: " + r.error().message;
            else
                detail += "; nothing of it was left running (its cgroup was emptied and removed)";
        } else {
            // The row's cgroup is written right after the job's first execve
            // is answered: moatd ended during the job's set-up or its first
            // moments. Its group (job-<id>) goes with the start-up sweep of
            // job cgroups that follows (moatd's main).
            detail += "; its cgroup was not recorded yet (moatd ended during the job's set-up or its first moments): "
                      "whatever was left of it goes with the start-up sweep of job cgroups";
        }
        job.state = "finished";
        job.ended_ns = now_realtime_ns();
        job.cause = "supervisor-lost";
        job.detail = detail;
        count_end(job.tier, job.cause);
        if (auto c = m_cfg.store->count_denials(job.id)) job.denial_count = *c;
        if (auto r = m_cfg.store->finish_job(job); !r) return std::unexpected(r.error());
        emit(job.id, store::EventKind::Lifecycle, {{"event", "finished"}, {"cause", "supervisor-lost"}, {"detail", detail}});
        ++n;
    }
    return n;
}

std::vector<std::string> Supervisor::build_env(const policy::Environment& pol, const std::vector<std::string>& client) {
    std::map<std::string, std::string> env;
    for (const auto& kv : client) {
        auto eq = kv.find('=');
        if (eq == std::string::npos) continue;
        std::string k = kv.substr(0, eq);
        for (const auto& p : pol.pass)
            if (p == k) env[k] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : pol.set) env[k] = v;
    std::vector<std::string> out;
    for (auto& [k, v] : env) out.push_back(k + "=" + v);
    return out;
}

Result<std::string> Supervisor::resolve_program(const std::string& name, const std::vector<std::string>& env,
                                                const std::string& cwd) {
    if (name.empty()) return fail("empty program name");
    auto check = [](const std::string& p) -> bool {
        struct stat st{};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
    };
    if (name.find('/') != std::string::npos) {
        std::string p = name[0] == '/' ? name : cwd + "/" + name;
        if (!check(p)) return fail("program \"" + name + "\" not found or not executable");
        return p;
    }
    const std::string dflt = "/usr/local/bin:/usr/bin:/bin";
    if (auto p = search_path(name, env, dflt, check)) return *p;
    std::string path = dflt;
    for (const auto& kv : env)
        if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
    return fail("program \"" + name + "\" not found in the job's PATH (" + path + ")");
}

StartResult Supervisor::start(JobRequest req) {
    StartResult result;
    auto job = std::make_unique<Job>();
    auto pol = std::move(req.policy);
    if (!pol) {
        result.setup_error = Error::msg("no policy in the job request");
        return result;
    }
    policy::Tier tier = req.tier_override.value_or(pol->tier);
    job->policy = pol;
    job->on_finished = std::move(req.on_finished);
    job->rec.tier = policy::tier_name(tier);
    job->rec.argv = req.argv;
    job->rec.env = build_env(pol->environment, req.client_env);
    job->rec.cwd = req.cwd.empty() ? "/" : req.cwd;
    job->rec.policy_id = req.policy_id;
    job->rec.started_ns = now_realtime_ns();
    job->rec.state = "running";
    job->rec.replay_of = req.replay_of;
    job->rec.learn = req.learn;
    job->learn_through_rules = req.learn && req.learn_through_rules;
    job->client = req.client;
    job->start_mono = now_monotonic_ns();

    if (auto id = m_cfg.store->create_job(job->rec); !id) {
        result.setup_error = id.error().wrap("recording the job");
        return result;
    }
    job->id = job->rec.id;
    result.job_id = job->id;
    emit(job->id, store::EventKind::Lifecycle,
         {{"event", "created"}, {"tier", job->rec.tier}, {"policy_sha256", pol->sha256}});
    job->mark("recorded");
    ++m_metrics.tiers[job->rec.tier].created;

    auto ending = std::make_unique<Ending>();
    // Any failure from here on is a recorded setup failure.
    auto setup_failed = [&](const Error& e) {
        fail_setup(*job, ending.get(), e);
        result.setup_error = e;
        return result;
    };

    for (const auto& t : m_tiers)
        if (t->kind() == tier) job->tier = t.get();
    if (!job->tier) {
        std::string have;
        for (const auto& t : m_tiers) have += (have.empty() ? "" : ", ") + std::string(policy::tier_name(t->kind()));
        return setup_failed(Error::msg("tier \"" + std::string(policy::tier_name(tier)) +
                                       "\" is not available in this moatd (supported: " + have + ")"));
    }
    if (auto why = job->tier->unavailable()) return setup_failed(*why);
    if (m_jobs.size() + m_preparing.size() >= m_cfg.max_jobs)
        return setup_failed(Error::msg("too many running jobs (" + std::to_string(m_cfg.max_jobs) + ")"));
    if (req.argv.empty()) return setup_failed(Error::msg("no program given"));
    if (req.require_stdio)
        for (int i = 0; i < 3; ++i)
            if (!req.stdio[i]) return setup_failed(Error::msg("the client did not pass stdio fd " + std::to_string(i)));
    if (req.learn)
        emit(job->id, store::EventKind::Lifecycle,
             {{"event", "learn-mode"},
              {"detail", req.learn_through_rules
                             ? "denials are recorded but not enforced: every notified syscall continues, also "
                               "those an explicit [[seccomp.rule]] denies (--override-deny-rules)"
                             : "denials by default_action are recorded but not enforced (the call continues); "
                               "an explicit [[seccomp.rule]] deny is still enforced"}});

    // Identities the tier needs besides the job's own uid. Reserved early:
    // replayed inputs are staged for them.
    if (auto r = job->tier->reserve(job->ids, [this] { return allocate_uid(); }); !r) return setup_failed(r.error());

    // A root filesystem from the client is not snapshotted; its recording
    // says so (and replay refuses it, naming where it came from).
    if (const auto& r = req.rootfs) {
        nlohmann::json binds = nlohmann::json::array();
        for (const auto& b : r->binds) binds.push_back({{"target", b.target}, {"read_only", b.read_only}});
        ending->recording["rootfs"] = {{"origin", r->origin}, {"read_only", r->root.read_only}, {"binds", binds},
                                       {"snapshot", nullptr}};
    }

    if (req.inputs.empty() && !job->tier->prepares()) {
        Prepared none;
        if (auto err = launch(job, ending, req, none)) return setup_failed(*err);
        return result;
    }

    // Inputs are opened, hashed, snapshotted and staged on a thread of their
    // own: a large (or sparse, or slow) file delays this job's start, never the
    // loop that answers every other job's syscalls and every client.
    const int64_t id = job->id;
    auto p = std::make_unique<Preparing>();
    Preparing* raw = p.get();
    raw->job = std::move(job);
    raw->ending = std::move(ending);
    raw->req = std::move(req);
    raw->tier = raw->job->tier;
    m_preparing.emplace(id, std::move(p));
    std::weak_ptr<std::atomic<bool>> alive = m_alive;
    raw->thread = std::thread([this, raw, id, alive] {
        prepare_inputs(m_cfg, id, raw->req.inputs, *raw->tier, raw->job->ids, raw->req.client, raw->cancel,
                       raw->prepared);
        if (!raw->prepared.error && raw->tier->prepares()) {
            if (auto r = raw->tier->prepare(*raw->job->policy, raw->cancel)) raw->prepared.tier_data = std::move(*r);
            else raw->prepared.error = r.error();
        }
        auto a = alive.lock();
        if (!a || !*a) return;
        m_cfg.loop->post([this, id, alive] {
            auto a2 = alive.lock();
            if (a2 && *a2) inputs_ready(id);
        });
    });
    return result;
}

void Supervisor::start_wall_clock(Job& job) {
    if (job.wall_timer || job.wall_started) return;
    job.wall_started = true;
    {
        Metrics::PerTier& t = m_metrics.tiers[job.rec.tier];
        const double s = double(now_monotonic_ns() - job.start_mono) / 1e9;
        size_t b = 0;
        while (b < std::size(Metrics::kStartBuckets) && s > Metrics::kStartBuckets[b]) ++b;
        if (b < std::size(Metrics::kStartBuckets)) ++t.start_buckets[b];  // past the last: only in +Inf
        ++t.start_count;
        t.start_sum_s += s;
    }
    if (job.run && !job.run->clock_at_launch() && job.cg)
        if (auto c = job.cg->cpu_ns()) job.cpu_at_clock = *c;
    Job* raw = &job;
    if (auto t = m_cfg.loop->add_timer(job.policy->limits.wall_time_ns, 0, [this, raw] {
            raw->wall_timer = 0;
            emit(raw->id, store::EventKind::Limit,
                 {{"limit", "wall-time"}, {"value_ns", raw->policy->limits.wall_time_ns}});
            kill_job(*raw, "wall-time",
                     "ran longer than " + format_duration_ns(raw->policy->limits.wall_time_ns) + " (limits.wall_time)");
        }))
        job.wall_timer = *t;
}

void Supervisor::fail_setup(Job& job, Ending* ending, const Error& e) {
    end_unstarted(job, ending, "setup-failed", e.message);
}

void Supervisor::end_unstarted(Job& job, Ending* ending, const std::string& cause, const std::string& detail) {
    if (ending && !ending->stage.empty()) remove_tree(ending->stage);
    job.rec.state = "finished";
    job.rec.ended_ns = now_realtime_ns();
    job.rec.cause = cause;
    job.rec.detail = detail;
    count_end(job.rec.tier, cause);
    emit(job.id, store::EventKind::Lifecycle, {{"event", "finished"}, {"cause", cause}, {"detail", detail}});
    if (auto r = m_cfg.store->finish_job(job.rec); !r) m_unrecorded.push_back(job.rec);
    if (job.cg) {
        (void)job.cg->kill_all();
        (void)job.cg->destroy();
    }
    if (job.uid) m_uids_in_use.erase(job.uid);
    if (job.ids.root_uid) m_uids_in_use.erase(job.ids.root_uid);
    job.uid = job.ids.root_uid = 0;
}

void Supervisor::inputs_ready(int64_t job_id) {
    auto it = m_preparing.find(job_id);
    if (it == m_preparing.end()) return;
    std::unique_ptr<Preparing> p = std::move(it->second);
    m_preparing.erase(it);
    if (p->thread.joinable()) p->thread.join();  // it has posted us and returned
    Job& job = *p->job;
    Prepared& prep = p->prepared;
    job.mark("prepared");

    // What was snapshotted is recorded even when the job never starts.
    if (auto r = m_cfg.store->put_blobs(prep.new_blobs); !r)
        prep.error = r.error().wrap("registering the snapshot of an input");
    p->ending->recording["inputs"] = prep.list;
    p->ending->recording["stdin"] = nullptr;
    p->ending->blobs = prep.blobs;
    p->ending->stage = prep.stage;
    (void)m_cfg.store->set_recording(job.id, p->ending->recording, p->ending->blobs);
    job.rec.recording = p->ending->recording;

    auto on_finished = job.on_finished;
    if (!p->stop_why.empty()) {
        end_unstarted(job, p->ending.get(), "stopped", p->stop_why + " (while its inputs were being prepared)");
    } else if (prep.error) {
        fail_setup(job, p->ending.get(), *prep.error);
    } else if (auto err = launch(p->job, p->ending, p->req, prep)) {
        fail_setup(*p->job, p->ending.get(), *err);
    } else {
        return;  // running; the relay and the job own the rest
    }
    if (on_finished) on_finished(p->job->rec);
    maybe_all_done();
}

std::optional<Error> Supervisor::launch(std::unique_ptr<Job>& job_ptr, std::unique_ptr<Ending>& ending, JobRequest& req,
                                        Prepared& prep) {
    Job* job = job_ptr.get();
    auto pol = job->policy;
    Result<std::string> exe = std::string();
    if (req.rootfs) {
        // The program lives in the client's root, which moatd cannot see:
        // a path is taken as named (relative to the job's cwd there), a bare
        // name is looked up inside by the tier.
        if (job->tier->kind() != policy::Tier::Container)
            return Error::msg(std::string("a root filesystem from the client (moat-runtime, moatctl run --rootfs) needs "
                                          "the container tier; this job's tier is ") +
                              policy::tier_name(job->tier->kind()));
        const std::string& name = req.argv[0];
        if (name.empty()) return Error::msg("empty program name");
        exe = name.find('/') == std::string::npos || name[0] == '/' ? name
              : (job->rec.cwd == "/" ? "/" : job->rec.cwd + "/") + name;
    } else {
        exe = resolve_program(req.argv[0], job->rec.env, job->rec.cwd);
    }
    if (!exe) return exe.error();
    job->mark("resolved");

    LaunchInput in;
    in.job_id = job->id;
    in.cfg = &m_cfg;
    in.policy = pol.get();
    in.exe = *exe;
    in.argv = &req.argv;
    in.env = &job->rec.env;
    in.cwd = job->rec.cwd;
    in.inputs = &req.inputs;
    in.input_fds = &prep.fds;
    in.input_st = &prep.st;
    in.prepared = prep.tier_data;
    in.rootfs = req.rootfs.get();

    // Learn mode watches the paths the job looks up (container tier: in its
    // mount namespace; seccomp tier: against Landlock's rules).
    const policy::Tier kind = job->tier->kind();
    if (job->rec.learn && (kind == policy::Tier::Container ||
                           (kind == policy::Tier::Seccomp && pol->filesystem.landlock != policy::LandlockMode::Off))) {
        PathLearner::View v;
        v.visible = pol->filesystem.read_only;
        v.visible.insert(v.visible.end(), pol->filesystem.read_write.begin(), pol->filesystem.read_write.end());
        for (const auto& input : req.inputs) v.visible.push_back(kind == policy::Tier::Container ? input.sandbox_path : input.host_path);
        if (kind == policy::Tier::Container) v.scratch = pol->filesystem.tmpfs;
        v.mount_namespace = kind == policy::Tier::Container;
        v.cwd = job->rec.cwd;
        v.private_dirs = m_cfg.private_dirs;
        job->learner = std::make_unique<PathLearner>(std::move(v));
    }

    // The tier checks the policy against itself and builds the filesystem view.
    auto plan = job->tier->plan(in);
    if (!plan) {
        if (job->learner && !job->learner->covered(*exe)) {
            // The program is not in the view: what it takes is learned now.
            job->learner->missing(*exe, "execve", true);
            record_learned_paths(*job);
        }
        return plan.error();
    }
    prep.fds.clear();  // granted (Landlock) or described (mount checks); not needed any more
    job->mark("planned");

    // The job's stdio: pipes whose other ends the relay owns.
    UniqueFd job_ends[3], our_ends[3];
    for (int i = 0; i < 3; ++i) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) return Error::sys("pipe2(stdio)", errno);
        // stdin: the job reads p[0]; stdout/stderr: the job writes p[1].
        job_ends[i].reset(i == 0 ? p[0] : p[1]);
        our_ends[i].reset(i == 0 ? p[1] : p[0]);
    }

    compiler::CompileOptions copt;
    if (job->learner) copt.watch = watched_path_syscalls();
    auto filter = m_filters.get(*pol, copt);
    if (!filter) return filter.error().wrap("compiling the seccomp filter");
    job->filter = *filter;
    job->mark("filter");

    auto uid = allocate_uid();
    if (!uid) return uid.error();
    job->uid = *uid;

    cgroup::Limits cl = job->tier->host_limits(*pol);
    auto cg = job_cgroup("job-" + std::to_string(job->id), cl, &job->cg_name_pending);
    if (!cg) return cg.error().wrap("creating the job cgroup");
    job->cg.emplace(std::move(*cg));
    job->mark("cgroup");

    in.uid = job->uid;
    in.root_uid = job->ids.root_uid;
    in.cgroup = &*job->cg;
    in.cgroup_slot = &job->cg;
    in.filter = job->filter.get();
    in.rlimits.file_size = pol->limits.file_size_bytes;
    in.rlimits.open_files = pol->limits.open_files;
    in.rlimits.stack = pol->limits.stack_bytes;
    in.rlimits.core = pol->limits.core_bytes;
    in.rlimits.cpu_seconds = pol->limits.cpu_time_ns / 1'000'000'000 + 2;  // per-process backstop
    for (int i = 0; i < 3; ++i) in.stdio[i] = job_ends[i].get();
    in.learn = job->rec.learn;

    const std::vector<std::string> cg_dirs = job->cg->dirs();
    auto run = job->tier->launch(**plan, in);
    if (!run) return run.error();
    // A tier that gave the job another group (a warm guest's, which holds its
    // QEMU since boot) destroyed the spare: that group keeps its own name.
    if (!job->cg || job->cg->dirs() != cg_dirs) job->cg_name_pending.clear();
    job->run = std::move(*run);
    job->take_inner_steps();
    job->mark("spawned");
    for (auto& fd : job_ends) fd.reset();  // the job holds them now

    job->rec.pid = job->run->pid();
    job->rec.uid = int(job->uid);
    // The vm tier stores its runtime below, now: its group gets its name first.
    if (job->tier->kind() == policy::Tier::Vm) settle_cgroup(*job);
    job->rec.cgroup = job->cg->describe();
    // A synchronous write (~0.1 ms here) the job's start need not wait for:
    // the seccomp and container tiers' first execve waits for moatd's answer,
    // and the row is written right after that answer (judge), while the
    // program starts. The vm tier's start has no such point: written below.
    if (job->tier->kind() != policy::Tier::Vm) job->runtime_unstored = true;
    // Set-up warnings come before the job's start in its events.
    const std::vector<std::string> setup_notes = job->run->setup_notes();
    for (const auto& note : setup_notes)
        emit(job->id, store::EventKind::Lifecycle, {{"event", "setup-warning"}, {"detail", note}});
    // Watched from now, and what already waits answered now: in the seccomp
    // and container tiers that is the job's first execve, stopped until
    // moatd holds its listener. The relay and the job's info below need not
    // come first: the job's output waits in its pipes, and its info is
    // stored after this answer (a posted task). It waited ~0.15 ms for them
    // on every start here (issue 15).
    Job* raw = job;
    raw->events = std::make_unique<Events>(this, raw);
    raw->run->watch(*m_cfg.loop, *raw->events);
    if (raw->run->clock_at_launch()) start_wall_clock(*raw);
    add_to_sampler(*raw);
    raw->last_sample_mono = now_monotonic_ns();
    m_jobs.emplace(raw->id, std::move(job_ptr));
    // The spare group's rename to job-<id>: first of the job's posted work,
    // while the program starts (posted before the answer below posts the
    // runtime row and the end sample's opens, which then find it renamed).
    if (!raw->cg_name_pending.empty())
        m_cfg.loop->post([this, alive_w = std::weak_ptr<std::atomic<bool>>(m_alive), id = raw->id] {
            auto a = alive_w.lock();
            if (!a || !*a) return;
            if (auto it = m_jobs.find(id); it != m_jobs.end()) settle_cgroup(*it->second);
        });
    raw->run->answer_waiting();

    // The relay: client stdin (or the recorded one) -> job -> client, recording on the way.
    {
        RelaySpec rs;
        rs.job_in = std::move(our_ends[0]);
        rs.job_out = std::move(our_ends[1]);
        rs.job_err = std::move(our_ends[2]);
        rs.src_in = std::move(req.stdio[0]);
        rs.dst_out = std::move(req.stdio[1]);
        rs.dst_err = std::move(req.stdio[2]);
        rs.record_in_max = m_cfg.record_stdin_max;
        rs.tail_max = m_cfg.record_output_max;
        // Watchers of the job see its output as it is relayed (bounded tail).
        // The relay thread only posts to the loop, and at most once until the
        // loop has run it: a chatty job costs the loop one wake-up per pass.
        rs.live = std::make_shared<LiveOutput>();
        {
            auto pending = std::make_shared<std::atomic<bool>>(false);
            std::weak_ptr<std::atomic<bool>> alive_w = m_alive;
            const int64_t jid = job->id;
            rs.live->on_append = [this, pending, alive_w, jid] {
                if (pending->exchange(true)) return;
                auto a = alive_w.lock();
                if (!a || !*a) return;
                m_cfg.loop->post([this, pending, alive_w, jid] {
                    pending->store(false);
                    auto a2 = alive_w.lock();
                    if (a2 && *a2 && m_output_hook) m_output_hook(jid);
                });
            };
        }
        ending->live = rs.live;
        if (m_cfg.artifacts && rs.src_in) {
            // The temp file is made by the relay when the first byte comes:
            // most jobs' stdin is empty, and creating, reading back and
            // unlinking a file was ~0.1 ms of each start and end (issue 15).
            const store::Artifacts* artifacts = m_cfg.artifacts;
            rs.make_record_in = [artifacts] { return artifacts->make_temp(); };
            ending->stdin_recorded = true;
        }
        const int64_t id = job->id;
        std::weak_ptr<std::atomic<bool>> alive = m_alive;
        ending->relay = std::make_unique<Relay>(std::move(rs), [this, id, alive](RelayResult r) {
            auto a = alive.lock();
            if (!a || !*a) return;
            m_cfg.loop->post([this, id, alive, r = std::move(r)]() mutable {
                auto a2 = alive.lock();
                if (a2 && *a2) relay_done(id, std::move(r));
            });
        });
        m_ending.emplace(job->id, std::move(ending));
    }

    nlohmann::json info = {
        {"cgroup_version", job->cg->version() == cgroup::Version::V1 ? "v1" : "v2"},
        {"program", *exe},
    };
    job->tier->describe(**plan, in, *job->run, info);
    if (!info.contains("notes")) info["notes"] = nlohmann::json::array();
    for (const auto& note : setup_notes) info["notes"].push_back(note);
    job->mark("relay");
    info["startup_us"] = job->steps_json();
    // What the tier said while it was watched already (a warm guest's boot)
    // stays: the job is watched before its info is made (above).
    if (job->rec.info.is_object()) info.update(job->rec.info);
    job->rec.info = info;
    job->info_made = true;
    if (info.contains("accelerator") && info["accelerator"].is_string()) job->rec.accelerator = info["accelerator"];
    if (job->tier->kind() == policy::Tier::Vm)
        (void)m_cfg.store->update_job_runtime(job->id, job->rec.pid, job->rec.uid, job->rec.cgroup, info);
    return std::nullopt;
}

Result<UniqueFd> open_as_client(const ClientCreds& who, const std::string& path) {
    int fd = -1, err = 0;
    std::string what;
    // A short-lived thread: its credentials are changed alone (ThreadCreds).
    std::thread t([&] {
        ThreadCreds creds;
        if (auto r = creds.take(who); !r) {
            err = r.error().sys_errno;
            what = "taking the client's identity";
            return;
        }
        UniqueFd p(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!p) {
            err = errno;
            what = "open";
            return;
        }
        struct stat st{};
        if (fstat(p.get(), &st) < 0) {
            err = errno;
            what = "fstat";
            return;
        }
        if (S_ISLNK(st.st_mode)) {
            err = ELOOP;
            what = "the last component is a symlink, which is never followed; name the file itself";
            return;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
            err = EINVAL;
            what = "only regular files and directories can be inputs";
            return;
        }
        // Reopened through the O_PATH fd: the same inode, checked for read access now.
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/thread-self/fd/%d", p.get());
        fd = ::open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
        if (fd < 0) {
            err = errno;
            what = "open";
        }
    });
    t.join();
    if (fd < 0)
        return fail(path + ": " + what + ": " + strerror(err) + " (opened as uid " + std::to_string(who.uid) + ")");
    return UniqueFd(fd);
}

Result<TreeWalk> walk_tree_as_client(int dirfd, const ClientCreds& who, const TreeLimits& limits, const FileSink& sink,
                                     const std::atomic<bool>& cancel) {
    ThreadCreds creds;
    if (auto r = creds.take(who); !r) return std::unexpected(r.error());
    // The file is open already (with the client's rights); what the sink does
    // with it, like writing moatd's 0700 blob store, needs moatd's.
    FileSink as_moatd = [&](int fd, uint64_t max) -> Result<FileDigest> {
        if (auto r = creds.back(); !r) return std::unexpected(r.error());
        auto d = sink(fd, max);
        if (auto r = creds.take(who); !r) return std::unexpected(r.error());
        return d;
    };
    auto w = walk_tree(dirfd, limits, as_moatd, cancel);
    if (auto r = creds.back(); !r) return std::unexpected(r.error());
    return w;
}

namespace {

// The blobs a job's recording refers to, and those stored now (registered in
// the store even when the recording does not keep them: an unreferenced blob
// goes at the next expiry).
struct BlobLists {
    std::vector<std::string>& referenced;
    std::vector<std::pair<std::string, uint64_t>>& stored;
};

// A file input: its bytes, read through the client's fd. An error only when cancelled.
Result<void> snapshot_file(const Config& cfg, int fd, const struct stat& st, const std::atomic<bool>& cancel,
                           nlohmann::json& rec, BlobLists blobs) {
    if (uint64_t(st.st_size) > cfg.record_input_max) {
        rec["note"] = "not snapshotted: " + format_size(uint64_t(st.st_size)) + " is over the snapshot limit of " +
                      format_size(cfg.record_input_max) + " (moatd --record-input-max)";
        return {};
    }
    auto b = cfg.artifacts->put_fd(fd, cfg.record_input_max, &cancel);
    if (!b) {
        if (cancel) return fail("cancelled");
        rec["note"] = "not snapshotted: " + b.error().message;
        return {};
    }
    rec["sha256"] = b->sha256;
    rec["bytes"] = b->bytes;
    if (b->truncated) rec["note"] = "the file grew while it was snapshotted; the first bytes are kept";
    blobs.referenced.push_back(b->sha256);
    blobs.stored.emplace_back(b->sha256, b->bytes);
    return {};
}

// What a directory snapshot left out, or "".
std::string tree_note(const TreeWalk& w) {
    auto listed = [](const std::vector<std::string>& v) {
        std::string s;
        for (size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? "; " : "") + v[i];
        return v.size() > 5 ? s + "; and " + std::to_string(v.size() - 5) + " more" : s;
    };
    std::string note;
    if (!w.skipped.empty()) note = "not recorded, the job saw them but a replay will not: " + listed(w.skipped);
    if (!w.grown.empty())
        note += (note.empty() ? "" : ". ") + std::string("grew while snapshotted (the first bytes are kept): ") +
                listed(w.grown);
    return note;
}

// A directory input: its tree read as the client (walk_tree_as_client), each
// file a blob, the manifest a blob whose sha256 stands for the tree. An error
// only when cancelled.
Result<void> snapshot_tree(const Config& cfg, int dirfd, const ClientCreds& who, const std::atomic<bool>& cancel,
                           nlohmann::json& rec, BlobLists blobs) {
    std::vector<std::string> files;
    FileSink store_file = [&](int fd, uint64_t max) -> Result<FileDigest> {
        auto b = cfg.artifacts->put_fd(fd, max, &cancel);
        if (!b) return std::unexpected(b.error());
        blobs.stored.emplace_back(b->sha256, b->bytes);
        files.push_back(b->sha256);
        return FileDigest{b->sha256, b->bytes, b->truncated};
    };
    auto w = walk_tree_as_client(dirfd, who, {cfg.record_input_max, cfg.record_input_entries}, store_file, cancel);
    if (cancel) return fail("cancelled");
    if (!w) {
        rec["note"] = "not snapshotted: " + w.error().message;
        return {};
    }
    auto m = cfg.artifacts->put_bytes(encode_manifest(w->manifest));
    if (!m) {
        rec["note"] = "not snapshotted: " + m.error().wrap("storing its manifest").message;
        return {};
    }
    blobs.stored.emplace_back(m->sha256, m->bytes);
    blobs.referenced.push_back(m->sha256);
    blobs.referenced.insert(blobs.referenced.end(), files.begin(), files.end());
    rec["sha256"] = m->sha256;
    rec["bytes"] = w->bytes;
    rec["entries"] = w->manifest.entries.size();
    if (std::string note = tree_note(*w); !note.empty()) rec["note"] = note;
    return {};
}

Result<std::string> read_blob(const Config& cfg, const std::string& sha256, uint64_t max) {
    UniqueFd fd(::open(cfg.artifacts->path(sha256).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st{};
    if (!fd || fstat(fd.get(), &st) < 0) return fail_sys("open blob " + sha256, errno);
    if (uint64_t(st.st_size) > max) return fail("blob " + sha256 + " is larger than " + format_size(max));
    std::string text(size_t(st.st_size), '\0');
    if (pread(fd.get(), text.data(), text.size(), 0) != ssize_t(text.size())) return fail_sys("read blob " + sha256, errno);
    return text;
}

// Replay of a directory input: its manifest, and every file blob it names
// (referenced by the replay's recording too, so eviction keeps them with it).
Result<void> load_tree(const Config& cfg, InputFile& in, std::vector<std::string>& referenced) {
    auto text = read_blob(cfg, in.snapshot, kMaxManifestBytes);
    if (!text) return std::unexpected(text.error());
    auto m = parse_manifest(*text);
    if (!m) return std::unexpected(m.error().wrap("the recorded manifest"));
    for (const TreeEntry& e : m->entries) {
        if (e.type != TreeEntry::Type::File) continue;
        if (!cfg.artifacts->exists(e.sha256)) return fail("the snapshot of " + e.path + " is gone from the artifact store");
        referenced.push_back(e.sha256);
    }
    in.tree = std::make_shared<const TreeManifest>(std::move(*m));
    return {};
}

// The input the client passed, or the path it named opened with its rights.
Result<UniqueFd> client_input(InputFile& in, const ClientCreds& who, nlohmann::json& rec) {
    rec["client_uid"] = who.uid;
    if (in.fd) {
        rec["opened_by"] = "client";
        return std::move(in.fd);
    }
    auto f = open_as_client(who, in.host_path);
    if (!f) return std::unexpected(f.error().wrap("input " + in.host_path));
    rec["opened_by"] = "moatd as uid " + std::to_string(who.uid) + " (the client's credentials)";
    return f;
}

}  // namespace

void Supervisor::prepare_inputs(const Config& cfg, int64_t job_id, std::vector<InputFile>& inputs, const Tier& tier,
                                const Identities& ids, const ClientCreds& who, const std::atomic<bool>& cancel,
                                Prepared& out) {
    auto failed = [&](Error e) { out.error = std::move(e); };
    BlobLists blobs{out.blobs, out.new_blobs};
    for (size_t k = 0; k < inputs.size(); ++k) {
        if (cancel) return failed(Error::msg("cancelled"));
        InputFile& in = inputs[k];
        nlohmann::json rec = {{"host", in.host_path}, {"sandbox", in.sandbox_path}, {"sha256", nullptr}, {"bytes", 0}};
        UniqueFd fd;
        struct stat st{};
        if (!in.snapshot.empty()) {
            // Replay: the job must see exactly what the original saw.
            if (!cfg.artifacts || !store::valid_sha256(in.snapshot) || !cfg.artifacts->exists(in.snapshot))
                return failed(Error::msg("the recorded snapshot of input " + in.host_path +
                                         " is gone from the artifact store"));
            if (in.directory)
                if (auto r = load_tree(cfg, in, out.blobs); !r) return failed(r.error().wrap("input " + in.host_path));
            const std::string blob = cfg.artifacts->path(in.snapshot);
            if (auto r = tier.restore_input(cfg, job_id, k, in, blob, ids, who, cancel, out.stage, fd, st, rec); !r)
                return failed(r.error());
            rec["sha256"] = in.snapshot;
            rec["kind"] = in.directory ? "directory" : "file";
            out.blobs.push_back(in.snapshot);
        } else {
            auto f = client_input(in, who, rec);
            if (!f) return failed(f.error());
            fd = std::move(*f);
            if (fstat(fd.get(), &st) < 0) return failed(Error::sys("fstat(input " + in.host_path + ")", errno));
            if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return failed(Error::msg("input " + in.host_path +
                                         ": the client passed something that is neither a regular file nor a "
                                         "directory"));
            rec["kind"] = S_ISDIR(st.st_mode) ? "directory" : "file";
            Result<void> r;
            if (!cfg.artifacts) rec["note"] = "not snapshotted: moatd keeps no recordings";
            else if (S_ISDIR(st.st_mode)) r = snapshot_tree(cfg, fd.get(), who, cancel, rec, blobs);
            else r = snapshot_file(cfg, fd.get(), st, cancel, rec, blobs);
            if (!r) return failed(r.error());
        }
        out.list.push_back(std::move(rec));
        out.fds.push_back(std::move(fd));
        out.st.push_back(st);
    }
}

void Supervisor::relay_done(int64_t job_id, RelayResult res) {
    auto it = m_ending.find(job_id);
    if (it == m_ending.end()) return;
    Ending& e = *it->second;
    e.relay_done = true;
    if (!res.in_temp.empty()) e.stdin_temp = res.in_temp;
    e.result = std::move(res);
    if (e.job_done) complete(job_id);
}

void Supervisor::record_finish(const store::JobRecord& r) {
    if (auto res = m_cfg.store->finish_job(r); !res) {
        // Never leave a job that ended looking "running" (a restart would call
        // it supervisor-lost): keep the record and retry on every tick until
        // the store takes it (e.g. once a full disk has room again).
        moat::logf(moat::LogLevel::Warning, "recording the end of job %lld failed (will retry): %s\n", (long long)r.id,
                   res.error().message.c_str());
        m_unrecorded.push_back(r);
    }
}

void Supervisor::complete(int64_t job_id) {
    auto it = m_ending.find(job_id);
    if (it == m_ending.end()) return;
    std::unique_ptr<Ending> e = std::move(it->second);
    m_ending.erase(it);
    if (e->drain_timer) m_cfg.loop->cancel_timer(e->drain_timer);
    if (e->finish_timer) m_cfg.loop->cancel_timer(e->finish_timer);
    const bool finish_in_commit = e->finish_pending;
    e->relay.reset();  // its thread has returned (or is returning) from `done`
    const RelayResult& r = e->result;
    std::vector<std::pair<std::string, uint64_t>> new_blobs;  // stored with the recording, in its commit
    const bool had_bytes = !e->stdin_temp.empty();
    if (had_bytes || (e->stdin_recorded && r.in_recorded == 0 && !r.in_record_failed)) {
        // What the relay recorded, or an empty stdin: the empty blob (made
        // once, again if it was expired), with no temp file for it.
        static const std::string kEmpty = sha256_hex("");
        Result<store::BlobInfo> b = had_bytes ? m_cfg.artifacts->adopt(e->stdin_temp)
                                    : m_cfg.artifacts->exists(kEmpty) ? Result<store::BlobInfo>(store::BlobInfo{kEmpty, 0, false})
                                                                      : m_cfg.artifacts->put_bytes("");
        nlohmann::json in = nullptr;
        if (b) {
            in = {{"sha256", b->sha256}, {"bytes", b->bytes}, {"truncated", r.in_truncated},
                  {"complete", r.in_recorded_complete}};
            e->blobs.push_back(b->sha256);
            new_blobs.emplace_back(b->sha256, b->bytes);
        } else {
            in = {{"sha256", nullptr}, {"note", "not recorded: " + b.error().message}};
        }
        e->recording["stdin"] = in;
    } else if (e->stdin_recorded && r.in_recorded == 0) {
        e->recording["stdin"] = {{"sha256", nullptr}, {"bytes", r.in_bytes}, {"note", "not recorded: " + r.error}};
    } else if (!e->recording.contains("stdin")) {
        e->recording["stdin"] = {{"sha256", nullptr}, {"bytes", 0}, {"note", "the job had no stdin"}};
    }
    e->recording["stdout_bytes"] = r.out.total_bytes;
    e->recording["stderr_bytes"] = r.err.total_bytes;
    if (!r.error.empty()) e->recording["warning"] = r.error;
    if (r.cancelled) e->recording["output_cut"] = "the client stopped reading; output was recorded but not all delivered";
    if (!e->recording.contains("inputs")) e->recording["inputs"] = nlohmann::json::array();
    // Output tails and recording in one commit (with the job's finish when
    // finish() left it here): the client's answer waits for it.
    if (auto s = m_cfg.store->put_outputs_and_recording(job_id, r.out, r.err, e->recording, e->blobs, new_blobs,
                                                        finish_in_commit ? &e->rec : nullptr);
        !s) {
        moat::logf(moat::LogLevel::Warning, "job %lld: output and recording not saved: %s\n", (long long)job_id,
                   s.error().message.c_str());
        // The finish must not go with them: written alone (or kept for retry).
        if (finish_in_commit) record_finish(e->rec);
    }
    if (!e->stage.empty()) remove_tree(e->stage);
    e->rec.recording = e->recording;  // the client's `finished` answer says what was not snapshotted
    if (e->on_finished) e->on_finished(e->rec);
    maybe_all_done();
}

void Supervisor::store_runtime(Job& job) {
    settle_cgroup(job);  // a job that ended before its posted rename ran: the row names the group as it stays
    if (!job.runtime_unstored) return;
    job.runtime_unstored = false;
    (void)m_cfg.store->update_job_runtime(job.id, job.rec.pid, job.rec.uid, job.rec.cgroup, job.rec.info);
}

Answer Supervisor::judge(Job& job, const Notice& n) {
    if (job.runtime_unstored && !job.runtime_posted) {
        job.runtime_posted = true;
        // The job's first syscall (its first execve): written after this
        // answer, while the program starts (launch). Still the job's if it
        // ended meanwhile: finish() writes it then.
        m_cfg.loop->post([this, alive_w = std::weak_ptr<std::atomic<bool>>(m_alive), id = job.id] {
            auto a = alive_w.lock();
            if (!a || !*a) return;
            if (auto it = m_jobs.find(id); it != m_jobs.end()) store_runtime(*it->second);
        });
    }
    const int nr = n.nr;
    const uint32_t arch = n.arch;
    const pid_t tid = n.pid;
    const uint64_t* args = n.args;
    const std::optional<std::string>& decoded = n.decoded;
    const std::optional<std::string>& module = n.module;
    const bool modules_off = n.modules_off;
    const bool native = arch == AUDIT_ARCH_X86_64 && !(nr & 0x40000000);
    const std::string arch_str = arch == AUDIT_ARCH_X86_64 && (nr & 0x40000000) ? "x32" : arch_name(arch);
    std::string name;
    if (arch_str == "x86_64") name = native_syscall_name(nr);
    else if (arch_str == "x32") {
        const char* nm = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X32, nr);
        name = nm ? nm : "";
        free(const_cast<char*>(nm));
    } else if (arch_str == "i386") {
        const char* nm = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86, nr);
        name = nm ? nm : "";
        free(const_cast<char*>(nm));
    }
    if (name.empty()) name = "syscall_" + std::to_string(nr);

    if (job.learner && native) job.learner->observe(tid, name, args);
    const bool is_exec = native && (name == "execve" || name == "execveat");
    if (is_exec && job.policy->seccomp.allowed.count(name)) {
        // The policy allows exec unconditionally, so letting the kernel carry on
        // is not a decision about (racy) pointer contents.
        job.execs = true;
        if (!job.started) {
            job.started = true;
            job.mark("exec");
            emit(job.id, store::EventKind::Lifecycle, {{"event", "started"}, {"pid", tid}});
            // While the program starts the loop has nothing to do for this
            // job: the cgroup files of its end sample are opened now (a full
            // sample keeps them open), not after it exited, where a short
            // job's answer waited ~70 us for these opens.
            // The spare cgroups are made again now too.
            if (job.cg)
                m_cfg.loop->post([this, alive_w = std::weak_ptr<std::atomic<bool>>(m_alive), id = job.id] {
                    auto a = alive_w.lock();
                    if (!a || !*a) return;
                    if (auto it = m_jobs.find(id); it != m_jobs.end() && it->second->cg)
                        (void)it->second->cg->sample(cgroup::JobCgroup::Detail::Full);
                    refill_spare_cgroups();
                });
        }
        // An exec event is a row the job can make at will: it takes from the
        // event budget like a denial row, and past it is only counted.
        if (take_budget(job, kRowOverhead + (decoded ? decoded->size() : 0)))
            emit(job.id, store::EventKind::Lifecycle,
                 {{"event", "exec"}, {"pid", tid}, {"path", decoded ? nlohmann::json(*decoded) : nlohmann::json(nullptr)}});
        else
            ++job.execs_unstored;
        return {Answer::Kind::Continue, 0};
    }

    compiler::Verdict v = job.filter->decide(nr, arch, args);
    if (!native) v.rule = "abi";
    using Kind = policy::Action::Kind;
    // Sent here only to be watched (learn mode), and the policy allows it.
    if (native && v.action.kind == Kind::Allow && v.rule == "watch") return {Answer::Kind::Continue, 0};
    // What learn mode lets run: native calls the policy denies by default. An
    // operator's explicit deny rule stays enforced (the replay then does what
    // production did) unless the replay was asked to go through them.
    const bool by_rule = v.rule.starts_with("seccomp.rule[") && v.action.kind != Kind::Log;
    // New namespaces are never let through, in learn mode either: a job in a
    // user and mount namespace of its own could show the learner another view.
    // clone3 reaches us only when its flags ask for namespaces (the tier
    // answers glibc's ordinary probes ENOSYS itself), and it never runs.
    const bool is_clone3 = native && name == "clone3";
    const bool namespaces = native && (name == "unshare" || name == "setns" || is_clone3 ||
                                       (name == "clone" && (args[0] & compiler::kCloneNamespaceFlags)));
    const bool learn_continues = job.rec.learn && native && !namespaces && (!by_rule || job.learn_through_rules);

    // Record first (coalesced), then answer. Identical denials share a key
    // built from the raw values; the JSON row is built only for a new key, so
    // a storm of repeats costs a string and a hash lookup, not a JSON dump.
    ++job.denials;
    if (auto d = job.denial_slots.find(name); d != job.denial_slots.end()) {
        ++*d->second;
    } else if (job.denial_slots.size() < Job::kMaxSyscallKeys) {
        // Numbers libseccomp has no name for (syscall_N: any N a job picks)
        // share one series per policy, so jobs cannot fill the page's bound.
        static const std::string kUnnamed = "_unnamed";
        uint64_t& slot = denial_slot(m_metrics, job.policy->name, name.starts_with("syscall_") ? kUnnamed : name);
        ++slot;
        job.denial_slots.emplace(name, &slot);
    } else {
        // A job past 512 syscall names (foreign-ABI syscall_N) makes no more
        // series: it must not use up the page's bound for every other job.
        auto it = m_metrics.denials.find({job.policy->name, name});
        ++(it != m_metrics.denials.end() ? it->second : denial_slot(m_metrics, "_other", "_other"));
    }
    std::string key;
    key.reserve(160 + (decoded ? decoded->size() : 0) + (module ? module->size() : 0));
    // tid, nr, arch, the six args and ip, each ended by ':' (to_chars, not
    // snprintf: this runs once per denial).
    put_hex(key, uint64_t(uint32_t(tid)));
    put_hex(key, uint64_t(uint32_t(nr)));
    put_hex(key, arch);
    for (int i = 0; i < 6; ++i) put_hex(key, args[i]);
    put_hex(key, n.ip);
    key += v.rule;
    key += '\0';
    key += v.action.str();
    key += '\0';
    if (module) key += *module;
    else if (modules_off) key += '\1';  // not looked up, as opposed to found in no mapping
    key += '\0';
    if (decoded) key += *decoded;
    auto it = job.pending.find(key);
    // The aggregate key: what stays exact past the budget.
    auto agg_key = [&] { return std::to_string(nr & ~0x40000000) + ':' + arch_str + '\0' + v.action.str() + '\0' + v.rule; };
    if (it != job.pending.end()) {
        ++it->second.count;
    } else if (std::string ak; job.over_budget && job.aggregate.count(ak = agg_key())) {
        // Past the budget, a denial of a known kind costs a lookup and an add.
        fold(job, ak, nullptr, 1, now_realtime_ns());
    } else {
        store::DenialFields fields;
        fields.pid = tid;
        fields.syscall = name;
        fields.nr = nr & ~0x40000000;
        fields.arch = arch_str;
        std::copy(args, args + 6, fields.args);
        fields.action = v.action.str();
        fields.rule = v.rule;
        fields.ip = n.ip;
        fields.module = module;
        fields.decoded = decoded;
        if (!native) fields.reason = "foreign ABI: only native x86_64 syscalls are judged by the allowlist";
        if (job.rec.learn) fields.enforced = !learn_continues;
        if (modules_off) fields.module_note = "not resolved: the job used up its share of moatd's time (limit supervisor-time)";
        const uint64_t bytes = kRowOverhead + key.size();
        if (!take_budget(job, bytes)) {
            fold(job, agg_key(), &fields, 1, now_realtime_ns());
        } else {
            if (job.pending.empty()) job.oldest_pending_mono = now_monotonic_ns();
            job.pending.emplace(std::move(key), Job::Pending{now_realtime_ns(), 1, std::move(fields), bytes});
            job.pending_bytes += bytes;
            m_pending_bytes += bytes;
            if (job.pending.size() >= kMaxPendingKeys || m_pending_bytes >= kMaxPendingBytes) flush_denials(job);
        }
    }

    if (learn_continues) {
        // Learn mode (replay --learn): recorded above, then let it run. Foreign
        // ABIs are never learned (a policy cannot allow them): refused below.
        if (is_exec) job.execs = true;
        return {Answer::Kind::Continue, 0};
    }
    if (job.rec.learn && !native) return {Answer::Kind::Fail, EPERM};
    switch (v.action.kind) {
        case Kind::Allow:  // unreachable for allow-rules (the filter allows them); keep safe
        case Kind::Log:
            if (!native) return {Answer::Kind::Fail, EPERM};
            // Recorded, but clone3 is answered ENOSYS whatever lets calls run
            // (docs/policy.md, "clone3"): glibc falls back to clone.
            if (is_clone3) return {Answer::Kind::Fail, ENOSYS};
            return {Answer::Kind::Continue, 0};
        case Kind::Errno:
            return {Answer::Kind::Fail, v.action.errno_value};
        case Kind::Trap:
            return {Answer::Kind::Trap, ENOSYS};
        case Kind::KillProcess:
        case Kind::KillThread:
            // Never answered: the task dies with the notification pending, so the
            // syscall can never run.
            kill_job(job, "seccomp",
                     name + " denied by " + v.rule + " (" + v.action.str() + ")" +
                         (decoded ? " on " + *decoded : std::string()));
            return {Answer::Kind::Kill, 0};
    }
    return {Answer::Kind::Fail, EPERM};
}

void Supervisor::flush_denials(Job& job) {
    // Oldest first, so the store's order (by id) is the order they happened in.
    std::vector<Job::Pending*> rows;
    rows.reserve(job.pending.size());
    for (auto& [key, p] : job.pending) rows.push_back(&p);
    std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->first_ns < b->first_ns; });
    for (auto* p : rows) {
        store::Event ev;
        ev.job = job.id;
        ev.time_ns = p->first_ns;
        ev.kind = store::EventKind::Denial;
        ev.count = p->count;
        ev.denial = std::make_shared<const store::DenialFields>(std::move(p->fields));
        if (m_cfg.store->offer(ev)) continue;
        // The store's queue holds this job's fair share (the writer is behind
        // this job's flood): the row is not stored one by one but counted in
        // the job's aggregate rows, so other jobs' events keep their room and
        // Σcount stays exact. The budget it took is given back.
        job.budget_rows -= 1;
        job.budget_bytes -= std::min(job.budget_bytes, p->bytes);
        if (!job.queue_refused) {
            job.queue_refused = true;
            emit(job.id, store::EventKind::Limit,
                 {{"limit", "event-queue-share"},
                  {"detail", "the store's event queue held this job's share of it: denials that did not fit are "
                             "counted in aggregate rows (\"aggregated\": true) instead of stored one by one"}});
        }
        const store::DenialFields& f = *ev.denial;
        std::string ak = std::to_string(f.nr) + ':' + f.arch + '\0' + f.action + '\0' + f.rule;
        fold(job, ak, &f, ev.count, ev.time_ns);
    }
    job.pending.clear();
    m_pending_bytes -= std::min(m_pending_bytes, job.pending_bytes);
    job.pending_bytes = 0;
}

bool Supervisor::take_budget(Job& job, uint64_t bytes) {
    const auto& mon = job.policy->monitor;
    if (!job.over_budget && job.budget_rows + 1 <= mon.max_events && job.budget_bytes + bytes <= mon.max_event_bytes) {
        ++job.budget_rows;
        job.budget_bytes += bytes;
        return true;
    }
    if (!job.over_budget) {
        job.over_budget = true;
        job.aggregate_flushed_mono = now_monotonic_ns();
        emit(job.id, store::EventKind::Limit,
             {{"limit", "events"},
              {"value", mon.max_events},
              {"value_bytes", mon.max_event_bytes},
              {"stored_rows", job.budget_rows},
              {"stored_bytes", job.budget_bytes},
              {"detail", "the job reached its event budget (monitor.max_events = " + std::to_string(mon.max_events) +
                             ", monitor.max_event_bytes = " + format_size(mon.max_event_bytes) +
                             "): further denials are counted exactly per syscall, action and rule in aggregate rows "
                             "(\"aggregated\": true), not stored one by one"}});
    }
    return false;
}

// Counts `count` denials under an aggregate key. `fields` (a denial row's)
// describe the key when it is new; null when the key is known. Their JSON is
// built only here, for a key new to the job (at most kMaxAggregateKeys + 1).
void Supervisor::fold(Job& job, const std::string& key, const store::DenialFields* fields, uint64_t count,
                      int64_t time_ns) {
    job.aggregated += count;
    auto it = job.aggregate.find(key);
    if (it == job.aggregate.end()) {
        static const std::string kOther = "(other)";
        if (job.aggregate.size() >= kMaxAggregateKeys) {
            it = job.aggregate.find(kOther);
            if (it == job.aggregate.end()) {
                nlohmann::json f = fields ? fields->to_json() : nlohmann::json::object();
                f["syscall"] = kOther;
                f["nr"] = -1;
                it = job.aggregate.emplace(kOther, Job::Aggregate{std::move(f), 0, 0}).first;
            }
        } else {
            // Null cannot happen: new keys come with fields.
            it = job.aggregate.emplace(key, Job::Aggregate{fields ? fields->to_json() : nlohmann::json::object(), 0, 0})
                     .first;
        }
        auto& f = it->second.fields;
        // Every row carries the contract's denial fields.
        for (const char* k : {"pid", "nr"})
            if (!f.contains(k)) f[k] = 0;
        for (const char* k : {"syscall", "arch", "action", "rule", "ip"})
            if (!f.contains(k)) f[k] = "";
        if (!f.contains("args")) f["args"] = {0, 0, 0, 0, 0, 0};
        f["aggregated"] = true;
        f["module"] = nullptr;
        f["decoded"] = nullptr;
        f.erase("module_note");
        f["note"] = "denials of this syscall, action and rule past the job's event budget or queue share, counted "
                    "exactly; pid, args and ip are those of the first of them";
    }
    if (it->second.count == 0) it->second.first_ns = time_ns;
    it->second.count += count;
}

void Supervisor::flush_aggregate(Job& job) {
    job.aggregate_flushed_mono = now_monotonic_ns();
    std::vector<Job::Aggregate*> rows;
    for (auto& [key, a] : job.aggregate)
        if (a.count) rows.push_back(&a);
    std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->first_ns < b->first_ns; });
    // append(), not offer(): at most kMaxAggregateKeys + 1 rows per
    // kAggregateFlushNs, and they carry the exact counts.
    for (auto* a : rows) {
        emit(job.id, store::EventKind::Denial, a->fields, a->count, a->first_ns);
        a->count = 0;
    }
}

void Supervisor::add_to_sampler(Job& job) {
    const uint64_t interval = job.policy->monitor.sample_interval_ns;
    auto it = m_samplers.find(interval);
    if (it == m_samplers.end()) {
        auto s = std::make_unique<Sampler>();
        const uint64_t period = sampler_period(interval);
        auto t = m_cfg.loop->add_timer(aligned_first(period), period, [this, interval] { run_sampler(interval); });
        if (!t) {
            moat::logf(moat::LogLevel::Warning, "job %lld: no sampling timer: %s\n", (long long)job.id,
                       t.error().message.c_str());
            return;  // its figures at the end are still read (finish)
        }
        s->timer = *t;
        it = m_samplers.emplace(interval, std::move(s)).first;
    }
    job.sample_slot = size_t(uint64_t(job.id) % kTimerSlots);
    it->second->slots[job.sample_slot].push_back(&job);
    ++it->second->jobs;
    job.sampled = true;
}

void Supervisor::remove_from_sampler(Job& job) {
    if (!job.sampled) return;
    job.sampled = false;
    auto it = m_samplers.find(job.policy->monitor.sample_interval_ns);
    if (it == m_samplers.end()) return;
    auto& slot = it->second->slots[job.sample_slot];
    slot.erase(std::remove(slot.begin(), slot.end(), &job), slot.end());
    if (--it->second->jobs == 0) {
        m_cfg.loop->cancel_timer(it->second->timer);
        m_samplers.erase(it);
    }
}

void Supervisor::run_sampler(uint64_t interval_ns) {
    auto it = m_samplers.find(interval_ns);
    if (it == m_samplers.end()) return;
    Sampler& sm = *it->second;
    const uint64_t period = sampler_period(interval_ns);
    const int64_t now = now_monotonic_ns();
    // Which expiries these are, from the clock (the timer expires on
    // multiples of period): when the loop was late for some (one timer read
    // reports several), their slots are sampled now, each once.
    const uint64_t turn = (uint64_t(now) + period / 2) / period;
    if (turn <= sm.last_turn) return;
    const uint64_t from = sm.last_turn ? std::max(sm.last_turn + 1, turn - (kTimerSlots - 1)) : turn;
    sm.last_turn = turn;
    // sample() neither starts nor ends a job, so the slots do not change
    // while they are walked.
    for (uint64_t t = from; t <= turn; ++t)
        for (Job* job : sm.slots[t % kTimerSlots])
            if (now + int64_t(interval_ns / 2) >= job->next_sample_mono) sample(*job, false);
}

void Supervisor::sample(Job& job, bool final) {
    if (!job.cg) return;
    const int64_t now = now_monotonic_ns();
    const int64_t interval = int64_t(job.policy->monitor.sample_interval_ns);
    // The peaks and event counts are the kernel's and only grow, and only
    // while the job runs: they are read at the end, and once a second when
    // the job used CPU since they were last read; the counters every sample.
    const bool beat = now - job.last_full_mono >= kSampleHeartbeatNs - int64_t(kTickNs) / 2;
    std::optional<uint64_t> cpu;
    bool full = final;
    if (!final) {
        // A job that has used no CPU since the last sample has not forked,
        // allocated or written: only its CPU counter is read, and less and
        // less often, until the once-a-second sample (docs/policy.md,
        // monitor.sample_interval).
        cpu = job.cg->cpu_ns();
        const bool idle = cpu && job.sampled_raw_cpu && *cpu == *job.sampled_raw_cpu;
        if (idle) {
            job.idle_backoff = std::min(job.idle_backoff * 2, kMaxIdleBackoff);
            job.next_sample_mono = std::min(now + int64_t(job.idle_backoff) * interval,
                                            (beat ? now : job.last_full_mono) + kSampleHeartbeatNs);
            if (!beat) {
                job.last_sample_mono = now;
                return;
            }
        } else {
            job.idle_backoff = 1;
            job.next_sample_mono = 0;
        }
        full = beat && !(cpu && job.full_raw_cpu && *cpu == *job.full_raw_cpu);
    }
    auto s = job.cg->sample(full ? cgroup::JobCgroup::Detail::Full : cgroup::JobCgroup::Detail::Counters, cpu);
    if (!s) return;
    if (beat || final) job.last_full_mono = now;
    if (full && s->has_cpu) job.full_raw_cpu = s->cpu_ns;
    if (s->has_cpu) job.sampled_raw_cpu = s->cpu_ns;
    if (job.run) *s = job.run->adjust_sample(*s);
    // CPU time counts from the job's clock (a VM's boot is not the job's).
    s->cpu_ns = job.wall_started ? s->cpu_ns - std::min(s->cpu_ns, job.cpu_at_clock) : 0;
    double cpu_pct = 0;
    if (now > job.last_sample_mono && s->cpu_ns >= job.last_cpu_ns)
        cpu_pct = 100.0 * double(s->cpu_ns - job.last_cpu_ns) / double(now - job.last_sample_mono);
    job.last_cpu_ns = s->cpu_ns;
    job.last_sample_mono = now;
    job.cpu_ns = s->cpu_ns;
    job.peak_mem = std::max({job.peak_mem, s->memory_bytes, s->memory_peak_bytes});
    // The kernel's own peaks where it keeps them (memory.peak / pids.peak on
    // v2, memory.max_usage_in_bytes / pids.peak on v1): exact, not sampled,
    // so a burst of forks between two ticks is counted (docs/store.md).
    job.peak_pids = std::max({job.peak_pids, s->pids, s->pids_peak});
    if (job.peak_pids == 0 && job.execs) job.peak_pids = 1;  // it ran, so at least one process existed
    if (s->pids_max_hits > job.pid_hits) {
        emit(job.id, store::EventKind::Limit,
             {{"limit", "pids"}, {"value", job.policy->limits.pids}, {"refused_forks", s->pids_max_hits - job.pid_hits}});
        job.pid_hits = s->pids_max_hits;
    }
    if (s->oom_kills > job.ooms) {
        emit(job.id, store::EventKind::Limit,
             {{"limit", "memory"}, {"value", job.policy->limits.memory_bytes}, {"oom_kills", s->oom_kills - job.ooms}});
        job.ooms = s->oom_kills;
    }
    // An idle job's samples say the same thing again: stored once a second.
    const cgroup::Sample& was = job.stored;
    const bool same = job.last_stored_mono && s->cpu_ns == was.cpu_ns && s->memory_bytes == was.memory_bytes &&
                      s->pids == was.pids && s->io_read_bytes == was.io_read_bytes &&
                      s->io_write_bytes == was.io_write_bytes;
    if (!final && (!same || now - job.last_stored_mono >= kSampleHeartbeatNs - int64_t(kTickNs) / 2)) {
        job.last_stored_mono = now;
        job.stored = *s;
        nlohmann::json fields = {{"cpu_time_ns", s->cpu_ns},
                                 {"cpu_percent", std::round(cpu_pct * 10) / 10},
                                 {"memory_bytes", s->memory_bytes},
                                 {"memory_limit_bytes", job.policy->limits.memory_bytes},
                                 {"pids", s->pids},
                                 {"pids_limit", job.policy->limits.pids},
                                 {"io_read_bytes", s->has_io ? nlohmann::json(s->io_read_bytes) : nlohmann::json(nullptr)},
                                 {"io_write_bytes", s->has_io ? nlohmann::json(s->io_write_bytes) : nlohmann::json(nullptr)}};
        job.last_sample = fields;  // a running job's "sample" in jobs/show answers and pushes
        emit(job.id, store::EventKind::Resource, std::move(fields));
    }
}

void Supervisor::kill_job(Job& job, const std::string& cause, const std::string& detail) {
    // A job that already ended on its own (its status known, its end not yet
    // handled) keeps that end as its cause; what is left of it is killed all
    // the same.
    if (job.kill_cause.empty() && !(job.run && job.run->ended())) {
        job.kill_cause = cause;
        job.kill_detail = detail;
    }
    job.killed = true;  // the CPU check stops here either way (no second limit event)
    if (job.run) job.run->kill();
    if (job.cg) (void)job.cg->kill_all(0);  // one pass; on_exit collects the rest
}

Result<void> Supervisor::stop(int64_t job_id, const std::string& why) {
    if (auto p = m_preparing.find(job_id); p != m_preparing.end()) {
        if (p->second->stop_why.empty()) p->second->stop_why = why;
        p->second->cancel = true;  // inputs_ready records it as stopped
        return {};
    }
    auto it = m_jobs.find(job_id);
    if (it == m_jobs.end()) return fail("job " + std::to_string(job_id) + " is not running");
    kill_job(*it->second, "stopped", why);
    return {};
}

Result<void> Supervisor::signal(int64_t job_id, int sig, const std::string& why) {
    if (sig == SIGKILL) return stop(job_id, "SIGKILL sent by " + why);
    if (!job_signal(sig))
        return fail("signal " + std::to_string(sig) +
                    " is not passed to jobs (only SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH)");
    if (m_preparing.count(job_id)) {
        // Nothing runs yet: a terminating signal ends it, the others have no one to reach.
        if (sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGWINCH)
            return fail("job " + std::to_string(job_id) + " has not started yet (its inputs are being prepared)");
        return stop(job_id, std::string("SIG") + sigabbrev_np(sig) + " sent by " + why + " before it started");
    }
    auto it = m_jobs.find(job_id);
    if (it == m_jobs.end() || !it->second->run) return fail("job " + std::to_string(job_id) + " is not running");
    Job& job = *it->second;
    if (auto r = job.run->signal(sig); !r) return r;
    job.sent_signal = sig;
    job.sent_why = why;
    emit(job.id, store::EventKind::Lifecycle,
         {{"event", "signal"}, {"signal", std::string("SIG") + sigabbrev_np(sig)}, {"detail", "sent by " + why}});
    return {};
}

void Supervisor::stop_all(const std::string& why, std::function<void()> on_all_done) {
    m_on_all_done = std::move(on_all_done);
    for (auto& [id, p] : m_preparing) {
        if (p->stop_why.empty()) p->stop_why = why;
        p->cancel = true;
    }
    if (m_jobs.empty() && m_preparing.empty()) {
        maybe_all_done();
        return;
    }
    for (auto& [id, job] : m_jobs) kill_job(*job, "stopped", why);
}

void Supervisor::record_learned_paths(Job& job) {
    if (!job.learner) return;
    if (!job.rec.info.is_object()) job.rec.info = nlohmann::json::object();
    job.rec.info["learn_paths"] = job.learner->report(job.client);  // stored by finish_job
}

void Supervisor::finish(Job& job) {
    job.take_inner_steps();
    job.mark("exited");
    // The job ends with its first process; anything it left behind goes too.
    // A container job's init that reported the job's end has emptied its pid
    // namespace and is exiting: SIGKILL makes sure (its namespace's
    // processes would go with it); it is reaped and its cgroup removed
    // after the client's answer (watch_exiting).
    UniqueFd exiting = job.run->take_exiting();
    if (exiting) (void)syscall(SYS_pidfd_send_signal, exiting.get(), SIGKILL, nullptr, 0);
    else if (job.cg) (void)job.cg->kill_all(2000);
    const Outcome out = job.run->outcome();
    // The tier's counts (clone3 answered ENOSYS...): stored with the job's
    // finish, not as a write of their own on the loop thread.
    if (auto extra = job.run->end_info(); extra.is_object() && !extra.empty()) {
        if (!job.rec.info.is_object()) job.rec.info = nlohmann::json::object();
        job.rec.info.update(extra);
    }
    sample(job, true);
    flush_denials(job);
    flush_aggregate(job);
    record_learned_paths(job);

    store_runtime(job);  // a job that ended before its first syscall reached moatd
    store::JobRecord& r = job.rec;
    r.exit_code = out.exit_code;
    r.signal = out.signal;
    r.state = "finished";
    r.ended_ns = now_realtime_ns();
    r.resources.cpu_time_ns = job.cpu_ns;
    r.resources.peak_memory_bytes = job.peak_mem;
    r.resources.peak_pids = job.peak_pids;
    r.denial_count = job.denials;
    const auto& lim = job.policy->limits;
    // What the sandbox did takes precedence; otherwise read the kernel's answer.
    if (!job.kill_cause.empty()) {
        r.cause = job.kill_cause;
        r.detail = job.kill_detail;
    } else if (out.cause) {
        r.cause = *out.cause;
        r.detail = out.detail;
    } else if (out.exec_failure) {
        r.cause = "setup-failed";
        r.detail = std::string(out.exec_failure->step) + "(\"" + out.exec_failure->detail + "\"): " +
                   errno_name(out.exec_failure->err) + " (" + strerror(out.exec_failure->err) + ")";
        r.exit_code.reset();
    } else if (r.exit_code) {
        r.cause = "exited";
        r.detail = "exit code " + std::to_string(*r.exit_code);
    } else if (r.signal) {
        int sig = *r.signal;
        if (sig == SIGKILL && job.ooms > 0) {
            r.cause = "memory";
            r.detail = "killed by the OOM killer inside the job cgroup (limits.memory = " + format_size(lim.memory_bytes) + ")";
        } else if (sig == SIGXFSZ) {
            r.cause = "file-size";
            r.detail = "SIGXFSZ: a write went past limits.file_size = " + format_size(lim.file_size_bytes);
        } else if (sig == SIGXCPU || (sig == SIGKILL && job.cpu_ns >= lim.cpu_time_ns)) {
            r.cause = "cpu-time";
            r.detail = "the per-process CPU backstop (RLIMIT_CPU) fired; limits.cpu_time = " + format_duration_ns(lim.cpu_time_ns);
        } else if (sig == SIGSYS) {
            r.cause = "seccomp";
            r.detail = "SIGSYS from the seccomp policy (trap action)";
        } else if (sig == job.sent_signal) {
            r.cause = "stopped";
            r.detail = std::string("SIG") + sigabbrev_np(sig) + " sent by " + job.sent_why;
        } else {
            r.cause = "signaled";
            r.detail = std::string("signal ") + std::to_string(sig) + " (" + (sigabbrev_np(sig) ? "SIG" + std::string(sigabbrev_np(sig)) : "?") + ")";
        }
    }
    if (job.ooms > 0 && r.cause != "memory") r.detail += "; " + std::to_string(job.ooms) + " OOM kill(s) inside the job";
    count_end(r.tier, r.cause);
    nlohmann::json fin = {{"event", "finished"}, {"cause", r.cause}, {"detail", r.detail}};
    fin["exit_code"] = r.exit_code ? nlohmann::json(*r.exit_code) : nlohmann::json(nullptr);
    fin["signal"] = r.signal ? nlohmann::json(*r.signal) : nlohmann::json(nullptr);
    // What recording this job cost moatd (docs/protocol.md, lifecycle events).
    fin["events"] = {{"rows", job.budget_rows},
                     {"bytes", job.budget_bytes},
                     {"denials_aggregated", job.aggregated},
                     {"execs_not_stored", job.execs_unstored}};
    fin["events"].update(job.run->costs());
    // Before the row: a watch ends when it reads the row finished, then
    // flushes the queue and reads once more, so the event must be queued by
    // then (events --follow prints it last).
    emit(job.id, store::EventKind::Lifecycle, fin);
    job.mark("recording");
    if (!r.info.is_object()) r.info = nlohmann::json::object();
    r.info["startup_us"] = job.steps_json();
    // The finish is stored with the job's outputs and recording, in one
    // commit, once the relay is done (complete(); for a short job it
    // usually is by now, or within microseconds), or alone after
    // kFinishWaitsForOutputNs. A job without a relay's ending: now.
    if (auto e = m_ending.find(job.id); e != m_ending.end()) {
        e->second->finish_pending = true;
        if (!e->second->relay_done)
            if (auto t = m_cfg.loop->add_timer(kFinishWaitsForOutputNs, 0, [this, id = job.id] {
                    auto it = m_ending.find(id);
                    if (it == m_ending.end()) return;
                    it->second->finish_timer = 0;
                    if (!it->second->finish_pending) return;
                    it->second->finish_pending = false;
                    record_finish(it->second->rec);
                }))
                e->second->finish_timer = *t;
            else {
                e->second->finish_pending = false;
                record_finish(r);
            }
    } else {
        record_finish(r);
    }

    // Tear down.
    job.run->unwatch(*m_cfg.loop);
    if (job.wall_timer) m_cfg.loop->cancel_timer(job.wall_timer);
    remove_from_sampler(job);
    std::shared_ptr<cgroup::JobCgroup> cg;
    if (job.cg) {
        cg = std::make_shared<cgroup::JobCgroup>(std::move(*job.cg));
        job.cg.reset();
    }
    if (exiting) {
        std::vector<uid_t> uids{job.uid};
        if (job.ids.root_uid) uids.push_back(job.ids.root_uid);
        watch_exiting(job.id, std::move(exiting), std::move(cg), std::move(uids));
    } else {
        if (cg) {
            // After the client's answer (the loop runs posted work next): rmdir in
            // each hierarchy costs the kernel an RCU grace period or so.
            m_cfg.loop->post([cg, id = job.id] {
                if (auto d = cg->destroy(); !d)
                    moat::logf(moat::LogLevel::Warning, "job %lld: %s\n", (long long)id, d.error().message.c_str());
            });
        }
        m_uids_in_use.erase(job.uid);
        if (job.ids.root_uid) m_uids_in_use.erase(job.ids.root_uid);
    }
    auto cb = std::move(job.on_finished);
    store::JobRecord copy = r;
    const int64_t id = job.id;
    m_jobs.erase(job.id);  // `job` is gone after this line
    if (auto e = m_ending.find(id); e != m_ending.end()) {
        // The answer waits for the relay to deliver the job's last output; a
        // client that stopped reading gets 5 s, then loses the rest (the
        // recording keeps it).
        e->second->job_done = true;
        e->second->on_finished = std::move(cb);
        e->second->rec = copy;
        if (e->second->relay_done) {
            complete(id);
        } else if (auto t = m_cfg.loop->add_timer(5'000'000'000, 0, [this, id] {
                       auto it = m_ending.find(id);
                       if (it == m_ending.end()) return;
                       it->second->drain_timer = 0;
                       it->second->relay->cancel();
                   })) {
            e->second->drain_timer = *t;
        }
    } else if (cb) {
        cb(copy);
    }
    maybe_all_done();
}

void Supervisor::watch_exiting(int64_t job_id, UniqueFd pidfd, std::shared_ptr<cgroup::JobCgroup> cg,
                               std::vector<uid_t> uids) {
    auto e = std::make_unique<Exiting>();
    e->pidfd = std::move(pidfd);
    e->cg = std::move(cg);
    e->uids = std::move(uids);
    const int fd = e->pidfd.get();
    if (!m_cfg.loop->add_fd(fd, EPOLLIN, [this, job_id](uint32_t) { reap_exiting(job_id); })) {
        // Cannot be watched (no memory for the registration): waited for here
        // (it has SIGKILL), as finish() waited for a cgroup to empty, and
        // without a bound when it does not go within 2 s: a cgroup and uids
        // left held for good would be worse than a stalled loop.
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 2000) != 1) {
            moat::logf(moat::LogLevel::Warning,
                       "job %lld: its init has not exited 2 s after the job ended; waiting for it\n", (long long)job_id);
            siginfo_t si{};
            while (waitid(idtype_t(3), id_t(fd), &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
        }
        m_exiting.emplace(job_id, std::move(e));
        reap_exiting(job_id);
        return;
    }
    // Normally reaped within a millisecond; one that is not is said once.
    if (auto t = m_cfg.loop->add_timer(2'000'000'000, 0, [this, job_id] {
            auto it = m_exiting.find(job_id);
            if (it == m_exiting.end()) return;
            it->second->late_timer = 0;
            moat::logf(moat::LogLevel::Warning,
                       "job %lld: its init has not exited 2 s after the job ended; its cgroup is removed once it has\n",
                       (long long)job_id);
        }))
        e->late_timer = *t;
    m_exiting.emplace(job_id, std::move(e));
}

void Supervisor::reap_exiting(int64_t job_id) {
    auto it = m_exiting.find(job_id);
    if (it == m_exiting.end()) return;
    Exiting& e = *it->second;
    siginfo_t si{};
    // P_PIDFD (3): exactly this child.
    if (waitid(idtype_t(3), id_t(e.pidfd.get()), &si, WEXITED | WNOHANG) < 0) {
        if (errno == EINTR) return;  // the pidfd stays readable: called again
        moat::logf(moat::LogLevel::Warning, "job %lld: reaping its init: %s\n", (long long)job_id, strerror(errno));
    } else if (si.si_pid == 0) {
        return;  // not yet (a spurious wake-up)
    }
    m_cfg.loop->remove_fd(e.pidfd.get());
    if (e.late_timer) m_cfg.loop->cancel_timer(e.late_timer);
    // Its pid namespace is gone with it, so the cgroup is empty.
    if (e.cg)
        if (auto d = e.cg->destroy(); !d)
            moat::logf(moat::LogLevel::Warning, "job %lld: %s\n", (long long)job_id, d.error().message.c_str());
    for (uid_t u : e.uids) m_uids_in_use.erase(u);
    m_exiting.erase(it);
}

void Supervisor::maybe_all_done() {
    if (m_jobs.empty() && m_ending.empty() && m_preparing.empty() && m_on_all_done) {
        auto done = std::move(m_on_all_done);
        m_on_all_done = nullptr;
        done();
    }
}

std::optional<OutputSlice> Supervisor::live_output(int64_t job_id, int stream, uint64_t from, size_t max_bytes) const {
    if (stream != 0 && stream != 1) return std::nullopt;
    auto it = m_ending.find(job_id);
    if (it == m_ending.end() || !it->second->live) return std::nullopt;
    LiveOutput& lo = *it->second->live;
    std::lock_guard lk(lo.mu);
    const auto& st = lo.streams[stream];
    OutputSlice o;
    o.total = st.total;
    const uint64_t start = st.total - st.data.size();  // the offset of the kept tail's first byte
    if (from < start) {
        o.skipped = start - from;  // a reader this far behind gets the tail, and how much it missed
        from = start;
    }
    if (from > st.total) from = st.total;
    o.from = from;
    o.data = st.data.substr(size_t(from - start), max_bytes);
    return o;
}

nlohmann::json Supervisor::last_sample(int64_t job_id) const {
    auto it = m_jobs.find(job_id);
    return it == m_jobs.end() ? nlohmann::json() : it->second->last_sample;
}

std::optional<store::JobRecord> Supervisor::live(int64_t job_id) const {
    auto it = m_jobs.find(job_id);
    if (it == m_jobs.end()) return std::nullopt;
    const Job& j = *it->second;
    store::JobRecord r = j.rec;
    r.resources.cpu_time_ns = j.cpu_ns;
    r.resources.peak_memory_bytes = j.peak_mem;
    r.resources.peak_pids = j.peak_pids;
    r.denial_count = j.denials;
    return r;
}

uint64_t& denial_slot(Metrics& m, const std::string& policy, const std::string& syscall) {
    auto key = std::make_pair(policy, syscall);
    if (auto it = m.denials.find(key); it != m.denials.end()) return it->second;
    if (m.denials.size() < Metrics::kMaxDenialSeries) return m.denials.emplace(std::move(key), 0).first->second;
    // Full: one shared series, past the bound by one, so nothing is lost.
    return m.denials[{"_other", "_other"}];
}

Metrics Supervisor::metrics() const {
    Metrics m = m_metrics;
    for (const auto& [id, job] : m_jobs) ++m.tiers[job->rec.tier].running;
    return m;
}

}  // namespace moat::supervisor
