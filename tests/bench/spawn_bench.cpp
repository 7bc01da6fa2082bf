// Job start inside moatd, piece by piece, against a bare fork+exec of the same
// program measured in the same run (issue: "spawn-to-exec at most 0.3 ms above
// a bare fork+exec"). Needs root (cgroups, uid switch, pidfd_getfd).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "moat/cgroup/cgroup.h"
#include "moat/compiler/seccomp_compiler.h"
#include "moat/policy/parser.h"
#include "moat/sandbox/landlock.h"
#include "moat/sandbox/spawn.h"

using namespace moat;

namespace {

const policy::Policy& demo_policy() {
    static policy::Policy p = [] {
        auto r = policy::parse_policy(R"(name = "bench"
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
tmpfs = []
[seccomp]
allow = ["@default"]
)",
                                      "bench.toml");
        return *r.policy;
    }();
    return p;
}

void BM_BareForkExec(benchmark::State& st) {
    for (auto _ : st) {
        pid_t p = fork();
        if (p == 0) {
            execl("/bin/true", "true", nullptr);
            _exit(127);
        }
        int s;
        waitpid(p, &s, 0);
    }
}
BENCHMARK(BM_BareForkExec)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_CompileFilterUncached(benchmark::State& st) {
    for (auto _ : st) benchmark::DoNotOptimize(compiler::compile(demo_policy()));
}
BENCHMARK(BM_CompileFilterUncached)->Unit(benchmark::kMicrosecond);

void BM_FilterCacheHit(benchmark::State& st) {
    compiler::FilterCache c;
    (void)c.get(demo_policy());
    for (auto _ : st) benchmark::DoNotOptimize(c.get(demo_policy()));
}
BENCHMARK(BM_FilterCacheHit)->Unit(benchmark::kMicrosecond);

void BM_LandlockRuleset(benchmark::State& st) {
    for (auto _ : st) benchmark::DoNotOptimize(sandbox::build_landlock(demo_policy().filesystem, policy::NetworkMode::None, {}));
}
BENCHMARK(BM_LandlockRuleset)->Unit(benchmark::kMicrosecond);

void BM_CgroupCreateDestroy(benchmark::State& st) {
    auto layout = cgroup::Layout::detect();
    if (!layout) {
        st.SkipWithError(layout.error().message.c_str());
        return;
    }
    int i = 0;
    for (auto _ : st) {
        auto cg = cgroup::JobCgroup::create(*layout, "moat-bench", "b" + std::to_string(getpid()) + "-" + std::to_string(i++),
                                            {uint64_t(64) << 20, 64});
        if (!cg) {
            st.SkipWithError(cg.error().message.c_str());
            return;
        }
        (void)cg->destroy();
    }
}
BENCHMARK(BM_CgroupCreateDestroy)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Full seccomp-tier spawn of /bin/true: fork, contain, filter, listener
// handoff, answer the exec, wait for the exit. No cgroup (measured above).
void BM_SpawnSeccompTrue(benchmark::State& st) {
    auto f = compiler::compile(demo_policy());
    auto ll = sandbox::build_landlock(demo_policy().filesystem, policy::NetworkMode::None, {});
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (auto _ : st) {
        sandbox::SpawnPlan plan;
        plan.exe = "/bin/true";
        plan.argv = {"true"};
        plan.env = {"PATH=/usr/bin:/bin"};
        plan.cwd = "/";
        plan.uid = plan.gid = 700990;
        plan.rlimits = {1 << 30, 256, 8 << 20, 0, 0};
        plan.stdio[0] = plan.stdio[1] = plan.stdio[2] = devnull;
        plan.filter = &(*f)->program();
        plan.landlock_fd = ll->fd.get();
        auto s = sandbox::spawn_seccomp_job(plan);
        if (!s) {
            st.SkipWithError(s.error().message.c_str());
            return;
        }
        seccomp_notif req{};
        ioctl(s->listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &req);
        seccomp_notif_resp resp{};
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(s->listener.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
        int ws;
        waitpid(s->pid, &ws, 0);
        st.counters["spawn_us"] = double(s->ready_ns - s->fork_ns) / 1000.0;
    }
    close(devnull);
}
BENCHMARK(BM_SpawnSeccompTrue)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
