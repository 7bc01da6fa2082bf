// The seccomp tier: the job runs on the host's filesystem tree as its own
// unprivileged uid, confined by Landlock (read_only/read_write/inputs), rlimits,
// its cgroup and the syscall filter. No namespaces.
#include <climits>
#include <cstdlib>

#include "local.h"
#include "moat/common/sha256.h"
#include "moat/sandbox/landlock.h"

namespace moat::supervisor {

namespace {

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

// The sha256 of the manifest of the tree at `dirfd` now, read with the
// replaying client's rights (as the recording was read with the client's),
// within the bounds a recording has.
Result<std::string> tree_sha256(int dirfd, const ClientCreds& who, const Config& cfg, uint64_t* bytes,
                                const std::atomic<bool>& cancel) {
    const TreeLimits limits{cfg.record_input_max, cfg.record_input_entries};
    FileSink hash = [&](int fd, uint64_t max) -> Result<FileDigest> {
        FileDigest d;
        auto sha = fd_sha256(fd, &d.bytes, cancel);
        if (!sha) return std::unexpected(sha.error());
        d.sha256 = std::move(*sha);
        d.truncated = d.bytes > max;
        return d;
    };
    auto w = walk_tree_as_client(dirfd, who, limits, hash, cancel);
    if (!w) return std::unexpected(w.error());
    *bytes = w->bytes;
    return sha256_hex(encode_manifest(w->manifest));
}

struct SeccompPlan final : Plan {
    sandbox::LandlockRuleset landlock;
};

class SeccompTier final : public Tier {
public:
    policy::Tier kind() const override { return policy::Tier::Seccomp; }
    std::optional<Error> unavailable() const override { return std::nullopt; }

    Result<void> restore_input(const Config& cfg, int64_t, size_t, InputFile& in, const std::string&, const Identities&,
                               const ClientCreds& who, const std::atomic<bool>& cancel, std::string&, UniqueFd& fd,
                               struct stat& st, nlohmann::json& rec) const override {
        // The host file must still be the one the job saw. It is opened with
        // the replaying client's rights, never moatd's.
        auto f = open_as_client(who, in.host_path);
        if (!f) return std::unexpected(f.error().wrap("input " + in.host_path));
        fd = std::move(*f);
        uint64_t size = 0;
        auto now = in.tree ? tree_sha256(fd.get(), who, cfg, &size, cancel) : fd_sha256(fd.get(), &size, cancel);
        if (!now || *now != in.snapshot)
            return fail("input " + in.host_path + " is not the " + (in.tree ? "directory tree" : "file") +
                        " the job saw (recorded sha256 " +
                        in.snapshot.substr(0, 12) + "..., now " +
                        (now ? now->substr(0, 12) + "..." : now.error().message) +
                        "); the seccomp tier has no mount namespace to put the snapshot back: restore the file or "
                        "replay with --tier container");
        if (fstat(fd.get(), &st) < 0) return std::unexpected(Error::sys("fstat " + in.host_path, errno));
        rec["bytes"] = size;
        rec["opened_by"] = "uid " + std::to_string(who.uid) + " (the replaying client)";
        return {};
    }

    Result<std::unique_ptr<Plan>> plan(const LaunchInput& in) const override {
        const auto& fs = in.policy->filesystem;
        if (in.policy->network == policy::NetworkMode::Engine)
            return fail("network.mode = \"engine\" (a network namespace from the client) needs the container tier");
        const auto& inputs = *in.inputs;
        std::vector<sandbox::ExtraPath> extra;
        for (size_t k = 0; k < inputs.size(); ++k) {
            const auto& input = inputs[k];
            if (input.sandbox_path != input.host_path)
                return fail("--input " + input.host_path + ":" + input.sandbox_path +
                            ": the seccomp tier has no mount namespace, so an input is visible only at its host path");
            // The rule is bound to the inode behind the client's fd: if the path
            // is swapped for something else later, the job is refused that.
            sandbox::ExtraPath x{input.host_path, false};
            if (k < in.input_fds->size()) x.fd = (*in.input_fds)[k].get();
            extra.push_back(std::move(x));
        }
        if (std::string why = unenforceable_read_only(fs, extra); !why.empty()) return fail(why);
        auto llr = sandbox::build_landlock(fs, in.policy->network, extra);
        if (!llr) return std::unexpected(llr.error().wrap("building the Landlock ruleset"));
        auto p = std::make_unique<SeccompPlan>();
        p->landlock = std::move(*llr);
        if (p->landlock.fd) {
            const std::string& exe = in.exe;
            bool covered = false;
            for (const auto& d : fs.read_only) covered = covered || path_under(exe, d);
            for (const auto& d : fs.read_write) covered = covered || path_under(exe, d);
            char real[PATH_MAX];
            if (!covered && realpath(exe.c_str(), real)) {
                for (const auto& d : fs.read_only) covered = covered || path_under(real, d);
                for (const auto& d : fs.read_write) covered = covered || path_under(real, d);
            }
            if (!covered)
                return fail("program " + exe +
                            " is outside the policy's filesystem (add its directory to filesystem.read_only)");
        }
        return p;
    }

    Result<std::unique_ptr<Running>> launch(Plan& plan, const LaunchInput& in) const override {
        auto& p = static_cast<SeccompPlan&>(plan);
        sandbox::SpawnPlan sp;
        sp.exe = in.exe;
        sp.argv = *in.argv;
        sp.env = *in.env;
        sp.cwd = in.cwd;
        sp.uid = in.uid;
        sp.gid = in.uid;
        sp.rlimits = in.rlimits;
        for (int i = 0; i < 3; ++i) sp.stdio[i] = in.stdio[i];
        sp.filter = &in.filter->program();
        sp.landlock_fd = p.landlock.fd.get();
        sp.cgroup = in.cgroup;
        sp.all_cpus = in.learn;
        auto s = sandbox::spawn_seccomp_job(sp);
        if (!s) return std::unexpected(s.error());
        return std::make_unique<LocalRunning>(std::move(*s));
    }

    void describe(const Plan& plan, const LaunchInput& in, const Running& run, nlohmann::json& info) const override {
        const auto& ll = static_cast<const SeccompPlan&>(plan).landlock;
        const auto& proc = static_cast<const LocalRunning&>(run).proc();
        info["spawn_us"] = (proc.ready_ns - proc.fork_ns) / 1000;
        describe_cpus(proc, in.learn, info);
        info["notes"] = ll.notes;
        info["landlock_abi"] = ll.abi;
        info["landlock"] = ll.abi > 0 ? "enforced"
                                      : (in.policy->filesystem.landlock == policy::LandlockMode::Off ? "off" : "unavailable");
        info["landlock_net"] = ll.net_restricted;
        info["landlock_scoped"] = ll.scoped;
    }
};

}  // namespace

std::unique_ptr<Tier> make_seccomp_tier() { return std::make_unique<SeccompTier>(); }

}  // namespace moat::supervisor
