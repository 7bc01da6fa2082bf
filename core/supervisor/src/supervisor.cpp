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

void remove_tree(const std::string& dir) {
    // A stage directory holds plain files only (see snapshot_inputs).
    if (DIR* d = opendir(dir.c_str())) {
        while (auto* e = readdir(d))
            if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir.c_str());
}

Result<std::string> file_sha256(const std::string& path, uint64_t* size) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::unexpected(Error::sys("open " + path, errno));
    Sha256 h;
    char buf[1 << 16];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::unexpected(Error::sys("read " + path, errno));
        if (n == 0) break;
        h.update({buf, size_t(n)});
        total += uint64_t(n);
    }
    if (size) *size = total;
    return h.hex();
}

Result<void> copy_file(const std::string& from, const std::string& to, uid_t owner) {
    UniqueFd in(open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return std::unexpected(Error::sys("open " + from, errno));
    UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!out) return std::unexpected(Error::sys("create " + to, errno));
    for (;;) {
        ssize_t n = copy_file_range(in.get(), nullptr, out.get(), nullptr, 1 << 30, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS)) {
            n = sendfile(out.get(), in.get(), nullptr, 1 << 30);
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
    };
    std::unordered_map<std::string, Pending> pending;
    int64_t oldest_pending_mono = 0;
    ModuleResolver modules;
    std::function<void(const store::JobRecord&)> on_finished;
    std::optional<sandbox::SetupRecord> exec_failure;
    bool listener_registered = false, status_registered = false, exited = false;
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

Supervisor::Supervisor(Config cfg) : m_cfg(std::move(cfg)) {
    auto t = m_cfg.loop->add_timer(kTickNs, kTickNs, [this] {
        const int64_t now = now_monotonic_ns();
        retry_unrecorded();
        std::vector<Job*> over;
        for (auto& [id, job] : m_jobs) {
            if (!job->pending.empty() && now - job->oldest_pending_mono >= int64_t(m_cfg.coalesce_window_ns))
                flush_denials(*job);
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
        if (!ending->stage.empty()) remove_tree(ending->stage);
        job->rec.state = "finished";
        job->rec.ended_ns = now_realtime_ns();
        job->rec.cause = "setup-failed";
        job->rec.detail = e.message;
        emit(job->id, store::EventKind::Lifecycle,
             {{"event", "finished"}, {"cause", "setup-failed"}, {"detail", e.message}});
        (void)m_cfg.store->finish_job(job->rec);
        if (job->cg) {
            (void)job->cg->kill_all();
            (void)job->cg->destroy();
        }
        if (job->uid) m_uids_in_use.erase(job->uid);
        if (job->root_uid) m_uids_in_use.erase(job->root_uid);
        result.setup_error = e;
        return result;
    };

    if (tier == policy::Tier::Vm)
        return setup_failed(Error::msg("tier \"vm\" is not available in this moatd (supported: seccomp, container)"));
    const bool container = tier == policy::Tier::Container;
    if (container && m_cfg.init_exe_fd < 0)
        return setup_failed(Error::msg("the container tier needs moat-init, which moatd did not find at start "
                                       "(see moatd --init)"));
    if (m_jobs.size() >= m_cfg.max_jobs)
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
    if (auto r = snapshot_inputs(*ending, job->id, req.inputs, container, job->root_uid); !r)
        return setup_failed(r.error());
    if (!ending->blobs.empty() || !req.inputs.empty()) {
        ending->recording["stdin"] = nullptr;
        (void)m_cfg.store->set_recording(job->id, ending->recording, ending->blobs);
    }

    auto exe = resolve_program(req.argv[0], job->rec.env, job->rec.cwd);
    if (!exe) return setup_failed(exe.error());
    const auto& fs = pol->filesystem;

    // Filesystem view: Landlock on the host's tree (seccomp tier) or a new
    // root built from mounts (container tier).
    sandbox::LandlockRuleset ll_storage;
    sandbox::LandlockRuleset* ll = &ll_storage;
    std::vector<sandbox::MountSpec> mounts;
    if (container) {
        if (pol->network == policy::NetworkMode::Host)
            return setup_failed(Error::msg("network.mode = \"host\" is not supported in the container tier "
                                           "(it always gets its own network namespace)"));
        std::vector<sandbox::InputMount> ins;
        for (const auto& in : req.inputs) ins.push_back({in.host_path, in.sandbox_path});
        auto m = sandbox::plan_mounts(fs.read_only, fs.read_write, fs.tmpfs, fs.tmpfs_size_bytes, ins);
        if (!m) return setup_failed(m.error().wrap("planning the container's mounts"));
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
            return setup_failed(Error::msg("program " + *exe +
                                           " is not inside any filesystem.read_only or read_write mount of the "
                                           "container"));
    } else {
        std::vector<sandbox::ExtraPath> extra;
        for (const auto& in : req.inputs) {
            if (in.sandbox_path != in.host_path)
                return setup_failed(Error::msg("--input " + in.host_path + ":" + in.sandbox_path +
                                               ": the seccomp tier has no mount namespace, so an input is visible only "
                                               "at its host path"));
            extra.push_back({in.host_path, false});
        }
        auto llr = sandbox::build_landlock(fs, pol->network, extra);
        if (!llr) return setup_failed(llr.error().wrap("building the Landlock ruleset"));
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
                return setup_failed(Error::msg("program " + *exe +
                                               " is outside the policy's filesystem (add its directory to "
                                               "filesystem.read_only)"));
        }

    }

    // The job's stdio: pipes whose other ends the relay owns.
    UniqueFd job_ends[3], our_ends[3];
    for (int i = 0; i < 3; ++i) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) return setup_failed(Error::sys("pipe2(stdio)", errno));
        // stdin: the job reads p[0]; stdout/stderr: the job writes p[1].
        job_ends[i].reset(i == 0 ? p[0] : p[1]);
        our_ends[i].reset(i == 0 ? p[1] : p[0]);
    }

    auto filter = m_filters.get(*pol);
    if (!filter) return setup_failed(filter.error().wrap("compiling the seccomp filter"));
    job->filter = *filter;

    auto uid = allocate_uid();
    if (!uid) return setup_failed(uid.error());
    job->uid = *uid;

    cgroup::Limits cl;
    cl.memory_bytes = pol->limits.memory_bytes;
    cl.pids = pol->limits.pids;
    auto cg = cgroup::JobCgroup::create(m_cfg.cgroups, m_cfg.cgroup_parent, "job-" + std::to_string(job->id), cl);
    if (!cg) return setup_failed(cg.error().wrap("creating the job cgroup"));
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
            return setup_failed(Error::sys("memfd(plan)", errno));
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
        if (!sp) return setup_failed(sp.error());
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
        if (!sp) return setup_failed(sp.error());
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

    Job* raw = job.get();
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
    m_jobs.emplace(raw->id, std::move(job));
    return result;
}

Result<void> Supervisor::snapshot_inputs(Ending& e, int64_t job_id, std::vector<InputFile>& inputs, bool container,
                                         uid_t stage_owner) {
    nlohmann::json list = nlohmann::json::array();
    for (size_t k = 0; k < inputs.size(); ++k) {
        InputFile& in = inputs[k];
        nlohmann::json rec = {{"host", in.host_path}, {"sandbox", in.sandbox_path}, {"sha256", nullptr}, {"bytes", 0}};
        if (!in.snapshot.empty()) {
            // Replay: the job must see exactly what the original saw.
            if (!m_cfg.artifacts || !store::valid_sha256(in.snapshot) || !m_cfg.artifacts->exists(in.snapshot))
                return fail("the recorded snapshot of input " + in.host_path + " is gone from the artifact store");
            const std::string blob = m_cfg.artifacts->path(in.snapshot);
            struct stat st{};
            if (stat(blob.c_str(), &st) == 0) rec["bytes"] = uint64_t(st.st_size);
            if (container) {
                // Staged where the container's root can reach it (the state
                // dir is 0700), owned by that root, readable by the job.
                if (e.stage.empty()) {
                    mkdir(m_cfg.stage_dir.c_str(), 0711);
                    e.stage = m_cfg.stage_dir + "/job-" + std::to_string(job_id);
                    if (mkdir(e.stage.c_str(), 0700) < 0) {
                        int err = errno;
                        e.stage.clear();
                        return std::unexpected(Error::sys("mkdir " + m_cfg.stage_dir + "/job-" + std::to_string(job_id), err));
                    }
                    if (chown(e.stage.c_str(), stage_owner, stage_owner) < 0)
                        return std::unexpected(Error::sys("chown " + e.stage, errno));
                }
                std::string staged = e.stage + "/input-" + std::to_string(k);
                if (auto r = copy_file(blob, staged, stage_owner); !r)
                    return std::unexpected(r.error().wrap("putting back input " + in.host_path));
                in.host_path = staged;
            } else {
                uint64_t size = 0;
                auto now = file_sha256(in.host_path, &size);
                if (!now || *now != in.snapshot)
                    return fail("input " + in.host_path + " is not the file the job saw (recorded sha256 " +
                                in.snapshot.substr(0, 12) + "..., now " +
                                (now ? now->substr(0, 12) + "..." : now.error().message) +
                                "); the seccomp tier has no mount namespace to put the snapshot back: restore the "
                                "file or replay with --tier container");
            }
            rec["sha256"] = in.snapshot;
            e.blobs.push_back(in.snapshot);
        } else if (m_cfg.artifacts) {
            UniqueFd fd(open(in.host_path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
            struct stat st{};
            if (!fd || fstat(fd.get(), &st) < 0) {
                rec["note"] = std::string("not snapshotted: ") + strerror(errno);
            } else if (!S_ISREG(st.st_mode)) {
                rec["note"] = "not snapshotted: not a regular file (only files are recorded for replay)";
            } else if (uint64_t(st.st_size) > m_cfg.record_input_max) {
                rec["note"] = "not snapshotted: " + format_size(uint64_t(st.st_size)) + " is over the snapshot limit of " +
                              format_size(m_cfg.record_input_max) + " (moatd --record-input-max)";
            } else if (auto b = m_cfg.artifacts->put_fd(fd.get(), m_cfg.record_input_max); !b) {
                rec["note"] = "not snapshotted: " + b.error().message;
            } else if (auto r = m_cfg.store->put_blob(b->sha256, b->bytes); !r) {
                rec["note"] = "not snapshotted: " + r.error().message;
            } else {
                rec["sha256"] = b->sha256;
                rec["bytes"] = b->bytes;
                e.blobs.push_back(b->sha256);
            }
        }
        list.push_back(std::move(rec));
    }
    e.recording["inputs"] = std::move(list);
    return {};
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
    std::optional<std::string> decoded = native ? decode_args(tid, nr, args) : std::nullopt;
    std::optional<std::string> module = job.modules.resolve(tid, req->data.instruction_pointer);
    if (decoded) decoded = printable(*decoded);
    if (module) module = printable(*module);
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
        emit(job.id, store::EventKind::Lifecycle,
             {{"event", "exec"}, {"pid", tid}, {"path", decoded ? nlohmann::json(*decoded) : nlohmann::json(nullptr)}});
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
    key += '\0';
    if (decoded) key += *decoded;
    auto it = job.pending.find(key);
    if (it != job.pending.end()) {
        ++it->second.count;
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
        if (job.pending.empty()) job.oldest_pending_mono = now_monotonic_ns();
        job.pending.emplace(std::move(key), Job::Pending{now_realtime_ns(), 1, std::move(fields)});
        if (job.pending.size() >= kMaxPendingKeys) flush_denials(job);
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
    for (auto* p : rows) emit(job.id, store::EventKind::Denial, std::move(p->fields), p->count, p->first_ns);
    job.pending.clear();
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
    auto it = m_jobs.find(job_id);
    if (it == m_jobs.end()) return fail("job " + std::to_string(job_id) + " is not running");
    kill_job(*it->second, "stopped", why);
    return {};
}

void Supervisor::stop_all(const std::string& why, std::function<void()> on_all_done) {
    m_on_all_done = std::move(on_all_done);
    if (m_jobs.empty()) {
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
    if (m_jobs.empty() && m_ending.empty() && m_on_all_done) {
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
