// LocalRunning, the seccomp and container tiers' running job, at the end of a
// container job: moat-init reports the job's wait status ("exit"), kills and
// reaps the rest of its namespace, then says "emptied" and exits. The job's
// end is known at "emptied"; the init's own exit (its namespaces' teardown)
// must not hold the client's answer up (issue 15), and its pidfd goes to the
// supervisor to be reaped. A forked process that does not exit on its own
// plays the init here, so "ended before the init exited" is not a race.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "moat/common/event_loop.h"
#include "moat/sandbox/spawn.h"
#include "tiers/local.h"

namespace moat::supervisor {
namespace {

class Events final : public JobEvents {
public:
    explicit Events(EventLoop& loop) : m_loop(loop) {}
    Answer notice(const Notice&) override { return {}; }
    void exited() override {
        ++exits;
        m_loop.stop();
    }
    void event(store::EventKind, nlohmann::json) override {}
    void info(const nlohmann::json&) override {}
    void start_clock() override {}
    int exits = 0;

private:
    EventLoop& m_loop;
};

// A stand-in for the init: a child that waits until it is told to go (its
// pipe closes), with moatd's side of a status pipe.
struct FakeInit {
    pid_t pid = -1;
    int go_w = -1, status_w = -1;
    sandbox::Spawned proc;

    FakeInit() {
        int go[2], st[2];
        if (pipe2(go, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC | O_NONBLOCK) < 0) return;
        pid = fork();
        if (pid == 0) {
            close(go[1]);
            char c;
            (void)!read(go[0], &c, 1);
            _exit(0);
        }
        close(go[0]);
        go_w = go[1];
        status_w = st[1];
        proc.pid = pid;
        proc.pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
        proc.status.reset(st[0]);
        proc.listener.reset(eventfd(0, EFD_CLOEXEC));  // never readable: no notices
    }
    ~FakeInit() {
        if (go_w >= 0) close(go_w);
        if (status_w >= 0) close(status_w);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    void exit_record(int wait_status) const {
        sandbox::SetupRecord rec{};
        snprintf(rec.step, sizeof rec.step, "exit");
        rec.err = wait_status;
        rec.fatal = 0;
        ASSERT_EQ(write(status_w, &rec, sizeof rec), ssize_t(sizeof rec));
    }
    bool alive() const {
        siginfo_t si{};
        return waitid(P_PID, id_t(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
    }
};

// Runs the loop until the job's end or `ms`.
void run_for(EventLoop& loop, int ms) {
    auto t = loop.add_timer(uint64_t(ms) * 1'000'000, 0, [&] { loop.stop(); });
    ASSERT_TRUE(t.has_value());
    loop.run();
    loop.cancel_timer(*t);
}

TEST(LocalRunningTest, AContainerJobEndsAtItsInitsEmptiedReportWhileTheInitStillRuns) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.has_value());
    FakeInit init;
    ASSERT_GT(init.pid, 0);
    ASSERT_TRUE(init.proc.pidfd);
    const pid_t pid = init.pid;
    LocalRunning run(std::move(init.proc));
    Events ev(**loop);
    run.watch(**loop, ev);

    init.exit_record(W_EXITCODE(3, 0));
    sandbox::report_timing(init.status_w, "reaped");
    run_for(**loop, 300);
    EXPECT_EQ(ev.exits, 0) << "ended before the init said its namespace is empty";

    sandbox::report_timing(init.status_w, "emptied");
    run_for(**loop, 5000);
    ASSERT_EQ(ev.exits, 1) << "the job's end waited for the init's exit";
    EXPECT_TRUE(init.alive()) << "the init was not to be waited for";
    Outcome o = run.outcome();
    EXPECT_EQ(o.exit_code, 3);
    EXPECT_FALSE(o.signal);
    UniqueFd left = run.take_exiting();
    ASSERT_TRUE(left) << "the init's pidfd is the supervisor's to reap";
    run.unwatch(**loop);
    // It is the init's: a signal through it ends that process.
    EXPECT_EQ(syscall(SYS_pidfd_send_signal, left.get(), SIGKILL, nullptr, 0), 0) << strerror(errno);
    siginfo_t si{};
    ASSERT_EQ(waitid(idtype_t(3) /*P_PIDFD*/, id_t(left.get()), &si, WEXITED), 0) << strerror(errno);
    EXPECT_EQ(si.si_pid, pid);
    init.pid = -1;  // reaped
}

TEST(LocalRunningTest, WithoutTheJobsStatusTheEndWaitsForTheInitsExit) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.has_value());
    FakeInit init;
    ASSERT_GT(init.pid, 0);
    LocalRunning run(std::move(init.proc));
    Events ev(**loop);
    run.watch(**loop, ev);

    // "emptied" alone (an init that could not report the status) says
    // nothing of how the job ended.
    sandbox::report_timing(init.status_w, "emptied");
    run_for(**loop, 300);
    EXPECT_EQ(ev.exits, 0);

    close(init.go_w);  // the init exits now
    init.go_w = -1;
    run_for(**loop, 5000);
    ASSERT_EQ(ev.exits, 1);
    EXPECT_FALSE(run.take_exiting()) << "reaped already: nothing left for the supervisor";
    EXPECT_EQ(run.outcome().exit_code, 0);  // the process's own
    run.unwatch(**loop);
    init.pid = -1;  // reaped by LocalRunning
}

// A stop (or a limit) that lands after the init reported the job's status
// but before its "emptied": the job ended on its own, and ended() says so
// (Supervisor::kill_job then keeps the job's own end as its cause), also
// while the record is still unread on the pipe.
TEST(LocalRunningTest, TheJobHasEndedOnceItsStatusIsReportedEvenIfUnread) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.has_value());
    FakeInit init;
    ASSERT_GT(init.pid, 0);
    init.proc.init_by = "spawn-helper";  // a container job's init
    LocalRunning run(std::move(init.proc));
    Events ev(**loop);
    run.watch(**loop, ev);
    EXPECT_FALSE(run.ended()) << "nothing reported yet";

    init.exit_record(W_EXITCODE(0, 0));  // on the pipe, the loop has not read it
    EXPECT_TRUE(run.ended());
    EXPECT_EQ(ev.exits, 0) << "ended() only reads; the end comes at emptied";
    sandbox::report_timing(init.status_w, "emptied");
    run_for(**loop, 5000);
    ASSERT_EQ(ev.exits, 1);
    EXPECT_EQ(run.outcome().exit_code, 0);
    UniqueFd left = run.take_exiting();
    run.unwatch(**loop);
}

// The seccomp tier: the job's process is gone but its pidfd's event is not
// handled yet.
TEST(LocalRunningTest, ASeccompJobHasEndedOnceItsProcessIsAZombie) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.has_value());
    FakeInit job;
    ASSERT_GT(job.pid, 0);
    LocalRunning run(std::move(job.proc));
    Events ev(**loop);
    run.watch(**loop, ev);
    EXPECT_FALSE(run.ended());
    close(job.go_w);  // it exits now
    job.go_w = -1;
    siginfo_t si{};
    ASSERT_EQ(waitid(P_PID, id_t(job.pid), &si, WEXITED | WNOWAIT), 0);
    EXPECT_TRUE(run.ended());
    run_for(**loop, 5000);
    ASSERT_EQ(ev.exits, 1);
    run.unwatch(**loop);
    job.pid = -1;  // reaped by LocalRunning
}

}  // namespace
}  // namespace moat::supervisor
