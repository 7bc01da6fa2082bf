#pragma once
// The seam between the supervisor and the isolation tiers (docs/architecture.md,
// "Tiers"). The supervisor runs one pipeline for every job — record, prepare
// inputs, plan, launch, judge each notified syscall, sample, enforce limits,
// finish — and asks the job's Tier for what differs: which identities it
// needs, how a recorded input is put back, how the filesystem view is built,
// how the job is started, and how a running job is watched, stopped and
// described. The supervisor knows no tier by name; each tier is a module in
// src/tiers/.
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/cgroup/cgroup.h"
#include "moat/common/error.h"
#include "moat/common/event_loop.h"
#include "moat/common/fd.h"
#include "moat/common/paths.h"
#include "moat/compiler/seccomp_compiler.h"
#include "moat/policy/policy.h"
#include "moat/sandbox/container_plan.h"
#include "moat/sandbox/spawn.h"
#include "moat/store/store.h"
#include "moat/supervisor/supervisor.h"
#include "tree.h"

namespace moat::supervisor {

// A syscall the job's filter sent to user space, decoded where the job runs:
// by moatd for the tiers on this kernel, by the guest agent in a VM (where
// `decoded` and `module` are the guest's word and can lie).
struct Notice {
    pid_t pid = 0;
    int nr = 0;
    uint32_t arch = 0;
    uint64_t args[6] = {};
    uint64_t ip = 0;
    std::optional<std::string> decoded;  // printable already
    std::optional<std::string> module;   // printable already
    bool modules_off = false;            // module not looked up (the supervisor-time budget)
};

// The supervisor's verdict on a Notice, which the tier carries out.
struct Answer {
    enum class Kind {
        Continue,  // let the kernel run the syscall (SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        Fail,      // fail it with -error
        Trap,      // fail it with -ENOSYS and send the thread SIGSYS
        Kill,      // never answer: the job is being killed with the call pending
    };
    Kind kind = Kind::Fail;
    int error = 0;
};

// How the job's first process ended, as the tier saw it.
struct Outcome {
    std::optional<int> exit_code;
    std::optional<int> signal;
    // The job never ran its program (a failed execve, with the tier's words).
    std::optional<sandbox::SetupRecord> exec_failure;
    // A cause the tier determined itself (a VM that did not boot, a guest that
    // stopped talking), with its detail. Overrides the status above; a kill
    // by the supervisor (limits, stop, seccomp) still takes precedence.
    std::optional<std::string> cause;
    std::string detail;
};

// What a running job tells the supervisor. Called on the loop thread.
class JobEvents {
public:
    virtual ~JobEvents() = default;
    virtual Answer notice(const Notice& n) = 0;
    // The job's process (and everything the tier runs for it) has ended.
    virtual void exited() = 0;
    // A lifecycle or limit event about the job, stored as it is.
    virtual void event(store::EventKind kind, nlohmann::json fields) = 0;
    // Adds to the job's `sandbox` info what was learned after the launch (a
    // VM's boot time) and stores it.
    virtual void info(const nlohmann::json& patch) = 0;
    // The job's wall clock starts now (for a Running whose clock_at_launch()
    // is false: a VM's boot is not the job's time; it has its own timeout).
    virtual void start_clock() = 0;
};

// A started job, as its tier runs it.
class Running {
public:
    virtual ~Running() = default;
    // The process moatd started and signals (recorded as the job's pid).
    virtual pid_t pid() const = 0;
    // Starts delivering notices and the exit to `events` from the loop.
    virtual void watch(EventLoop& loop, JobEvents& events) = 0;
    // Takes everything off the loop (before the Running is destroyed).
    virtual void unwatch(EventLoop& loop) = 0;
    // Whether limits.wall_time counts from the launch (else from start_clock()).
    virtual bool clock_at_launch() const { return true; }
    // SIGKILL to what runs the job; the supervisor also empties its cgroup.
    virtual void kill() = 0;
    // The job's own end is known although exited() has not come yet: a kill
    // now (a stop, a limit) must not be recorded as its cause. Reads what is
    // waiting to be read; never blocks.
    virtual bool ended() { return false; }
    // Handles now what already waits on what watch() registered (the
    // seccomp and container tiers: a pending notification, the job's first
    // execve), as the loop would on its next turn.
    virtual void answer_waiting() {}
    // Delivers an operator's catchable signal to the job's program.
    virtual Result<void> signal(int sig) {
        (void)sig;
        return fail("this tier cannot pass a signal to its job; stop it instead");
    }
    // After exited(): a process of the tier's that is still on its way out
    // although the job's end is known: the container tier's init, which
    // reported the job's wait status and emptied its pid namespace before
    // exiting (its namespaces' teardown is not the client's wait). Its pidfd;
    // the supervisor reaps it, then removes the job's cgroup. Empty (and
    // the supervisor empties the cgroup itself) when nothing is left.
    virtual UniqueFd take_exiting() { return {}; }
    // After exited(): reads what is left to read and says how the job ended.
    virtual Outcome outcome() = 0;
    // Figures the finished lifecycle event carries about this tier's work.
    virtual nlohmann::json costs() const { return nlohmann::json::object(); }
    // The job's resource figures from where it runs, given the host cgroup's
    // (a VM's guest reports its own memory, pids and OOM kills).
    virtual cgroup::Sample adjust_sample(const cgroup::Sample& host) { return host; }
    // Non-fatal set-up problems met while starting (each becomes a note in the
    // job's info and a setup-warning event).
    virtual std::vector<std::string> setup_notes() const { return {}; }
    // Steps of the start reached inside the sandbox (the container tier's
    // init: sandbox::report_timing) with their CLOCK_MONOTONIC ns, in order;
    // they join sandbox.startup_us.
    virtual std::vector<std::pair<const char*, int64_t>> inner_steps() const { return {}; }
    // What the tier counted while the job ran, merged into the job's `sandbox`
    // info once, when it ends (never a store write per call): e.g. the clone3
    // calls answered ENOSYS. Empty when there is nothing to add.
    virtual nlohmann::json end_info() const { return nlohmann::json::object(); }
};

// Everything a tier plans and launches from. Owned by the supervisor.
struct LaunchInput {
    int64_t job_id = 0;
    const Config* cfg = nullptr;
    const policy::Policy* policy = nullptr;
    std::string exe;                 // the program, resolved (resolve_program)
    const std::vector<std::string>* argv = nullptr;
    const std::vector<std::string>* env = nullptr;
    std::string cwd;
    const std::vector<InputFile>* inputs = nullptr;
    const std::vector<UniqueFd>* input_fds = nullptr;       // per input, as prepared (may be shorter)
    const std::vector<struct stat>* input_st = nullptr;     // and their identity
    std::shared_ptr<void> prepared;  // what Tier::prepare() made on the worker thread
    // Filled in by the supervisor between plan() and launch():
    uid_t uid = 0;        // the job's host uid
    uid_t root_uid = 0;   // reserved by the tier (Identities), 0 if none
    cgroup::JobCgroup* cgroup = nullptr;
    // The job's cgroup as the supervisor holds it: a tier that brings its own
    // (a warm VM's) may put it here in place of the one created for the job.
    std::optional<cgroup::JobCgroup>* cgroup_slot = nullptr;
    sandbox::Rlimits rlimits;
    const compiler::CompiledFilter* filter = nullptr;
    int stdio[3] = {-1, -1, -1};  // the job's ends of its stdio pipes
    // The client's root filesystem (JobRequest::rootfs), or null; the
    // program is then `exe` as named (resolved inside by the tier).
    const ClientRootfs* rootfs = nullptr;
    // A learn replay (JobRequest::learn): the job gets every CPU its cgroup
    // allows, whatever moatd's own affinity (docs/replay.md, "--learn").
    bool learn = false;
};

// Host uids a tier needs beyond the job's own, reserved before the inputs are
// prepared (a replayed input is staged for them).
struct Identities {
    uid_t root_uid = 0;
};

// What a tier keeps between plan() and launch(): its view of the filesystem.
class Plan {
public:
    virtual ~Plan() = default;
};

class Tier {
public:
    virtual ~Tier() = default;
    virtual policy::Tier kind() const = 0;
    // Why this moatd cannot run the tier, or nullopt.
    virtual std::optional<Error> unavailable() const = 0;
    // Host cgroup limits for the job's cgroup (what runs the job: its
    // processes, or a VMM and its guest).
    virtual cgroup::Limits host_limits(const policy::Policy& pol) const {
        cgroup::Limits l;
        l.memory_bytes = pol.limits.memory_bytes;
        l.pids = pol.limits.pids;
        return l;
    }
    // Reserves extra identities with `allocate` (returns a free host uid).
    virtual Result<void> reserve(Identities& ids, const std::function<Result<uid_t>()>& allocate) const {
        (void)ids;
        (void)allocate;
        return {};
    }
    // Slow work done on the job's worker thread before plan() (a VM's root
    // image), never on the loop. Thread-safe; `cancel` is set by a stop.
    virtual bool prepares() const { return false; }
    virtual Result<std::shared_ptr<void>> prepare(const policy::Policy& pol, const std::atomic<bool>& cancel) const {
        (void)pol;
        (void)cancel;
        return nullptr;
    }
    // Replay, on a worker thread: puts the recorded snapshot `blob` of input
    // `in` back for the job, or checks that the host file still is it. On
    // success `fd`/`st` are what the job is granted and `rec` says what was
    // done. `stage` is the job's staging directory ("" until one is made).
    virtual Result<void> restore_input(const Config& cfg, int64_t job_id, size_t index, InputFile& in,
                                       const std::string& blob, const Identities& ids, const ClientCreds& who,
                                       const std::atomic<bool>& cancel, std::string& stage, UniqueFd& fd,
                                       struct stat& st, nlohmann::json& rec) const = 0;
    // Checks the policy against the tier and builds the job's filesystem view.
    // Nothing is started; an error is the job's setup failure.
    virtual Result<std::unique_ptr<Plan>> plan(const LaunchInput& in) const = 0;
    // Starts the job. On success it is blocked before its program's first
    // instruction until the Running is watched and answers its first exec.
    virtual Result<std::unique_ptr<Running>> launch(Plan& plan, const LaunchInput& in) const = 0;
    // The job's `sandbox` info (the record's info object) for this tier.
    virtual void describe(const Plan& plan, const LaunchInput& in, const Running& run, nlohmann::json& info) const = 0;
};

// What the supervisor lends its tiers (a tier that runs things of its own
// between jobs, like the VM tier's warm pool, takes uids from the same pool).
struct TierHost {
    EventLoop* loop = nullptr;
    std::function<Result<uid_t>()> allocate_uid;
    std::function<void(uid_t)> release_uid;
};

// The tiers this moatd has, in policy::Tier order.
std::vector<std::unique_ptr<Tier>> make_tiers(const Config& cfg, TierHost host);

// Helpers shared by tiers.
using moat::path_under;  // moat/common/paths.h
// Whether `exe` (as named, or resolved through host symlinks) lies under the
// target of a bind mount in `mounts` (read-only ones only, when asked).
bool program_under_binds(const std::string& exe, const std::vector<sandbox::MountSpec>& mounts, bool read_only_only);
void remove_tree(const std::string& dir);
Result<std::string> fd_sha256(int fd, uint64_t* size, const std::atomic<bool>& cancel);
Result<void> copy_file(const std::string& from, const std::string& to, uid_t owner, const std::atomic<bool>& cancel);
// walk_tree (tree.h) with the credentials of `who` on this thread for every
// lookup and open in the tree (as open_as_client), and moatd's own back for
// each call of `sink` (which may write moatd's blob store). The thread ends
// with moatd's credentials whatever happens.
Result<TreeWalk> walk_tree_as_client(int dirfd, const ClientCreds& who, const TreeLimits& limits, const FileSink& sink,
                                     const std::atomic<bool>& cancel);

}  // namespace moat::supervisor
