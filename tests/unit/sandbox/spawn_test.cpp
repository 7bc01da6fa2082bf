// The seccomp-tier runner without moatd: what the child looks like, and what
// happens to notified syscalls when the supervisor is gone.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <signal.h>
#include <fstream>
#include <thread>
#include <sstream>

#include "moat/cgroup/cgroup.h"
#include "moat/compiler/seccomp_compiler.h"
#include "moat/policy/parser.h"
#include "moat/sandbox/landlock.h"
#include "moat/sandbox/container_plan.h"
#include "moat/sandbox/spawn.h"
#include "spawn_helper_wire.h"

using namespace moat;

namespace {

std::shared_ptr<const compiler::CompiledFilter> filter_for(const std::string& allow) {
    auto r = policy::parse_policy("name = \"t\"\n[seccomp]\ndefault_action = \"errno:EPERM\"\nallow = [" + allow + "]\n",
                                  "t.toml");
    EXPECT_TRUE(r.policy) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
    auto f = compiler::compile(*r.policy);
    EXPECT_TRUE(f);
    return *f;
}

// Answers the job's first (always notified) execve with CONTINUE.
void continue_exec(int listener) {
    pollfd p{listener, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    seccomp_notif req{};
    ASSERT_EQ(ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req), 0);
    ASSERT_EQ(req.data.nr, 59) << "the first notification must be the job's execve";
    seccomp_notif_resp resp{};
    resp.id = req.id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ASSERT_EQ(ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp), 0);
}

// Answers every notification with CONTINUE until the job's process exits.
void continue_until_exit(const sandbox::Spawned& s) {
    for (;;) {
        pollfd p[2] = {{s.listener.get(), POLLIN, 0}, {s.pidfd.get(), POLLIN, 0}};
        poll(p, 2, 5000);
        if (p[1].revents & POLLIN) break;
        if (p[0].revents & POLLIN) {
            seccomp_notif req{};
            if (ioctl(s.listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) continue;
            seccomp_notif_resp resp{};
            resp.id = req.id;
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            ioctl(s.listener.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
        }
    }
}

// A plan with the fields every test sets: the program, a job uid, stdin from
// `in`, stdout and stderr to `out`, 256 fds, and the filter.
sandbox::SpawnPlan plan_for(std::vector<std::string> argv, uid_t uid, int in, int out,
                            const compiler::CompiledFilter& f) {
    sandbox::SpawnPlan plan;
    plan.exe = argv[0][0] == '/' ? argv[0] : "/bin/" + argv[0];
    plan.argv = std::move(argv);
    plan.env = {"PATH=/usr/bin:/bin"};
    plan.cwd = "/";
    plan.uid = plan.gid = uid;
    plan.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
    plan.stdio[0] = in;
    plan.stdio[1] = out;
    plan.stdio[2] = out;
    plan.filter = &f.program();
    return plan;
}

// A container job's plan: /usr read-only and the /bin, /lib, /lib64 links
// (or binds) on a 1 MiB tmpfs root mounted at `root`, running `argv`.
sandbox::ContainerPlan container_plan(const char* root, const compiler::CompiledFilter& f,
                                      std::vector<std::string> argv) {
    sandbox::ContainerPlan cp;
    cp.hostname = "t";
    cp.newroot = root;
    cp.root_size = 1 << 20;
    cp.mounts.push_back({sandbox::MountSpec::Kind::BindRo, "/usr", "/usr"});
    for (const char* link : {"/bin", "/lib", "/lib64"}) {
        char to[256] = {};
        if (readlink(link, to, sizeof to - 1) > 0)
            cp.mounts.push_back({sandbox::MountSpec::Kind::Symlink, to, link});
        else
            cp.mounts.push_back({sandbox::MountSpec::Kind::BindRo, link, link});
    }
    cp.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
    cp.exe = argv[0];
    cp.argv = std::move(argv);
    cp.env = {"PATH=/usr/bin:/bin"};
    cp.cwd = "/";
    cp.uid = cp.gid = 1000;
    cp.filter = f.program();
    return cp;
}

// The plan as moatd hands it to moat-init: JSON in a memfd.
int plan_memfd(const sandbox::ContainerPlan& cp) {
    std::string text = cp.to_json().dump();
    int fd = memfd_create("moat-plan", MFD_CLOEXEC);
    if (fd >= 0 && write(fd, text.data(), text.size()) != ssize_t(text.size())) {
        close(fd);
        return -1;
    }
    if (fd >= 0) lseek(fd, 0, SEEK_SET);
    return fd;
}

// waitpid for a child that should end at once: -1 if it has not within 5 s
// (a bug then fails the test rather than hanging it).
pid_t wait_child(pid_t pid, int* status) {
    int fd = int(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return -1;
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, 5000);
    close(fd);
    return ready == 1 ? waitpid(pid, status, 0) : -1;
}

// A container job's spawn plan through `helper` (null: cloned here): the
// init's root at host uid `uid`, the job's user at uid + 1, stdin `in`,
// stdout and stderr `out`.
sandbox::ContainerSpawnPlan csp_for(int initfd, int planfd, uid_t uid, int in, int out, sandbox::SpawnHelper* helper) {
    sandbox::ContainerSpawnPlan csp;
    csp.init_exe_fd = initfd;
    csp.plan_fd = planfd;
    csp.host_root_uid = csp.host_root_gid = uid;
    csp.host_job_uid = csp.host_job_gid = uid + 1;
    csp.stdio[0] = in;
    csp.stdio[1] = csp.stdio[2] = out;
    csp.helper = helper;
    return csp;
}

// One answer of the spawn helper within 5 s, with the fds it carried.
bool recv_answer(int sock, sandbox::helper_wire::HelperReply& r, std::vector<int>& fds) {
    pollfd p{sock, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    iovec iov{&r, sizeof r};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != ssize_t(sizeof r)) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.push_back(fd);
        }
    }
    return true;
}

// One message with `fds` as SCM_RIGHTS, as moatd sends the spawn helper.
ssize_t send_fds(int sock, const void* data, size_t len, const std::vector<int>& fds) {
    iovec iov{const_cast<void*>(data), len};
    std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * fds.size()));
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.data();
    mh.msg_controllen = cbuf.size();
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    return sendmsg(sock, &mh, 0);
}

struct Captured {
    int status = -1;
    std::string out;
};

Captured wait_and_read(const sandbox::Spawned& s, int out_fd) {
    Captured c;
    int st = 0;
    waitpid(s.pid, &st, 0);
    c.status = st;
    char buf[4096];
    ssize_t n;
    while ((n = read(out_fd, buf, sizeof buf)) > 0) c.out.append(buf, size_t(n));
    return c;
}

// What coreutils mkdir needs to start, report and exit, without mkdir itself.
const char* kMkdirNeedsButMkdir =
    "\"execve\", \"brk\", \"mmap\", \"munmap\", \"mprotect\", \"arch_prctl\", \"set_tid_address\", "
    "\"set_robust_list\", \"rseq\", \"futex\", \"prlimit64\", \"getrandom\", \"newfstatat\", \"fstat\", "
    "\"openat\", \"read\", \"pread64\", \"close\", \"exit\", \"exit_group\", \"access\", \"write\", "
    "\"lseek\", \"statfs\", \"umask\"";

const char* kAllowShell =
    "\"@default\", \"@basic-io\", \"@file-system\", \"@process\", \"@signal\", \"@memory\", \"@time\"";

}  // namespace

class SpawnTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root: switches to a job uid and copies the listener fd";
    }
};

TEST_F(SpawnTest, NotifiedSyscallsFailWhenTheSupervisorIsGone) {
    // mkdir is not allowed, so it is notified; with nobody holding the listener
    // the kernel must fail it (ENOSYS), never let it run.
    auto f = filter_for(kMkdirNeedsButMkdir);
    char dir[] = "/tmp/moat-gone-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    chmod(dir, 0777);
    std::string target = std::string(dir) + "/must-not-exist";
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    int devnull = open("/dev/null", O_RDWR);
    sandbox::SpawnPlan plan;
    plan.exe = "/usr/bin/mkdir";
    plan.argv = {"mkdir", target};
    plan.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
    plan.cwd = "/";
    plan.uid = plan.gid = 700999;
    plan.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
    plan.stdio[0] = devnull;
    plan.stdio[1] = devnull;
    plan.stdio[2] = out[1];
    plan.filter = &f->program();
    auto s = sandbox::spawn_seccomp_job(plan);
    ASSERT_TRUE(s) << s.error().message;
    close(out[1]);
    continue_exec(s->listener.get());
    s->listener.reset();  // the supervisor "dies": its listener is gone
    auto c = wait_and_read(*s, out[0]);
    EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 1) << c.status;
    EXPECT_NE(c.out.find("Function not implemented"), std::string::npos) << c.out;
    struct stat st{};
    EXPECT_NE(stat(target.c_str(), &st), 0) << "the denied mkdir ran without a supervisor";
    rmdir(dir);
    close(devnull);
}

TEST_F(SpawnTest, TheJobStartsWithNothingOfOurs) {
    auto f = filter_for(kAllowShell);
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    int devnull = open("/dev/null", O_RDWR);
    int leak = open("/etc/hostname", O_RDONLY);  // not O_CLOEXEC: must still not reach the job
    ASSERT_GE(leak, 0);
    // ls of /proc/self/fd needs /proc in Landlock; here there is no Landlock.
    sandbox::SpawnPlan plan = plan_for(
        {"sh", "-c", "id -u; id -G; ls /proc/self/fd | tr '\\n' ' '; echo; grep -E 'CapEff|CapBnd|NoNewPrivs|SigBlk|SigIgn' /proc/self/status; ulimit -n; env"},
        700998, devnull, out[1], *f);
    plan.env = {"PATH=/usr/bin:/bin", "ONLY=this"};
    plan.cwd = "/nonexistent-moat-dir";  // falls back to / with a warning
    plan.rlimits.open_files = 77;
    // moatd ignores SIGPIPE and blocks SIGTERM, SIGINT and SIGHUP (its
    // signalfd); both would survive execve into the job.
    struct sigaction ign{}, old_pipe{};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    auto s = sandbox::spawn_seccomp_job(plan);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    sigaction(SIGPIPE, &old_pipe, nullptr);
    ASSERT_TRUE(s) << s.error().message;
    close(out[1]);
    close(leak);
    ASSERT_EQ(s->warnings.size(), 1u);
    EXPECT_STREQ(s->warnings[0].step, "chdir");
    // Every notification (exec of sh and its children) continued: we test
    // the process state, not the filter.
    continue_until_exit(*s);
    auto c = wait_and_read(*s, out[0]);
    std::istringstream in(c.out);
    std::string uid, groups, fds;
    std::getline(in, uid);
    std::getline(in, groups);
    std::getline(in, fds);
    EXPECT_EQ(uid, "700998");
    EXPECT_EQ(groups, "700998") << "supplementary groups must be cleared";
    // 0,1,2 plus the fd ls itself opens for /proc/self/fd.
    EXPECT_EQ(fds.substr(0, 6), "0 1 2 ") << fds;
    EXPECT_LE(fds.size(), 9u) << fds;
    EXPECT_NE(c.out.find("CapEff:\t0000000000000000"), std::string::npos) << c.out;
    EXPECT_NE(c.out.find("CapBnd:\t0000000000000000"), std::string::npos) << c.out;
    EXPECT_NE(c.out.find("NoNewPrivs:\t1"), std::string::npos) << c.out;
    EXPECT_NE(c.out.find("SigBlk:\t0000000000000000"), std::string::npos) << "nothing blocked: " << c.out;
    EXPECT_NE(c.out.find("SigIgn:\t0000000000000000"), std::string::npos) << "nothing ignored: " << c.out;
    EXPECT_NE(c.out.find("\n77\n"), std::string::npos) << "RLIMIT_NOFILE from the plan";
    EXPECT_NE(c.out.find("ONLY=this"), std::string::npos);
    EXPECT_EQ(c.out.find("HOME="), std::string::npos) << "nothing of moatd's environment";
    close(devnull);
}

// The job's first process is in its cgroup before any of the job's code runs
// (v1: it moved itself in through the tasks files moatd opened; v2: moatd
// moved it), none of those fds reaches the job, and it reported the CPUs it
// may run on.
// How a v2 job's first process should have joined: born in its group
// (clone3, Linux 5.7), or moved by moatd on an older kernel and, for the
// seccomp tier, in a sanitizer build (its copy is made by glibc's fork()).
const char* expected_v2_join(bool seccomp_tier) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    if (seccomp_tier) return "moatd";
#else
    (void)seccomp_tier;
#endif
    utsname u{};
    int major = 0, minor = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major < 5 || (major == 5 && minor < 7)))
        return "moatd";
    return "clone3";
}

// Both joins: v1 (the child writes to each hierarchy's tasks file) and v2
// (here the controller-less cgroup2 mount, enough for a group without
// limits: the child is born in its group with clone3(CLONE_INTO_CGROUP)).
class SpawnCgroup : public SpawnTest, public ::testing::WithParamInterface<cgroup::Version> {};
INSTANTIATE_TEST_SUITE_P(BothVersions, SpawnCgroup, ::testing::Values(cgroup::Version::V1, cgroup::Version::V2),
                         [](const auto& info) { return std::string(info.param == cgroup::Version::V1 ? "v1" : "v2"); });

TEST_P(SpawnCgroup, TheJobIsInItsCgroupWithNoFdOfItAndReportsItsCpus) {
    auto layout = cgroup::Layout::detect(GetParam());
    if (!layout) GTEST_SKIP() << "no such cgroup hierarchy here: " << layout.error().message;
    const std::string name = std::string("spawn-") + (GetParam() == cgroup::Version::V1 ? "v1-" : "v2-") +
                             std::to_string(getpid());
    auto cg = cgroup::JobCgroup::create(*layout, "moat-test", name, {});
    ASSERT_TRUE(cg) << cg.error().message;
    auto joins = cg->open_self_join();
    ASSERT_TRUE(joins) << joins.error().message;
    if (layout->version == cgroup::Version::V1) {
        EXPECT_EQ(joins->size(), cg->dirs().size()) << "one tasks file per hierarchy";
        for (const auto& j : *joins) EXPECT_TRUE(j.path.ends_with("/tasks")) << j.path;
    } else {
        EXPECT_TRUE(joins->empty()) << "v2 moves a process from moatd (no thread moves across domains)";
    }
    joins->clear();

    auto f = filter_for(kAllowShell);
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    int devnull = open("/dev/null", O_RDWR);
    sandbox::SpawnPlan plan =
        plan_for({"sh", "-c", "cat /proc/self/cgroup; ls -l /proc/self/fd/ | grep -c cgroup"}, 700997, devnull, out[1], *f);
    plan.cgroup = &*cg;
    auto s = sandbox::spawn_seccomp_job(plan);
    ASSERT_TRUE(s) << s.error().message;
    close(out[1]);
    EXPECT_GT(s->cpus, 0) << "the kSetupCpus record reached the parent";
    EXPECT_EQ(s->cpus, s->cpus_before) << "all_cpus is off: the mask stays as it was";
    EXPECT_STREQ(s->cgroup_join, layout->version == cgroup::Version::V1 ? "self" : expected_v2_join(true))
        << "v1: the child joins by itself; v2: born in its group (moatd never moves it)";
    continue_until_exit(*s);
    auto c = wait_and_read(*s, out[0]);
    const std::string want = "/moat-test/" + name + "\n";
    if (layout->version == cgroup::Version::V1) {
        // "N:ctrl[,ctrl...]:path" per hierarchy (cpu and cpuacct are often
        // co-mounted as "cpu,cpuacct").
        std::map<std::string, std::string> path_of;
        std::istringstream lines(c.out);
        for (std::string line; std::getline(lines, line);) {
            auto a = line.find(':'), b = line.find(':', a + 1);
            if (a == std::string::npos || b == std::string::npos) continue;
            std::istringstream ctrls(line.substr(a + 1, b - a - 1));
            for (std::string ctl; std::getline(ctrls, ctl, ',');) path_of[ctl] = line.substr(b + 1) + "\n";
        }
        for (const char* ctl : {"memory", "pids", "cpuacct"}) EXPECT_EQ(path_of[ctl], want) << ctl << " in\n" << c.out;
    } else {
        EXPECT_NE(c.out.find("0::" + want), std::string::npos) << c.out;
    }
    EXPECT_NE(c.out.find("\n0\n"), std::string::npos) << "no fd of the job names a cgroup file:\n" << c.out;
    EXPECT_TRUE(cg->kill_all());
    EXPECT_TRUE(cg->destroy());
    close(devnull);
    close(out[0]);
}

// The container tier's first process (moat-init, pid 1 of the job's
// namespaces) is in the job's cgroup before it runs anything: v1 by its own
// write to each tasks file, v2 born there (clone3 with CLONE_INTO_CGROUP and
// CLONE_NEWUSER|NEWNS|NEWPID|...; the same trampoline as the seccomp tier).
TEST_P(SpawnCgroup, AContainerJobsInitIsInItsCgroupBeforeItRuns) {
    auto layout = cgroup::Layout::detect(GetParam());
    if (!layout) GTEST_SKIP() << "no such cgroup hierarchy here: " << layout.error().message;
    const std::string name = std::string("spawn-ct-") + (GetParam() == cgroup::Version::V1 ? "v1-" : "v2-") +
                             std::to_string(getpid());
    auto cg = cgroup::JobCgroup::create(*layout, "moat-test", name, {});
    ASSERT_TRUE(cg) << cg.error().message;
    char root_tmpl[] = "/tmp/moat-spawn-root-XXXXXX";
    ASSERT_NE(mkdtemp(root_tmpl), nullptr);

    auto f = filter_for(kAllowShell);
    const auto cp = container_plan(root_tmpl, *f, {"/bin/sh", "-c", "echo in-container"});
    int planfd = plan_memfd(cp);
    ASSERT_GE(planfd, 0);
    int initfd = open(MOAT_INIT_PATH, O_PATH | O_CLOEXEC);
    ASSERT_GE(initfd, 0) << MOAT_INIT_PATH;
    int out[2];
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

    // Cloned by us and executing moat-init, then cloned by the spawn helper
    // and running moat-init's code in its copy: the same joins either way.
    std::unique_ptr<sandbox::SpawnHelper> helper;
    if (sandbox::SpawnHelper::supported()) {
        auto h = sandbox::SpawnHelper::start(initfd);
        ASSERT_TRUE(h) << h.error().message;
        helper = std::move(*h);
    }
    std::vector<sandbox::SpawnHelper*> vias = {nullptr};
    if (helper) vias.push_back(helper.get());
    for (sandbox::SpawnHelper* via : vias) {
        SCOPED_TRACE(via ? "through the spawn helper" : "cloned by us");
        if (out[0] < 0) {
            ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
        }
        sandbox::ContainerSpawnPlan csp;
        csp.init_exe_fd = initfd;
        csp.plan_fd = planfd;
        csp.host_root_uid = csp.host_root_gid = 700970;
        csp.host_job_uid = csp.host_job_gid = 700971;
        csp.inside_uid = cp.uid;
        csp.inside_gid = cp.gid;
        csp.stdio[0] = devnull;
        csp.stdio[1] = csp.stdio[2] = out[1];
        csp.cgroup = &*cg;
        csp.helper = via;
        auto s = sandbox::spawn_container_job(csp);
        ASSERT_TRUE(s) << s.error().message;
        close(out[1]);
        EXPECT_STREQ(s->init_by, via ? "spawn-helper" : "moatd");
        // The init's steps, in order, each after the one before it.
        std::vector<std::string> names;
        int64_t last = s->fork_ns;
        for (const auto& [step, ns] : s->timings) {
            names.push_back(step);
            EXPECT_GE(ns, last) << step;
            last = ns;
        }
        EXPECT_EQ(names, (std::vector<std::string>{"init", "go", "plan", "mounts", "dev", "proc", "pivot", "root", "forked"}));
        EXPECT_LE(last, s->ready_ns);
        EXPECT_STREQ(s->cgroup_join, layout->version == cgroup::Version::V1 ? "self" : expected_v2_join(false));
        // moat-init (s->pid) waits for its job, which waits in its first execve.
        for (const auto& dir : cg->dirs()) {
            std::ifstream procs(dir + "/cgroup.procs");
            std::string all((std::istreambuf_iterator<char>(procs)), std::istreambuf_iterator<char>());
            EXPECT_NE(("\n" + all).find("\n" + std::to_string(s->pid) + "\n"), std::string::npos)
                << "moat-init is not in " << dir << ":\n" << all;
        }
        continue_until_exit(*s);
        auto c = wait_and_read(*s, out[0]);
        EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0) << c.status;
        EXPECT_NE(c.out.find("in-container"), std::string::npos) << c.out;
        close(out[0]);
        out[0] = out[1] = -1;
        ASSERT_EQ(lseek(planfd, 0, SEEK_SET), 0);
    }
    EXPECT_TRUE(cg->kill_all());
    EXPECT_TRUE(cg->destroy());
    close(devnull);
    close(initfd);
    close(planfd);
    rmdir(root_tmpl);
}

// A first process that cannot join its cgroup (v1: here its group was
// removed under the tasks files it writes to) ends the spawn with its own
// reason. When the child is gone before the parent writes the go byte the
// parent sees EPIPE first and child_reason() finds the record; this test
// does not control which of the two paths it takes, and both must say why.
TEST_F(SpawnTest, AFailedCgroupJoinIsReportedWithItsReason) {
    auto layout = cgroup::Layout::detect(cgroup::Version::V1);
    if (!layout) GTEST_SKIP() << "no cgroup v1 here (the child joins by itself only on v1)";
    auto cg = cgroup::JobCgroup::create(*layout, "moat-test", "spawn-gone-" + std::to_string(getpid()), {});
    ASSERT_TRUE(cg) << cg.error().message;
    ASSERT_TRUE(cg->prepare_self_join());
    for (const auto& d : cg->dirs()) ASSERT_EQ(rmdir(d.c_str()), 0) << d << ": " << strerror(errno);
    auto f = filter_for(kAllowShell);
    int devnull = open("/dev/null", O_RDWR);
    sandbox::SpawnPlan plan = plan_for({"true"}, 700996, devnull, devnull, *f);
    plan.cgroup = &*cg;
    auto s = sandbox::spawn_seccomp_job(plan);
    ASSERT_FALSE(s) << "a job whose cgroup is gone must not start";
    EXPECT_NE(s.error().message.find("joining the job cgroup"), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("/tasks"), std::string::npos) << s.error().message;
    close(devnull);
}

// The job's first process shares our memory until its execve completes, and
// the kernel reads execve's arguments only once the supervisor answers the
// notification, after spawn returned: they must not live in the plan.
TEST_F(SpawnTest, ExecArgumentsOutliveThePlan) {
    auto f = filter_for(kAllowShell);
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    int devnull = open("/dev/null", O_RDWR);
    std::optional<sandbox::Spawned> s;
    {
        auto plan = std::make_unique<sandbox::SpawnPlan>();
        plan->exe = "/bin/sh";
        plan->argv = {"sh", "-c", "echo \"$0 $1 $MARK\"", "first-argument-of-some-length", "second-argument"};
        plan->env = {"PATH=/usr/bin:/bin", "MARK=environment-value-of-some-length"};
        plan->cwd = "/";
        plan->uid = plan->gid = 700996;
        plan->rlimits = {1 << 30, 256, 8 << 20, 0, 0};
        plan->stdio[0] = devnull;
        plan->stdio[1] = out[1];
        plan->stdio[2] = out[1];
        plan->filter = &f->program();
        auto r = sandbox::spawn_seccomp_job(*plan);
        ASSERT_TRUE(r) << r.error().message;
        s.emplace(std::move(*r));
        // Scribble over the plan's strings before they go back to the allocator.
        for (auto& a : plan->argv) std::fill(a.begin(), a.end(), 'X');
        for (auto& e : plan->env) std::fill(e.begin(), e.end(), 'Y');
        std::fill(plan->exe.begin(), plan->exe.end(), 'Z');
    }
    std::vector<std::string> reuse(64, std::string(200, 'W'));  // take the freed memory back
    close(out[1]);
    continue_exec(s->listener.get());
    continue_until_exit(*s);  // sh's own notified calls, if any
    auto c = wait_and_read(*s, out[0]);
    EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0) << c.status;
    EXPECT_EQ(c.out, "first-argument-of-some-length second-argument environment-value-of-some-length\n");
    close(devnull);
}

// A job whose first execve was never answered still runs on memory it shares
// with us; dropping its Spawned kills it before that memory is given back.
TEST_F(SpawnTest, DroppingASpawnedBeforeItsExecKillsTheProcess) {
    auto f = filter_for("\"@default\"");
    int devnull = open("/dev/null", O_RDWR);
    sandbox::SpawnPlan plan;
    plan.exe = "/bin/true";
    plan.argv = {"true"};
    plan.env = {};
    plan.cwd = "/";
    plan.uid = plan.gid = 700995;
    plan.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
    plan.stdio[0] = plan.stdio[1] = plan.stdio[2] = devnull;
    plan.filter = &f->program();
    pid_t pid = -1;
    {
        auto r = sandbox::spawn_seccomp_job(plan);
        ASSERT_TRUE(r) << r.error().message;
        pid = r->pid;
        // Keep the listener open elsewhere so the execve stays pending.
        int keep = dup(r->listener.get());
        r->listener.reset();
        {
            sandbox::Spawned gone = std::move(*r);
        }
        close(keep);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
    close(devnull);
}

TEST_F(SpawnTest, RefusesRootAndRelativePrograms) {
    auto f = filter_for("\"@default\"");
    sandbox::SpawnPlan plan;
    plan.exe = "/bin/true";
    plan.argv = {"true"};
    plan.uid = plan.gid = 0;
    plan.stdio[0] = plan.stdio[1] = plan.stdio[2] = 2;
    plan.filter = &f->program();
    auto r = sandbox::spawn_seccomp_job(plan);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("uid or gid 0"), std::string::npos);
    plan.uid = plan.gid = 700997;
    plan.exe = "true";
    EXPECT_FALSE(sandbox::spawn_seccomp_job(plan));
}

TEST_F(SpawnTest, AJobWithNoFreeFdForItsListenerFailsWithSeccompsError) {
    // The listener's number is the lowest free fd, sent ahead of seccomp();
    // with none free the child says "unknown" and seccomp()'s own EMFILE is
    // the reported failure (not a 5 s wait for a listener that never comes).
    auto f = filter_for("\"@default\"");
    int out[2];
    ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
    sandbox::SpawnPlan plan;
    plan.exe = "/bin/true";
    plan.argv = {"true"};
    plan.uid = plan.gid = 700997;
    plan.cwd = "/";
    plan.rlimits.open_files = 3;
    plan.stdio[0] = plan.stdio[2] = 2;
    plan.stdio[1] = out[1];
    plan.filter = &f->program();
    auto r = sandbox::spawn_seccomp_job(plan);
    close(out[0]);
    close(out[1]);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("seccomp"), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().sys_errno, EMFILE) << r.error().message;
}

TEST_F(SpawnTest, MoatInitsCodeRunsInProcessOnlyForASingleThreadedCaller) {
    // The guest agent runs moat-init's code in its cloned child; from a
    // multi-threaded process (moatd) that child could deadlock in malloc.
    sandbox::ContainerPlan cp;
    sandbox::ContainerSpawnPlan sp;
    sp.host_root_uid = sp.host_root_gid = 700990;
    sp.host_job_uid = sp.host_job_gid = 700991;
    sp.stdio[0] = sp.stdio[1] = sp.stdio[2] = 2;
    sp.plan_in_process = &cp;
    auto r = sandbox::spawn_container_job(sp);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("without the code"), std::string::npos) << r.error().message;
    sp.run_in_process = [](const sandbox::ContainerPlan&) { _exit(0); };
    std::atomic<bool> stop{false};
    std::thread other([&] { while (!stop) usleep(1000); });
    r = sandbox::spawn_container_job(sp);
    stop = true;
    other.join();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("single-threaded"), std::string::npos) << r.error().message;
}

// The spawn helper's init is our child (CLONE_PARENT): we wait for it and
// get the job's exit status as from an init we cloned. A helper that hangs is
// killed after its answer time, one that died is not used: the spawn clones
// the init itself and says so.
TEST_F(SpawnTest, TheSpawnHelpersInitIsOurChildAndAHungOrDeadHelperIsNotUsed) {
    if (!sandbox::SpawnHelper::supported()) GTEST_SKIP() << "no spawn helper in a ThreadSanitizer build";
    char root_tmpl[] = "/tmp/moat-spawn-root-XXXXXX";
    ASSERT_NE(mkdtemp(root_tmpl), nullptr);
    auto f = filter_for(kAllowShell);
    int initfd = open(MOAT_INIT_PATH, O_PATH | O_CLOEXEC);
    ASSERT_GE(initfd, 0) << MOAT_INIT_PATH;
    auto helper = sandbox::SpawnHelper::start(initfd, 2000);
    ASSERT_TRUE(helper) << helper.error().message;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

    auto run = [&](const char* word, int code, const char* expect_by) {
        SCOPED_TRACE(word);
        const auto cp = container_plan(root_tmpl, *f, {"/bin/sh", "-c", std::string("echo ") + word + "; exit " +
                                                                             std::to_string(code)});
        int planfd = plan_memfd(cp);
        ASSERT_GE(planfd, 0);
        int out[2];
        ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
        auto csp = csp_for(initfd, planfd, 700972, devnull, out[1], helper->get());
        auto s = sandbox::spawn_container_job(csp);
        close(out[1]);
        close(planfd);
        ASSERT_TRUE(s) << s.error().message;
        EXPECT_STREQ(s->init_by, expect_by);
        // While the job waits in its first execve the init holds its new
        // root (3, O_PATH) and the status pipe, and the job's stdio only
        // until start_job() returned (it closes its copies then: with a
        // posix_spawn-like child that is after the job's exec, with the
        // plain fork of a sanitizer build at once): nothing of the helper's
        // (its socket, its network namespaces) or of ours.
        std::vector<int> init_fds;
        std::string what;
        for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(s->pid) + "/fd")) {
            init_fds.push_back(std::stoi(e.path().filename().string()));
            std::error_code ec;
            what += e.path().filename().string() + " -> " + std::filesystem::read_symlink(e.path(), ec).string() + "\n";
        }
        std::sort(init_fds.begin(), init_fds.end());
        EXPECT_TRUE(init_fds == (std::vector<int>{0, 1, 2, 3, 4}) || init_fds == (std::vector<int>{3, 4})) << what;
        EXPECT_EQ(what.find("socket:"), std::string::npos) << what;
        EXPECT_EQ(what.find("net:"), std::string::npos) << what;
        EXPECT_NE(what.find("3 -> /\n"), std::string::npos) << what;
        continue_until_exit(*s);
        siginfo_t si{};
        ASSERT_EQ(waitid(idtype_t(3) /*P_PIDFD*/, id_t(s->pidfd.get()), &si, WEXITED), 0)
            << "the init is not our child: " << strerror(errno);
        EXPECT_EQ(si.si_code, CLD_EXITED);
        EXPECT_EQ(si.si_status, 0) << "moat-init's own status";
        // The job's wait status, as moat-init reports it on the status pipe.
        std::optional<int> job_status;
        const auto rest = sandbox::read_setup_status(s->status.get());
        for (const auto& rec : rest.records)
            if (std::string(rec.step) == "exit" && rec.fatal == 0) job_status = rec.err;
        EXPECT_TRUE(rest.eof) << "someone besides the init still holds the status pipe";
        ASSERT_TRUE(job_status);
        EXPECT_TRUE(WIFEXITED(*job_status) && WEXITSTATUS(*job_status) == code) << *job_status;
        std::string got;
        char buf[256];
        ssize_t n;
        while ((n = read(out[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
        close(out[0]);
        EXPECT_EQ(got, std::string(word) + "\n");
    };
    run("first", 7, "spawn-helper");
    run("second", 0, "spawn-helper");
    EXPECT_TRUE((*helper)->usable());

    // A helper that hangs: no answer in time (2 s here, 10 s in moatd), so it
    // is killed and the job fails (an init of its might exist); the next
    // job's init is cloned here. The job joins our network namespace, so no
    // init made ahead takes it: the request goes to the helper.
    const pid_t first = (*helper)->pid();
    ASSERT_EQ(kill(first, SIGSTOP), 0);
    {
        const auto cp = container_plan(root_tmpl, *f, {"/bin/true"});
        int planfd = plan_memfd(cp);
        int our_net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        ASSERT_GE(our_net, 0);
        sandbox::ContainerSpawnPlan csp;
        csp.join_netns_fd = our_net;
        csp.init_exe_fd = initfd;
        csp.plan_fd = planfd;
        csp.host_root_uid = csp.host_root_gid = 700972;
        csp.host_job_uid = csp.host_job_gid = 700973;
        csp.stdio[0] = csp.stdio[1] = csp.stdio[2] = devnull;
        csp.helper = helper->get();
        auto s = sandbox::spawn_container_job(csp);
        close(planfd);
        close(our_net);
        ASSERT_FALSE(s);
        EXPECT_NE(s.error().message.find("spawn helper (pid " + std::to_string(first) + "): no answer within 2000 ms"),
                  std::string::npos)
            << s.error().message;
    }
    EXPECT_FALSE((*helper)->usable());
    run("hung", 3, "moatd");
    helper->reset();  // reaps it
    EXPECT_NE(kill(first, 0), 0) << "the hung helper was not killed and reaped";

    // A helper that died is seen before a request is sent.
    helper = sandbox::SpawnHelper::start(initfd);
    ASSERT_TRUE(helper) << helper.error().message;
    run("again", 0, "spawn-helper");
    int hpidfd = int(syscall(SYS_pidfd_open, (*helper)->pid(), 0));
    ASSERT_GE(hpidfd, 0);
    ASSERT_EQ(kill((*helper)->pid(), SIGKILL), 0);
    pollfd p{hpidfd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    close(hpidfd);
    EXPECT_FALSE((*helper)->usable());
    run("after", 4, "moatd");
    helper->reset();
    close(devnull);
    close(initfd);
    rmdir(root_tmpl);
}

// Inits made ahead (SpawnHelper): after a job one could take, the helper
// makes two while idle. Each is our child, at SCHED_IDLE, in namespaces of
// its own except the mount namespace, which it shares with us until its job
// comes (so it pins no mount of the moment it was made): a mount made on the
// host afterwards, below a private one (so no propagation could bring it),
// is in the job's root. The next job goes to one directly and runs at the
// normal policy; a job that joins a given network namespace never takes one;
// one that died is passed over and reaped; the rest are reaped when the
// helper object goes.
TEST_F(SpawnTest, InitsMadeAheadTakeTheNextJobsAndCopyTheMountTableOnlyThen) {
    if (!sandbox::SpawnHelper::supported()) GTEST_SKIP() << "no spawn helper in a ThreadSanitizer build";
    char dir_tmpl[] = "/tmp/moat-ahead-XXXXXX";
    ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
    ASSERT_EQ(chmod(dir_tmpl, 0755), 0);  // the job's root (an unprivileged host uid) walks through it
    const std::string dir = dir_tmpl, outer = dir + "/outer", root = dir + "/root";
    ASSERT_EQ(mkdir(outer.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    ASSERT_EQ(mount("tmpfs", outer.c_str(), "tmpfs", 0, "size=64k"), 0) << strerror(errno);
    ASSERT_EQ(mount(nullptr, outer.c_str(), nullptr, MS_PRIVATE, nullptr), 0) << strerror(errno);
    ASSERT_EQ(mkdir((outer + "/inner").c_str(), 0755), 0);
    auto f = filter_for(kAllowShell);
    int initfd = open(MOAT_INIT_PATH, O_PATH | O_CLOEXEC);
    ASSERT_GE(initfd, 0) << MOAT_INIT_PATH;
    auto helper = sandbox::SpawnHelper::start(initfd);
    ASSERT_TRUE(helper) << helper.error().message;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    const auto ns_of = [](pid_t pid, const char* ns) {
        std::error_code ec;
        return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + ns, ec).string();
    };

    struct Run {
        bool made_ahead = false;
        pid_t init = -1;
        int status = -1;
        std::string out;
        std::string init_mnt;
        int init_policy = -1;
    };
    auto run = [&](const std::string& script, int join_net) {
        Run r;
        auto cp = container_plan(root.c_str(), *f, {"/bin/sh", "-c", script});
        cp.mounts.push_back({sandbox::MountSpec::Kind::BindRo, outer, "/outer"});
        int planfd = plan_memfd(cp);
        int out[2];
        if (planfd < 0 || pipe2(out, O_CLOEXEC) < 0) return r;
        auto csp = csp_for(initfd, planfd, 700974, devnull, out[1], helper->get());
        csp.join_netns_fd = join_net;
        auto s = sandbox::spawn_container_job(csp);
        close(out[1]);
        close(planfd);
        if (!s) {
            ADD_FAILURE() << s.error().message;
            close(out[0]);
            return r;
        }
        r.made_ahead = s->init_made_ahead;
        r.init = s->pid;
        r.init_mnt = ns_of(s->pid, "mnt");
        r.init_policy = sched_getscheduler(s->pid);
        continue_until_exit(*s);
        auto c = wait_and_read(*s, out[0]);
        r.status = c.status;
        r.out = c.out;
        close(out[0]);
        return r;
    };
    auto wait_for_ahead = [&](size_t n) {
        std::vector<pid_t> got;
        for (int i = 0; i < 500 && (got = (*helper)->inits_ahead()).size() < n; ++i) usleep(10000);
        return got;
    };

    // Nothing is made ahead before a job that could take one was seen.
    usleep(50000);
    EXPECT_TRUE((*helper)->inits_ahead().empty());
    Run first = run("echo first", -1);
    EXPECT_FALSE(first.made_ahead);
    EXPECT_EQ(first.out, "first\n");

    auto ahead = wait_for_ahead(2);
    ASSERT_EQ(ahead.size(), 2u) << "the helper made no inits ahead";
    const std::string our_mnt = ns_of(getpid(), "mnt");
    for (pid_t pid : ahead) {
        SCOPED_TRACE("init made ahead " + std::to_string(pid));
        EXPECT_EQ(ns_of(pid, "mnt"), our_mnt) << "it holds a copy of the mount table of the moment it was made";
        for (const char* ns : {"net", "user", "pid", "uts", "ipc"}) EXPECT_NE(ns_of(pid, ns), ns_of(getpid(), ns)) << ns;
        EXPECT_EQ(sched_getscheduler(pid), SCHED_IDLE);
        std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
        std::string name;
        std::getline(comm, name);
        EXPECT_EQ(name, "moat-ahead");
        siginfo_t si{};
        EXPECT_EQ(waitid(P_PID, id_t(pid), &si, WEXITED | WNOHANG | WNOWAIT), 0) << "not our child";
    }

    // A mount made now, inside a private one: only a mount table copied
    // after this moment has it.
    ASSERT_EQ(mount("tmpfs", (outer + "/inner").c_str(), "tmpfs", 0, "size=64k"), 0) << strerror(errno);
    {
        std::ofstream mark(outer + "/inner/fresh");
        mark << "mounted after the init was made\n";
    }
    Run second = run("cat /outer/inner/fresh", -1);
    EXPECT_TRUE(second.made_ahead);
    EXPECT_TRUE(std::find(ahead.begin(), ahead.end(), second.init) != ahead.end()) << second.init;
    EXPECT_EQ(second.out, "mounted after the init was made\n");
    EXPECT_TRUE(WIFEXITED(second.status) && WEXITSTATUS(second.status) == 0) << second.status;
    EXPECT_NE(second.init_mnt, our_mnt) << "the job's init did not make its own mount namespace";
    EXPECT_EQ(second.init_policy, SCHED_OTHER) << "the job's init still runs at SCHED_IDLE";

    // A job in a given network namespace is cloned by the helper as before.
    int our_net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(our_net, 0);
    Run joined = run("echo joined", our_net);
    close(our_net);
    EXPECT_FALSE(joined.made_ahead);
    EXPECT_EQ(joined.out, "joined\n");

    // One that died is passed over (and reaped); the job still starts.
    ahead = wait_for_ahead(2);
    ASSERT_EQ(ahead.size(), 2u);
    ASSERT_EQ(kill(ahead[0], SIGKILL), 0);
    int pidfd = int(syscall(SYS_pidfd_open, ahead[0], 0));
    ASSERT_GE(pidfd, 0);
    pollfd p{pidfd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    close(pidfd);
    Run after_kill = run("echo after", -1);
    EXPECT_EQ(after_kill.out, "after\n");
    EXPECT_TRUE(after_kill.made_ahead);
    EXPECT_EQ(after_kill.init, ahead[1]);
    errno = 0;
    EXPECT_TRUE(kill(ahead[0], 0) < 0 && errno == ESRCH) << "the dead init made ahead was not reaped";

    // The rest are reaped with the helper (not left as zombies: kill(0)
    // succeeds on a zombie), and we have no child left at all.
    ahead = wait_for_ahead(2);
    EXPECT_FALSE(ahead.empty());
    helper->reset();
    for (pid_t pid : ahead) {
        errno = 0;
        EXPECT_TRUE(kill(pid, 0) < 0 && errno == ESRCH) << "init made ahead " << pid << " was not reaped";
    }
    siginfo_t none{};
    errno = 0;
    EXPECT_TRUE(waitid(P_ALL, 0, &none, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
        << "a child is left: " << none.si_pid;

    // Answers the helper sent that were never read (inits it made after a
    // job, nobody asked for since) are read and their inits reaped when the
    // helper object goes.
    helper = sandbox::SpawnHelper::start(initfd);
    ASSERT_TRUE(helper) << helper.error().message;
    Run unread = run("echo unread", -1);
    EXPECT_EQ(unread.out, "unread\n");
    usleep(300 * 1000);  // made by now, their answers waiting unread
    helper->reset();
    errno = 0;
    EXPECT_TRUE(waitid(P_ALL, 0, &none, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
        << "an init made ahead whose answer was never read is left: " << none.si_pid;

    // Without CAP_SYS_NICE moatd cannot give an init made ahead its normal
    // policy back: the job is cloned by the helper instead, and no init is
    // made ahead or used again (capabilities are per thread: only this one's
    // effective set changes, and comes back).
    helper = sandbox::SpawnHelper::start(initfd);
    ASSERT_TRUE(helper) << helper.error().message;
    (void)run("echo prime", -1);
    ASSERT_FALSE(wait_for_ahead(1).empty());
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2]{};
    ASSERT_EQ(syscall(SYS_capget, &hdr, caps), 0);
    const auto saved0 = caps[0];
    caps[0].effective &= ~(1u << CAP_SYS_NICE);
    ASSERT_EQ(syscall(SYS_capset, &hdr, caps), 0);
    Run no_nice = run("echo no-nice", -1);
    caps[0] = saved0;
    ASSERT_EQ(syscall(SYS_capset, &hdr, caps), 0);
    EXPECT_FALSE(no_nice.made_ahead);
    EXPECT_EQ(no_nice.out, "no-nice\n");
    EXPECT_EQ(no_nice.init_policy, SCHED_OTHER);
    Run later = run("echo later", -1);
    EXPECT_FALSE(later.made_ahead) << "an init made ahead was used after moatd could not reset one";
    usleep(100 * 1000);
    EXPECT_TRUE((*helper)->inits_ahead().empty());
    helper->reset();
    errno = 0;
    EXPECT_TRUE(waitid(P_ALL, 0, &none, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
        << "a child is left: " << none.si_pid;
    close(devnull);
    close(initfd);
    umount2((outer + "/inner").c_str(), MNT_DETACH);
    umount2(outer.c_str(), MNT_DETACH);
    std::filesystem::remove_all(dir);
}

// The helper answers every request, malformed ones with a refusal, closes
// every fd that came with it, keeps serving (a valid request after the
// refusals gets an init), and exits at EOF.
TEST_F(SpawnTest, TheSpawnHelperRefusesMalformedRequestsAndKeepsServing) {
    namespace w = sandbox::helper_wire;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(sv[1], 3);
        char a0[] = "moat-init", a1[] = "--spawn-helper";
        char* argv[] = {a0, a1, nullptr};
        char* envp[] = {nullptr};
        execve(MOAT_INIT_PATH, argv, envp);
        _exit(127);
    }
    close(sv[1]);
    auto reply = [&](w::HelperReply& r) {
        pollfd p{sv[0], POLLIN, 0};
        if (poll(&p, 1, 5000) != 1) return false;
        return recv(sv[0], &r, sizeof r, 0) == ssize_t(sizeof r) && r.magic == w::kHelperMagic;
    };
    w::HelperReply hello{};
    ASSERT_TRUE(reply(hello));
    EXPECT_EQ(hello.pid, pid);

    // A request with the wrong size, magic, flags or counts, each carrying
    // the write end of a pipe: refused, and the helper's copy closed.
    auto refused = [&](const void* msg, size_t len, const char* why) {
        SCOPED_TRACE(why);
        int pfd[2];
        ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
        ASSERT_EQ(send_fds(sv[0], msg, len, {pfd[1]}), ssize_t(len));
        close(pfd[1]);
        w::HelperReply r{};
        ASSERT_TRUE(reply(r));
        EXPECT_EQ(r.pid, -1);
        EXPECT_EQ(r.err, EINVAL);
        EXPECT_EQ(r.clone_failed, 0u);
        EXPECT_NE(std::string(r.what, strnlen(r.what, sizeof r.what)).find("spawn helper: "), std::string::npos) << r.what;
        pollfd hup{pfd[0], POLLIN, 0};
        char b;
        EXPECT_TRUE(poll(&hup, 1, 2000) == 1 && read(pfd[0], &b, 1) == 0)
            << "the helper kept the fd a refused request carried";
        close(pfd[0]);
    };
    char junk[16] = "not a request";
    refused(junk, sizeof junk, "too short");
    std::vector<char> big(sizeof(w::HelperRequest) + 64, 'x');
    refused(big.data(), big.size(), "too long");
    w::HelperRequest req{};
    req.magic = w::kHelperMagic ^ 1;
    refused(&req, sizeof req, "wrong magic");
    req.magic = w::kHelperMagic;
    req.flags = 1u << 7;
    refused(&req, sizeof req, "unknown flag");
    req.flags = w::kReqNewNetIpc;
    req.n_trees = w::kMaxRequestTrees + 1;
    refused(&req, sizeof req, "too many trees");
    req.n_trees = 0;
    req.n_join = uint32_t(w::kMaxJoin + 1);
    refused(&req, sizeof req, "too many cgroup joins");
    req.n_join = 0;
    refused(&req, sizeof req, "one fd where six are due");
    req.flags = w::kReqAhead;
    refused(&req, sizeof req, "an init asked for ahead, with an fd");
    req.flags = w::kReqAhead | w::kReqNewNetIpc;
    refused(&req, sizeof req, "an init asked for ahead, with other flags");
    {
        // A request for an init made ahead: answered (after the helper was
        // idle for a moment) with the init's pid, our child, and its socket;
        // the init exits when that socket closes.
        SCOPED_TRACE("an init made ahead");
        w::HelperRequest ahead{};
        ahead.magic = w::kHelperMagic;
        ahead.flags = w::kReqAhead;
        ASSERT_EQ(send(sv[0], &ahead, sizeof ahead, 0), ssize_t(sizeof ahead));
        w::HelperReply r{};
        std::vector<int> got;
        ASSERT_TRUE(recv_answer(sv[0], r, got));
        EXPECT_EQ(r.magic, w::kHelperMagic);
        EXPECT_EQ(r.ahead, 1u);
        ASSERT_GT(r.pid, 0) << r.what;
        ASSERT_EQ(got.size(), 1u) << "not exactly one fd";
        close(got[0]);  // EOF: the init gives up
        int st = 0;
        ASSERT_EQ(wait_child(r.pid, &st), r.pid) << "the init made ahead is not the helper's parent's child";
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
    }
    {
        // More asked for ahead than moatd ever keeps: the extra one is refused
        // at once, the others answered.
        SCOPED_TRACE("too many asked for ahead");
        w::HelperRequest ahead{};
        ahead.magic = w::kHelperMagic;
        ahead.flags = w::kReqAhead;
        // Stopped while they are sent, so all are there before it makes any.
        ASSERT_EQ(kill(pid, SIGSTOP), 0);
        for (size_t i = 0; i <= w::kInitsAhead; ++i)
            ASSERT_EQ(send(sv[0], &ahead, sizeof ahead, 0), ssize_t(sizeof ahead));
        ASSERT_EQ(kill(pid, SIGCONT), 0);
        size_t made = 0, refusals = 0;
        for (size_t i = 0; i <= w::kInitsAhead; ++i) {
            w::HelperReply r{};
            std::vector<int> got;
            ASSERT_TRUE(recv_answer(sv[0], r, got));
            ASSERT_EQ(r.ahead, 1u);
            for (int fd : got) close(fd);
            if (r.pid > 0) {
                ++made;
                EXPECT_EQ(got.size(), 1u);
                int st = 0;
                EXPECT_EQ(wait_child(r.pid, &st), r.pid);
            } else {
                ++refusals;
                EXPECT_EQ(r.err, EBUSY);
            }
        }
        EXPECT_EQ(made, w::kInitsAhead);
        EXPECT_EQ(refusals, 1u);
    }
    req.flags = w::kReqNewNetIpc;
    {
        // More fds than any request may carry: cut off by the kernel (MSG_CTRUNC).
        SCOPED_TRACE("too many fds");
        int pfd[2];
        ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
        std::vector<int> many(w::kMaxRequestFds + 10, pfd[1]);
        ASSERT_EQ(send_fds(sv[0], &req, sizeof req, many), ssize_t(sizeof req));
        close(pfd[1]);
        w::HelperReply r{};
        ASSERT_TRUE(reply(r));
        EXPECT_EQ(r.pid, -1);
        EXPECT_NE(std::string(r.what, strnlen(r.what, sizeof r.what)).find("malformed"), std::string::npos) << r.what;
        pollfd hup{pfd[0], POLLIN, 0};
        char b;
        EXPECT_TRUE(poll(&hup, 1, 2000) == 1 && read(pfd[0], &b, 1) == 0) << "the helper kept fds of a cut request";
        close(pfd[0]);
    }
    {
        // Still serving: a well-formed request gets an init (our child, since
        // the helper is), which tells its pid on the status pipe too and exits
        // when the go pipe closes.
        SCOPED_TRACE("a valid request after the refusals");
        auto f = filter_for(kAllowShell);
        char root_tmpl[] = "/tmp/moat-spawn-root-XXXXXX";
        ASSERT_NE(mkdtemp(root_tmpl), nullptr);
        int planfd = plan_memfd(container_plan(root_tmpl, *f, {"/bin/true"}));
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        int status[2], go[2];
        ASSERT_EQ(pipe2(status, O_CLOEXEC), 0);
        ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
        w::HelperRequest ok{};
        ok.magic = w::kHelperMagic;
        ok.flags = w::kReqNewNetIpc;
        ASSERT_EQ(send_fds(sv[0], &ok, sizeof ok, {devnull, devnull, devnull, planfd, status[1], go[0]}),
                  ssize_t(sizeof ok));
        close(status[1]);
        close(go[0]);
        w::HelperReply r{};
        ASSERT_TRUE(reply(r));
        ASSERT_GT(r.pid, 0) << r.what;
        close(go[1]);  // no go: the init gives up
        int st = 0;
        ASSERT_EQ(waitpid(r.pid, &st, 0), r.pid) << "the init is not the helper's parent's child";
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 125) << st;
        bool noted = false;
        fcntl(status[0], F_SETFL, O_NONBLOCK);
        for (const auto& rec : sandbox::read_setup_status(status[0]).records)
            noted = noted || (rec.fatal == sandbox::kSetupCloned && rec.err == r.pid);
        EXPECT_TRUE(noted) << "the helper did not note the init's pid on the status pipe";
        close(status[0]);
        close(planfd);
        close(devnull);
        rmdir(root_tmpl);
    }

    close(sv[0]);  // EOF: the helper exits cleanly
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

// A helper request that went out and was never answered leaves an init
// (our child: CLONE_PARENT) known only from the helper's kSetupCloned note on
// the status pipe. reap_unanswered_init must reap it: when the pipe's EOF
// comes before the process is a zombie (it closes its files, then exits), and
// when the pipe never closes (killed after the 2 s bound).
namespace {
pid_t fake_init(int go_r, int go_w, int st_r, int st_w, bool leaves) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    close(go_w);
    close(st_r);
    sandbox::SetupRecord rec{};
    snprintf(rec.step, sizeof rec.step, "spawn helper: cloned");
    rec.fatal = sandbox::kSetupCloned;
    rec.err = getpid();
    if (write(st_w, &rec, sizeof rec) != ssize_t(sizeof rec)) _exit(1);
    if (!leaves)
        for (;;) pause();  // holds the status pipe for ever
    char c;
    while (read(go_r, &c, 1) > 0) {}
    close(st_w);    // the EOF moatd sees...
    usleep(200000); // ...well before this process exits
    _exit(0);
}
}  // namespace

// Runs reap_unanswered_init on a fake init; true when it left nothing to reap.
bool reaped_after_lost_answer(bool leaves) {
    int go[2], st[2];
    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0) return false;
    const pid_t pid = fake_init(go[0], go[1], st[0], st[1], leaves);
    if (pid <= 0) return false;
    close(go[0]);
    UniqueFd go_w(go[1]), st_w(st[1]), st_r(st[0]);
    sandbox::reap_unanswered_init(go_w, st_w, st_r.get());
    EXPECT_FALSE(go_w);
    EXPECT_FALSE(st_w);
    int ws = 0;
    const pid_t w = waitpid(pid, &ws, WNOHANG);
    if (w == -1) return true;
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    return false;
}

TEST(SpawnReap, AnInitWhoseAnswerWasLostIsReapedAfterItsPipeCloses) {
    EXPECT_TRUE(reaped_after_lost_answer(true)) << "the init was left unreaped";
}

TEST(SpawnReap, AnInitThatKeepsItsPipeIsKilledAndReaped) {
    EXPECT_TRUE(reaped_after_lost_answer(false)) << "the init was left alive or unreaped";
}

TEST_F(SpawnTest, LandlockRulesetFollowsThePolicy) {
    if (sandbox::landlock_abi() == 0) GTEST_SKIP() << "kernel without Landlock";
    policy::Filesystem fs;
    fs.read_only = {"/usr", "/definitely/missing"};
    fs.landlock = policy::LandlockMode::Required;
    auto r = sandbox::build_landlock(fs, policy::NetworkMode::None, {});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(r->fd);
    EXPECT_EQ(r->abi, sandbox::landlock_abi());
    EXPECT_EQ(r->net_restricted, r->abi >= 4);
    EXPECT_EQ(r->scoped, r->abi >= 6);
    ASSERT_EQ(r->notes.size(), 1u) << "the missing path is reported, not silently dropped";
    fs.landlock = policy::LandlockMode::Off;
    auto off = sandbox::build_landlock(fs, policy::NetworkMode::None, {});
    ASSERT_TRUE(off);
    EXPECT_FALSE(off->fd);
}

TEST_F(SpawnTest, EachJobGetsItsOwnListenerWhileOthersRun) {
    // moatd holds the listeners of running jobs; a new child inherits them until
    // it closes them. The listener copied out for the new job must be its own
    // (regression: the first seccomp-notify fd found used to be taken).
    auto f = filter_for(kAllowShell);
    int devnull = open("/dev/null", O_RDWR);
    auto plan_for = [&](uid_t uid, std::vector<std::string> argv) {
        sandbox::SpawnPlan plan;
        plan.exe = argv[0];
        plan.argv = argv;
        plan.env = {"PATH=/usr/bin:/bin"};
        plan.cwd = "/";
        plan.uid = plan.gid = uid;
        plan.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
        plan.stdio[0] = plan.stdio[1] = plan.stdio[2] = devnull;
        plan.filter = &f->program();
        return plan;
    };
    auto pa = plan_for(700981, {"/bin/sleep", "2"});
    auto a = sandbox::spawn_seccomp_job(pa);
    ASSERT_TRUE(a) << a.error().message;
    continue_exec(a->listener.get());
    auto pb = plan_for(700982, {"/bin/true"});
    auto b = sandbox::spawn_seccomp_job(pb);
    ASSERT_TRUE(b) << b.error().message;
    pollfd p{b->listener.get(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 3000), 1) << "no notification on the new job's listener: it is not its own";
    seccomp_notif req{};
    ASSERT_EQ(ioctl(b->listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &req), 0);
    EXPECT_EQ(pid_t(req.pid), b->pid);
    EXPECT_EQ(req.data.nr, 59);
    seccomp_notif_resp resp{};
    resp.id = req.id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(b->listener.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
    int st;
    EXPECT_EQ(waitpid(b->pid, &st, 0), b->pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
    close(devnull);
}
