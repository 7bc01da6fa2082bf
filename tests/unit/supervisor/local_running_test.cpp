// LocalRunning, the seccomp and container tiers' running job, at the end of a
// container job: moat-init reports the job's wait status ("exit"), kills and
// reaps the rest of its namespace, then says "emptied" and exits. The job's
// end is known at "emptied"; the init's own exit (its namespaces' teardown)
// must not hold the client's answer up (issue 15), and its pidfd goes to the
// supervisor to be reaped. A forked process that does not exit on its own
// plays the init here, so "ended before the init exited" is not a race.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "moat/common/event_loop.h"
#include "moat/ipc/frame.h"
#include "moat/sandbox/spawn.h"
#include "tiers/local.h"

namespace moat::supervisor {
namespace {

class Events final : public JobEvents {
public:
    explicit Events(EventLoop& loop) : m_loop(loop) {}
    Answer notice(const Notice& n) override {
        ++notices;
        last_nr = n.nr;
        return {Answer::Kind::Continue, 0};
    }
    void exited() override {
        ++exits;
        m_loop.stop();
    }
    void event(store::EventKind, nlohmann::json) override {}
    void info(const nlohmann::json&) override {}
    void start_clock() override {}
    int exits = 0, notices = 0;
    int last_nr = -1;

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

// answer_waiting(): what already waits on the listener (a job's first
// execve, stopped until moatd answers) is answered at once, without the loop
// running; with nothing waiting it returns at once (the FakeInit's listener
// is never readable).
TEST(LocalRunningTest, AnswerWaitingAnswersAPendingNoticeWithoutTheLoop) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.has_value());
    {
        FakeInit idle;
        ASSERT_GT(idle.pid, 0);
        LocalRunning run(std::move(idle.proc));
        Events ev(**loop);
        run.watch(**loop, ev);
        run.answer_waiting();  // must not block
        EXPECT_EQ(ev.notices, 0);
        run.unwatch(**loop);
    }

    int sv[2], st[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ASSERT_EQ(pipe2(st, O_CLOEXEC | O_NONBLOCK), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // getppid goes to the listener; the listener goes to the parent.
        sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog prog{4, f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(90);
        const int l = int(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
        if (l < 0) _exit(91);
        if (ipc::send_with_fds(sv[1], "l", 1, &l, 1, 0) != 1) _exit(92);
        close(l);
        _exit(syscall(SYS_getppid) > 0 ? 7 : 93);
    }
    close(sv[1]);
    close(st[1]);
    char b;
    iovec io{&b, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr m{};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    ASSERT_EQ(recvmsg(sv[0], &m, 0), 1);
    int listener = -1;
    memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof listener);
    close(sv[0]);
    // The child's getppid is waiting once the listener is readable.
    pollfd p{listener, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);

    sandbox::Spawned proc;
    proc.pid = pid;
    proc.pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
    proc.status.reset(st[0]);
    proc.listener.reset(listener);
    LocalRunning run(std::move(proc));
    Events ev(**loop);
    run.watch(**loop, ev);
    run.answer_waiting();  // the loop never runs in this test's second half
    EXPECT_EQ(ev.notices, 1);
    EXPECT_EQ(ev.last_nr, int(SYS_getppid));
    run.unwatch(**loop);
    if (ev.notices == 0) kill(pid, SIGKILL);  // still stopped in getppid: fail, do not hang
    int ws = 0;
    ASSERT_EQ(waitpid(pid, &ws, 0), pid);
    EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 7) << "the child was not let through: " << ws;
}

}  // namespace
}  // namespace moat::supervisor
