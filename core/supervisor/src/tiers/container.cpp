// The container tier: the job runs in new user, mount, pid, network, ipc, uts
// and cgroup namespaces, on a root built from the policy's mounts by moat-init,
// with the same filter, rlimits and cgroup as the seccomp tier.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "local.h"
#include "moat/common/log.h"
#include "moat/common/timeutil.h"
#include "moat/policy/container_dev.h"
#include "moat/sandbox/container_plan.h"

namespace moat::supervisor {

namespace {

struct ContainerPlanned final : Plan {
    std::vector<sandbox::MountSpec> mounts;
};

std::string hostname_of(const policy::Policy& pol, int64_t job_id) {
    return pol.hostname.empty() ? "job-" + std::to_string(job_id) : pol.hostname;
}

// A directory input's tree rebuilt in the stage directory (tree.h: every
// entry is created relative to its parent's fd, never through a symlink).
Result<void> restore_tree_in(const std::string& stage, const std::string& name, const TreeManifest& m, uid_t owner,
                             const Config& cfg, const std::atomic<bool>& cancel) {
    UniqueFd dir(::open(stage.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return std::unexpected(Error::sys("open " + stage, errno));
    auto blob_path = [&](const std::string& sha) { return cfg.artifacts->path(sha); };
    return restore_tree(m, dir.get(), name, owner, blob_path, cancel);
}

uint64_t tree_bytes(const TreeManifest& m) {
    uint64_t n = 0;
    for (const auto& e : m.entries) n += e.size;
    return n;
}

class ContainerTier final : public Tier {
public:
    explicit ContainerTier(const Config& cfg) : m_cfg(cfg) {}

    policy::Tier kind() const override { return policy::Tier::Container; }
    std::optional<Error> unavailable() const override {
        if (m_cfg.init_exe_fd < 0)
            return Error::msg("the container tier needs moat-init, which moatd did not find at start (see moatd --init)");
        return std::nullopt;
    }

    // The container's root maps to its own unprivileged host uid, the job
    // (uid 1000 inside) to another: neither is ever host root or shared.
    // Reserved early: replayed inputs are staged for it.
    Result<void> reserve(Identities& ids, const std::function<Result<uid_t>()>& allocate) const override {
        auto root_uid = allocate();
        if (!root_uid) return std::unexpected(root_uid.error());
        ids.root_uid = *root_uid;
        return {};
    }

    Result<void> restore_input(const Config& cfg, int64_t job_id, size_t index, InputFile& in, const std::string& blob,
                               const Identities& ids, const ClientCreds&, const std::atomic<bool>& cancel,
                               std::string& stage, UniqueFd& fd, struct stat& st, nlohmann::json& rec) const override {
        // Staged where the container's root can reach it (the state dir is
        // 0700), owned by that root, readable by the job.
        const uid_t owner = ids.root_uid;
        if (stage.empty()) {
            mkdir(cfg.stage_dir.c_str(), 0711);
            std::string dir = cfg.stage_dir + "/job-" + std::to_string(job_id);
            if (mkdir(dir.c_str(), 0700) < 0) return std::unexpected(Error::sys("mkdir " + dir, errno));
            stage = dir;
            if (chown(dir.c_str(), owner, owner) < 0) return std::unexpected(Error::sys("chown " + dir, errno));
        }
        const std::string name = "input-" + std::to_string(index);
        const std::string staged = stage + "/" + name;
        if (auto r = in.tree ? restore_tree_in(stage, name, *in.tree, owner, cfg, cancel)
                             : copy_file(blob, staged, owner, cancel);
            !r)
            return std::unexpected(r.error().wrap("putting back input " + in.host_path));
        in.host_path = staged;
        fd.reset(::open(staged.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!fd || fstat(fd.get(), &st) < 0) return std::unexpected(Error::sys("open " + staged, errno));
        rec["bytes"] = in.tree ? tree_bytes(*in.tree) : uint64_t(st.st_size);
        if (in.tree) rec["entries"] = in.tree->entries.size();
        return {};
    }

    Result<std::unique_ptr<Plan>> plan(const LaunchInput& in) const override {
        const auto& pol = *in.policy;
        const auto& fs = pol.filesystem;
        if (pol.network == policy::NetworkMode::Host)
            return fail("network.mode = \"host\" is not supported in the container tier "
                        "(it always gets its own network namespace)");
        const bool given = in.rootfs && in.rootfs->netns;
        if (pol.network == policy::NetworkMode::Engine && !given)
            return fail("network.mode = \"engine\" joins the network namespace the client passes (moat-runtime: the "
                        "container engine's), and this client passed none");
        if (given && pol.network != policy::NetworkMode::Engine)
            return fail(std::string("the client passed a network namespace, but the policy's network.mode is \"") +
                        policy::network_mode_name(pol.network) + "\" (\"engine\" joins it)");
        std::vector<sandbox::InputMount> ins;
        for (size_t k = 0; k < in.inputs->size(); ++k) {
            const auto& input = (*in.inputs)[k];
            sandbox::InputMount m{input.host_path, input.sandbox_path};
            // moat-init binds exactly the inode the client opened (or the staged
            // copy): the path is looked up again there and must lead to it.
            if (k < in.input_st->size()) {
                m.verify = true;
                m.dev = uint64_t((*in.input_st)[k].st_dev);
                m.ino = uint64_t((*in.input_st)[k].st_ino);
            }
            ins.push_back(std::move(m));
        }
        auto m = sandbox::plan_mounts(fs.read_only, fs.read_write, fs.tmpfs, fs.tmpfs_size_bytes, ins);
        if (!m) return std::unexpected(m.error().wrap("planning the container's mounts"));
        auto p = std::make_unique<ContainerPlanned>();
        p->mounts = std::move(*m);
        if (in.rootfs) return plan_client_trees(*in.rootfs, std::move(p));
        // The program must be reachable inside: under a bind mount, directly or
        // through a host symlink the plan recreates (/bin -> usr/bin).
        if (!program_under_binds(in.exe, p->mounts, false))
            return fail("program " + in.exe + " is not inside any filesystem.read_only or read_write mount of the container");
        return p;
    }

    // The client's trees join the policy's mounts, parent before child; the
    // program is in the client's root, where moat-init looks a bare name up.
    static Result<std::unique_ptr<Plan>> plan_client_trees(const ClientRootfs& r, std::unique_ptr<ContainerPlanned> p) {
        if (r.binds.size() + 1 > sandbox::kMaxTrees)
            return fail("at most " + std::to_string(sandbox::kMaxTrees - 1) + " client mounts per job");
        struct stat st{};
        if (!r.root.fd || fstat(r.root.fd.get(), &st) < 0 || !S_ISDIR(st.st_mode))
            return fail("the client's root filesystem is not a directory");
        for (size_t i = 0; i < r.binds.size(); ++i) {
            const auto& b = r.binds[i];
            if (policy::container_dev(b.target, true) != policy::ContainerDev::Ordinary)
                return fail("client mount " + b.target + ": " + policy::container_dev_message(b.target));
            if (b.target == "/proc" || b.target.rfind("/proc/", 0) == 0)
                return fail("client mount " + b.target + ": the container's /proc is its own");
            sandbox::MountSpec ms;
            ms.kind = b.read_only ? sandbox::MountSpec::Kind::TreeRo : sandbox::MountSpec::Kind::TreeRw;
            ms.source = "(client tree " + std::to_string(i + 1) + ")";
            ms.target = b.target;
            ms.tree = int(i + 1);  // 0 is the root
            p->mounts.push_back(std::move(ms));
        }
        for (size_t a = 0; a < p->mounts.size(); ++a)
            for (size_t b = a + 1; b < p->mounts.size(); ++b)
                if (p->mounts[a].target == p->mounts[b].target) return fail("two mounts at " + p->mounts[a].target);
        std::stable_sort(p->mounts.begin(), p->mounts.end(), [](const sandbox::MountSpec& x, const sandbox::MountSpec& y) {
            auto depth = [](const std::string& t) { return std::count(t.begin(), t.end(), '/'); };
            return depth(x.target) != depth(y.target) ? depth(x.target) < depth(y.target) : x.target < y.target;
        });
        return std::unique_ptr<Plan>(std::move(p));
    }

    Result<std::unique_ptr<Running>> launch(Plan& plan, const LaunchInput& in) const override {
        const auto& pol = *in.policy;
        sandbox::ContainerPlan cp;
        cp.hostname = hostname_of(pol, in.job_id);
        cp.loopback = pol.network == policy::NetworkMode::Loopback;
        cp.newroot = m_cfg.newroot_dir;
        cp.mounts = static_cast<ContainerPlanned&>(plan).mounts;
        cp.rlimits = in.rlimits;
        cp.argv = *in.argv;
        cp.env = *in.env;
        cp.exe = in.exe;
        cp.cwd = in.cwd;
        cp.filter = in.filter->program();
        sandbox::ContainerSpawnPlan csp;
        if (in.rootfs) {
            cp.root_tree = 0;
            cp.root_read_only = in.rootfs->root.read_only;
            cp.dev_shm_size = in.rootfs->dev_shm_bytes;
            cp.resolve_exe = in.exe.find('/') == std::string::npos;
            csp.tree_fds.push_back(in.rootfs->root.fd.get());
            for (const auto& b : in.rootfs->binds) csp.tree_fds.push_back(b.fd.get());
            cp.trees = csp.tree_fds.size();
            if (in.rootfs->netns) csp.join_netns_fd = in.rootfs->netns.get();
        }
        std::string text = cp.to_json().dump();
        UniqueFd planfd(memfd_create("moat-plan", MFD_CLOEXEC));
        if (!planfd || ::write(planfd.get(), text.data(), text.size()) != ssize_t(text.size()))
            return std::unexpected(Error::sys("memfd(plan)", errno));
        csp.init_exe_fd = m_cfg.init_exe_fd;
        csp.plan_fd = planfd.get();
        csp.host_root_uid = csp.host_root_gid = in.root_uid;
        csp.host_job_uid = csp.host_job_gid = in.uid;
        csp.inside_uid = cp.uid;
        csp.inside_gid = cp.gid;
        for (int i = 0; i < 3; ++i) csp.stdio[i] = in.stdio[i];
        csp.cgroup = in.cgroup;
        csp.all_cpus = in.learn;
        csp.helper = helper();
        csp.loopback = cp.loopback;
        auto s = sandbox::spawn_container_job(csp);
        if (!s) return std::unexpected(s.error());
        if (!s->helper_failure.empty())
            moat::logf(moat::LogLevel::Warning, "spawn helper: %s; moatd cloned job %lld's init itself\n",
                       s->helper_failure.c_str(), static_cast<long long>(in.job_id));
        return std::make_unique<LocalRunning>(std::move(*s));
    }

    void describe(const Plan&, const LaunchInput& in, const Running& run, nlohmann::json& info) const override {
        const auto& proc = static_cast<const LocalRunning&>(run).proc();
        info["spawn_us"] = (proc.ready_ns - proc.fork_ns) / 1000;
        describe_cpus(proc, in.learn, info);
        info["init_started_by"] = proc.init_by;
        info["init_made_ahead"] = proc.init_made_ahead;
        if (!(in.rootfs && in.rootfs->netns))
            info["net_namespace"] = proc.net_made_ahead ? "made ahead by the spawn helper" : "made with the init";
        info["notes"] = nlohmann::json::array();
        info["namespaces"] = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"};
        if (in.rootfs && in.rootfs->netns) info["namespaces"] = {"user", "mnt", "pid", "ipc", "uts", "cgroup"};
        info["hostname"] = hostname_of(*in.policy, in.job_id);
        info["uid_inside"] = 1000;
        info["host_root_uid"] = in.root_uid;
        info["network"] = policy::network_mode_name(in.policy->network);
        info["landlock"] = "not used (mount namespace)";
        if (const auto* r = in.rootfs) {
            nlohmann::json binds = nlohmann::json::array();
            for (const auto& b : r->binds) binds.push_back({{"target", b.target}, {"read_only", b.read_only}});
            info["root"] = {{"from", "client"},
                            {"read_only", r->root.read_only},
                            {"origin", r->origin},
                            {"binds", binds},
                            {"dev_shm_bytes", r->dev_shm_bytes},
                            {"netns", r->netns ? "joined the client's" : "new"}};
        }
    }

private:
    // The spawn helper, started on the loop thread by the first container job
    // (the inits it clones are that thread's children: PR_SET_PDEATHSIG kills
    // them when it goes) and again when it is gone. After a failed start, or
    // when a helper younger than 10 s failed a request, moatd clones inits
    // itself for 10 s: a helper that keeps failing must not fail every job.
    sandbox::SpawnHelper* helper() const {
        if (!m_cfg.spawn_helper || !sandbox::SpawnHelper::supported()) return nullptr;
        if (m_helper && m_helper->usable()) return m_helper.get();
        const int64_t now = now_monotonic_ns();
        if (m_helper) {
            if (m_helper->failed_a_request() && now - m_helper_started_ns < kHelperBackoffNs)
                m_helper_retry_ns = now + kHelperBackoffNs;
            m_helper.reset();  // a dead one is reaped
        }
        if (now < m_helper_retry_ns) return nullptr;
        auto h = sandbox::SpawnHelper::start(m_cfg.init_exe_fd, sandbox::SpawnHelper::kAnswerMs, m_cfg.inits_ahead);
        if (!h) {
            moat::logf(moat::LogLevel::Warning, "spawn helper: %s; moatd starts container inits itself for now\n",
                       h.error().message.c_str());
            m_helper_retry_ns = now + kHelperBackoffNs;
            return nullptr;
        }
        m_helper = std::move(*h);
        m_helper_started_ns = now;
        moat::logf(moat::LogLevel::Info, "spawn helper started (pid %d)\n", int(m_helper->pid()));
        return m_helper.get();
    }

    const Config& m_cfg;
    mutable std::unique_ptr<sandbox::SpawnHelper> m_helper;
    mutable int64_t m_helper_retry_ns = 0, m_helper_started_ns = 0;
    static constexpr int64_t kHelperBackoffNs = 10'000'000'000;
};

}  // namespace

std::unique_ptr<Tier> make_container_tier(const Config& cfg) { return std::make_unique<ContainerTier>(cfg); }

}  // namespace moat::supervisor
