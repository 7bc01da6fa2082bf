// Both cgroup code paths against the real kernel. This machine has a v1
// layout plus a controller-less v2 mount; a pure-v2 host exercises the
// limits path of the v2 test as well.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "moat/cgroup/cgroup.h"

using namespace moat::cgroup;

namespace {

// A process that, once placed (go()), burns a little CPU and forks a child:
// kill_all must take both, and accounting must see the CPU.
struct Sleeper {
    pid_t pid = -1;
    int go_fd = -1;
    void go() {
        char b = 1;
        (void)!write(go_fd, &b, 1);
        close(go_fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
};

Sleeper spawn_sleeper() {
    int p[2];
    if (pipe(p) != 0) abort();
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        char b;
        (void)!read(p[0], &b, 1);
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
        while (std::chrono::steady_clock::now() < until) {}
        if (fork() == 0) pause();
        pause();
        _exit(0);
    }
    close(p[0]);
    return {pid, p[1]};
}

std::string unique_name(const char* tag) { return std::string(tag) + "-" + std::to_string(getpid()); }

}  // namespace

class CgroupTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    }
};

TEST_F(CgroupTest, DetectFindsAUsableHierarchy) {
    auto l = Layout::detect();
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_FALSE(l->describe().empty());
}

TEST_F(CgroupTest, V1LimitsAccountingAndKill) {
    auto l = Layout::detect(Version::V1);
    if (!l) GTEST_SKIP() << "no cgroup v1 memory/pids/cpuacct hierarchies here: " << l.error().message;
    Limits lim;
    lim.memory_bytes = 64ULL << 20;
    lim.pids = 16;
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("v1"), lim);
    ASSERT_TRUE(cg) << cg.error().message;
    EXPECT_EQ(cg->version(), Version::V1);
    EXPECT_GE(cg->dirs().size(), 3u) << "memory, pids and cpuacct (and blkio when mounted) are separate hierarchies here";
    Sleeper sl = spawn_sleeper();
    pid_t p = sl.pid;
    ASSERT_TRUE(cg->add_pid(p));
    sl.go();
    auto s = cg->sample();
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_TRUE(s->has_memory && s->has_pids && s->has_cpu);
    EXPECT_EQ(s->pids, 2u);
    EXPECT_GT(s->cpu_ns, 0u);
    ASSERT_TRUE(cg->kill_all());
    int st;
    EXPECT_EQ(waitpid(p, &st, 0), p);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    EXPECT_TRUE(cg->pids().empty());
    ASSERT_TRUE(cg->destroy());
    for (const auto& d : cg->dirs()) EXPECT_NE(access(d.c_str(), F_OK), 0) << d << " not removed";
}

// A spare group (made before a job needed it) becomes the job's by rename:
// its name, its limits, and the tasks files it opened ahead, through which a
// process moves itself in (the job's first process does, spawn.cpp).
TEST_F(CgroupTest, V1SpareGroupBecomesTheJobsByRename) {
    auto l = Layout::detect(Version::V1);
    if (!l) GTEST_SKIP() << "no cgroup v1 here";
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("job-spare"), {});
    ASSERT_TRUE(cg) << cg.error().message;
    ASSERT_TRUE(cg->prepare_self_join());
    const std::string name = unique_name("job-renamed");
    Limits lim;
    lim.pids = 7;
    lim.memory_bytes = 32ULL << 20;
    ASSERT_TRUE(cg->rename_to(name, lim));
    for (const auto& d : cg->dirs()) {
        EXPECT_TRUE(d.ends_with("/moat-test/" + name)) << d;
        EXPECT_EQ(access(d.c_str(), F_OK), 0) << d;
    }
    auto fds_open = [] {
        size_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n += e.path().filename() != "." ? 1 : 0;
        return n;
    };
    const size_t before = fds_open();
    auto joins = cg->open_self_join();
    ASSERT_TRUE(joins);
    ASSERT_EQ(joins->size(), cg->dirs().size());
    EXPECT_EQ(fds_open(), before) << "the fds opened before the rename, handed over; none opened anew";
    for (const auto& j : *joins) EXPECT_TRUE(j.path.find("/" + name + "/tasks") != std::string::npos) << j.path;
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (const auto& j : *joins)
            if (write(j.fd.get(), "0", 1) != 1) _exit(3);
        (void)!write(p[1], "x", 1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char b;
    ASSERT_EQ(read(p[0], &b, 1), 1) << "the child could not join through the fds opened before the rename";
    close(p[0]);
    auto in = cg->pids();
    EXPECT_NE(std::find(in.begin(), in.end(), pid), in.end());
    auto s = cg->sample();
    ASSERT_TRUE(s);
    EXPECT_EQ(s->pids, 1u);
    for (const auto& d : cg->dirs()) {
        if (d.find("/pids/") != std::string::npos) {
            std::ifstream f(d + "/pids.max");
            std::string v;
            f >> v;
            EXPECT_EQ(v, "7");
        }
    }
    ASSERT_TRUE(cg->kill_all());
    int st;
    EXPECT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(cg->destroy());
    for (const auto& d : cg->dirs()) EXPECT_NE(access(d.c_str(), F_OK), 0) << d;
}

TEST_F(CgroupTest, V2GroupsAreNotRenamed) {
    auto l = Layout::detect(Version::V2);
    if (!l) GTEST_SKIP() << "no cgroup2 mount here";
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("v2-spare"), {});
    ASSERT_TRUE(cg) << cg.error().message;
    auto r = cg->rename_to(unique_name("v2-job"), {});
    EXPECT_FALSE(r);
    ASSERT_TRUE(cg->destroy());
}

TEST_F(CgroupTest, V1ReapDescribedKillsLeftovers) {
    auto l = Layout::detect(Version::V1);
    if (!l) GTEST_SKIP() << "no cgroup v1 here";
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("reap"), {});
    ASSERT_TRUE(cg);
    Sleeper sl = spawn_sleeper();
    pid_t p = sl.pid;
    ASSERT_TRUE(cg->add_pid(p));
    sl.go();
    std::string d = cg->describe();
    ASSERT_TRUE(JobCgroup::reap_described(d));
    int st;
    EXPECT_EQ(waitpid(p, &st, 0), p);
    for (const auto& dir : cg->dirs()) EXPECT_NE(access(dir.c_str(), F_OK), 0);
    EXPECT_FALSE(JobCgroup::reap_described("v1:/etc/passwd")) << "must refuse paths outside /sys/fs/cgroup";
}

TEST_F(CgroupTest, V2PlacementAccountingAndKill) {
    auto l = Layout::detect(Version::V2);
    if (!l) GTEST_SKIP() << "no cgroup2 mount here: " << l.error().message;
    Limits none;
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("v2"), none);
    ASSERT_TRUE(cg) << cg.error().message;
    EXPECT_EQ(cg->version(), Version::V2);
    Sleeper sl = spawn_sleeper();
    pid_t p = sl.pid;
    ASSERT_TRUE(cg->add_pid(p));
    sl.go();
    auto s = cg->sample();
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->has_cpu) << "cpu.stat exists in every v2 group";
    EXPECT_EQ(s->pids, 2u);
    ASSERT_TRUE(cg->kill_all()) << "cgroup.kill";
    int st;
    EXPECT_EQ(waitpid(p, &st, 0), p);
    EXPECT_TRUE(WIFSIGNALED(st));
    ASSERT_TRUE(cg->destroy());
}

TEST_F(CgroupTest, V2LimitWithoutControllerIsAnErrorNotSilence) {
    auto l = Layout::detect(Version::V2);
    if (!l) GTEST_SKIP() << "no cgroup2 mount here";
    bool has_memory = std::find(l->v2_controllers.begin(), l->v2_controllers.end(), "memory") != l->v2_controllers.end();
    Limits lim;
    lim.memory_bytes = 64ULL << 20;
    lim.pids = 32;
    auto cg = JobCgroup::create(*l, "moat-test", unique_name("v2lim"), lim);
    if (has_memory) {
        // Pure v2 host: the limits must really be applied.
        ASSERT_TRUE(cg) << cg.error().message;
        Sleeper sl = spawn_sleeper();
        pid_t p = sl.pid;
        ASSERT_TRUE(cg->add_pid(p));
        sl.go();
        auto s = cg->sample();
        ASSERT_TRUE(s);
        EXPECT_TRUE(s->has_memory && s->has_pids);
        ASSERT_TRUE(cg->kill_all());
        waitpid(p, nullptr, 0);
        ASSERT_TRUE(cg->destroy());
    } else {
        ASSERT_FALSE(cg) << "a memory limit on a v2 hierarchy without the memory controller must fail";
        EXPECT_NE(cg.error().message.find("no memory controller"), std::string::npos) << cg.error().message;
        // And nothing is left behind.
        EXPECT_NE(access((l->v2_root + "/moat-test/" + unique_name("v2lim")).c_str(), F_OK), 0);
    }
}

TEST_F(CgroupTest, RejectsNamesThatEscapeTheParent) {
    auto l = Layout::detect();
    ASSERT_TRUE(l);
    EXPECT_FALSE(JobCgroup::create(*l, "moat-test", "../evil", {}));
    EXPECT_FALSE(JobCgroup::create(*l, "moat-test", "..", {}));
    EXPECT_FALSE(JobCgroup::create(*l, "moat-test", "", {}));
}

// Both code paths: v1 (here) and the v2 mount (controller-less here, which
// is enough for groups without limits).
class CgroupParent : public CgroupTest, public ::testing::WithParamInterface<Version> {};
INSTANTIATE_TEST_SUITE_P(BothVersions, CgroupParent, ::testing::Values(Version::V1, Version::V2),
                         [](const auto& info) { return std::string(info.param == Version::V1 ? "v1" : "v2"); });

TEST_P(CgroupParent, StaleJobAndWarmGuestGroupsAreSwept) {
    auto l = Layout::detect(GetParam());
    if (!l) GTEST_SKIP() << "no such cgroup layout here: " << l.error().message;
    const std::string parent = std::string("moat-test-") + (GetParam() == Version::V1 ? "v1-" : "v2-") + unique_name("sweep");
    // Leftovers: an empty job-7, a job-8 that still holds a process, and
    // another (dead) moatd's warm guest group; our own warm group and an
    // unrelated group stay.
    const std::string own = "vm-warm-" + std::to_string(getpid()) + "-1";
    auto empty = JobCgroup::create(*l, parent, "job-7", {});
    auto busy = JobCgroup::create(*l, parent, "job-8", {});
    auto dead_warm = JobCgroup::create(*l, parent, "vm-warm-999999999-1", {});
    auto own_warm = JobCgroup::create(*l, parent, own, {});
    auto other = JobCgroup::create(*l, parent, "bare-boot-1", {});
    ASSERT_TRUE(empty && busy && dead_warm && own_warm && other);
    Sleeper sl = spawn_sleeper();
    ASSERT_TRUE(busy->add_pid(sl.pid));
    sl.go();
    auto sw = JobCgroup::sweep_stale_groups(*l, parent);
    EXPECT_EQ(sw.removed, 3u);
    EXPECT_EQ(sw.killed, 1u);
    EXPECT_TRUE(sw.failed.empty()) << sw.failed.front();
    int st;
    EXPECT_EQ(waitpid(sl.pid, &st, 0), sl.pid);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    for (const auto* g : {&*empty, &*busy, &*dead_warm})
        for (const auto& d : g->dirs()) EXPECT_NE(access(d.c_str(), F_OK), 0) << d;
    for (const auto* g : {&*own_warm, &*other})
        for (const auto& d : g->dirs()) EXPECT_EQ(access(d.c_str(), F_OK), 0) << "must stay: " << d;
    ASSERT_TRUE(own_warm->destroy());
    ASSERT_TRUE(other->destroy());
    for (const auto& d : other->dirs()) rmdir(d.substr(0, d.rfind('/')).c_str());
}

// systemd's Delegate=yes (docs/systemd.md), on a directory standing in for
// the v2 mount: no systemd runs on the build machines and their v2 mount has
// no controllers, so what is checked here is the file protocol (which files
// moatd writes, and where), not the kernel's answer to it.
struct FakeV2 {
    std::string root;
    FakeV2() {
        char tmpl[] = "/tmp/moat-fake-v2.XXXXXX";
        root = mkdtemp(tmpl);
        put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
        mkdir((root + "/system.slice").c_str(), 0755);
        mkdir((root + "/system.slice/moatd.service").c_str(), 0755);
        put("system.slice/moatd.service/cgroup.controllers", "cpu io memory pids\n");
        put("system.slice/moatd.service/cgroup.subtree_control", "");
        mkdir((root + "/system.slice/moatd.service/moatd").c_str(), 0755);
        put("system.slice/moatd.service/moatd/cgroup.procs", "");
    }
    ~FakeV2() { (void)!system(("rm -rf " + root).c_str()); }
    void put(const std::string& rel, const std::string& text) {
        FILE* f = fopen((root + "/" + rel).c_str(), "w");
        fputs(text.c_str(), f);
        fclose(f);
    }
    std::string get(const std::string& rel) {
        FILE* f = fopen((root + "/" + rel).c_str(), "r");
        if (!f) return "<missing>";
        char buf[256] = {};
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        return std::string(buf, n);
    }
};

TEST(CgroupDelegation, MoatdMovesIntoALeafAndJobsGoBelowItsOwnCgroup) {
    FakeV2 v2;
    Layout l = Layout::v2_at(v2.root);
    auto parent = delegate_v2(l, "0::/system.slice/moatd.service\n", 4242, "moat");
    ASSERT_TRUE(parent) << parent.error().message;
    EXPECT_EQ(*parent, "system.slice/moatd.service/moat");
    EXPECT_EQ(l.v2_delegated, "system.slice/moatd.service");
    EXPECT_EQ(v2.get("system.slice/moatd.service/moatd/cgroup.procs"), "4242");
    EXPECT_EQ(v2.get("system.slice/moatd.service/cgroup.subtree_control"), "+memory +pids +cpu +io");
    // Nothing above the delegated cgroup is moatd's to write.
    EXPECT_EQ(v2.get("cgroup.subtree_control"), "<missing>");
    EXPECT_NE(l.describe().find("delegated: /system.slice/moatd.service"), std::string::npos) << l.describe();
    // A job group: controllers enabled from the delegated cgroup down only.
    mkdir((v2.root + "/system.slice/moatd.service/moat").c_str(), 0755);
    v2.put("system.slice/moatd.service/moat/cgroup.subtree_control", "");
    auto job = JobCgroup::create(l, *parent, "job-1", {});
    ASSERT_TRUE(job) << job.error().message;
    EXPECT_EQ(job->dirs(), std::vector<std::string>{v2.root + "/system.slice/moatd.service/moat/job-1"});
    EXPECT_EQ(v2.get("system.slice/moatd.service/moat/cgroup.subtree_control"), "+memory +pids +cpu +io");
    EXPECT_EQ(v2.get("cgroup.subtree_control"), "<missing>");
    EXPECT_EQ(v2.get("system.slice/cgroup.subtree_control"), "<missing>");
    // Started again from inside its leaf: the same delegated cgroup.
    Layout again = Layout::v2_at(v2.root);
    auto p2 = delegate_v2(again, "0::/system.slice/moatd.service/moatd\n", 4243, "moat");
    ASSERT_TRUE(p2) << p2.error().message;
    EXPECT_EQ(*p2, "system.slice/moatd.service/moat");
}

TEST(CgroupDelegation, NothingDelegatedIsRefusedInWords) {
    FakeV2 v2;
    Layout l = Layout::v2_at(v2.root);
    auto root = delegate_v2(l, "0::/\n", 1, "moat");
    ASSERT_FALSE(root);
    EXPECT_NE(root.error().message.find("root cgroup"), std::string::npos) << root.error().message;
    v2.put("system.slice/moatd.service/cgroup.controllers", "cpu io\n");  // Delegate=yes missing
    auto bare = delegate_v2(l, "0::/system.slice/moatd.service\n", 1, "moat");
    ASSERT_FALSE(bare);
    EXPECT_NE(bare.error().message.find("Delegate=yes"), std::string::npos) << bare.error().message;
    Layout v1 = l;
    v1.version = Version::V1;
    EXPECT_FALSE(delegate_v2(v1, "0::/system.slice/moatd.service\n", 1, "moat"));
    EXPECT_FALSE(delegate_v2(l, "1:name=systemd:/x\n", 1, "moat"));
}
