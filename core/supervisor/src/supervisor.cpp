#include "moat/supervisor/supervisor.h"

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
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "moat/common/sha256.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/policy/syscalls.h"
#include "moat/sandbox/container_plan.h"
#include "moat/sandbox/landlock.h"
#include "moat/sandbox/spawn.h"
#include "moat/supervisor/decode.h"
#include "relay.h"

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
constexpr uint64_t kRowOverhead = 256;                 // a denial row's fixed part, for the byte budget
// moatd's own time spent decoding one job's denials (reading its memory and
// /proc/PID/maps): past kWorkBudgetNs within kWorkWindowNs, module names are
// not resolved for that job for kModulesOffNs, so one job cannot make the
// loop slow for the others.
constexpr int64_t kWorkWindowNs = 1'000'000'000;
constexpr int64_t kWorkBudgetNs = 50'000'000;
constexpr int64_t kModulesOffNs = 5'000'000'000;

const char* arch_name(uint32_t arch) {
    switch (arch) {
        case AUDIT_ARCH_X86_64: return "x86_64";
        case AUDIT_ARCH_I386: return "i386";
        default: return "unknown";
    }
}

std::string hex(uint64_t v) {
    char b[24];
    snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
    return b;
}

struct NotifBufs {
    seccomp_notif* req = nullptr;
    seccomp_notif_resp* resp = nullptr;
    NotifBufs() { seccomp_notify_alloc(&req, &resp); }
    ~NotifBufs() { seccomp_notify_free(req, resp); }
};

bool path_under(const std::string& path, const std::string& dir) {
    if (dir == "/") return true;
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

// Why the seccomp tier cannot keep a read_only path (of the policy, or an
// --input, which is read-only too) read-only: it lies inside a read_write path
// and Landlock grants the union of the rules along a path. "" when none does.
// Compared as written and as resolved (moatd opens the paths as root for the
// ruleset just after this, following symlinks the same way), so a symlink
// cannot hide the nesting. Lint reports this for seccomp-tier files; this
// check also covers a --tier override and clients that skipped the check.
std::string unenforceable_read_only(const policy::Filesystem& fs, const std::vector<sandbox::ExtraPath>& extra) {
    std::vector<std::string> ro = fs.read_only;
    for (const auto& e : extra)
        if (!e.writable) ro.push_back(e.path);
    auto explain = [&](const policy::NestedReadOnly& n, const std::string& resolved) {
        std::string what = policy::nested_read_only_message(n);
        if (n.read_only_index >= fs.read_only.size()) {  // an --input, not a policy entry
            const std::string in_policy = " in filesystem.read_only is";
            if (size_t at = what.find(in_policy); at != std::string::npos)
                what.replace(at, in_policy.size(), " (an --input, read-only) is");
        }
        return "the seccomp tier cannot enforce this policy: " + what + resolved;
    };
    if (auto n = policy::read_only_inside_read_write(ro, fs.read_write); !n.empty()) return explain(n[0], "");
    auto resolve = [](const std::vector<std::string>& v) {
        std::vector<std::string> out;
        char real[PATH_MAX];
        for (const auto& p : v) out.push_back(realpath(p.c_str(), real) ? std::string(real) : p);
        return out;
    };
    const std::vector<std::string> ro_real = resolve(ro), rw_real = resolve(fs.read_write);
    if (auto n = policy::read_only_inside_read_write(ro_real, rw_real); !n.empty()) {
        policy::NestedReadOnly as_written = n[0];
        as_written.read_only = ro[n[0].read_only_index];
        as_written.read_write = fs.read_write[n[0].read_write_index];
        return explain(as_written, " (through symlinks: " + n[0].read_only + " is inside " + n[0].read_write + ")");
    }
    return "";
}

void remove_tree(const std::string& dir) {
    // A stage directory holds plain files only (see snapshot_inputs).
    if (DIR* d = opendir(dir.c_str())) {
        while (auto* e = readdir(d))
            if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir.c_str());
}

// Hashes the file behind `fd` from its start (pread: the client's offset is untouched).
Result<std::string> fd_sha256(int fd, uint64_t* size, const std::atomic<bool>& cancel) {
    Sha256 h;
    std::vector<char> buf(1 << 16);
    uint64_t total = 0;
    for (;;) {
        if (cancel) return fail("cancelled");
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(total));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::unexpected(Error::sys("read", errno));
        if (n == 0) break;
        h.update({buf.data(), size_t(n)});
        total += uint64_t(n);
    }
    if (size) *size = total;
    return h.hex();
}

// Copies in 8 MiB steps so a stop (or moatd's shutdown) is noticed promptly.
Result<void> copy_file(const std::string& from, const std::string& to, uid_t owner, const std::atomic<bool>& cancel) {
    UniqueFd in(open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) return std::unexpected(Error::sys("open " + from, errno));
    UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!out) return std::unexpected(Error::sys("create " + to, errno));
    for (;;) {
        if (cancel) return fail("cancelled");
        ssize_t n = copy_file_range(in.get(), nullptr, out.get(), nullptr, 8 << 20, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS)) {
            n = sendfile(out.get(), in.get(), nullptr, 8 << 20);
        }
        if (n < 0) return std::unexpected(Error::sys("copy " + from + " -> " + to, errno));
        if (n == 0) break;
    }
    if (fchown(out.get(), owner, owner) < 0) return std::unexpected(Error::sys("chown " + to, errno));
    return {};
}

}  // namespace

struct Supervisor::Job {
    int64_t id = 0;
    store::JobRecord rec;
    std::shared_ptr<const policy::Policy> policy;
    std::shared_ptr<const compiler::CompiledFilter> filter;
    std::optional<cgroup::JobCgroup> cg;
    sandbox::Spawned proc;
    uid_t uid = 0;
    uid_t root_uid = 0;                 // container tier: host uid of the container's root
    std::optional<int> inner_status;    // container tier: the job's wait status, reported by moat-init
    bool started = false;
    int64_t start_mono = 0;
    EventLoop::TimerId wall_timer = 0, sample_timer = 0;
    std::string kill_cause, kill_detail;
    bool execs = false;
    uint64_t peak_mem = 0, peak_pids = 0, cpu_ns = 0, last_cpu_ns = 0, pid_hits = 0, ooms = 0;
    int64_t last_sample_mono = 0;
    uint64_t denials = 0;
    struct Pending {
        int64_t first_ns;
        uint64_t count;
        nlohmann::json fields;
        uint64_t bytes = 0;  // its share of the event budget and of kMaxPendingBytes
    };
    std::unordered_map<std::string, Pending> pending;
    int64_t oldest_pending_mono = 0;
    ModuleResolver modules;
    std::function<void(const store::JobRecord&)> on_finished;
    std::optional<sandbox::SetupRecord> exec_failure;
    bool listener_registered = false, status_registered = false, exited = false;
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
    // moatd's time spent decoding this job's denials (kWorkBudgetNs).
    int64_t work_window_mono = 0, work_ns = 0, modules_off_until = 0;
    uint64_t modules_skipped = 0;
    bool work_limit_reported = false;
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
    std::string stage;               // replay: per-job directory of snapshots put back
    EventLoop::TimerId drain_timer = 0;
};

// What prepare_inputs produced, per input in request order.
struct Supervisor::Prepared {
    std::optional<Error> error;
    nlohmann::json list = nlohmann::json::array();          // recording.inputs
    std::vector<std::string> blobs;                         // referenced by the recording
    std::vector<std::pair<std::string, uint64_t>> new_blobs;  // snapshots taken now, to register in the store
    std::string stage;                                      // container replay: the staging directory
    std::vector<UniqueFd> fds;                              // the file each input grants
    std::vector<struct stat> st;                            // and its identity (dev, ino)
};

// A job between its record and its spawn while its inputs are prepared.
struct Supervisor::Preparing {
    std::unique_ptr<Job> job;
    std::unique_ptr<Ending> ending;
    JobRequest req;
    bool container = false;
    Prepared prepared;
    std::atomic<bool> cancel{false};
    std::string stop_why;  // set by stop(): the job ends "stopped" instead of starting
    std::thread thread;
};

Supervisor::Supervisor(Config cfg) : m_cfg(std::move(cfg)) {
    auto t = m_cfg.loop->add_timer(kTickNs, kTickNs, [this] {
        const int64_t now = now_monotonic_ns();
        retry_unrecorded();
        std::vector<Job*> over;
        for (auto& [id, job] : m_jobs) {
            if (!job->pending.empty() && now - job->oldest_pending_mono >= int64_t(m_cfg.coalesce_window_ns))
                flush_denials(*job);
            if (!job->aggregate.empty() && now - job->aggregate_flushed_mono >= kAggregateFlushNs)
                flush_aggregate(*job);
            if (job->cg && job->kill_cause.empty()) {
                if (auto cpu = job->cg->cpu_ns()) {
                    job->cpu_ns = *cpu;
                    if (*cpu >= job->policy->limits.cpu_time_ns) over.push_back(job.get());
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
            fprintf(stderr, "moatd: the end of job %lld is recorded now\n", (long long)it->id);
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
        e->relay.reset();  // cancels and joins
        if (!e->stage.empty()) remove_tree(e->stage);
    }
    retry_unrecorded();
    if (m_tick) m_cfg.loop->cancel_timer(m_tick);
    for (auto& [id, job] : m_jobs) {
        if (job->cg) {
            (void)job->cg->kill_all();
            (void)job->cg->destroy();
        }
    }
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
        }
        job.state = "finished";
        job.ended_ns = now_realtime_ns();
        job.cause = "supervisor-lost";
        job.detail = detail;
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
    std::string path = "/usr/local/bin:/usr/bin:/bin";
    for (const auto& kv : env)
        if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        if (!dir.empty() && dir[0] == '/') {
            std::string p = dir + "/" + name;
            if (check(p)) return p;
        }
        start = end + 1;
    }
    return fail("program \"" + name + "\" not found in the job's PATH (" + path + ")");
}

StartResult Supervisor::start(JobRequest req) {
    StartResult result;
    auto job = std::make_unique<Job>();
    auto pol = std::make_shared<policy::Policy>(std::move(req.policy));
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
    job->start_mono = now_monotonic_ns();

    if (auto id = m_cfg.store->create_job(job->rec); !id) {
        result.setup_error = id.error().wrap("recording the job");
        return result;
    }
    job->id = job->rec.id;
    result.job_id = job->id;
    emit(job->id, store::EventKind::Lifecycle,
         {{"event", "created"}, {"tier", job->rec.tier}, {"policy_sha256", pol->sha256}});

    auto ending = std::make_unique<Ending>();
    // Any failure from here on is a recorded setup failure.
    auto setup_failed = [&](const Error& e) {
        fail_setup(*job, ending.get(), e);
        result.setup_error = e;
        return result;
    };

    if (tier == policy::Tier::Vm)
        return setup_failed(Error::msg("tier \"vm\" is not available in this moatd (supported: seccomp, container)"));
    const bool container = tier == policy::Tier::Container;
    if (container && m_cfg.init_exe_fd < 0)
        return setup_failed(Error::msg("the container tier needs moat-init, which moatd did not find at start "
                                       "(see moatd --init)"));
    if (m_jobs.size() + m_preparing.size() >= m_cfg.max_jobs)
        return setup_failed(Error::msg("too many running jobs (" + std::to_string(m_cfg.max_jobs) + ")"));
    if (req.argv.empty()) return setup_failed(Error::msg("no program given"));
    if (req.require_stdio)
        for (int i = 0; i < 3; ++i)
            if (!req.stdio[i]) return setup_failed(Error::msg("the client did not pass stdio fd " + std::to_string(i)));
    if (req.learn)
        emit(job->id, store::EventKind::Lifecycle,
             {{"event", "learn-mode"},
              {"detail", "denials are recorded but not enforced: every notified syscall continues"}});

    // Container root maps to its own unprivileged host uid, the job (uid 1000
    // inside) to another: neither is ever host root or shared. Allocated
    // early: replayed inputs are staged for it.
    if (container) {
        auto root_uid = allocate_uid();
        if (!root_uid) return setup_failed(root_uid.error());
        job->root_uid = *root_uid;
    }

    if (req.inputs.empty()) {
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
    raw->container = container;
    m_preparing.emplace(id, std::move(p));
    std::weak_ptr<std::atomic<bool>> alive = m_alive;
    raw->thread = std::thread([this, raw, id, alive] {
        prepare_inputs(m_cfg, id, raw->req.inputs, raw->container, raw->job->root_uid, raw->req.client, raw->cancel,
                       raw->prepared);
        auto a = alive.lock();
        if (!a || !*a) return;
        m_cfg.loop->post([this, id, alive] {
            auto a2 = alive.lock();
            if (a2 && *a2) inputs_ready(id);
        });
    });
    return result;
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
    emit(job.id, store::EventKind::Lifecycle, {{"event", "finished"}, {"cause", cause}, {"detail", detail}});
    if (auto r = m_cfg.store->finish_job(job.rec); !r) m_unrecorded.push_back(job.rec);
    if (job.cg) {
        (void)job.cg->kill_all();
        (void)job.cg->destroy();
    }
    if (job.uid) m_uids_in_use.erase(job.uid);
    if (job.root_uid) m_uids_in_use.erase(job.root_uid);
    job.uid = job.root_uid = 0;
}

void Supervisor::inputs_ready(int64_t job_id) {
    auto it = m_preparing.find(job_id);
    if (it == m_preparing.end()) return;
    std::unique_ptr<Preparing> p = std::move(it->second);
    m_preparing.erase(it);
    if (p->thread.joinable()) p->thread.join();  // it has posted us and returned
    Job& job = *p->job;
    Prepared& prep = p->prepared;

    // What was snapshotted is recorded even when the job never starts.
    for (const auto& [sha, bytes] : prep.new_blobs) {
        if (auto r = m_cfg.store->put_blob(sha, bytes); !r) {
            prep.error = r.error().wrap("registering the snapshot of an input");
            break;
        }
    }
    p->ending->recording["inputs"] = prep.list;
    p->ending->recording["stdin"] = nullptr;
    p->ending->blobs = prep.blobs;
    p->ending->stage = prep.stage;
    (void)m_cfg.store->set_recording(job.id, p->ending->recording, p->ending->blobs);

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
    const bool container = job->rec.tier == "container";
    auto exe = resolve_program(req.argv[0], job->rec.env, job->rec.cwd);
    if (!exe) return exe.error();
    const auto& fs = pol->filesystem;

    // Filesystem view: Landlock on the host's tree (seccomp tier) or a new
    // root built from mounts (container tier).
    sandbox::LandlockRuleset ll_storage;
    sandbox::LandlockRuleset* ll = &ll_storage;
    std::vector<sandbox::MountSpec> mounts;
    if (container) {
        if (pol->network == policy::NetworkMode::Host)
            return Error::msg("network.mode = \"host\" is not supported in the container tier "
                              "(it always gets its own network namespace)");
        std::vector<sandbox::InputMount> ins;
        for (size_t k = 0; k < req.inputs.size(); ++k) {
            const auto& in = req.inputs[k];
            sandbox::InputMount m{in.host_path, in.sandbox_path};
            // moat-init binds exactly the inode the client opened (or the staged
            // copy): the path is looked up again there and must lead to it.
            if (k < prep.st.size()) {
                m.verify = true;
                m.dev = uint64_t(prep.st[k].st_dev);
                m.ino = uint64_t(prep.st[k].st_ino);
            }
            ins.push_back(std::move(m));
        }
        auto m = sandbox::plan_mounts(fs.read_only, fs.read_write, fs.tmpfs, fs.tmpfs_size_bytes, ins);
        if (!m) return m.error().wrap("planning the container's mounts");
        mounts = std::move(*m);
        // The program must be reachable inside: under a bind mount, directly or
        // through a host symlink the plan recreates (/bin -> usr/bin).
        char real[PATH_MAX];
        std::string resolved = realpath(exe->c_str(), real) ? std::string(real) : *exe;
        bool covered = false;
        for (const auto& mt : mounts)
            if (mt.kind == sandbox::MountSpec::Kind::BindRo || mt.kind == sandbox::MountSpec::Kind::BindRw)
                covered = covered || path_under(*exe, mt.target) || path_under(resolved, mt.target);
        if (!covered)
            return Error::msg("program " + *exe +
                              " is not inside any filesystem.read_only or read_write mount of the container");
    } else {
        std::vector<sandbox::ExtraPath> extra;
        for (size_t k = 0; k < req.inputs.size(); ++k) {
            const auto& in = req.inputs[k];
            if (in.sandbox_path != in.host_path)
                return Error::msg("--input " + in.host_path + ":" + in.sandbox_path +
                                  ": the seccomp tier has no mount namespace, so an input is visible only at its host "
                                  "path");
            // The rule is bound to the inode behind the client's fd: if the path
            // is swapped for something else later, the job is refused that.
            sandbox::ExtraPath x{in.host_path, false};
            if (k < prep.fds.size()) x.fd = prep.fds[k].get();
            extra.push_back(std::move(x));
        }
        if (std::string why = unenforceable_read_only(fs, extra); !why.empty()) return Error::msg(why);
        auto llr = sandbox::build_landlock(fs, pol->network, extra);
        if (!llr) return llr.error().wrap("building the Landlock ruleset");
        ll_storage = std::move(*llr);
        if (ll->fd) {
            bool covered = false;
            for (const auto& d : fs.read_only) covered = covered || path_under(*exe, d);
            for (const auto& d : fs.read_write) covered = covered || path_under(*exe, d);
            char real[PATH_MAX];
            if (!covered && realpath(exe->c_str(), real)) {
                for (const auto& d : fs.read_only) covered = covered || path_under(real, d);
                for (const auto& d : fs.read_write) covered = covered || path_under(real, d);
            }
            if (!covered)
                return Error::msg("program " + *exe +
                                  " is outside the policy's filesystem (add its directory to filesystem.read_only)");
        }
    }
    prep.fds.clear();  // granted (Landlock) or described (mount checks); not needed any more

    // The job's stdio: pipes whose other ends the relay owns.
    UniqueFd job_ends[3], our_ends[3];
    for (int i = 0; i < 3; ++i) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) return Error::sys("pipe2(stdio)", errno);
        // stdin: the job reads p[0]; stdout/stderr: the job writes p[1].
        job_ends[i].reset(i == 0 ? p[0] : p[1]);
        our_ends[i].reset(i == 0 ? p[1] : p[0]);
    }

    auto filter = m_filters.get(*pol);
    if (!filter) return filter.error().wrap("compiling the seccomp filter");
    job->filter = *filter;

    auto uid = allocate_uid();
    if (!uid) return uid.error();
    job->uid = *uid;

    cgroup::Limits cl;
    cl.memory_bytes = pol->limits.memory_bytes;
    cl.pids = pol->limits.pids;
    auto cg = cgroup::JobCgroup::create(m_cfg.cgroups, m_cfg.cgroup_parent, "job-" + std::to_string(job->id), cl);
    if (!cg) return cg.error().wrap("creating the job cgroup");
    job->cg.emplace(std::move(*cg));

    sandbox::Rlimits rl;
    rl.file_size = pol->limits.file_size_bytes;
    rl.open_files = pol->limits.open_files;
    rl.stack = pol->limits.stack_bytes;
    rl.core = pol->limits.core_bytes;
    rl.cpu_seconds = pol->limits.cpu_time_ns / 1'000'000'000 + 2;  // per-process backstop

    if (container) {
        sandbox::ContainerPlan cp;
        cp.hostname = pol->hostname.empty() ? "job-" + std::to_string(job->id) : pol->hostname;
        cp.loopback = pol->network == policy::NetworkMode::Loopback;
        cp.newroot = m_cfg.newroot_dir;
        cp.mounts = mounts;
        cp.rlimits = rl;
        cp.argv = req.argv;
        cp.env = job->rec.env;
        cp.exe = *exe;
        cp.cwd = job->rec.cwd;
        cp.filter = job->filter->program();
        std::string text = cp.to_json().dump();
        UniqueFd planfd(memfd_create("moat-plan", MFD_CLOEXEC));
        if (!planfd || ::write(planfd.get(), text.data(), text.size()) != ssize_t(text.size()))
            return Error::sys("memfd(plan)", errno);
        sandbox::ContainerSpawnPlan csp;
        csp.init_exe_fd = m_cfg.init_exe_fd;
        csp.plan_fd = planfd.get();
        csp.host_root_uid = csp.host_root_gid = job->root_uid;
        csp.host_job_uid = csp.host_job_gid = job->uid;
        csp.inside_uid = cp.uid;
        csp.inside_gid = cp.gid;
        for (int i = 0; i < 3; ++i) csp.stdio[i] = job_ends[i].get();
        csp.cgroup = &*job->cg;
        auto sp = sandbox::spawn_container_job(csp);
        if (!sp) return sp.error();
        job->proc = std::move(*sp);
    } else {
        sandbox::SpawnPlan plan;
        plan.exe = *exe;
        plan.argv = req.argv;
        plan.env = job->rec.env;
        plan.cwd = job->rec.cwd;
        plan.uid = job->uid;
        plan.gid = job->uid;
        plan.rlimits = rl;
        for (int i = 0; i < 3; ++i) plan.stdio[i] = job_ends[i].get();
        plan.filter = &job->filter->program();
        plan.landlock_fd = ll->fd.get();
        plan.cgroup = &*job->cg;
        auto sp = sandbox::spawn_seccomp_job(plan);
        if (!sp) return sp.error();
        job->proc = std::move(*sp);
    }
    for (auto& fd : job_ends) fd.reset();  // the job holds them now

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
        if (m_cfg.artifacts && rs.src_in) {
            if (auto t = m_cfg.artifacts->make_temp()) {
                rs.record_in.reset(t->first);
                ending->stdin_temp = t->second;
            } else {
                emit(job->id, store::EventKind::Lifecycle,
                     {{"event", "recording-warning"}, {"detail", "stdin is not recorded: " + t.error().message}});
            }
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

    job->rec.pid = job->proc.pid;
    job->rec.uid = int(job->uid);
    job->rec.cgroup = job->cg->describe();
    nlohmann::json info = {
        {"cgroup_version", job->cg->version() == cgroup::Version::V1 ? "v1" : "v2"},
        {"program", *exe},
        {"spawn_us", (job->proc.ready_ns - job->proc.fork_ns) / 1000},
        {"notes", ll->notes},
    };
    if (container) {
        info["namespaces"] = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"};
        info["hostname"] = pol->hostname.empty() ? "job-" + std::to_string(job->id) : pol->hostname;
        info["uid_inside"] = 1000;
        info["host_root_uid"] = job->root_uid;
        info["network"] = policy::network_mode_name(pol->network);
        info["landlock"] = "not used (mount namespace)";
    } else {
        info["landlock_abi"] = ll->abi;
        info["landlock"] = ll->abi > 0 ? "enforced" : (fs.landlock == policy::LandlockMode::Off ? "off" : "unavailable");
        info["landlock_net"] = ll->net_restricted;
        info["landlock_scoped"] = ll->scoped;
    }
    for (const auto& w : job->proc.warnings) {
        std::string note = std::string(w.step) + "(\"" + w.detail + "\") failed: " + errno_name(w.err) +
                           "; the job runs in /";
        info["notes"].push_back(note);
        emit(job->id, store::EventKind::Lifecycle, {{"event", "setup-warning"}, {"detail", note}});
    }
    job->rec.info = info;
    (void)m_cfg.store->update_job_runtime(job->id, job->rec.pid, job->rec.uid, job->rec.cgroup, info);

    Job* raw = job;
    (void)m_cfg.loop->add_fd(raw->proc.listener.get(), EPOLLIN, [this, raw](uint32_t ev) {
        if (ev & EPOLLIN) on_notify(*raw);
        if ((ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN) && raw->listener_registered) {
            // Every task using the filter is gone.
            m_cfg.loop->remove_fd(raw->proc.listener.get());
            raw->listener_registered = false;
        }
    });
    raw->listener_registered = true;
    (void)m_cfg.loop->add_fd(raw->proc.pidfd.get(), EPOLLIN, [this, raw](uint32_t) { on_exit(*raw); });
    (void)m_cfg.loop->add_fd(raw->proc.status.get(), EPOLLIN, [this, raw](uint32_t) { on_status(*raw); });
    raw->status_registered = true;
    if (auto t = m_cfg.loop->add_timer(pol->limits.wall_time_ns, 0, [this, raw] {
            raw->wall_timer = 0;
            emit(raw->id, store::EventKind::Limit,
                 {{"limit", "wall-time"}, {"value_ns", raw->policy->limits.wall_time_ns}});
            kill_job(*raw, "wall-time",
                     "ran longer than " + format_duration_ns(raw->policy->limits.wall_time_ns) + " (limits.wall_time)");
        }))
        raw->wall_timer = *t;
    uint64_t interval = pol->monitor.sample_interval_ns;
    if (auto t = m_cfg.loop->add_timer(interval, interval, [this, raw] { sample(*raw, false); })) raw->sample_timer = *t;
    raw->last_sample_mono = now_monotonic_ns();
    m_jobs.emplace(raw->id, std::move(job_ptr));
    return std::nullopt;
}


Result<UniqueFd> open_as_client(const ClientCreds& who, const std::string& path) {
    int fd = -1, err = 0;
    std::string what;
    // Credentials are per thread in the kernel. The raw syscalls change this
    // short-lived thread alone (glibc's wrappers would change all of moatd's
    // threads); with a non-zero effective uid no capability of moatd's is
    // effective, so DAC, ACLs and LSMs judge the open as they would the client's.
    std::thread t([&] {
        if (syscall(SYS_setgroups, who.groups.size(), who.groups.data()) < 0 ||
            syscall(SYS_setresgid, -1, who.gid, -1) < 0 || syscall(SYS_setresuid, -1, who.uid, -1) < 0) {
            err = errno;
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

void Supervisor::prepare_inputs(const Config& cfg, int64_t job_id, std::vector<InputFile>& inputs, bool container,
                                uid_t stage_owner, const ClientCreds& who, const std::atomic<bool>& cancel,
                                Prepared& out) {
    auto failed = [&](Error e) { out.error = std::move(e); };
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
            const std::string blob = cfg.artifacts->path(in.snapshot);
            if (container) {
                // Staged where the container's root can reach it (the state
                // dir is 0700), owned by that root, readable by the job.
                if (out.stage.empty()) {
                    mkdir(cfg.stage_dir.c_str(), 0711);
                    std::string stage = cfg.stage_dir + "/job-" + std::to_string(job_id);
                    if (mkdir(stage.c_str(), 0700) < 0) return failed(Error::sys("mkdir " + stage, errno));
                    out.stage = stage;
                    if (chown(stage.c_str(), stage_owner, stage_owner) < 0)
                        return failed(Error::sys("chown " + stage, errno));
                }
                std::string staged = out.stage + "/input-" + std::to_string(k);
                if (auto r = copy_file(blob, staged, stage_owner, cancel); !r)
                    return failed(r.error().wrap("putting back input " + in.host_path));
                in.host_path = staged;
                fd.reset(::open(staged.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
                if (!fd || fstat(fd.get(), &st) < 0) return failed(Error::sys("open " + staged, errno));
                rec["bytes"] = uint64_t(st.st_size);
            } else {
                // The host file must still be the one the job saw. It is opened
                // with the replaying client's rights, never moatd's.
                auto f = open_as_client(who, in.host_path);
                if (!f) return failed(f.error().wrap("input " + in.host_path));
                fd = std::move(*f);
                uint64_t size = 0;
                auto now = fd_sha256(fd.get(), &size, cancel);
                if (!now || *now != in.snapshot)
                    return failed(Error::msg(
                        "input " + in.host_path + " is not the file the job saw (recorded sha256 " +
                        in.snapshot.substr(0, 12) + "..., now " +
                        (now ? now->substr(0, 12) + "..." : now.error().message) +
                        "); the seccomp tier has no mount namespace to put the snapshot back: restore the "
                        "file or replay with --tier container"));
                if (fstat(fd.get(), &st) < 0) return failed(Error::sys("fstat " + in.host_path, errno));
                rec["bytes"] = size;
                rec["opened_by"] = "uid " + std::to_string(who.uid) + " (the replaying client)";
            }
            rec["sha256"] = in.snapshot;
            out.blobs.push_back(in.snapshot);
        } else {
            if (in.fd) {
                fd = std::move(in.fd);
                rec["opened_by"] = "client";
            } else {
                // The host-path spelling of the protocol: opened as the client.
                auto f = open_as_client(who, in.host_path);
                if (!f) return failed(f.error().wrap("input " + in.host_path));
                fd = std::move(*f);
                rec["opened_by"] = "moatd as uid " + std::to_string(who.uid) + " (the client's credentials)";
            }
            rec["client_uid"] = who.uid;
            if (fstat(fd.get(), &st) < 0) return failed(Error::sys("fstat(input " + in.host_path + ")", errno));
            if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return failed(Error::msg("input " + in.host_path +
                                         ": the client passed something that is neither a regular file nor a "
                                         "directory"));
            if (!cfg.artifacts) {
                rec["note"] = "not snapshotted: moatd keeps no recordings";
            } else if (!S_ISREG(st.st_mode)) {
                rec["note"] = "not snapshotted: not a regular file (only files are recorded for replay)";
            } else if (uint64_t(st.st_size) > cfg.record_input_max) {
                rec["note"] = "not snapshotted: " + format_size(uint64_t(st.st_size)) +
                              " is over the snapshot limit of " + format_size(cfg.record_input_max) +
                              " (moatd --record-input-max)";
            } else if (auto b = cfg.artifacts->put_fd(fd.get(), cfg.record_input_max, &cancel); !b) {
                if (cancel) return failed(Error::msg("cancelled"));
                rec["note"] = "not snapshotted: " + b.error().message;
            } else {
                // What was snapshotted: these bytes, read through the client's fd.
                rec["sha256"] = b->sha256;
                rec["bytes"] = b->bytes;
                if (b->truncated) rec["note"] = "the file grew while it was snapshotted; the first bytes are kept";
                out.blobs.push_back(b->sha256);
                out.new_blobs.emplace_back(b->sha256, b->bytes);
            }
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
    e.result = std::move(res);
    if (e.job_done) complete(job_id);
}

void Supervisor::complete(int64_t job_id) {
    auto it = m_ending.find(job_id);
    if (it == m_ending.end()) return;
    std::unique_ptr<Ending> e = std::move(it->second);
    m_ending.erase(it);
    if (e->drain_timer) m_cfg.loop->cancel_timer(e->drain_timer);
    e->relay.reset();  // its thread has returned (or is returning) from `done`
    const RelayResult& r = e->result;
    (void)m_cfg.store->put_output(job_id, "stdout", r.out);
    (void)m_cfg.store->put_output(job_id, "stderr", r.err);
    if (!e->stdin_temp.empty()) {
        nlohmann::json in = nullptr;
        if (auto b = m_cfg.artifacts->adopt(e->stdin_temp); b && m_cfg.store->put_blob(b->sha256, b->bytes)) {
            in = {{"sha256", b->sha256}, {"bytes", b->bytes}, {"truncated", r.in_truncated},
                  {"complete", r.in_recorded_complete}};
            e->blobs.push_back(b->sha256);
        } else if (!b) {
            in = {{"sha256", nullptr}, {"note", "not recorded: " + b.error().message}};
        }
        e->recording["stdin"] = in;
    } else if (!e->recording.contains("stdin")) {
        e->recording["stdin"] = {{"sha256", nullptr}, {"bytes", 0}, {"note", "the job had no stdin"}};
    }
    e->recording["stdout_bytes"] = r.out.total_bytes;
    e->recording["stderr_bytes"] = r.err.total_bytes;
    if (!r.error.empty()) e->recording["warning"] = r.error;
    if (r.cancelled) e->recording["output_cut"] = "the client stopped reading; output was recorded but not all delivered";
    if (!e->recording.contains("inputs")) e->recording["inputs"] = nlohmann::json::array();
    if (auto s = m_cfg.store->set_recording(job_id, e->recording, e->blobs); !s)
        fprintf(stderr, "moatd: job %lld: recording not saved: %s\n", (long long)job_id, s.error().message.c_str());
    if (!e->stage.empty()) remove_tree(e->stage);
    if (e->on_finished) e->on_finished(e->rec);
    maybe_all_done();
}

void Supervisor::on_status(Job& job) {
    auto s = sandbox::read_setup_status(job.proc.status.get());
    for (const auto& r : s.records) {
        if (std::string(r.step) == "exit" && !r.fatal) job.inner_status = r.err;  // moat-init: the job's wait status
        else if (r.fatal == sandbox::kSetupFilterNext) continue;                 // progress marker
        else if (r.fatal) job.exec_failure = r;
        else {
            std::string note = std::string(r.step) + "(\"" + r.detail + "\") failed: " + errno_name(r.err);
            emit(job.id, store::EventKind::Lifecycle, {{"event", "setup-warning"}, {"detail", note}});
        }
    }
    if (s.eof) {
        m_cfg.loop->remove_fd(job.proc.status.get());
        job.status_registered = false;
    }
}

void Supervisor::on_notify(Job& job) {
    static thread_local NotifBufs bufs;
    seccomp_notif* req = bufs.req;
    seccomp_notif_resp* resp = bufs.resp;
    // The kernel requires a zeroed request buffer.
    memset(req, 0, sizeof *req);
    if (seccomp_notify_receive(job.proc.listener.get(), req) < 0) return;  // target died meanwhile (ENOENT)

    const int nr = req->data.nr;
    const uint32_t arch = req->data.arch;
    const pid_t tid = pid_t(req->pid);
    uint64_t args[6];
    for (int i = 0; i < 6; ++i) args[i] = req->data.args[i];
    const bool native = arch == AUDIT_ARCH_X86_64 && !(nr & 0x40000000);
    const std::string arch_str = arch == AUDIT_ARCH_X86_64 && (nr & 0x40000000) ? "x32" : arch_name(arch);
    std::string name;
    if (arch_str == "x86_64") name = policy::syscall_name(nr);
    else if (arch_str == "x32") {
        const char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X32, nr);
        name = n ? n : "";
        free(const_cast<char*>(n));
    } else if (arch_str == "i386") {
        const char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86, nr);
        name = n ? n : "";
        free(const_cast<char*>(n));
    }
    if (name.empty()) name = "syscall_" + std::to_string(nr);

    // Decode pointers only for the native ABI (the layouts above are x86_64's).
    // What this costs moatd is the job's to decide (the size of its maps, where
    // its code lives): it is metered per job, and past kWorkBudgetNs the module
    // lookup (the part that can be expensive) is skipped for a while.
    const int64_t work_start = now_monotonic_ns();
    if (work_start - job.work_window_mono >= kWorkWindowNs) {
        job.work_window_mono = work_start;
        job.work_ns = 0;
    }
    std::optional<std::string> decoded = native ? decode_args(tid, nr, args) : std::nullopt;
    const bool modules_off = work_start < job.modules_off_until;
    std::optional<std::string> module =
        modules_off ? std::nullopt : job.modules.resolve(tid, req->data.instruction_pointer, work_start);
    if (modules_off) ++job.modules_skipped;
    if (decoded) decoded = printable(*decoded);
    if (module) module = printable(*module);
    job.work_ns += now_monotonic_ns() - work_start;
    if (job.work_ns > kWorkBudgetNs && !modules_off) {
        job.modules_off_until = work_start + kModulesOffNs;
        if (!job.work_limit_reported) {
            job.work_limit_reported = true;
            emit(job.id, store::EventKind::Limit,
                 {{"limit", "supervisor-time"},
                  {"value_ns", kWorkBudgetNs},
                  {"window_ns", kWorkWindowNs},
                  {"used_ns", job.work_ns},
                  {"detail", "decoding this job's denials took moatd more than " + format_duration_ns(kWorkBudgetNs) +
                                 " in " + format_duration_ns(kWorkWindowNs) + ": module names are not resolved for " +
                                 format_duration_ns(kModulesOffNs) + " at a time while it goes on (module null, "
                                 "\"module_note\" says why)"}});
        }
    }
    // The memory we read is only meaningful if the request is still live: the
    // task may have died and its pid been reused while we were reading.
    if (seccomp_notify_id_valid(job.proc.listener.get(), req->id) < 0) return;

    resp->id = req->id;
    resp->val = 0;
    resp->error = 0;
    resp->flags = 0;

    const bool is_exec = native && (name == "execve" || name == "execveat");
    if (is_exec && job.policy->seccomp.allowed.count(name)) {
        // The policy allows exec unconditionally, so letting the kernel carry on
        // is not a decision about (racy) pointer contents.
        job.modules.forget(tid);
        job.execs = true;
        if (!job.started) {
            job.started = true;
            emit(job.id, store::EventKind::Lifecycle, {{"event", "started"}, {"pid", tid}});
        }
        // An exec event is a row the job can make at will: it takes from the
        // event budget like a denial row, and past it is only counted.
        if (take_budget(job, kRowOverhead + (decoded ? decoded->size() : 0)))
            emit(job.id, store::EventKind::Lifecycle,
                 {{"event", "exec"}, {"pid", tid}, {"path", decoded ? nlohmann::json(*decoded) : nlohmann::json(nullptr)}});
        else
            ++job.execs_unstored;
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        seccomp_notify_respond(job.proc.listener.get(), resp);
        return;
    }

    if (native && nr == SYS_clone3) {
        // Every clone3 is refused (its flags live in memory, see the compiler).
        // ENOSYS sends glibc back to clone(); only an attempt whose flags ask
        // for namespaces is a denial worth recording. The flags are read after
        // the fact and only to describe the attempt, never to allow it.
        uint64_t flags = 0;
        auto raw = read_remote(tid, args[0], sizeof flags);
        if (raw) memcpy(&flags, raw->data(), sizeof flags);
        if (!raw || !(flags & compiler::kCloneNamespaceFlags)) {
            resp->error = -ENOSYS;
            seccomp_notify_respond(job.proc.listener.get(), resp);
            return;
        }
        static const std::pair<uint64_t, const char*> kNs[] = {
            {CLONE_NEWNS, "CLONE_NEWNS"},   {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {CLONE_NEWUTS, "CLONE_NEWUTS"},
            {CLONE_NEWIPC, "CLONE_NEWIPC"}, {CLONE_NEWUSER, "CLONE_NEWUSER"},     {CLONE_NEWPID, "CLONE_NEWPID"},
            {CLONE_NEWNET, "CLONE_NEWNET"}, {CLONE_NEWTIME, "CLONE_NEWTIME"}};
        std::string names;
        for (auto [bit, n] : kNs)
            if (flags & bit) names += (names.empty() ? "" : "|") + std::string(n);
        decoded = "flags " + names;
    }
    compiler::Verdict v = job.filter->decide(nr, arch, args);
    if (!native) v.rule = "abi";
    using Kind = policy::Action::Kind;

    // Record first (coalesced), then answer. Identical denials share a key
    // built from the raw values; the JSON row is built only for a new key, so
    // a storm of repeats costs a string and a hash lookup, not a JSON dump.
    ++job.denials;
    std::string key;
    key.reserve(160 + (decoded ? decoded->size() : 0) + (module ? module->size() : 0));
    char head[192];
    snprintf(head, sizeof head, "%d:%d:%u:%llx:%llx:%llx:%llx:%llx:%llx:%llx:", int(tid), nr, arch,
             (unsigned long long)args[0], (unsigned long long)args[1], (unsigned long long)args[2],
             (unsigned long long)args[3], (unsigned long long)args[4], (unsigned long long)args[5],
             (unsigned long long)req->data.instruction_pointer);
    key += head;
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
        nlohmann::json fields = {{"pid", tid},
                                 {"syscall", name},
                                 {"nr", nr & ~0x40000000},
                                 {"arch", arch_str},
                                 {"args", {args[0], args[1], args[2], args[3], args[4], args[5]}},
                                 {"action", v.action.str()},
                                 {"rule", v.rule},
                                 {"ip", hex(req->data.instruction_pointer)},
                                 {"module", module ? nlohmann::json(*module) : nlohmann::json(nullptr)},
                                 {"decoded", decoded ? nlohmann::json(*decoded) : nlohmann::json(nullptr)}};
        if (!native) fields["reason"] = "foreign ABI: only native x86_64 syscalls are judged by the allowlist";
        if (job.rec.learn) fields["enforced"] = !native;  // learn mode lets native calls continue
        if (modules_off) fields["module_note"] = "not resolved: the job used up its share of moatd's time (limit supervisor-time)";
        const uint64_t bytes = kRowOverhead + key.size();
        if (!take_budget(job, bytes)) {
            fold(job, agg_key(), std::move(fields), 1, now_realtime_ns());
        } else {
            if (job.pending.empty()) job.oldest_pending_mono = now_monotonic_ns();
            job.pending.emplace(std::move(key), Job::Pending{now_realtime_ns(), 1, std::move(fields), bytes});
            job.pending_bytes += bytes;
            m_pending_bytes += bytes;
            if (job.pending.size() >= kMaxPendingKeys || m_pending_bytes >= kMaxPendingBytes) flush_denials(job);
        }
    }

    if (job.rec.learn) {
        // Learn mode (replay --learn): recorded above, then let it run. Foreign
        // ABIs are never learned: a policy cannot allow them.
        if (native) {
            resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            if (is_exec) {
                job.modules.forget(tid);
                job.execs = true;
            }
        } else {
            resp->error = -EPERM;
        }
        seccomp_notify_respond(job.proc.listener.get(), resp);
        return;
    }
    switch (v.action.kind) {
        case Kind::Allow:  // unreachable for allow-rules (the filter allows them); keep safe
        case Kind::Log:
            resp->flags = native ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
            if (!native) resp->error = -EPERM;
            break;
        case Kind::Errno:
            resp->error = -v.action.errno_value;
            break;
        case Kind::Trap:
            resp->error = -ENOSYS;
            syscall(SYS_tgkill, job.proc.pid, tid, SIGSYS);
            break;
        case Kind::KillProcess:
        case Kind::KillThread:
            // Never answered: the task dies with the notification pending, so the
            // syscall can never run.
            kill_job(job, "seccomp",
                     name + " denied by " + v.rule + " (" + v.action.str() + ")" +
                         (decoded ? " on " + *decoded : std::string()));
            return;
    }
    seccomp_notify_respond(job.proc.listener.get(), resp);
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
        ev.fields = std::move(p->fields);
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
        const auto& f = ev.fields;
        std::string ak = std::to_string(f.value("nr", 0)) + ':' + f.value("arch", "") + '\0' + f.value("action", "") +
                         '\0' + f.value("rule", "");
        fold(job, ak, std::move(ev.fields), ev.count, ev.time_ns);
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
// describe the key when it is new; null when the key is known.
void Supervisor::fold(Job& job, const std::string& key, nlohmann::json fields, uint64_t count, int64_t time_ns) {
    job.aggregated += count;
    auto it = job.aggregate.find(key);
    if (it == job.aggregate.end()) {
        static const std::string kOther = "(other)";
        if (job.aggregate.size() >= kMaxAggregateKeys) {
            it = job.aggregate.find(kOther);
            if (it == job.aggregate.end()) {
                nlohmann::json f = fields.is_object() ? std::move(fields) : nlohmann::json::object();
                f["syscall"] = kOther;
                f["nr"] = -1;
                it = job.aggregate.emplace(kOther, Job::Aggregate{std::move(f), 0, 0}).first;
            }
        } else {
            if (!fields.is_object()) fields = nlohmann::json::object();  // cannot happen: new keys come with fields
            it = job.aggregate.emplace(key, Job::Aggregate{std::move(fields), 0, 0}).first;
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

void Supervisor::sample(Job& job, bool final) {
    if (!job.cg) return;
    auto s = job.cg->sample();
    if (!s) return;
    const int64_t now = now_monotonic_ns();
    double cpu_pct = 0;
    if (now > job.last_sample_mono && s->cpu_ns >= job.last_cpu_ns)
        cpu_pct = 100.0 * double(s->cpu_ns - job.last_cpu_ns) / double(now - job.last_sample_mono);
    job.last_cpu_ns = s->cpu_ns;
    job.last_sample_mono = now;
    job.cpu_ns = s->cpu_ns;
    job.peak_mem = std::max({job.peak_mem, s->memory_bytes, s->memory_peak_bytes});
    job.peak_pids = std::max(job.peak_pids, s->pids);
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
    if (!final)
        emit(job.id, store::EventKind::Resource,
             {{"cpu_time_ns", s->cpu_ns},
              {"cpu_percent", std::round(cpu_pct * 10) / 10},
              {"memory_bytes", s->memory_bytes},
              {"memory_limit_bytes", job.policy->limits.memory_bytes},
              {"pids", s->pids},
              {"pids_limit", job.policy->limits.pids},
              {"io_read_bytes", s->has_io ? nlohmann::json(s->io_read_bytes) : nlohmann::json(nullptr)},
              {"io_write_bytes", s->has_io ? nlohmann::json(s->io_write_bytes) : nlohmann::json(nullptr)}});
}

void Supervisor::kill_job(Job& job, const std::string& cause, const std::string& detail) {
    if (job.kill_cause.empty()) {
        job.kill_cause = cause;
        job.kill_detail = detail;
    }
    ::kill(job.proc.pid, SIGKILL);
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

void Supervisor::on_exit(Job& job) {
    siginfo_t si{};
    // P_PIDFD (3): reap exactly this child through its pidfd.
    if (waitid(idtype_t(3), id_t(job.proc.pidfd.get()), &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) return;
    job.exited = true;
    store::JobRecord& r = job.rec;
    if (si.si_code == CLD_EXITED) {
        r.exit_code = si.si_status;
    } else {
        r.signal = si.si_status;
    }
    finish(job);
}

void Supervisor::finish(Job& job) {
    // The job ends with its first process; anything it left behind goes too.
    if (job.cg) (void)job.cg->kill_all(2000);
    if (job.status_registered) on_status(job);
    // Seccomp tier: an execve that failed under the filter left its errno in
    // the shared word, not on the pipe (spawn.h: ExecFailureWord).
    if (!job.exec_failure) job.exec_failure = sandbox::exec_failure(job.proc);
    sample(job, true);
    flush_denials(job);
    flush_aggregate(job);

    store::JobRecord& r = job.rec;
    if (job.inner_status) {
        // Container tier: what counts is the job's status, not moat-init's.
        int st = *job.inner_status;
        r.exit_code.reset();
        r.signal.reset();
        if (WIFEXITED(st)) r.exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st)) r.signal = WTERMSIG(st);
    } else if (job.exec_failure) {
        r.exit_code.reset();
        r.signal.reset();
    }
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
    } else if (job.exec_failure) {
        r.cause = "setup-failed";
        r.detail = std::string(job.exec_failure->step) + "(\"" + job.exec_failure->detail + "\"): " +
                   errno_name(job.exec_failure->err) + " (" + strerror(job.exec_failure->err) + ")";
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
        } else {
            r.cause = "signaled";
            r.detail = std::string("signal ") + std::to_string(sig) + " (" + (sigabbrev_np(sig) ? "SIG" + std::string(sigabbrev_np(sig)) : "?") + ")";
        }
    }
    if (job.ooms > 0 && r.cause != "memory") r.detail += "; " + std::to_string(job.ooms) + " OOM kill(s) inside the job";
    nlohmann::json fin = {{"event", "finished"}, {"cause", r.cause}, {"detail", r.detail}};
    fin["exit_code"] = r.exit_code ? nlohmann::json(*r.exit_code) : nlohmann::json(nullptr);
    fin["signal"] = r.signal ? nlohmann::json(*r.signal) : nlohmann::json(nullptr);
    // What recording this job cost moatd (docs/protocol.md, lifecycle events).
    fin["events"] = {{"rows", job.budget_rows},
                     {"bytes", job.budget_bytes},
                     {"denials_aggregated", job.aggregated},
                     {"execs_not_stored", job.execs_unstored},
                     {"maps_reads", job.modules.reads()},
                     {"module_lookups_skipped", job.modules_skipped}};
    emit(job.id, store::EventKind::Lifecycle, fin);
    if (auto res = m_cfg.store->finish_job(r); !res) {
        // Never leave a job that ended looking "running" (a restart would call
        // it supervisor-lost): keep the record and retry on every tick until
        // the store takes it (e.g. once a full disk has room again).
        fprintf(stderr, "moatd: recording the end of job %lld failed (will retry): %s\n", (long long)job.id,
                res.error().message.c_str());
        m_unrecorded.push_back(r);
    }

    // Tear down.
    if (job.listener_registered) m_cfg.loop->remove_fd(job.proc.listener.get());
    if (job.status_registered) m_cfg.loop->remove_fd(job.proc.status.get());
    m_cfg.loop->remove_fd(job.proc.pidfd.get());
    if (job.wall_timer) m_cfg.loop->cancel_timer(job.wall_timer);
    if (job.sample_timer) m_cfg.loop->cancel_timer(job.sample_timer);
    if (job.cg) {
        if (auto d = job.cg->destroy(); !d)
            fprintf(stderr, "moatd: job %lld: %s\n", (long long)job.id, d.error().message.c_str());
    }
    m_uids_in_use.erase(job.uid);
    if (job.root_uid) m_uids_in_use.erase(job.root_uid);
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

void Supervisor::maybe_all_done() {
    if (m_jobs.empty() && m_ending.empty() && m_preparing.empty() && m_on_all_done) {
        auto done = std::move(m_on_all_done);
        m_on_all_done = nullptr;
        done();
    }
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

}  // namespace moat::supervisor
