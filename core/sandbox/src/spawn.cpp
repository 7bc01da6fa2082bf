#include "moat/sandbox/spawn.h"

#include <sys/ioctl.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "moat/common/timeutil.h"
#include "spawn_helper_wire.h"

namespace moat::sandbox {

namespace {

// ---- child side: async-signal-safe only --------------------------------------

[[noreturn]] void child_fail(int status_fd, const char* step, int err, const char* detail) {
    SetupRecord rec{};
    size_t i = 0;
    for (; step[i] && i + 1 < sizeof rec.step; ++i) rec.step[i] = step[i];
    rec.err = err;
    rec.fatal = 1;
    if (detail)
        for (i = 0; detail[i] && i + 1 < sizeof rec.detail; ++i) rec.detail[i] = detail[i];
    // One write of a record smaller than PIPE_BUF is atomic.
    (void)!write(status_fd, &rec, sizeof rec);
    _exit(125);
}

void child_warn(int status_fd, const char* step, int err, const char* detail) {
    SetupRecord rec{};
    size_t i = 0;
    for (; step[i] && i + 1 < sizeof rec.step; ++i) rec.step[i] = step[i];
    rec.err = err;
    rec.fatal = 0;
    for (i = 0; detail[i] && i + 1 < sizeof rec.detail; ++i) rec.detail[i] = detail[i];
    (void)!write(status_fd, &rec, sizeof rec);
}

// v1: the job's first process moves itself into its cgroup (see
// JobCgroup::open_self_join), before anything else it does. At most one fd per
// hierarchy; the paths only name a failure.
constexpr int kMaxSelfJoin = 16;
struct SelfJoinArgs {
    int fds[kMaxSelfJoin];
    const char* paths[kMaxSelfJoin];
    int n = 0;
};

long raw_syscall3(long nr, long a1, long a2, long a3);

void step_join_cgroup(int status_fd, const SelfJoinArgs& j) {
    for (int i = 0; i < j.n; ++i) {
        const long r = raw_syscall3(SYS_write, j.fds[i], long("0"), 1);
        if (r != 1) child_fail(status_fd, "joining the job cgroup: write(\"0\")", r < 0 ? int(-r) : EIO, j.paths[i]);
        raw_syscall3(SYS_close, j.fds[i], 0, 0);
    }
}

// The child shares moatd's memory (clone(CLONE_VM)) except in a sanitizer
// build: ThreadSanitizer's and AddressSanitizer's per-thread state (fake
// stacks, the no-return stack cleanup) lives with the spawning thread, which
// keeps running; there the child is a copy (glibc's fork() for the seccomp
// tier, a raw clone for the container tier) as before.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kShareMemoryBuild = false;
#else
constexpr bool kShareMemoryBuild = true;
#endif

#if defined(__x86_64__)
// clone3(2) for a child that shares our memory and runs fn(arg) on its own
// stack: glibc exports no clone3 wrapper, and after a raw clone3 the child
// cannot return into the caller's frames (they are on the parent's stack).
// The kernel starts the child with rsp = stack + stack_size and the parent's
// registers except rax (0), rcx and r11, so fn and arg ride in r8 and r9 (rdi
// and rsi carry the syscall's own arguments). The child calls fn(arg) and
// exits with its value; the parent gets the pid or -errno.
extern "C" long moat_clone3_run(clone_args* args, size_t size, int (*fn)(void*), void* arg);
asm(R"(
    .pushsection .text
    .p2align 4
    .globl moat_clone3_run
    .hidden moat_clone3_run
    .type moat_clone3_run,@function
moat_clone3_run:
    .cfi_startproc
    endbr64
    movq %rdx, %r8
    movq %rcx, %r9
    movl $435, %eax
    syscall
    testq %rax, %rax
    jz 1f
    ret
1:
    .cfi_undefined rip
    xorl %ebp, %ebp
    andq $-16, %rsp
    movq %r9, %rdi
    callq *%r8
    movl %eax, %edi
    movl $60, %eax
    syscall
    hlt
    .cfi_endproc
    .size moat_clone3_run, .-moat_clone3_run
    .popsection
)");
constexpr bool kHaveClone3Run = true;
#else
constexpr bool kHaveClone3Run = false;
long moat_clone3_run(clone_args*, size_t, int (*)(void*), void*) { return -ENOSYS; }
#endif

// A job's first process, born in its v2 cgroup (clone3 with
// CLONE_INTO_CGROUP; the v2 counterpart of the v1 self-join). With `stack`
// (CLONE_VM) the child runs fn(arg) there; without, it is a copy that
// returns 0 here, as from fork. -ENOSYS, -EINVAL or -E2BIG: a kernel older
// than 5.7 (the caller starts the child the old way and moves it).
long clone_into_cgroup(uint64_t flags, int cgroup_fd, void* stack_top, size_t stack_size, int (*fn)(void*), void* arg) {
    clone_args ca{};
    ca.flags = flags | CLONE_INTO_CGROUP;
    ca.exit_signal = SIGCHLD;
    ca.cgroup = uint64_t(cgroup_fd);
    if (stack_top) {
        if (!kHaveClone3Run) return -ENOSYS;
        ca.stack = uint64_t(static_cast<char*>(stack_top) - stack_size);
        ca.stack_size = stack_size;
        return moat_clone3_run(&ca, sizeof ca, fn, arg);
    }
    const long r = syscall(SYS_clone3, &ca, sizeof ca);
    return r < 0 ? -errno : r;
}

bool clone3_unsupported(long r) { return r == -ENOSYS || r == -EINVAL || r == -E2BIG; }

// clone_into_cgroup() when there is a v2 group: false when the caller must
// clone the old way (no group, or a kernel without CLONE_INTO_CGROUP);
// otherwise *pid is the child's (0 in a fork-like child) or -1 with *err.
// What a failed clone3 into the job's group is called in the error.
std::string clone3_what(const cgroup::JobCgroup& cg) {
    return "joining the job cgroup: clone3(CLONE_INTO_CGROUP, \"" + (cg.dirs().empty() ? std::string() : cg.dirs().front()) +
           "\")";
}

bool try_clone_into(const UniqueFd& v2_group, uint64_t flags, void* stack_top, size_t stack_size,
                    int (*fn)(void*), void* arg, long* pid, int* err, bool* born_in_group) {
    if (!v2_group) return false;
    const long r = clone_into_cgroup(flags, v2_group.get(), stack_top, stack_size, fn, arg);
    if (clone3_unsupported(r)) return false;
    *pid = r < 0 ? -1 : r;
    *err = r < 0 ? int(-r) : 0;
    *born_in_group = r > 0;
    return true;
}

// The child runs on the TLS of moatd's spawning thread, which keeps running,
// so errno is shared with it: where the child needs an error code after the
// fact it makes the syscall itself and takes -errno from the return value.
long raw_syscall3(long nr, long a1, long a2, long a3) {
#if defined(__x86_64__)
    long ret;
    asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a1), "S"(a2), "d"(a3) : "rcx", "r11", "memory");
    return ret;
#else
    long r = syscall(nr, a1, a2, a3);
    return r < 0 ? -errno : r;
#endif
}

// Every signal back to its default disposition, then nothing blocked: how a
// job expects to start. moatd ignores SIGPIPE and blocks SIGTERM, SIGINT and
// SIGHUP for its signalfd, and both an ignored disposition and the mask
// survive execve. Until here every signal is blocked (the parent blocks them
// around the clone): a handler of moatd's must never run in this process,
// which shares moatd's memory.
void step_signals() {
    for (int sig = 1; sig < NSIG; ++sig) {
        // glibc's own (32, 33) would only fail with EINVAL, in errno.
        if (sig == SIGKILL || sig == SIGSTOP || (sig >= 32 && sig < SIGRTMIN)) continue;
        struct sigaction sa{};
        if (sigaction(sig, nullptr, &sa) < 0) continue;
        if (sa.sa_handler == SIG_DFL && !(sa.sa_flags & SA_SIGINFO)) continue;
        struct sigaction dfl{};
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

struct ChildArgs {
    const SpawnPlan* plan;
    int landlock_fd;  // moved to a fixed number by step_fds
    const char* exe;  // in the ChildMemory, as are argv and envp
    char* const* argv;
    char* const* envp;
    int go_fd;       // read end: parent writes one byte once we are in the cgroup
    int status_fd;   // write end, O_CLOEXEC: EOF at the parent means exec happened
    int last_cap;
    pid_t parent;
    sock_fprog prog;
    ExecFailureWord::Ref exec_word;  // shared with the parent: a failed execve lands here
    SelfJoinArgs join;               // v1: the cgroup's tasks files (empty: the parent moved us)
};

// The containment sequence, in order. Each step takes only what it needs.
void step_die_with_parent(const ChildArgs& a) {
    // SIGKILL when the forking thread (moatd's supervisor loop) goes away.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno, nullptr);
    if (getppid() != a.parent) _exit(125);  // the parent died before prctl
}

void step_wait_for_cgroup(const ChildArgs& a) {
    char b;
    long n;
    do n = raw_syscall3(SYS_read, a.go_fd, long(&b), 1);
    while (n == -EINTR);
    if (n != 1) _exit(125);  // the parent gave up on us
    close(a.go_fd);
    place_cpus_self(a.status_fd, a.plan->all_cpus);
}

void step_fds(ChildArgs& a) {
    // Move every fd we still need above the range we are about to fill, so no
    // dup onto 0..4 can clobber a source that happens to sit there.
    int tmp[3];
    for (int i = 0; i < 3; ++i) {
        tmp[i] = fcntl(a.plan->stdio[i], F_DUPFD_CLOEXEC, 10);
        if (tmp[i] < 0) child_fail(a.status_fd, "fcntl(F_DUPFD stdio)", errno, nullptr);
    }
    int status = fcntl(a.status_fd, F_DUPFD_CLOEXEC, 10);
    int landlock = a.landlock_fd >= 0 ? fcntl(a.landlock_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (status < 0 || (a.landlock_fd >= 0 && landlock < 0)) child_fail(a.status_fd, "fcntl(F_DUPFD)", errno, nullptr);
    for (int i = 0; i < 3; ++i)
        if (dup2(tmp[i], i) < 0) child_fail(status, "dup2(stdio)", errno, nullptr);
    if (dup3(status, 3, O_CLOEXEC) < 0) child_fail(status, "dup3(status)", errno, nullptr);
    a.status_fd = 3;
    if (landlock >= 0) {
        if (dup3(landlock, 4, O_CLOEXEC) < 0) child_fail(3, "dup3(landlock)", errno, nullptr);
        a.landlock_fd = 4;
    }
    // Close everything else of moatd's now, not just at exec: its sockets,
    // the database and, above all, other jobs' seccomp listeners, which moatd
    // would otherwise find among our fds and take for this job's own.
    if (syscall(SYS_close_range, a.landlock_fd >= 0 ? 5U : 4U, ~0U, 0U) < 0)
        child_fail(3, "close_range", errno, nullptr);
}

void step_session() {
    // A new session has no controlling terminal: TIOCSTI and job-control
    // signals cannot reach the operator's terminal.
    setsid();
}

void step_rlimits(const ChildArgs& a) {
    const Rlimits& r = a.plan->rlimits;
    struct { int res; uint64_t v; const char* name; } lims[] = {
        {RLIMIT_FSIZE, r.file_size, "setrlimit(RLIMIT_FSIZE)"},
        {RLIMIT_NOFILE, r.open_files, "setrlimit(RLIMIT_NOFILE)"},
        {RLIMIT_STACK, r.stack, "setrlimit(RLIMIT_STACK)"},
        {RLIMIT_CORE, r.core, "setrlimit(RLIMIT_CORE)"},
    };
    for (auto& l : lims) {
        rlimit rl{rlim_t(l.v), rlim_t(l.v)};
        if (setrlimit(l.res, &rl) < 0) child_fail(a.status_fd, l.name, errno, nullptr);
    }
    if (r.cpu_seconds) {
        // Per-process backstop; the whole-job CPU limit is the supervisor's.
        rlimit rl{rlim_t(r.cpu_seconds), rlim_t(r.cpu_seconds + 1)};
        if (setrlimit(RLIMIT_CPU, &rl) < 0) child_fail(a.status_fd, "setrlimit(RLIMIT_CPU)", errno, nullptr);
    }
}

void step_drop_privileges(const ChildArgs& a) {
    // The bounding set can only be reduced while we still hold CAP_SETPCAP.
    for (int cap = 0; cap <= a.last_cap; ++cap)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            child_fail(a.status_fd, "prctl(PR_CAPBSET_DROP)", errno, nullptr);
    // Raw syscalls: glibc's setxid wrappers act on every thread they believe
    // the process has, and this process shares moatd's memory, thread list
    // included (see the container child).
    if (syscall(SYS_setgroups, 0, nullptr) < 0) child_fail(a.status_fd, "setgroups(0)", errno, nullptr);
    if (syscall(SYS_setresgid, a.plan->gid, a.plan->gid, a.plan->gid) < 0)
        child_fail(a.status_fd, "setresgid", errno, nullptr);
    // Going from uid 0 to a non-zero uid without SECBIT_KEEP_CAPS clears the
    // permitted, effective and ambient sets; we clear them again explicitly.
    if (syscall(SYS_setresuid, a.plan->uid, a.plan->uid, a.plan->uid) < 0)
        child_fail(a.status_fd, "setresuid", errno, nullptr);
    // The kernel clears the parent-death signal on any credential change
    // (commit_creds), so it must be set again as the job's uid.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno, nullptr);
    if (getppid() != a.parent) _exit(125);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail(a.status_fd, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno, nullptr);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capset, &hdr, data) < 0) child_fail(a.status_fd, "capset(0)", errno, nullptr);
    // Required before an unprivileged seccomp filter or Landlock domain, and it
    // makes setuid binaries and file capabilities inert for the whole job.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail(a.status_fd, "prctl(PR_SET_NO_NEW_PRIVS)", errno, nullptr);
}

void step_cwd(const ChildArgs& a) {
    // As the job's uid, so directory permissions are the job's.
    if (chdir(a.plan->cwd.c_str()) < 0) {
        child_warn(a.status_fd, "chdir", errno, a.plan->cwd.c_str());
        if (chdir("/") < 0) child_fail(a.status_fd, "chdir(\"/\")", errno, nullptr);
    }
}

void step_landlock(const ChildArgs& a) {
    if (a.landlock_fd < 0) return;
    if (syscall(SYS_landlock_restrict_self, a.landlock_fd, 0) < 0)
        child_fail(a.status_fd, "landlock_restrict_self", errno, nullptr);
}

void step_seccomp(const ChildArgs& a, HeldTimings& held) {
    // Last step: from here on every syscall is judged. The listener fd is
    // O_CLOEXEC; the supervisor copies it out with pidfd_getfd() while our
    // execve() waits for its answer. The marker lets the parent sleep until
    // now instead of polling /proc while we set up.
    SetupRecord mark{};
    memcpy(mark.step, "filter", 7);
    mark.fatal = kSetupFilterNext;
    mark.err = predict_listener_fd();  // nothing opens an fd between here and seccomp()
    held.send(a.status_fd, &mark);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &a.prog);
    if (fd < 0) child_fail(a.status_fd, "seccomp(SET_MODE_FILTER)", errno, nullptr);
}

[[noreturn]] void child_main(ChildArgs a) {  // a copy: step_fds renumbers fds
    // Timings on moatd's clock, like the container init's (startup_us):
    // where the seccomp tier's spawn goes.
    // Held, and sent with the listener's number (one wake-up of moatd).
    HeldTimings held;
    held.note(a.status_fd, "child");
    step_die_with_parent(a);
    step_join_cgroup(a.status_fd, a.join);
    step_wait_for_cgroup(a);
    held.note(a.status_fd, "joined");
    step_fds(a);
    step_session();
    step_rlimits(a);
    step_drop_privileges(a);
    step_cwd(a);
    step_landlock(a);
    step_signals();
    held.note(a.status_fd, "dropped");
    step_seccomp(a, held);
    const long r = raw_syscall3(SYS_execve, long(a.exe), long(a.argv), long(a.envp));
    // The filter is installed: any syscall but exit_group may be denied (a
    // write to the status pipe would be, under allow = ["execve",
    // "exit_group"], and recorded as a spurious denial). A memory store needs
    // none; moatd reads the word when we are gone (exec_failure()). The error
    // comes from the return value: errno is the spawning thread's too.
    a.exec_word.set(int(-r));
    // The raw exit_group, not _exit(): a sanitizer runtime intercepts _exit
    // (LeakSanitizer's exit-time check) and would make syscalls the filter denies.
    syscall(SYS_exit_group, 125);
    __builtin_unreachable();
}

int child_entry(void* args) { child_main(*static_cast<const ChildArgs*>(args)); }

// ---- parent side ----------------------------------------------------------------

}  // namespace

int predict_listener_fd() {
    // The lowest free number, found by asking for it (F_DUPFD of fd 0, which
    // the job always has) and giving it back.
    int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return -1;
    ::close(fd);
    return fd;
}

bool child_may_share_memory() {
    if (!kShareMemoryBuild) return false;
    int fd = ::open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char c = 0;
    ssize_t n = ::read(fd, &c, 1);
    ::close(fd);
    return n == 1 && c != '1';
}

namespace {

// The child's "go": one byte on a pipe whose reader may be gone already (a
// child that failed its cgroup join reports it and exits first). EPIPE is
// the answer then, never SIGPIPE: moatd ignores it, but a caller of this
// library need not (a test binary was killed by it). SIGPIPE is blocked on
// this thread for the write and a pending one taken back.
ssize_t write_go(int fd) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    const char one = 1;
    ssize_t n;
    do n = ::write(fd, &one, 1);
    while (n < 0 && errno == EINTR);
    const int e = errno;
    if (n < 0 && e == EPIPE && !sigismember(&old, SIGPIPE)) {
        timespec zero{0, 0};
        (void)sigtimedwait(&pipe_set, nullptr, &zero);  // ours, sent to this thread
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = e;
    return n;
}

int read_last_cap() {
    int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 63;
    char buf[16] = {};
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    return n > 0 ? atoi(buf) : 63;
}

// This process's threads (/proc/self/stat field 20); 0 if unknown.
long thread_count() {
    int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char* p = strrchr(buf, ')');  // the command name may hold spaces
    if (!p) return 0;
    // After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice num_threads(20).
    for (int field = 2; field < 20 && p; ++field) p = strchr(p + 1, ' ');
    return p ? strtol(p + 1, nullptr, 10) : 0;
}

// The host pids of pid's children (/proc/PID/task/PID/children).
std::vector<pid_t> children_of(pid_t pid) {
    std::vector<pid_t> out;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return out;
    buf[n] = 0;
    char* p = buf;
    while (*p) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        out.push_back(pid_t(v));
        p = end;
        while (*p == ' ' || *p == '\n') ++p;
    }
    return out;
}

// A child's fatal record as an error: "step(\"detail\")" and its errno.
Error record_error(const SetupRecord& rec) {
    std::string msg = rec.step;
    if (rec.detail[0]) msg += "(\"" + std::string(rec.detail) + "\")";
    return Error::sys(msg, rec.err);
}

// Copies the seccomp listener out of `pid` (or, for the container tier, out of
// one of its children) once the child has announced the filter. Records read
// on the way: fatal -> error; warnings -> out.warnings.
Result<void> wait_for_listener(Spawned& out, int status_fd, pid_t pid, bool in_children, int timeout_ms);

}  // namespace

namespace {
void stamp_timing(SetupRecord& rec, const char* step) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const uint64_t ns = uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
    rec = SetupRecord{};
    for (size_t i = 0; step[i] && i + 1 < sizeof rec.step; ++i) rec.step[i] = step[i];
    rec.fatal = kSetupTiming;
    rec.err = int(uint32_t(ns));
    rec.extra = int(uint32_t(ns >> 32));
}
}  // namespace

void report_timing(int status_fd, const char* step) {
    SetupRecord rec;
    stamp_timing(rec, step);
    // Raw: the seccomp tier's child shares moatd's memory and errno with it.
    (void)raw_syscall3(SYS_write, status_fd, long(&rec), long(sizeof rec));
}

void HeldTimings::note(int status_fd, const char* step) {
    if (n == kMax) send(status_fd);
    stamp_timing(recs[n++], step);
}

void HeldTimings::send(int status_fd, const SetupRecord* also) {
    if (also && n == kMax) send(status_fd);
    if (also) recs[n++] = *also;
    if (n > 0) (void)raw_syscall3(SYS_write, status_fd, long(recs), long(sizeof(SetupRecord) * size_t(n)));
    n = 0;
}

const char* timing_step(const char* step) {
    for (const char* known : {"child", "joined", "dropped", "init", "go", "plan", "mounts", "dev", "proc", "pivot", "root", "forked", "reaped", "emptied"})
        if (strcmp(step, known) == 0) return known;
    return nullptr;
}

SetupStatus read_setup_status(int fd) {
    SetupStatus s;
    for (;;) {
        SetupRecord rec;
        ssize_t n = ::read(fd, &rec, sizeof rec);
        if (n == ssize_t(sizeof rec)) {
            rec.step[sizeof rec.step - 1] = 0;
            rec.detail[sizeof rec.detail - 1] = 0;
            s.records.push_back(rec);
            continue;
        }
        if (n == 0) s.eof = true;
        break;  // EAGAIN, short read (impossible for atomic writes) or error
    }
    return s;
}

namespace {

Result<void> wait_for_listener(Spawned& out, int status_fd, pid_t pid, bool in_children, int timeout_ms) {
    int fl = fcntl(status_fd, F_GETFL);
    fcntl(status_fd, F_SETFL, fl | O_NONBLOCK);
    const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
    bool filter_next = false;
    int listener_fd = -1;  // its number in the job's process, from the kSetupFilterNext record
    std::vector<UniqueFd> targets;  // pidfds of the process(es) that may hold it
    long backoff_ns = 20'000;
    // The short sleeps below are the time the filter's install takes (tens
    // of microseconds): the default 50 us of timer slack would double each.
    // The raw call: the value may exceed an int (systemd's TimerSlackNSec=).
    const long old_slack = syscall(SYS_prctl, PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    struct SlackBack {
        long ns;
        ~SlackBack() { if (ns > 0) prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(ns), 0, 0, 0); }
    } slack_back{old_slack};
    for (;;) {
        const int64_t now = now_monotonic_ns();
        if (now > deadline) return fail("job setup timed out after " + std::to_string(timeout_ms / 1000) + " s");
        // Sleep on the pipe until the child says the filter comes next; after
        // that the listener exists within microseconds, so try to copy it.
        pollfd p{status_fd, POLLIN, 0};
        int wait_ms = filter_next && listener_fd >= 0 ? 0 : int(std::min<int64_t>((deadline - now) / 1'000'000 + 1, 100));
        ::poll(&p, 1, wait_ms);
        if (p.revents & (POLLIN | POLLHUP)) {
            SetupStatus s = read_setup_status(status_fd);
            for (const auto& rec : s.records) {
                if (rec.fatal == 1) return std::unexpected(record_error(rec));
                if (rec.fatal == kSetupFilterNext) {
                    filter_next = true;
                    listener_fd = rec.err;
                } else if (rec.fatal == kSetupCpus) {
                    out.cpus = rec.err;
                    out.cpus_before = rec.extra;
                } else if (rec.fatal == kSetupCloned) {
                    // the helper's note of the pid it cloned (moatd knows it)
                } else if (rec.fatal == kSetupTiming) {
                    if (const char* name = timing_step(rec.step)) out.timings.emplace_back(name, timing_ns(rec));
                } else {
                    out.warnings.push_back(rec);
                }
            }
            if (s.eof) return fail("job setup ended without exec or error report");
        }
        // No free fd in the job (its open_files limit): seccomp() fails with
        // EMFILE and the record saying so is on its way.
        if (!filter_next || listener_fd < 0) continue;
        // The job's process: this one, or (container tier) moat-init's child,
        // looked up once. Then copy the listener as soon as seccomp() has
        // returned (EBADF before), sleeping in short, growing steps between
        // tries: a busy loop here took the CPU the child needed to get there
        // (on 2 vCPUs the filter's install waited 20+ ms behind it).
        if (targets.empty()) {
            for (pid_t t : in_children ? children_of(pid) : std::vector<pid_t>{pid}) {
                UniqueFd tpidfd(int(syscall(SYS_pidfd_open, t, 0)));
                if (tpidfd) targets.push_back(std::move(tpidfd));
            }
        }
        for (const auto& tpidfd : targets) {
            UniqueFd got(int(syscall(SYS_pidfd_getfd, tpidfd.get(), listener_fd, 0)));
            if (!got) {
                if (errno == EBADF) continue;  // seccomp() has not returned yet
                if (errno == ESRCH) continue;  // gone: its record or EOF tells why
                return fail_sys("pidfd_getfd(listener)", errno);
            }
            // The number was free when the child reported it and nothing but
            // seccomp() allocates an fd after that, so this is the listener;
            // checked anyway (only a listener answers this ioctl with ENOENT).
            uint64_t id = 0;
            if (ioctl(got.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 || errno != ENOENT)
                return fail("fd " + std::to_string(listener_fd) + " of the job is not its seccomp listener");
            out.listener = std::move(got);
            return {};
        }
        timespec pause{0, backoff_ns};
        nanosleep(&pause, nullptr);
        backoff_ns = std::min<long>(backoff_ns * 2, 1'000'000);
    }
}

}  // namespace

void place_cpus_self(int status_fd, bool all_cpus) {
    // Room for machines far larger than CPU_SETSIZE (the kernel wants at
    // least nr_cpu_ids bits); on the child's stack, no allocation.
    unsigned long mask[8192 / (8 * sizeof(unsigned long))];
    auto count = [&]() -> int {
        const long n = raw_syscall3(SYS_sched_getaffinity, 0, long(sizeof mask), long(mask));
        int c = 0;
        for (long i = 0; n > 0 && i < n / long(sizeof(unsigned long)); ++i) c += __builtin_popcountl(mask[i]);
        return c;
    };
    SetupRecord rec{};
    memcpy(rec.step, "cpus", 5);
    rec.fatal = kSetupCpus;
    rec.extra = rec.err = count();
    if (all_cpus) {
        // Every bit: the kernel keeps the CPUs that are online and in the
        // task's cpuset (cgroup), which is exactly "all it is allowed".
        memset(mask, 0xff, sizeof mask);
        if (raw_syscall3(SYS_sched_setaffinity, 0, long(sizeof mask), long(mask)) == 0) rec.err = count();
    }
    (void)raw_syscall3(SYS_write, status_fd, long(&rec), long(sizeof rec));
}

namespace {
constexpr size_t kGuardBytes = 4096;
constexpr size_t kChildStackBytes = 128 * 1024;  // the child's frames are small; moat-init's trees need 2 KiB
size_t page_round(size_t n) { return (n + 4095) & ~size_t(4095); }
}  // namespace

Result<ChildMemory> ChildMemory::create(size_t data_bytes) {
    if (data_bytes > (size_t(1) << 30)) return fail("a job's exec arguments may not exceed 1 GiB");
    const size_t size = kGuardBytes + kChildStackBytes + page_round(data_bytes + 64);
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return std::unexpected(Error::sys("mmap(the job's child memory)", errno));
    // An overflowing child stack faults here instead of running into the data.
    if (mprotect(p, kGuardBytes, PROT_NONE) < 0) {
        int e = errno;
        munmap(p, size);
        return std::unexpected(Error::sys("mprotect(the child stack's guard page)", e));
    }
    ChildMemory m;
    m.m_base = static_cast<char*>(p);
    m.m_size = size;
    m.m_used = kGuardBytes + kChildStackBytes;
    return m;
}

ChildMemory::~ChildMemory() { release(); }

ChildMemory::ChildMemory(ChildMemory&& o) noexcept
    : m_pidfd(std::move(o.m_pidfd)), m_status(std::move(o.m_status)), m_base(o.m_base), m_size(o.m_size),
      m_used(o.m_used) {
    o.m_base = nullptr;
    o.m_size = o.m_used = 0;
}

ChildMemory& ChildMemory::operator=(ChildMemory&& o) noexcept {
    if (this != &o) {
        release();
        m_pidfd = std::move(o.m_pidfd);
        m_status = std::move(o.m_status);
        m_base = o.m_base;
        m_size = o.m_size;
        m_used = o.m_used;
        o.m_base = nullptr;
        o.m_size = o.m_used = 0;
    }
    return *this;
}

void* ChildMemory::stack_top() const { return m_base ? m_base + kGuardBytes + kChildStackBytes : nullptr; }

void* ChildMemory::alloc(size_t bytes, size_t align) {
    if (!m_base || align == 0 || (align & (align - 1))) return nullptr;
    size_t at = (m_used + align - 1) & ~(align - 1);
    if (at > m_size || bytes > m_size - at) return nullptr;
    m_used = at + bytes;
    return m_base + at;
}

char* ChildMemory::copy(const std::string& s) {
    auto* p = static_cast<char*>(alloc(s.size() + 1, 1));
    if (p) {
        memcpy(p, s.data(), s.size());
        p[s.size()] = 0;
    }
    return p;
}

size_t ChildMemory::bytes_for(const std::vector<std::string>& v) {
    size_t n = (v.size() + 1) * sizeof(char*) + alignof(char*);
    for (const auto& s : v) n += s.size() + 1;
    return n;
}

char** ChildMemory::strings(const std::vector<std::string>& v) {
    auto** out = static_cast<char**>(alloc((v.size() + 1) * sizeof(char*), alignof(char*)));
    if (!out) return nullptr;
    for (size_t i = 0; i < v.size(); ++i)
        if (!(out[i] = copy(v[i]))) return nullptr;
    out[v.size()] = nullptr;
    return out;
}

bool ChildMemory::watch(int pidfd, int status_fd) {
    m_pidfd.reset(fcntl(pidfd, F_DUPFD_CLOEXEC, 3));
    m_status.reset(fcntl(status_fd, F_DUPFD_CLOEXEC, 3));
    return m_pidfd && m_status;
}

void ChildMemory::release() noexcept {
    if (!m_base) return;
    if (m_pidfd && m_status) {
        // The status pipe's write end closes at exec (O_CLOEXEC) or death.
        // While it is open the process may still run on this memory (an
        // execve the supervisor never answered returns when the listener
        // goes): it dies before the memory goes back to moatd.
        pollfd p{m_status.get(), POLLHUP, 0};
        if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
            // exec'd or gone
        } else {
            syscall(SYS_pidfd_send_signal, m_pidfd.get(), SIGKILL, nullptr, 0);
            pollfd e{m_pidfd.get(), POLLIN, 0};
            if (::poll(&e, 1, 5000) != 1) {
                // Never seen: better a leaked mapping than one reused under a live process.
                m_base = nullptr;
                return;
            }
        }
    }
#if defined(__SANITIZE_ADDRESS__)
    // The child's frames poisoned this stack's shadow and never returned.
    __asan_unpoison_memory_region(m_base + kGuardBytes, m_size - kGuardBytes);
#endif
    munmap(m_base, m_size);
    m_base = nullptr;
    m_pidfd.reset();
    m_status.reset();
}

namespace {

// A child that failed on its own left its fatal record in the pipe; that says
// why better than what the parent saw next (EPIPE writing the go byte to a
// child that exited after a failed cgroup join, EOF...). Read once the child
// is reaped, so everything it wrote is there.
Error child_reason(Error seen, int status_fd) {
    if (status_fd < 0) return seen;
    fcntl(status_fd, F_SETFL, fcntl(status_fd, F_GETFL) | O_NONBLOCK);
    for (const auto& rec : read_setup_status(status_fd).records)
        if (rec.fatal == 1) return record_error(rec);
    return seen;
}

// The fds and paths the child's step_join_cgroup uses; `held` keeps the fds
// open until the spawn returns (the child has its own copies by then).
Result<SelfJoinArgs> self_join_args(const cgroup::JobCgroup* cg, std::vector<cgroup::JobCgroup::SelfJoin>& held) {
    SelfJoinArgs j{};
    if (!cg) return j;
    auto r = cg->open_self_join();
    if (!r) return std::unexpected(r.error().wrap("opening the job cgroup"));
    held = std::move(*r);
    if (held.size() > size_t(kMaxSelfJoin)) return fail("more cgroup hierarchies than a job can join");
    for (const auto& h : held) {
        j.fds[j.n] = h.fd.get();
        j.paths[j.n] = h.path.c_str();
        ++j.n;
    }
    return j;
}

}  // namespace

Result<Spawned> spawn_seccomp_job(const SpawnPlan& plan) {
    if (plan.uid == 0 || plan.gid == 0) return fail("refusing to run a job as uid or gid 0");
    if (!plan.filter || plan.filter->empty()) return fail("no seccomp filter in the plan");
    if (plan.exe.empty() || plan.exe[0] != '/') return fail("program path must be absolute: \"" + plan.exe + "\"");
    for (int i = 0; i < 3; ++i)
        if (plan.stdio[i] < 0) return fail("stdio fd " + std::to_string(i) + " missing");

    // Everything the child touches is built now, and what it reads after
    // spawn_seccomp_job() returned (execve's arguments) lives in its ChildMemory.
    auto mem = ChildMemory::create(sizeof(ChildArgs) + alignof(ChildArgs) + ChildMemory::bytes_for(plan.exe) +
                                   ChildMemory::bytes_for(plan.argv) + ChildMemory::bytes_for(plan.env));
    if (!mem) return std::unexpected(mem.error());
    auto* slot = mem->alloc(sizeof(ChildArgs), alignof(ChildArgs));
    const char* exe = mem->copy(plan.exe);
    char** argv = mem->strings(plan.argv);
    char** envp = mem->strings(plan.env);
    if (!slot || !exe || !argv || !envp) return fail("the job's exec arguments do not fit its child memory");

    int go[2], status[2];
    if (pipe2(go, O_CLOEXEC) < 0) return fail_sys("pipe2(go)", errno);
    UniqueFd go_r(go[0]), go_w(go[1]);
    if (pipe2(status, O_CLOEXEC) < 0) return fail_sys("pipe2(status)", errno);
    UniqueFd st_r(status[0]), st_w(status[1]);

    auto word = ExecFailureWord::create();
    if (!word) return std::unexpected(word.error());
    std::vector<cgroup::JobCgroup::SelfJoin> join_held;
    auto join = self_join_args(plan.cgroup, join_held);
    if (!join) return std::unexpected(join.error());

    auto* a = new (slot) ChildArgs{};
    a->join = *join;
    a->plan = &plan;
    a->exec_word = word->ref();
    a->landlock_fd = plan.landlock_fd;
    a->exe = exe;
    a->argv = argv;
    a->envp = envp;
    a->go_fd = go_r.get();
    a->status_fd = st_w.get();
    a->last_cap = read_last_cap();
    a->parent = getpid();
    a->prog.len = (unsigned short)plan.filter->size();
    a->prog.filter = const_cast<sock_filter*>(plan.filter->data());

    auto v2_group = plan.cgroup ? plan.cgroup->open_v2_dir() : Result<UniqueFd>(UniqueFd());
    if (!v2_group) return std::unexpected(v2_group.error().wrap("opening the job cgroup"));

    Spawned out;
    out.fork_ns = now_monotonic_ns();
    pid_t pid = -1;
    int clone_errno = 0;
    bool born_in_group = false, tried_clone3 = false;
    const bool share = child_may_share_memory();
    if (share) {
        // No copy of moatd's page tables and no copy-on-write faults in
        // either process afterwards: on a 2-vCPU VM the fork of a 50 MiB
        // moatd was most of a job's start (docs/performance.md). Signals stay
        // blocked in the child until step_signals.
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        long r = -1;
        tried_clone3 = try_clone_into(*v2_group, CLONE_VM, mem->stack_top(), kChildStackBytes, child_entry, a, &r,
                                      &clone_errno, &born_in_group);
        if (tried_clone3) {
            pid = pid_t(r);
        } else {
            pid = clone(child_entry, mem->stack_top(), CLONE_VM | SIGCHLD, a);
            clone_errno = errno;
        }
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
    } else {
        // In a sanitizer build the copy is made by glibc's fork(), whose
        // handlers let the sanitizer runtime lock its state first (a raw
        // clone3 would not: the child could hang on a lock another thread
        // held), and moatd moves it into a v2 group. Otherwise (fs.suid_dumpable
        // = 1) a fork-like clone3 is as safe as the CLONE_VM child: it runs
        // the same async-signal-safe code.
        long r = -1;
        tried_clone3 = kShareMemoryBuild &&
                       try_clone_into(*v2_group, 0, nullptr, 0, nullptr, nullptr, &r, &clone_errno, &born_in_group);
        if (tried_clone3) {
            pid = pid_t(r);
        } else {
            pid = fork();
            clone_errno = errno;
        }
        if (pid == 0) child_main(*a);  // never returns
    }
    if (pid < 0)
        return fail_sys(tried_clone3 ? clone3_what(*plan.cgroup) : share ? "clone(CLONE_VM)" : "fork", clone_errno);
    v2_group->reset();
    out.pid = pid;
    go_r.reset();
    st_w.reset();

    auto abort_child = [&](Error e) -> Result<Spawned> {
        ::kill(pid, SIGKILL);
        int ws;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
        return std::unexpected(child_reason(std::move(e), st_r.get()));
    };

    out.pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!out.pidfd) return abort_child(Error::sys("pidfd_open", errno));
    // v1: the child joins by itself (step_join_cgroup); v2: born in it
    // (clone3), or on an older kernel moved from here.
    out.cgroup_join = !plan.cgroup ? "" : join->n ? "self" : born_in_group ? "clone3" : "moatd";
    if (plan.cgroup && join->n == 0 && !born_in_group) {
        if (auto r = plan.cgroup->add_pid(pid); !r) return abort_child(r.error().wrap("joining the job cgroup"));
    }
    if (write_go(go_w.get()) != 1) return abort_child(Error::sys("write(go)", errno));
    go_w.reset();

    // Wait until the child holds its listener (it is then blocked in execve,
    // which is always notified) or reports a failure. Bounded: 5 s.
    if (auto r = wait_for_listener(out, st_r.get(), pid, false, 5000); !r) return abort_child(r.error());
    out.ready_ns = now_monotonic_ns();
    out.status = std::move(st_r);
    out.exec_word = std::move(*word);
    out.exe = plan.exe;
    out.child_memory = std::move(*mem);
    // Unwatched, the memory could go while the process still runs in it.
    if (!out.child_memory.watch(out.pidfd.get(), out.status.get()))
        return abort_child(Error::sys("fcntl(F_DUPFD, the job's pidfd and status pipe)", errno));
    return out;
}


namespace {

struct ContainerChildArgs {
    const ContainerSpawnPlan* plan;
    int go_fd;
    int status_fd;
    SelfJoinArgs join;  // v1: the cgroup's tasks files (empty: the parent moved us)
    // Set in the spawn helper's copy: moat-init's code runs in this process
    // (it reads its plan from fd 3 as the executed moat-init does).
    int (*init_main)() = nullptr;
    // An init made ahead: cloned without a mount namespace of its own (it
    // shares the helper's, which is moatd's, until its job comes), so it
    // makes one once it has its job (see make_init_ahead).
    bool unshare_mnt = false;
};

[[noreturn]] void container_child_main(const ContainerChildArgs& a) {
    // Async-signal-safe only (see spawn_seccomp_job). getppid() is 0 here (the
    // parent is outside our new pid namespace), so the go pipe is the check:
    // EOF means moatd gave up on us. The timings are held and sent before
    // moat-init's code runs (one wake-up of moatd for both).
    HeldTimings held;
    held.note(a.status_fd, "init");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno, nullptr);
    // Into the job's cgroup first (v1), while moatd writes our id maps.
    step_join_cgroup(a.status_fd, a.join);
    char b;
    long n;
    do n = raw_syscall3(SYS_read, a.go_fd, long(&b), 1);
    while (n == -EINTR);
    if (n != 1) _exit(125);
    held.note(a.status_fd, "go");
    place_cpus_self(a.status_fd, a.plan->all_cpus);
    // Become the namespace's root (host uid host_root_uid) before exec: our
    // credentials are still host root's, which is unmapped inside, and execve
    // would give an unmapped uid no capabilities in the new namespace.
    //
    // Raw syscalls, not glibc's wrappers: we came from a raw clone(2) of a
    // multi-threaded moatd, so glibc still believes other threads exist and
    // its setxid wrappers would take the thread-list lock (possibly held by
    // another moatd thread at clone time: a relay thread starting or ending)
    // and wait for threads that are not here. That deadlock was seen under
    // load (the spawn timed out after 10 s). The kernel calls change this one
    // thread, which is the whole process.
    if (syscall(SYS_setgroups, 0, nullptr) < 0) child_fail(a.status_fd, "setgroups(0) in userns", errno, nullptr);
    if (syscall(SYS_setresgid, 0, 0, 0) < 0) child_fail(a.status_fd, "setresgid(0) in userns", errno, nullptr);
    if (syscall(SYS_setresuid, 0, 0, 0) < 0) child_fail(a.status_fd, "setresuid(0) in userns", errno, nullptr);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_fail(a.status_fd, "prctl(PDEATHSIG)", errno, nullptr);
    // The copy of the mount table taken now, not when the init was made: what
    // the host mounted or unmounted meanwhile is as it is now.
    if (a.unshare_mnt && unshare(CLONE_NEWNS) < 0) child_fail(a.status_fd, "unshare(CLONE_NEWNS)", errno, nullptr);
    // Default dispositions, nothing blocked (moat-init blocks what it waits
    // for). The spawn helper's copy has them already: the helper reset them
    // at its start and never changes them.
    if (!a.plan->plan_in_process && !a.init_main) step_signals();
    // fds 0-2 the job's stdio, 3 the plan (none when the plan is already in
    // memory), 4 the status pipe: where moat-init finds them.
    const bool in_process = a.plan->plan_in_process != nullptr || a.init_main != nullptr;
    const bool plan_in_memory = a.plan->plan_in_process != nullptr;
    int want[5] = {a.plan->stdio[0], a.plan->stdio[1], a.plan->stdio[2], plan_in_memory ? -1 : a.plan->plan_fd,
                   a.status_fd};
    int tmp[5];
    for (int i = 0; i < 5; ++i) {
        tmp[i] = want[i] < 0 ? -1 : fcntl(want[i], F_DUPFD_CLOEXEC, 10);
        if (want[i] >= 0 && tmp[i] < 0) child_fail(a.status_fd, "fcntl(F_DUPFD)", errno, nullptr);
    }
    // The trees go to 5.. (after the five above): copied above every target
    // first, so no dup2 below closes one still to be moved.
    const size_t ntrees = a.plan->tree_fds.size();
    int tree_tmp[64];
    for (size_t i = 0; i < ntrees; ++i) {
        tree_tmp[i] = fcntl(a.plan->tree_fds[i], F_DUPFD_CLOEXEC, 128);
        if (tree_tmp[i] < 0) child_fail(a.status_fd, "fcntl(F_DUPFD, tree)", errno, nullptr);
    }
    // moat-init's own fd may sit where a tree is about to go.
    const int exe = in_process ? -1 : fcntl(a.plan->init_exe_fd, F_DUPFD_CLOEXEC, 128);
    if (!in_process && exe < 0) child_fail(a.status_fd, "fcntl(F_DUPFD, moat-init)", errno, nullptr);
    for (int i = 0; i < 5; ++i) {
        if (tmp[i] < 0) ::close(i);
        else if (dup2(tmp[i], i) < 0) child_fail(a.status_fd, "dup2", errno, nullptr);
    }
    for (size_t i = 0; i < ntrees; ++i)
        if (dup2(tree_tmp[i], kInitTreeFd0 + int(i)) < 0) child_fail(kInitStatusFd, "dup2(tree)", errno, nullptr);
    const unsigned first_free = unsigned(kInitTreeFd0) + unsigned(ntrees);
    if (in_process) {
        // moat-init's code in this process (a single-threaded caller):
        // everything else of the caller's closed now (there is no exec to
        // close the O_CLOEXEC ones), every signal back to its default (the
        // agent ignores SIGPIPE; an ignored disposition would reach the job).
        if (syscall(SYS_close_range, first_free, ~0U, 0U) < 0) child_fail(kInitStatusFd, "close_range(5..)", errno, nullptr);
        for (int sig = 1; sig < NSIG && !a.init_main; ++sig) {
            struct sigaction sa{};
            if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, nullptr, &sa) < 0) continue;
            if (sa.sa_handler != SIG_DFL) signal(sig, SIG_DFL);  // ignored ones too, as the other tiers
        }
        prctl(PR_SET_NAME, "moat-init", 0, 0, 0);  // what ps and /proc/1/comm show, as with the exec
        held.send(kInitStatusFd);
        if (a.init_main) _exit(a.init_main());
        a.plan->run_in_process(*a.plan->plan_in_process);
        _exit(125);
    }
    if (syscall(SYS_close_range, first_free, ~0U, 4U /*CLOSE_RANGE_CLOEXEC*/) < 0)
        child_fail(kInitStatusFd, "close_range(5.., CLOEXEC)", errno, nullptr);
    char arg0[] = "moat-init";
    char* argv[] = {arg0, nullptr};
    char* envp[] = {nullptr};
    held.send(kInitStatusFd);
    // execveat of an O_CLOEXEC fd works for ELF binaries (only scripts need the
    // fd to survive the exec).
    syscall(SYS_execveat, exe, "", argv, envp, AT_EMPTY_PATH);
    child_fail(kInitStatusFd, "execveat(moat-init)", errno, nullptr);
}

int container_child_entry(void* args) { container_child_main(*static_cast<const ContainerChildArgs*>(args)); }

// The namespaces of a job's init (no exit signal). The cgroup namespace is
// created later by moat-init, once the init is in the job's cgroup.
uint64_t container_clone_flags(const ContainerSpawnPlan& plan) {
    const bool join_net = plan.join_netns_fd >= 0;
    return CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | (plan.new_net_ipc ? CLONE_NEWIPC : 0) |
           (plan.new_net_ipc && !join_net ? CLONE_NEWNET : 0);
}

// What a failed clone of a job's init is called.
std::string container_clone_what(const ContainerSpawnPlan& plan, bool tried_clone3) {
    if (tried_clone3 && plan.cgroup) return clone3_what(*plan.cgroup);
    const bool join_net = plan.join_netns_fd >= 0;
    return std::string("clone(NEWUSER|NEWNS|NEWPID|NEWUTS") +
           (plan.new_net_ipc ? (join_net ? "|NEWIPC)" : "|NEWNET|NEWIPC)") : ")");
}

Result<void> write_id_map(pid_t pid, const char* file, const std::string& map) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
    int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail_sys(std::string("open(\"") + path + "\")", errno);
    ssize_t n = ::write(fd, map.data(), map.size());
    int e = errno;
    ::close(fd);
    if (n != ssize_t(map.size())) return fail_sys(std::string("write(\"") + path + "\", \"" + map + "\")", e);
    return {};
}

}  // namespace

// The spawn helper took a request and never answered (it hung and was
// killed, or died): the init it may have cloned is our child and wrote no
// pid we know, except in the helper's kSetupCloned record on the status
// pipe. With the go pipe closed it exits at once; the pipe's EOF says so
// (bounded: 2 s). Each init named is then reaped, waited for through its
// pidfd (EOF comes when it closes its files, a moment before it is a zombie:
// a WNOHANG wait right then left it unreaped for good), and SIGKILLed first
// if the pipe never closed. Without the record (the helper died between its
// clone and that write) it stays a zombie.
void reap_unanswered_init(UniqueFd& go_w, UniqueFd& st_w, int st_r) {
    go_w.reset();
    st_w.reset();
    fcntl(st_r, F_SETFL, fcntl(st_r, F_GETFL) | O_NONBLOCK);
    std::vector<pid_t> cloned;
    const int64_t deadline = now_monotonic_ns() + 2'000'000'000;
    bool eof = false;
    while (!eof && now_monotonic_ns() < deadline) {
        pollfd p{st_r, POLLIN, 0};
        ::poll(&p, 1, 100);
        SetupStatus got = read_setup_status(st_r);
        for (const auto& rec : got.records)
            if (rec.fatal == kSetupCloned && rec.err > 0) cloned.push_back(pid_t(rec.err));
        eof = got.eof;
    }
    for (pid_t pid : cloned) {
        // Our unreaped child: the pid cannot have been reused.
        UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
        if (!pidfd) continue;  // not ours, or gone (ESRCH)
        if (!eof) ::kill(pid, SIGKILL);
        pollfd p{pidfd.get(), POLLIN, 0};
        const int64_t left_ms = (deadline - now_monotonic_ns()) / 1'000'000;
        ::poll(&p, 1, int(std::clamp<int64_t>(left_ms, 100, 2000)));
        siginfo_t si{};
        waitid(idtype_t(3) /*P_PIDFD*/, id_t(pidfd.get()), &si, WEXITED | WNOHANG);
    }
}

Result<Spawned> spawn_container_job(const ContainerSpawnPlan& plan) {
    if (plan.host_root_uid == 0 || plan.host_job_uid == 0 || plan.host_root_gid == 0 || plan.host_job_gid == 0)
        return fail("refusing to map a container uid or gid to host 0");
    if (plan.inside_uid == 0 || plan.inside_gid == 0) return fail("the job may not run as uid 0 inside");
    if (plan.plan_in_process) {
        if (!plan.run_in_process) return fail("an in-process container plan without the code to run it");
        if (thread_count() != 1) return fail("moat-init's code runs in-process only for a single-threaded caller");
    } else {
        if (plan.init_exe_fd < 0) return fail("moat-init (the container tier's stage-2 helper) was not found");
        if (plan.plan_fd < 0) return fail("no container plan");
    }
    for (int i = 0; i < 3; ++i)
        if (plan.stdio[i] < 0) return fail("stdio fd " + std::to_string(i) + " missing");
    if (plan.tree_fds.size() > 64) return fail("too many mount trees for one job");
    std::string uid_map = "0 " + std::to_string(plan.host_root_uid) + " 1\n" + std::to_string(plan.inside_uid) + " " +
                          std::to_string(plan.host_job_uid) + " 1\n";
    std::string gid_map = "0 " + std::to_string(plan.host_root_gid) + " 1\n" + std::to_string(plan.inside_gid) + " " +
                          std::to_string(plan.host_job_gid) + " 1\n";

    int go[2], status[2];
    if (pipe2(go, O_CLOEXEC) < 0) return fail_sys("pipe2(go)", errno);
    UniqueFd go_r(go[0]), go_w(go[1]);
    if (pipe2(status, O_CLOEXEC) < 0) return fail_sys("pipe2(status)", errno);
    UniqueFd st_r(status[0]), st_w(status[1]);
    std::vector<cgroup::JobCgroup::SelfJoin> join_held;
    auto join = self_join_args(plan.cgroup, join_held);
    if (!join) return std::unexpected(join.error());
    ContainerChildArgs a{&plan, go_r.get(), st_w.get(), *join};

    Spawned out;
    out.fork_ns = now_monotonic_ns();
    // Raw clone(2) like fork(2), plus the namespaces. The cgroup namespace is
    // created later by moat-init, once we have moved it into the job's cgroup.
    const bool join_net = plan.join_netns_fd >= 0;
    const unsigned long flags = container_clone_flags(plan) | SIGCHLD;
    auto v2_group = plan.cgroup ? plan.cgroup->open_v2_dir() : Result<UniqueFd>(UniqueFd());
    if (!v2_group) return std::unexpected(v2_group.error().wrap("opening the job cgroup"));
    bool born_in_group = false, tried_clone3 = false;
    long pid = -1;
    int clone_errno = 0;
    if (plan.helper && plan.helper->usable() && !plan.plan_in_process) {
        std::vector<int> join_fds(join->fds, join->fds + join->n);
        std::vector<std::string> join_paths(join->paths, join->paths + join->n);
        auto c = plan.helper->clone_init(plan, go_r.get(), st_w.get(), v2_group->get(), join_fds, join_paths);
        if (c) {
            pid = c->pid;
            born_in_group = c->born_in_group;
            out.init_by = "spawn-helper";
            out.net_made_ahead = c->net_made_ahead;
            out.init_made_ahead = c->made_ahead;
        } else if (!c.error().retry) {
            // The helper's clone failed as moatd's own would have, or the
            // request went out unanswered: an init of its may hold our pipes,
            // so no second one. That init (our child) exits once the go pipe
            // closes, and is reaped here.
            if (c.error().transport) reap_unanswered_init(go_w, st_w, st_r.get());
            return std::unexpected(std::move(c.error().error));
        } else {
            out.helper_failure = c.error().error.message;
        }
    }
    // Joining a network namespace the host's user namespace owns cannot be
    // done from inside the job's new user namespace (no capability there), so
    // this thread enters it for the clone, which the child inherits, and
    // returns at once. setns(CLONE_NEWNET) changes only the calling thread.
    UniqueFd own_net;
    if (join_net && pid < 0) {
        own_net.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
        if (!own_net) return fail_sys("open(/proc/thread-self/ns/net)", errno);
        if (setns(plan.join_netns_fd, CLONE_NEWNET) < 0) return fail_sys("setns(the client's network namespace)", errno);
    }
    // The child shares moatd's memory until it executes moat-init (see
    // spawn_seccomp_job), which has happened when the listener comes from
    // moat-init's child, so its memory may go when this function returns.
    // moat-init's code run in-process (the guest agent) allocates: a copy.
    Result<ChildMemory> mem = ChildMemory{};
    if (pid > 0) {
        // cloned by the helper
    } else if (!plan.plan_in_process && child_may_share_memory()) {
        mem = ChildMemory::create(sizeof a);
        if (!mem) return std::unexpected(mem.error());
        auto* slot = mem->alloc(sizeof a, alignof(ContainerChildArgs));
        if (!slot) return fail("the container child's arguments do not fit its memory");
        auto* args = new (slot) ContainerChildArgs(a);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        tried_clone3 = try_clone_into(*v2_group, (flags & ~uint64_t(CSIGNAL)) | CLONE_VM, mem->stack_top(),
                                      kChildStackBytes, container_child_entry, args, &pid, &clone_errno, &born_in_group);
        if (!tried_clone3) {
            pid = clone(container_child_entry, mem->stack_top(), int(flags | CLONE_VM), args);
            clone_errno = errno;
        }
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
    } else {
        tried_clone3 = try_clone_into(*v2_group, flags & ~uint64_t(CSIGNAL), nullptr, 0, nullptr, nullptr, &pid,
                                      &clone_errno, &born_in_group);
        if (!tried_clone3) {
            pid = syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
            clone_errno = errno;
        }
        if (pid == 0) container_child_main(a);
    }
    v2_group->reset();
    if (own_net && setns(own_net.get(), CLONE_NEWNET) < 0) {
        // moatd's own thread would stay in a job's network: nothing it does
        // afterwards could be trusted. Its crash recovery takes over.
        fprintf(stderr, "moatd: error: cannot return to its own network namespace after starting a job: %s\n",
                strerror(errno));
        abort();
    }
    if (pid < 0) return fail_sys(container_clone_what(plan, tried_clone3), clone_errno);
    if (!*out.init_by) out.init_by = "moatd";
    out.pid = pid_t(pid);
    go_r.reset();
    st_w.reset();
    auto abort_child = [&](Error e) -> Result<Spawned> {
        ::kill(out.pid, SIGKILL);
        int ws;
        while (waitpid(out.pid, &ws, 0) < 0 && errno == EINTR) {}
        return std::unexpected(child_reason(std::move(e), st_r.get()));
    };
    out.pidfd.reset(int(syscall(SYS_pidfd_open, out.pid, 0)));
    if (!out.pidfd) return abort_child(Error::sys("pidfd_open", errno));
    // Privileged in the parent namespace, we may map any ids; the container's
    // root is an unprivileged host uid, so nothing inside is ever host root.
    if (auto r = write_id_map(out.pid, "uid_map", uid_map); !r) return abort_child(r.error());
    if (auto r = write_id_map(out.pid, "gid_map", gid_map); !r) return abort_child(r.error());
    // v1: the child joins by itself (step_join_cgroup); v2: born in it
    // (clone3), or on an older kernel moved from here.
    out.cgroup_join = !plan.cgroup ? "" : join->n ? "self" : born_in_group ? "clone3" : "moatd";
    if (plan.cgroup && join->n == 0 && !born_in_group) {
        if (auto r = plan.cgroup->add_pid(out.pid); !r) return abort_child(r.error().wrap("joining the job cgroup"));
    }
    if (write_go(go_w.get()) != 1) return abort_child(Error::sys("write(go)", errno));
    go_w.reset();

    // moat-init builds the root, then the job (its child) installs the filter.
    if (auto r = wait_for_listener(out, st_r.get(), out.pid, true, 10000); !r) return abort_child(r.error());
    out.ready_ns = now_monotonic_ns();
    out.status = std::move(st_r);
    return out;
}


// ---- the spawn helper (SpawnHelper, moat-init --spawn-helper) -------------------

namespace {

using namespace helper_wire;
static_assert(kMaxJoin == size_t(kMaxSelfJoin));
static_assert(kInitsAhead == SpawnHelper::kMaxInitsAhead);

bool send_with_fds(int sock, const void* data, size_t len, const int* fds, size_t nfds) {
    if (nfds > kMaxRequestFds) {
        errno = EINVAL;
        return false;
    }
    iovec iov{const_cast<void*>(data), len};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxRequestFds)];
    if (nfds) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0 && size_t(n) != len) errno = EMSGSIZE;
    return n >= 0 && size_t(n) == len;
}

// One message: its length (0: EOF, -1: error), every fd it carried (owned by
// `fds`, closed whatever happens next), and whether anything was cut off.
ssize_t recv_with_fds(int sock, void* data, size_t len, std::vector<UniqueFd>& fds, bool& cut) {
    iovec iov{data, len};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxRequestFds)];
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n;
    do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; ++i) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    cut = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    return n;
}

void set_what(HelperReply& r, const char* what) { snprintf(r.what, sizeof r.what, "%s", what); }

// The helper's work for one request: checks it, clones the init (which never
// returns here) and says what happened. The fds stay the caller's to close.
// A new network namespace for the pool: made by entering it and coming back
// (this process is single-threaded; it never serves a request from there).
UniqueFd make_netns(int own_net) {
    if (unshare(CLONE_NEWNET) < 0) return UniqueFd();
    UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (setns(own_net, CLONE_NEWNET) < 0) _exit(70);
    return ns;
}

// lo up in the network namespace this process is in (as moat-init's
// step_network does in a namespace of its own).
int loopback_up() {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) return errno;
    ifreq ifr{};
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return errno;
    ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return errno;
    return 0;
}

// A job's request (to the helper, or to an init made ahead) checked and
// taken apart; the fds stay owned by the caller's vector.
struct JobRequest {
    ContainerSpawnPlan sp;
    int status_fd = -1, go_fd = -1, group_fd = -1;
    SelfJoinArgs join{};
    char paths[kMaxSelfJoin][kJoinPathBytes];
};

// nullptr, or why the request is refused.
const char* parse_job_request(const HelperRequest& req, size_t got, bool cut, std::vector<UniqueFd>& fds,
                              JobRequest& out) {
    if (cut || got != sizeof req || req.magic != kHelperMagic || (req.flags & ~kReqKnown) ||
        (req.flags & kReqAhead) || req.n_join > uint32_t(kMaxSelfJoin) || req.n_trees > kMaxRequestTrees)
        return "spawn helper: malformed request";
    const bool v2 = req.flags & kReqV2Group, join_net = req.flags & kReqJoinNet;
    if (fds.size() != kFixedRequestFds + v2 + join_net + req.n_join + req.n_trees)
        return "spawn helper: a request's fds do not match its counts";
    auto& sp = out.sp;
    size_t at = 0;
    for (int i = 0; i < 3; ++i) sp.stdio[i] = fds[at++].get();
    sp.plan_fd = fds[at++].get();
    out.status_fd = fds[at++].get();
    out.go_fd = fds[at++].get();
    out.group_fd = v2 ? fds[at++].get() : -1;
    sp.join_netns_fd = join_net ? fds[at++].get() : -1;
    for (uint32_t i = 0; i < req.n_join; ++i) {
        memcpy(out.paths[i], req.join_paths[i], kJoinPathBytes);
        out.paths[i][kJoinPathBytes - 1] = 0;
        out.join.fds[i] = fds[at++].get();
        out.join.paths[i] = out.paths[i];
    }
    out.join.n = int(req.n_join);
    for (uint32_t i = 0; i < req.n_trees; ++i) sp.tree_fds.push_back(fds[at++].get());
    sp.new_net_ipc = req.flags & kReqNewNetIpc;
    sp.all_cpus = req.flags & kReqAllCpus;
    sp.loopback = req.flags & kReqLoopback;
    return nullptr;
}

HelperReply helper_serve(const HelperRequest& req, size_t got, bool cut, std::vector<UniqueFd>& fds, int sock,
                         int own_net, std::vector<UniqueFd>& net_pool, int (*init_main)()) {
    HelperReply rep{};
    rep.magic = kHelperMagic;
    rep.pid = -1;
    rep.err = EINVAL;
    JobRequest jr;
    if (const char* why = parse_job_request(req, got, cut, fds, jr)) {
        set_what(rep, why);
        return rep;
    }
    const bool v2 = jr.group_fd >= 0, join_net = jr.sp.join_netns_fd >= 0;
    auto& sp = jr.sp;
    const int status_fd = jr.status_fd, group_fd = jr.group_fd;
    ContainerChildArgs a{&sp, jr.go_fd, status_fd, jr.join, init_main};

    // CLONE_PARENT: the init is moatd's child, as one moatd clones itself.
    uint64_t flags = container_clone_flags(sp) | CLONE_PARENT;
    // A new network namespace is taken from the pool when there is one
    // (creating one is most of the clone's cost: ~0.25 ms here), entered for
    // the clone like a client's.
    UniqueFd pooled;
    if ((flags & CLONE_NEWNET) && !net_pool.empty()) {
        pooled = std::move(net_pool.back());
        net_pool.pop_back();
        flags &= ~uint64_t(CLONE_NEWNET);
    }
    // The init is root of a user namespace that does not own a pooled
    // network namespace, so lo comes up here, as real root (moat-init sees
    // it up). A pooled namespace that cannot be entered or set up is dropped
    // and the init makes its own.
    if (pooled) {
        if (setns(pooled.get(), CLONE_NEWNET) < 0) {
            pooled.reset();
        } else if ((req.flags & kReqLoopback) && loopback_up() != 0) {
            if (setns(own_net, CLONE_NEWNET) < 0) _exit(70);
            pooled.reset();
        }
        if (!pooled) flags |= CLONE_NEWNET;
    }
    const int enter_net = join_net ? sp.join_netns_fd : pooled ? pooled.get() : -1;
    if (join_net && setns(sp.join_netns_fd, CLONE_NEWNET) < 0) {
        rep.err = errno;
        set_what(rep, "setns(the client's network namespace)");
        return rep;
    }
    // A copy of this small process (no CLONE_VM: moat-init's code allocates).
    // exit_signal 0: with CLONE_PARENT the kernel takes ours (SIGCHLD).
    clone_args ca{};
    ca.flags = flags | (v2 ? CLONE_INTO_CGROUP : 0);
    ca.cgroup = v2 ? uint64_t(group_fd) : 0;
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    int e = r < 0 ? errno : 0;
    bool into = v2;
    if (r < 0 && clone3_unsupported(-e)) {  // before 5.7 (CLONE_INTO_CGROUP) or 5.3 (clone3): moatd moves it
        into = false;
        r = syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
        e = r < 0 ? errno : 0;
    }
    if (r == 0) {
        // The helper's own fds are not the init's (its socket, its network
        // namespace, the pool): gone before anything else happens here.
        ::close(sock);
        ::close(own_net);
        for (auto& ns : net_pool) ::close(ns.release());
        pooled.reset();
        container_child_main(a);  // never returns
    }
    if (enter_net >= 0 && setns(own_net, CLONE_NEWNET) < 0) _exit(70);  // never serve another job from a job's network
    if (r < 0) {
        rep.err = e;
        rep.clone_failed = into ? 2 : 1;
        return rep;
    }
    // The init's pid where moatd finds it even if this answer never comes:
    // it is moatd's child, and moatd reaps it (spawn_container_job).
    SetupRecord cloned{};
    snprintf(cloned.step, sizeof cloned.step, "spawn helper: cloned");
    cloned.fatal = kSetupCloned;
    cloned.err = int(r);
    (void)!write(status_fd, &cloned, sizeof cloned);
    rep.pid = int32_t(r);
    rep.err = 0;
    rep.born_in_group = into;
    rep.net_made_ahead = pooled ? 1 : 0;
    return rep;
}

// An init made ahead waits here for its job: one request on `ctl` in the
// helper's form (kReqNewNetIpc, no kReqJoinNet or kReqV2Group: its network
// and ipc namespaces exist, and on v1 it joins its cgroup itself). EOF (moatd
// dropped it, or it and the helper are gone) ends it. getppid() says 0 in
// the new pid namespace, so moatd's death before the prctl below is seen as
// that EOF: the socket's other end is the helper's until moatd holds it.
[[noreturn]] void ahead_init_main(int ctl, int (*init_main)()) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) _exit(126);
    HelperRequest req{};
    std::vector<UniqueFd> fds;
    bool cut = false;
    const ssize_t n = recv_with_fds(ctl, &req, sizeof req, fds, cut);
    if (n <= 0) _exit(0);
    ::close(ctl);
    // `jr` and `fds` (the job's fds) live in this frame, which never returns:
    // container_child_main and moat-init's code run below it.
    JobRequest jr;
    const char* why = parse_job_request(req, size_t(n), cut, fds, jr);
    if (!why && (!jr.sp.new_net_ipc || jr.sp.join_netns_fd >= 0 || jr.group_fd >= 0))
        why = "an init made ahead has its own network and ipc namespaces and joins its cgroup itself";
    if (why) {
        if (jr.status_fd >= 0) child_fail(jr.status_fd, why, EINVAL, nullptr);
        _exit(125);
    }
    ContainerChildArgs a{&jr.sp, jr.go_fd, jr.status_fd, jr.join, init_main, true};
    container_child_main(a);
}

// One init made ahead (kReqAhead): a copy of this process in new user, pid,
// uts, ipc and network namespaces, moatd's child (CLONE_PARENT), waiting on
// a socketpair whose other end goes to moatd in the answer (out_ctl). No
// mount namespace yet: one copied now would pin every host mount of this
// moment for as long as the init waits (a filesystem the host unmounts would
// stay alive in it), and the job would see binds of an old table; the init
// makes its own once it has its job. Its network namespace is the job's own
// (lo comes up inside for loopback, as with an init cloned per job).
HelperReply make_init_ahead(int sock, int own_net, std::vector<UniqueFd>& net_pool, int (*init_main)(),
                            UniqueFd& out_ctl) {
    HelperReply rep{};
    rep.magic = kHelperMagic;
    rep.pid = -1;
    rep.ahead = 1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        rep.err = errno;
        set_what(rep, "socketpair(an init made ahead)");
        return rep;
    }
    UniqueFd mine(sv[0]), theirs(sv[1]);
    clone_args ca{};
    ca.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_PARENT;
    // Born with its own name (what ps shows while it waits, and what moatd
    // checks in the answer's pid), so the helper takes it for the clone.
    char own_name[16] = {};
    prctl(PR_GET_NAME, own_name, 0, 0, 0);
    prctl(PR_SET_NAME, "moat-ahead", 0, 0, 0);
    const long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0) {
        // It waits with only CPU time nothing else wants (SCHED_IDLE, which
        // any process may take for itself; the helper's own policy is never
        // changed): moatd gives it the normal policy back with its job (the
        // init may not: that takes CAP_SYS_NICE, which it has only in its
        // own user namespace).
        sched_param idle{};
        sched_setscheduler(0, SCHED_IDLE, &idle);
        ::close(sock);
        ::close(own_net);
        for (auto& ns : net_pool) ::close(ns.release());
        ::close(mine.release());
        ahead_init_main(theirs.release(), init_main);
    }
    prctl(PR_SET_NAME, own_name, 0, 0, 0);
    if (r < 0) {
        rep.err = errno;
        set_what(rep, "clone3(an init made ahead)");
        return rep;
    }
    rep.pid = int32_t(r);
    rep.err = 0;
    out_ctl = std::move(mine);
    return rep;
}

// What moatd's clone child runs to become the helper: fd 3 its socket, then
// moat-init again with --spawn-helper.
struct HelperStart {
    int sock;
    int exe;
    pid_t parent;
};

[[noreturn]] void helper_exec_child(const HelperStart& h) {
    // Async-signal-safe only (a child of a multi-threaded moatd).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != h.parent) _exit(126);
    const int s = fcntl(h.sock, F_DUPFD_CLOEXEC, 10), x = fcntl(h.exe, F_DUPFD_CLOEXEC, 10);
    if (s < 0 || x < 0 || dup2(s, 3) < 0 || dup3(x, 4, O_CLOEXEC) < 0) _exit(126);
    // None of moatd's stdio (a terminal, the journal's stream) and a session
    // of its own: a terminal's SIGINT or SIGHUP is moatd's to handle.
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || setsid() < 0) _exit(126);
    if (syscall(SYS_close_range, 5U, ~0U, 0U) < 0) _exit(126);
    step_signals();  // moatd's ignored and blocked signals would survive the exec
    char a0[] = "moat-init", a1[] = "--spawn-helper";
    char* argv[] = {a0, a1, nullptr};
    char* envp[] = {nullptr};
    syscall(SYS_execveat, 4, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

int helper_exec_entry(void* h) { helper_exec_child(*static_cast<const HelperStart*>(h)); }

}  // namespace

int spawn_helper_main(int sock, int (*init_main)()) {
    prctl(PR_SET_NAME, "moat-spawner", 0, 0, 0);
    step_signals();
    if (fcntl(sock, F_SETFD, FD_CLOEXEC) < 0) return 70;
    // Set again (an exec that changes credentials clears it), then checked:
    // the socket's other end is moatd's, and moatd is the parent.
    ucred peer{};
    socklen_t len = sizeof peer;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0 ||
        getppid() != peer.pid)
        return 74;
    UniqueFd own_net(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!own_net) return 70;
    HelperReply hello{};
    hello.magic = kHelperMagic;
    hello.pid = int32_t(getpid());
    if (!send_with_fds(sock, &hello, sizeof hello, nullptr, 0)) return 71;
    std::vector<UniqueFd> net_pool;
    int64_t pool_retry_ns = 0;
    size_t ahead_asked = 0;  // kReqAhead requests not answered yet
    for (;;) {
        // Inits made ahead, as moatd asked, and only after kAheadIdleMs with
        // no request (a job's request is served first).
        if (ahead_asked > 0) {
            pollfd p{sock, POLLIN, 0};
            if (::poll(&p, 1, kAheadIdleMs) == 0) {
                UniqueFd ctl;
                HelperReply rep = make_init_ahead(sock, own_net.get(), net_pool, init_main, ctl);
                --ahead_asked;
                const int fd = ctl.get();
                if (!send_with_fds(sock, &rep, sizeof rep, ctl ? &fd : nullptr, ctl ? 1 : 0)) return 73;
                continue;
            }
        }
        // The pool is refilled only while no request waits. When the kernel
        // refuses a namespace (a user.max_net_namespaces limit, memory) the
        // inits make their own, and the pool is tried again a second later.
        if (net_pool.size() < kNetPool && now_monotonic_ns() >= pool_retry_ns) {
            pollfd p{sock, POLLIN, 0};
            if (::poll(&p, 1, kNetPoolIdleMs) == 0) {
                UniqueFd ns = make_netns(own_net.get());
                if (ns) net_pool.push_back(std::move(ns));
                else pool_retry_ns = now_monotonic_ns() + kNetPoolRetryNs;
                continue;
            }
        }
        HelperRequest req{};
        std::vector<UniqueFd> fds;
        bool cut = false;
        const ssize_t n = recv_with_fds(sock, &req, sizeof req, fds, cut);
        if (n == 0) return 0;  // moatd closed its end (or exited)
        if (n < 0) return 72;
        if (!cut && size_t(n) == sizeof req && req.magic == kHelperMagic && req.flags == kReqAhead && fds.empty() &&
            req.n_join == 0 && req.n_trees == 0) {
            if (ahead_asked < kInitsAhead) {
                ++ahead_asked;
                continue;
            }
            HelperReply no{};  // more than moatd keeps is never asked for
            no.magic = kHelperMagic;
            no.pid = -1;
            no.err = EBUSY;
            no.ahead = 1;
            set_what(no, "spawn helper: more inits asked for ahead than are kept");
            if (!send_with_fds(sock, &no, sizeof no, nullptr, 0)) return 73;
            continue;
        }
        HelperReply rep = helper_serve(req, size_t(n), cut, fds, sock, own_net.get(), net_pool, init_main);
        // Our copies go before the answer: the status pipe's EOF must mean the
        // init's exec or death, never a copy still held here.
        fds.clear();
        if (!send_with_fds(sock, &rep, sizeof rep, nullptr, 0)) return 73;
    }
}

Result<std::unique_ptr<SpawnHelper>> SpawnHelper::start(int init_exe_fd, int answer_ms, size_t inits_ahead) {
    if (!supported()) return fail("the spawn helper is not used in a ThreadSanitizer build");
    if (init_exe_fd < 0) return fail("no moat-init to start the spawn helper from");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return fail_sys("socketpair", errno);
    UniqueFd mine(sv[0]), theirs(sv[1]);
    HelperStart hs{theirs.get(), init_exe_fd, getpid()};
    // Runs once: a vfork-like child on a small stack that only executes
    // moat-init (a fork-like copy in a sanitizer build, as for jobs).
    long pid;
    int clone_errno = 0;
    Result<ChildMemory> mem = ChildMemory{};
    if (kShareMemoryBuild) {
        mem = ChildMemory::create(0);
        if (!mem) return std::unexpected(mem.error());
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = clone(helper_exec_entry, mem->stack_top(), CLONE_VM | CLONE_VFORK | SIGCHLD, &hs);
        clone_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
    } else {
        pid = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
        clone_errno = errno;
        if (pid == 0) helper_exec_child(hs);
    }
    if (pid < 0) return fail_sys("clone(spawn helper)", clone_errno);
    theirs.reset();
    std::unique_ptr<SpawnHelper> h(new SpawnHelper);
    h->m_pid = pid_t(pid);
    h->m_pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
    h->m_sock = std::move(mine);
    if (!h->m_pidfd) {
        const int e = errno;
        ::kill(pid_t(pid), SIGKILL);
        int ws;
        while (waitpid(pid_t(pid), &ws, 0) < 0 && errno == EINTR) {}
        h->m_pid = -1;
        return fail_sys("pidfd_open(spawn helper)", e);
    }
    h->m_answer_ms = answer_ms;
    h->m_ahead_keep = std::min(inits_ahead, kMaxInitsAhead);
    auto hello = h->next_reply(answer_ms);
    if (!hello || hello->pid != pid)
        return fail("moat-init did not start as the spawn helper: " +
                    (hello ? std::string("it gave another pid") : hello.error().message));
    return h;
}

bool SpawnHelper::usable() {
    if (!m_usable) return false;
    pollfd p{m_pidfd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 0) m_usable = false;  // exited (or its pidfd is broken)
    return m_usable;
}

SpawnHelper::~SpawnHelper() {
    if (m_sock) ::shutdown(m_sock.get(), SHUT_WR);  // EOF: the helper exits
    if (m_pidfd) {
        pollfd p{m_pidfd.get(), POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1) {
            syscall(SYS_pidfd_send_signal, m_pidfd.get(), SIGKILL, nullptr, 0);
            p.revents = 0;
            ::poll(&p, 1, 1000);
        }
    }
    // What it answered before it went and was never read names inits made
    // ahead, our children: taken now, so each is reaped below.
    if (m_sock) take_ahead_answers();
    m_sock.reset();
    for (auto& a : m_ahead) drop(a);
    m_ahead.clear();
    reap_dropped(true);
    if (!m_pidfd) return;
    siginfo_t si{};
    waitid(idtype_t(3) /*P_PIDFD*/, id_t(m_pidfd.get()), &si, WEXITED | WNOHANG);
}

std::expected<SpawnHelper::Cloned, SpawnHelper::Failure> SpawnHelper::clone_init(
    const ContainerSpawnPlan& plan, int go_fd, int status_fd, int v2_group_fd, const std::vector<int>& join_fds,
    const std::vector<std::string>& join_paths) {
    auto transport = [this](Error e, bool sent) {
        m_usable = false;
        m_failed_request = true;
        // Whatever it was doing, it is not trusted with another job.
        if (m_pidfd) syscall(SYS_pidfd_send_signal, m_pidfd.get(), SIGKILL, nullptr, 0);
        return std::unexpected(Failure{std::move(e), true, !sent});
    };
    if (!usable()) return std::unexpected(Failure{Error::msg("the spawn helper is gone"), true, true});
    if (join_fds.size() > size_t(kMaxSelfJoin) || join_fds.size() != join_paths.size() ||
        plan.tree_fds.size() > kMaxRequestTrees)
        return std::unexpected(Failure{Error::msg("too many fds for the spawn helper"), false});
    HelperRequest req{};
    req.magic = kHelperMagic;
    req.flags = (plan.new_net_ipc ? kReqNewNetIpc : 0) | (plan.join_netns_fd >= 0 ? kReqJoinNet : 0) |
                (v2_group_fd >= 0 ? kReqV2Group : 0) | (plan.all_cpus ? kReqAllCpus : 0) |
                (plan.loopback ? kReqLoopback : 0);
    req.n_join = uint32_t(join_fds.size());
    req.n_trees = uint32_t(plan.tree_fds.size());
    int fds[kMaxRequestFds];
    size_t n = 0;
    for (int i = 0; i < 3; ++i) fds[n++] = plan.stdio[i];
    fds[n++] = plan.plan_fd;
    fds[n++] = status_fd;
    fds[n++] = go_fd;
    if (v2_group_fd >= 0) fds[n++] = v2_group_fd;
    if (plan.join_netns_fd >= 0) fds[n++] = plan.join_netns_fd;
    for (size_t i = 0; i < join_fds.size(); ++i) {
        fds[n++] = join_fds[i];
        snprintf(req.join_paths[i], kJoinPathBytes, "%s", join_paths[i].c_str());
    }
    for (int t : plan.tree_fds) fds[n++] = t;
    // An init made ahead takes a job that needs a new network and ipc
    // namespace and joins its cgroup itself (v1, or no cgroup): the request
    // goes to it directly. One that is gone (its pidfd readable, or its end
    // of the socket closed) is let go and the next tried; none left: the
    // helper clones one as before.
    if (plan.new_net_ipc && plan.join_netns_fd < 0 && v2_group_fd < 0 && !m_ahead_off && m_ahead_keep > 0) {
        m_ahead_wanted = true;
        take_ahead_answers();
        reap_dropped(false);
        while (!m_ahead.empty()) {
            Ahead a = std::move(m_ahead.front());
            m_ahead.erase(m_ahead.begin());
            pollfd p{a.pidfd.get(), POLLIN, 0};
            sched_param normal{};
            bool taken = ::poll(&p, 1, 0) == 0;
            if (taken && sched_setscheduler(a.pid, SCHED_OTHER, &normal) < 0) {
                // Without CAP_SYS_NICE no init made ahead could run its job
                // at the normal priority: none is made or used again.
                taken = false;
                if (errno == EPERM) m_ahead_off = true;
            }
            if (taken && send_with_fds(a.ctl.get(), &req, sizeof req, fds, n)) {
                ask_ahead();
                return Cloned{a.pid, false, false, true};
            }
            drop(a);
            reap_dropped(false);
            if (m_ahead_off) {
                for (auto& o : m_ahead) drop(o);
                m_ahead.clear();
            }
        }
        // It answered something no request asked for: not used again.
        if (!m_usable)
            return transport(Error::msg("spawn helper (pid " + std::to_string(m_pid) + "): it answered what was not asked"),
                             false);
    }
    if (!send_with_fds(m_sock.get(), &req, sizeof req, fds, n))
        return transport(Error::sys("spawn helper (pid " + std::to_string(m_pid) + "): sendmsg", errno), false);
    auto rep = next_reply(m_answer_ms);
    if (!rep) return transport(rep.error().wrap("spawn helper (pid " + std::to_string(m_pid) + ")"), true);
    if (rep->pid > 0) {
        ask_ahead();
        return Cloned{pid_t(rep->pid), rep->born_in_group != 0, rep->net_made_ahead != 0};
    }
    if (rep->clone_failed)
        return std::unexpected(Failure{Error::sys(container_clone_what(plan, rep->clone_failed == 2), rep->err), false});
    rep->what[sizeof rep->what - 1] = 0;
    return std::unexpected(Failure{Error::sys(rep->what, rep->err), false});
}

// One message from the helper (the caller has polled): 1, 0 at EOF, -1 for
// an error or something that is not a reply.
int SpawnHelper::recv_message(HelperReply& rep, std::vector<UniqueFd>& fds) {
    bool cut = false;
    const ssize_t got = recv_with_fds(m_sock.get(), &rep, sizeof rep, fds, cut);
    if (got == 0) return 0;
    if (got < 0 || cut || size_t(got) != sizeof rep || rep.magic != kHelperMagic) return -1;
    return 1;
}

// The helper's next message within timeout_ms that answers a job's request
// (or its hello). Answers to kReqAhead that come first are taken on the way.
Result<HelperReply> SpawnHelper::next_reply(int timeout_ms) {
    const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
    for (;;) {
        const int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
        pollfd p{m_sock.get(), POLLIN, 0};
        int n;
        do n = ::poll(&p, 1, int(std::max<int64_t>(left, 0)));
        while (n < 0 && errno == EINTR);
        if (n == 0) return fail("no answer within " + std::to_string(timeout_ms) + " ms");
        if (n < 0) return fail_sys("poll", errno);
        HelperReply rep{};
        std::vector<UniqueFd> fds;  // closed unless taken
        const int r = recv_message(rep, fds);
        if (r == 0) return fail("it exited");
        if (r < 0) return fail("it answered something that is not a reply");
        if (rep.ahead) {
            on_ahead_answer(rep, fds);
            continue;
        }
        if (!fds.empty()) return fail("it answered something that is not a reply");
        return rep;
    }
}

// Answers to kReqAhead already waiting (never blocks). Anything else here
// answers no request: the helper is not used again.
void SpawnHelper::take_ahead_answers() {
    for (;;) {
        pollfd p{m_sock.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) return;
        HelperReply rep{};
        std::vector<UniqueFd> fds;
        const int r = recv_message(rep, fds);
        if (r == 0) return;  // it exited: usable() sees it
        if (r < 0 || !rep.ahead) {
            m_usable = false;
            return;
        }
        on_ahead_answer(rep, fds);
    }
}

void SpawnHelper::on_ahead_answer(const HelperReply& rep, std::vector<UniqueFd>& fds) {
    if (m_ahead_asked > 0) --m_ahead_asked;
    if (rep.pid <= 0) {
        // Refused (the kernel's namespace limits, memory): not asked again for a second.
        m_ahead_retry_ns = now_monotonic_ns() + 1'000'000'000;
        return;
    }
    // Only a child of ours still named moat-ahead is an init made ahead
    // (waitid on any other process fails with ECHILD; a job's init is named
    // moat-init, the helper moat-spawner); an unreaped child's pid is never
    // reused. Anything else: the helper answered nonsense.
    Ahead a;
    a.pid = pid_t(rep.pid);
    a.pidfd.reset(int(syscall(SYS_pidfd_open, a.pid, 0)));
    siginfo_t si{};
    const bool child = a.pid != m_pid && (a.pidfd ? waitid(idtype_t(3) /*P_PIDFD*/, id_t(a.pidfd.get()), &si,
                                                           WEXITED | WNOHANG | WNOWAIT)
                                                   : waitid(P_PID, id_t(a.pid), &si, WEXITED | WNOHANG | WNOWAIT)) == 0;
    char comm[32] = {};
    if (child) {
        UniqueFd f(::open(("/proc/" + std::to_string(a.pid) + "/comm").c_str(), O_RDONLY | O_CLOEXEC));
        if (f) (void)!::read(f.get(), comm, sizeof comm - 1);
    }
    if (!child || strcmp(comm, "moat-ahead\n") != 0) {
        m_usable = false;
        return;
    }
    if (fds.size() != 1 || !a.pidfd || m_ahead_off) {
        // Not usable (its socket did not come, or no pidfd: EMFILE), or not
        // wanted: it exits at EOF (or is killed) and is reaped.
        drop(a);
        return;
    }
    a.ctl = std::move(fds[0]);
    m_ahead.push_back(std::move(a));
}

// Lets an init made ahead go: its socket closed (so it exits, if it has not),
// reaped now or later (reap_dropped).
void SpawnHelper::drop(Ahead& a) {
    a.ctl.reset();
    m_dropped.push_back(Dropped{a.pid, std::move(a.pidfd)});
}

// Asks the helper for inits ahead up to m_ahead_keep, once a job that can use
// one was seen (never on a v2 host, where each init is born in its group).
void SpawnHelper::ask_ahead() {
    if (!m_ahead_wanted || m_ahead_off || !m_usable || now_monotonic_ns() < m_ahead_retry_ns) return;
    while (m_ahead.size() + m_ahead_asked < m_ahead_keep) {
        HelperRequest req{};
        req.magic = kHelperMagic;
        req.flags = kReqAhead;
        if (!send_with_fds(m_sock.get(), &req, sizeof req, nullptr, 0)) {
            m_usable = false;  // its end is closed: it is gone
            return;
        }
        ++m_ahead_asked;
    }
}

// Reaps the inits made ahead that were let go: those that have exited, or
// with `wait` every one (SIGKILLed at once, then waited for together, 2 s at
// most; one that does not die in that time, stuck in the kernel, is left).
void SpawnHelper::reap_dropped(bool wait) {
    auto reaped = [](const Dropped& d) {
        siginfo_t si{};
        const int r = d.pidfd ? waitid(idtype_t(3) /*P_PIDFD*/, id_t(d.pidfd.get()), &si, WEXITED | WNOHANG)
                              : waitid(P_PID, id_t(d.pid), &si, WEXITED | WNOHANG);
        return (r == 0 && si.si_pid != 0) || (r < 0 && errno == ECHILD);
    };
    if (wait)
        for (auto& d : m_dropped) {
            if (d.pidfd) syscall(SYS_pidfd_send_signal, d.pidfd.get(), SIGKILL, nullptr, 0);
            else ::kill(d.pid, SIGKILL);  // our unreaped child: the pid is still its
        }
    const int64_t deadline = now_monotonic_ns() + 2'000'000'000;
    for (;;) {
        std::erase_if(m_dropped, reaped);
        if (!wait || m_dropped.empty()) return;
        const int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
        if (left <= 0) return;
        std::vector<pollfd> ps;
        for (const auto& d : m_dropped)
            if (d.pidfd) ps.push_back({d.pidfd.get(), POLLIN, 0});
        // A pid without a pidfd is looked at again every 10 ms.
        ::poll(ps.data(), ps.size(), int(ps.size() == m_dropped.size() ? left : std::min<int64_t>(left, 10)));
    }
}

std::vector<pid_t> SpawnHelper::inits_ahead() {
    take_ahead_answers();
    std::vector<pid_t> out;
    for (const auto& a : m_ahead) out.push_back(a.pid);
    return out;
}

}  // namespace moat::sandbox
