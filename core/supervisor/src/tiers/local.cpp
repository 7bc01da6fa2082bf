#include "local.h"

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "moat/common/log.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"

namespace moat::supervisor {

namespace {

// moatd's own time spent decoding one job's denials (reading its memory and
// /proc/PID/maps): past kWorkBudgetNs within kWorkWindowNs, module names are
// not resolved for that job for kModulesOffNs, so one job cannot make the
// loop slow for the others.
constexpr int64_t kWorkWindowNs = 1'000'000'000;
constexpr int64_t kWorkBudgetNs = 50'000'000;
constexpr int64_t kModulesOffNs = 5'000'000'000;

struct NotifBufs {
    seccomp_notif* req = nullptr;
    seccomp_notif_resp* resp = nullptr;
    NotifBufs() { seccomp_notify_alloc(&req, &resp); }
    ~NotifBufs() { seccomp_notify_free(req, resp); }
};

// SECCOMP_IOCTL_NOTIF_SET_FLAGS and its one flag (Linux 6.6; bookworm's
// headers predate them). The ioctl takes the flags as its argument's value.
constexpr unsigned long kNotifSetFlags = _IOW('!', 4, __u64);
constexpr unsigned long kNotifFdSyncWakeUp = 1;

// Synchronous wake-ups between the job and moatd: the answer to a
// notification wakes the job's task on the CPU that answered (the loop's,
// which then polls for the next notification, EventLoop::spin) instead of
// on the CPU it slept on. A job in a run of denials then ping-pongs with the
// loop on one CPU; without it, every answer was a wake-up of an idle CPU,
// which on a VM is an interrupt through the hypervisor to a halted vCPU
// (~12 us here, issue 15 row 3a: one job's denials 36k/s -> 140-180k/s, four
// jobs 125k/s -> 210k/s). Nothing else changes: on an older kernel the
// ioctl fails and the job runs as before (said once in moatd's log).
void set_sync_wake_up(int listener) {
    if (ioctl(listener, kNotifSetFlags, kNotifFdSyncWakeUp) == 0) return;
    static std::atomic<bool> said{false};
    const int e = errno;
    if (!said.exchange(true))
        moat::logf(moat::LogLevel::Notice,
                   "seccomp notifications wake jobs the usual way (SECCOMP_IOCTL_NOTIF_SET_FLAGS: %s%s)\n", strerror(e),
                   e == EINVAL || e == ENOTTY ? "; Linux 6.6 or later has it" : "");
}

}  // namespace

void LocalRunning::watch(EventLoop& loop, JobEvents& events) {
    m_loop = &loop;
    m_events = &events;
    set_sync_wake_up(m_proc.listener.get());
    (void)loop.add_fd(m_proc.listener.get(), EPOLLIN, [this](uint32_t ev) {
        if (ev & EPOLLIN) on_notify();
        if ((ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN) && m_listener_registered) {
            // Every task using the filter is gone.
            m_loop->remove_fd(m_proc.listener.get());
            m_listener_registered = false;
        }
    });
    m_listener_registered = true;
    (void)loop.add_fd(m_proc.pidfd.get(), EPOLLIN, [this](uint32_t) { on_exit(); });
    m_pidfd_registered = true;
    (void)loop.add_fd(m_proc.status.get(), EPOLLIN, [this](uint32_t) { on_status_ready(); });
    m_status_registered = true;
}

void LocalRunning::answer_waiting() {
    if (!m_listener_registered) return;
    pollfd p{m_proc.listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) on_notify();
}

void LocalRunning::unwatch(EventLoop& loop) {
    if (m_listener_registered) loop.remove_fd(m_proc.listener.get());
    if (m_status_registered) loop.remove_fd(m_proc.status.get());
    if (m_pidfd_registered) loop.remove_fd(m_proc.pidfd.get());
    m_listener_registered = m_status_registered = m_pidfd_registered = false;
}

Result<void> LocalRunning::signal(int sig) {
    if (m_proc.pidfd && syscall(SYS_pidfd_send_signal, m_proc.pidfd.get(), sig, nullptr, 0) == 0) return {};
    if (!m_proc.pidfd && ::kill(m_proc.pid, sig) == 0) return {};
    return std::unexpected(Error::sys("sending the signal", errno));
}

void LocalRunning::kill() { ::kill(m_proc.pid, SIGKILL); }

// Container tier: moat-init reported the job's wait status (it may still be
// emptying its namespace, or "emptied" may be unread). Seccomp tier: the
// job's process is a zombie not yet reaped (its pidfd event unread).
bool LocalRunning::ended() {
    if (m_status_registered) on_status();
    if (m_inner_status || m_waited_exit || m_waited_signal) return true;
    if (*m_proc.init_by || !m_proc.pidfd) return false;  // a container init's own exit says nothing of the job's
    siginfo_t si{};
    return waitid(idtype_t(3) /*P_PIDFD*/, id_t(m_proc.pidfd.get()), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid != 0;
}

void LocalRunning::on_exit() {
    // What the process wrote before it ended is read first: its timings
    // count at the job's end (Supervisor::finish).
    if (m_status_registered) on_status();
    siginfo_t si{};
    // P_PIDFD (3): reap exactly this child through its pidfd.
    if (waitid(idtype_t(3), id_t(m_proc.pidfd.get()), &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) return;
    if (si.si_code == CLD_EXITED) m_waited_exit = si.si_status;
    else m_waited_signal = si.si_status;
    m_events->exited();  // may destroy this
}

void LocalRunning::on_status() {
    auto s = sandbox::read_setup_status(m_proc.status.get());
    for (const auto& r : s.records) {
        if (std::string(r.step) == "exit" && !r.fatal) m_inner_status = r.err;  // moat-init: the job's wait status
        else if (r.fatal == sandbox::kSetupTiming) {
            if (const char* step = sandbox::timing_step(r.step)) {  // the init's end ("reaped", "emptied")
                m_proc.timings.emplace_back(step, sandbox::timing_ns(r));
                if (strcmp(step, "emptied") == 0) m_emptied = true;
            }
        } else if (sandbox::is_progress_record(r))
            continue;
        else if (r.fatal) m_exec_failure = r;
        else {
            std::string note = std::string(r.step) + "(\"" + r.detail + "\") failed: " + errno_name(r.err);
            m_events->event(store::EventKind::Lifecycle, {{"event", "setup-warning"}, {"detail", note}});
        }
    }
    if (s.eof) {
        m_loop->remove_fd(m_proc.status.get());
        m_status_registered = false;
    }
}

void LocalRunning::on_status_ready() {
    on_status();
    // The init reported the job's wait status, then killed and reaped
    // everything else in its pid namespace and closed the job's stdio: the job
    // has ended, whatever the init's own exit and its namespaces' teardown
    // still take (~0.25-0.45 ms here, issue 15). Only with the status: an init
    // that could not report it ends the job the old way, at its exit.
    if (!m_emptied || !m_inner_status || m_ended_early || !m_pidfd_registered) return;
    m_loop->remove_fd(m_proc.pidfd.get());
    m_pidfd_registered = false;
    m_ended_early = true;
    m_events->exited();  // may destroy this
}

UniqueFd LocalRunning::take_exiting() {
    if (!m_ended_early) return {};
    return std::move(m_proc.pidfd);
}

Outcome LocalRunning::outcome() {
    if (m_status_registered) on_status();
    // Seccomp tier: an execve that failed under the filter left its errno in
    // the shared word, not on the pipe (spawn.h: ExecFailureWord).
    if (!m_exec_failure) m_exec_failure = sandbox::exec_failure(m_proc);
    Outcome o;
    o.exec_failure = m_exec_failure;
    if (m_inner_status) {
        // Container tier: what counts is the job's status, not moat-init's.
        int st = *m_inner_status;
        if (WIFEXITED(st)) o.exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st)) o.signal = WTERMSIG(st);
    } else if (!m_exec_failure) {
        o.exit_code = m_waited_exit;
        o.signal = m_waited_signal;
    }
    return o;
}

nlohmann::json LocalRunning::costs() const {
    return {{"maps_reads", m_modules.reads()}, {"module_lookups_skipped", m_modules_skipped}};
}

nlohmann::json LocalRunning::end_info() const {
    return {{"clone3", {{"calls", m_clone3_calls}, {"threads", m_clone3_threads}}}};
}

void describe_cpus(const sandbox::Spawned& proc, bool learn, nlohmann::json& info) {
    if (proc.cpus > 0) info["cpus"] = proc.cpus;
    if (*proc.cgroup_join) info["cgroup_join"] = proc.cgroup_join;
    // What moatd did for a learn replay: every CPU the job's cgroup allows,
    // so threaded and CPU-count dependent paths show (docs/replay.md).
    if (learn)
        info["cpus_learn"] = {{"affinity", "every CPU the job's cgroup allows"},
                              {"before", proc.cpus_before},
                              {"after", proc.cpus}};
}

std::vector<std::string> LocalRunning::setup_notes() const {
    std::vector<std::string> out;
    for (const auto& w : m_proc.warnings)
        out.push_back(std::string(w.step) + "(\"" + w.detail + "\") failed: " + errno_name(w.err) + "; the job runs in /");
    return out;
}

void LocalRunning::on_notify() {
    static thread_local NotifBufs bufs;
    seccomp_notif* req = bufs.req;
    seccomp_notif_resp* resp = bufs.resp;
    const int listener = m_proc.listener.get();
    // The kernel requires a zeroed request buffer.
    memset(req, 0, sizeof *req);
    if (seccomp_notify_receive(listener, req) < 0) return;  // target died meanwhile (ENOENT)

    Notice n;
    n.nr = req->data.nr;
    n.arch = req->data.arch;
    n.pid = pid_t(req->pid);
    n.ip = req->data.instruction_pointer;
    for (int i = 0; i < 6; ++i) n.args[i] = req->data.args[i];
    const bool native = n.arch == AUDIT_ARCH_X86_64 && !(n.nr & 0x40000000);

    // Decode pointers only for the native ABI (the layouts are x86_64's).
    // What this costs moatd is the job's to decide (the size of its maps, where
    // its code lives): it is metered per job, and past kWorkBudgetNs the module
    // lookup (the part that can be expensive) is skipped for a while.
    const int64_t work_start = now_monotonic_ns();
    if (work_start - m_work_window_mono >= kWorkWindowNs) {
        m_work_window_mono = work_start;
        m_work_ns = 0;
    }
    n.decoded = native ? decode_args(n.pid, n.nr, n.args) : std::nullopt;
    n.modules_off = work_start < m_modules_off_until;
    // The job's first notice is its first execve, made by moatd's spawn code
    // (seccomp tier: in memory it shares with moatd, clone(CLONE_VM)) or
    // moat-init's (container tier: the init's child), right after the filter
    // was installed: nothing else runs under the filter before it. Its module
    // would name moatd or moat-init, and reading those maps took ~0.13 ms of
    // every job's start. Not looked up: that execve is always allowed (the
    // policy lint requires execve), and an allowed exec's row carries no
    // module. Any later execve, and every other call, is resolved as usual.
    const bool spawn_exec = native && !m_spawn_exec_seen && (n.nr == SYS_execve || n.nr == SYS_execveat);
    m_spawn_exec_seen = true;  // only the first notice can be that execve
    if (spawn_exec) {
    } else if (n.modules_off) {
        ++m_modules_skipped;
    } else if (m_last_module.pid == n.pid && m_last_module.ip == n.ip &&
               m_last_module.generation == m_modules.generation() && m_last_module.module) {
        n.module = m_last_module.module;  // what resolve() would answer again
    } else {
        n.module = m_modules.resolve(n.pid, n.ip, work_start);
        if (n.module) n.module = printable(*n.module);
        m_last_module = {n.pid, n.ip, m_modules.generation(), n.module};
    }
    if (n.decoded) n.decoded = printable(*n.decoded);
    m_work_ns += now_monotonic_ns() - work_start;
    if (m_work_ns > kWorkBudgetNs && !n.modules_off) {
        m_modules_off_until = work_start + kModulesOffNs;
        if (!m_work_limit_reported) {
            m_work_limit_reported = true;
            m_events->event(store::EventKind::Limit,
                            {{"limit", "supervisor-time"},
                             {"value_ns", kWorkBudgetNs},
                             {"window_ns", kWorkWindowNs},
                             {"used_ns", m_work_ns},
                             {"detail", "decoding this job's denials took moatd more than " +
                                            format_duration_ns(kWorkBudgetNs) + " in " +
                                            format_duration_ns(kWorkWindowNs) + ": module names are not resolved for " +
                                            format_duration_ns(kModulesOffNs) +
                                            " at a time while it goes on (module null, \"module_note\" says why)"}});
        }
    }
    // The memory we read is only meaningful if the request is still live: the
    // task may have died and its pid been reused while we were reading.
    if (seccomp_notify_id_valid(listener, req->id) < 0) return;

    resp->id = req->id;
    resp->val = 0;
    resp->error = 0;
    resp->flags = 0;

    if (native && n.nr == SYS_clone3) {
        // Every clone3 is refused (its flags live in memory, see the compiler).
        // ENOSYS sends glibc back to clone(); only an attempt whose flags ask
        // for namespaces is a denial worth recording. The flags are read after
        // the fact and only to describe the attempt, never to allow it.
        uint64_t flags = 0;
        auto raw = read_remote(n.pid, n.args[0], sizeof flags);
        if (raw) memcpy(&flags, raw->data(), sizeof flags);
        if (!raw || !(flags & compiler::kCloneNamespaceFlags)) {
            // Counted for the job's info (end_info): a learn proposal needs to
            // know that the job starts threads, which these probes alone show.
            ++m_clone3_calls;
            if (flags & CLONE_THREAD) ++m_clone3_threads;
            resp->error = -ENOSYS;
            seccomp_notify_respond(listener, resp);
            m_loop->spin_before_sleep();
            return;
        }
        static const std::pair<uint64_t, const char*> kNs[] = {
            {CLONE_NEWNS, "CLONE_NEWNS"},   {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {CLONE_NEWUTS, "CLONE_NEWUTS"},
            {CLONE_NEWIPC, "CLONE_NEWIPC"}, {CLONE_NEWUSER, "CLONE_NEWUSER"},     {CLONE_NEWPID, "CLONE_NEWPID"},
            {CLONE_NEWNET, "CLONE_NEWNET"}, {CLONE_NEWTIME, "CLONE_NEWTIME"}};
        std::string names;
        for (auto [bit, name] : kNs)
            if (flags & bit) names += (names.empty() ? "" : "|") + std::string(name);
        n.decoded = "flags " + names;
    }

    // The verdict (Supervisor::judge) never lets a clone3 run.
    const Answer a = m_events->notice(n);
    switch (a.kind) {
        case Answer::Kind::Continue:
            resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            if (native && (n.nr == SYS_execve || n.nr == SYS_execveat)) m_modules.forget(n.pid);
            break;
        case Answer::Kind::Fail:
            resp->error = -a.error;
            break;
        case Answer::Kind::Trap:
            resp->error = -ENOSYS;
            syscall(SYS_tgkill, m_proc.pid, n.pid, SIGSYS);
            break;
        case Answer::Kind::Kill:
            // Never answered: the task dies with the notification pending, so
            // the syscall can never run.
            return;
    }
    seccomp_notify_respond(listener, resp);
    // A job in a run of denials makes its next call within microseconds: the
    // loop polls a little before it sleeps (moatd --notify-spin; a sleep and
    // a wake-up per denial cost a third of the rate on one job here).
    m_loop->spin_before_sleep();
}

}  // namespace moat::supervisor
