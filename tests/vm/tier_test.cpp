// The vm tier end to end (issue 12, "Done when"): real jobs in real QEMU
// microvm guests through a real moatd, under TCG on machines without KVM.
// Skips, with the reason, only where QEMU or the guest kernel kit cannot be
// had (moatd says why the tier is unavailable).
#include "../scenario/fixture.h"

namespace {

// The programs these tests run, with exactly the files they need: the vm
// tier's root image holds the policy's read_only paths, so a narrow list
// keeps the image small and its build fast.
const char* kReadOnly =
    "read_only = [\"/usr/bin/env\", \"/usr/bin/dash\", \"/usr/bin/sh\", \"/usr/bin/mkdir\", \"/usr/bin/sleep\", \"/usr/bin/cat\", "
    "\"/bin\", \"/lib\", \"/lib64\", \"/usr/lib64\", \"/usr/lib/x86_64-linux-gnu/libc.so.6\", "
    "\"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\", \"/usr/lib/x86_64-linux-gnu/libselinux.so.1\", "
    "\"/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0\", \"/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2\"]\n";

std::string vm_policy(const std::string& name, const std::string& limits = "wall_time = \"60s\"\n",
                      const std::string& extra = "") {
    return "name = \"" + name + "\"\ntier = \"vm\"\n[limits]\n" + limits +
           "[environment]\nset = { MOAT_VM_FIXED = \"in-the-guest\", PATH = \"/usr/bin:/bin\" }\n"
           "[filesystem]\n" + kReadOnly + "tmpfs = [\"/tmp\"]\n"
           "[seccomp]\ndefault_action = \"errno:EPERM\"\nallow = [\"@default\", \"@signal\", \"capget\", \"prctl\"]\n" +
           extra;
}

class VmTier : public Scenario {
protected:
    void SetUp() override {
        Scenario::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        // moatd says at start why a tier is unavailable.
        const std::string log = s_daemon->log();
        if (auto at = log.find("tier vm unavailable"); at != std::string::npos)
            GTEST_SKIP() << log.substr(at, log.find('\n', at) - at);
    }

    // Processes of QEMU still running as `uid` (its jail's uid).
    static int qemus_of(uid_t uid) {
        int n = 0;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc", ec)) {
            const std::string pid = e.path().filename();
            if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
            std::string comm = read_text("/proc/" + pid + "/comm");
            if (comm.rfind("qemu-system", 0) != 0) continue;
            struct stat st{};
            if (stat(("/proc/" + pid).c_str(), &st) == 0 && st.st_uid == uid) ++n;
        }
        return n;
    }
};

TEST_F(VmTier, EnvRunsInAGuestAndPrintsOnlyWhatThePolicyLetsThrough) {
    std::string pol = write_policy("vm-env", vm_policy("vm-env"));
    Opts o;
    o.env = {"MOAT_VM_SECRET=host-only"};
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/env"}, o);
    ASSERT_EQ(r.proc.status, 0) << r.proc.out << r.proc.err;
    EXPECT_NE(r.proc.out.find("MOAT_VM_FIXED=in-the-guest"), std::string::npos) << r.proc.out;
    EXPECT_EQ(r.proc.out.find("MOAT_VM_SECRET"), std::string::npos) << "a host variable leaked in:\n" << r.proc.out;
    EXPECT_EQ(r.proc.out.find("HOME="), std::string::npos) << r.proc.out;
    json j = show(r.id);
    EXPECT_EQ(j.value("tier", ""), "vm");
    EXPECT_EQ(cause(j), "exited");
    const json info = j.value("sandbox", json::object());
    EXPECT_TRUE(info.value("accelerator", "") == "tcg" || info.value("accelerator", "") == "kvm") << info.dump(2);
    EXPECT_FALSE(info.value("accelerator_reason", "").empty()) << info.dump(2);
    EXPECT_FALSE(info.value("guest_kernel", "").empty()) << info.dump(2);
    EXPECT_TRUE(info.contains("boot_ms")) << info.dump(2);
}

TEST_F(VmTier, StdinGoesInAndTheExitCodeComesOut) {
    std::string pol = write_policy("vm-stdin", vm_policy("vm-stdin"));
    std::string in = s_root + "/vm-stdin.txt";
    write_text(in, "hello from the host\n");
    Opts o;
    o.stdin_fd = open(in.c_str(), O_RDONLY | O_CLOEXEC);
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/bin/sh", "-c", "read line; echo \"got: $line\"; echo err-line >&2; exit 7"}, o);
    close(o.stdin_fd);
    EXPECT_EQ(r.proc.status, 7) << r.proc.out << r.proc.err;
    EXPECT_NE(r.proc.out.find("got: hello from the host"), std::string::npos) << r.proc.out;
    EXPECT_NE(r.proc.err.find("err-line"), std::string::npos) << r.proc.err;
    json j = show(r.id);
    EXPECT_EQ(cause(j), "exited");
    EXPECT_EQ(j.value("exit_code", -1), 7) << j.dump(2);
}

TEST_F(VmTier, ADeniedMkdirInsideTheGuestIsRecordedWithItsPath) {
    std::string extra =
        "[[seccomp.rule]]\nsyscall = \"mkdir\"\naction = \"errno:EACCES\"\n"
        "[[seccomp.rule]]\nsyscall = \"mkdirat\"\naction = \"errno:EACCES\"\n";
    std::string pol = write_policy("vm-mkdir", vm_policy("vm-mkdir", "wall_time = \"60s\"\n", extra));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/mkdir", "/tmp/moat-vm-denied"}, o);
    EXPECT_NE(r.proc.status, 0) << r.proc.out << r.proc.err;
    EXPECT_NE(r.proc.err.find("Permission denied"), std::string::npos) << r.proc.err;
    auto ev = events(r.id);
    std::vector<json> d = denials(ev, "mkdir"), d2 = denials(ev, "mkdirat");
    d.insert(d.end(), d2.begin(), d2.end());
    ASSERT_FALSE(d.empty()) << "no mkdir denial recorded";
    const json& first = d.front();
    EXPECT_NE(first.value("decoded", "").find("/tmp/moat-vm-denied"), std::string::npos) << first.dump(2);
    EXPECT_EQ(first.value("action", ""), "errno:EACCES") << first.dump(2);
}

// network = none: the job keeps the guest's own network and ipc namespaces
// (no device, `lo` down; the agent uses neither), and the record says which
// namespaces it has. loopback: a network namespace of its own with `lo` up.
TEST_F(VmTier, TheNetworkModeDecidesTheJobsNetworkInsideTheGuest) {
    // /proc/net/fib_trie lists 127.0.0.1 only once `lo` is up.
    const std::vector<std::string> argv = {"/bin/sh", "-c", "cat /proc/net/dev; echo ---; cat /proc/net/fib_trie"};
    Opts o;
    o.timeout_s = 120;
    for (const std::string mode : {"none", "loopback"}) {
        SCOPED_TRACE(mode);
        std::string pol = write_policy("vm-net-" + mode, vm_policy("vm-net-" + mode, "wall_time = \"60s\"\n",
                                                                 "[network]\nmode = \"" + mode + "\"\n"));
        JobRun r = run_job(pol, argv, o);
        ASSERT_EQ(r.proc.status, 0) << r.proc.out << r.proc.err;
        const std::string devs = r.proc.out.substr(0, r.proc.out.find("---"));
        // Interfaces: a line "<name>: <counters>"; only lo, whichever the mode.
        std::vector<std::string> names;
        std::istringstream in(devs);
        for (std::string line; std::getline(in, line);)
            if (auto c = line.find(':'); c != std::string::npos && line.find('|') == std::string::npos)
                names.push_back(line.substr(line.find_first_not_of(' '), c - line.find_first_not_of(' ')));
        EXPECT_EQ(names, std::vector<std::string>{"lo"}) << devs;
        const bool lo_up = r.proc.out.find("127.0.0.1") != std::string::npos;
        EXPECT_EQ(lo_up, mode == "loopback") << r.proc.out;
        json ns = show(r.id).value("sandbox", json::object()).value("namespaces", json::array());
        const bool has_net = std::find(ns.begin(), ns.end(), json("net")) != ns.end();
        EXPECT_EQ(has_net, mode == "loopback") << ns.dump();
        EXPECT_NE(std::find(ns.begin(), ns.end(), json("user")), ns.end()) << ns.dump();
        EXPECT_NE(std::find(ns.begin(), ns.end(), json("mnt")), ns.end()) << ns.dump();
    }
}

TEST_F(VmTier, NothingOfTheGuestIsLeftAfterTheJob) {
    std::string pol = write_policy("vm-leftover", vm_policy("vm-leftover"));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/cat", "/dev/null"}, o);
    ASSERT_EQ(r.proc.status, 0) << r.proc.out << r.proc.err;
    json j = show(r.id);
    const uid_t vmm = j.value("sandbox", json::object()).value("vmm_uid", 0u);
    ASSERT_NE(vmm, 0u) << j.dump(2);
    EXPECT_TRUE(wait_for([&] { return qemus_of(vmm) == 0; }, 5)) << "QEMU of uid " << vmm << " still runs";
    // Its cgroup is gone: what is left under this moatd's cgroup parent are
    // warm guests' groups, each holding its QEMU, and moatd's spare groups;
    // no other group is left empty.
    const std::string parent = s_daemon->cgroup_parent();
    std::error_code ec;
    std::vector<fs::path> roots = {fs::path("/sys/fs/cgroup/pids") / parent, fs::path("/sys/fs/cgroup") / parent};
    EXPECT_TRUE(wait_for(
        [&] {
            for (const auto& root : roots) {
                if (!fs::is_directory(root, ec)) continue;
                for (const auto& g : fs::directory_iterator(root, ec)) {
                    if (!g.is_directory(ec)) continue;
                    if (g.path().filename() == "job-" + std::to_string(r.id)) return false;
                    // moatd's spare groups (v1) wait empty for the next job.
                    if (g.path().filename().string().starts_with("job-spare-")) continue;
                    if (read_text((g.path() / "cgroup.procs").string()).empty()) return false;
                }
            }
            return true;
        },
        5))
        << "a cgroup of the job is left under " << parent;
}

TEST_F(VmTier, WallTimeEndsTheVm) {
    std::string pol = write_policy("vm-wall", vm_policy("vm-wall", "wall_time = \"4s\"\n"));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/sleep", "300"}, o);
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << r.proc.err;
    json j = show(r.id);
    EXPECT_EQ(cause(j), "wall-time") << j.dump(2);
    const uid_t vmm = j.value("sandbox", json::object()).value("vmm_uid", 0u);
    EXPECT_TRUE(wait_for([&] { return qemus_of(vmm) == 0; }, 5)) << "QEMU of uid " << vmm << " still runs";
}

// QEMU's boot (several CPU seconds under TCG, charged to the guest's cgroup
// before any job) is not the job's: a job on a guest that took longer than
// limits.cpu_time to boot still runs, and a spinning job is still stopped by
// the limit and ends by a signal, like in the other tiers.
TEST_F(VmTier, CpuTimeCountsTheJobNotTheBoot) {
    std::string pol = write_policy("vm-cpu", vm_policy("vm-cpu", "wall_time = \"60s\"\ncpu_time = \"1s\"\n"));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/cat", "/dev/null"}, o);
    EXPECT_EQ(r.proc.status, 0) << describe(r);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "exited") << j.dump(2);
    EXPECT_LT(j["resources"].value("cpu_time_ns", uint64_t(0)), uint64_t(1'000'000'000)) << j.dump(2);

    JobRun spin = run_job(pol, {"/bin/sh", "-c", "while :; do :; done"}, o);
    json k = show(spin.id);
    EXPECT_EQ(cause(k), "cpu-time") << k.dump(2);
    // moatd's CPU check kills the VM (SIGKILL), or the guest's RLIMIT_CPU
    // backstop fires first (SIGXCPU): either way a signal, not "never started".
    EXPECT_TRUE(spin.proc.status == 128 + SIGKILL || spin.proc.status == 128 + SIGXCPU) << describe(spin);
    EXPECT_TRUE(k.value("signal", 0) == SIGKILL || k.value("signal", 0) == SIGXCPU) << k.dump(2);
}

TEST_F(VmTier, ASecondJobTakesAWarmGuest) {
    std::string pol = write_policy("vm-warm", vm_policy("vm-warm"));
    Opts o;
    o.timeout_s = 120;
    JobRun a = run_job(pol, {"/usr/bin/cat", "/dev/null"}, o);
    ASSERT_EQ(a.proc.status, 0) << a.proc.err;
    // The pool boots a guest for this (image, memory) after the first job.
    json second;
    bool warm = wait_for(
        [&] {
            JobRun b = run_job(pol, {"/usr/bin/cat", "/dev/null"}, o);
            if (b.proc.status != 0) return false;
            second = show(b.id);
            return second.value("sandbox", json::object()).value("warm", false);
        },
        60, 2.0);
    EXPECT_TRUE(warm) << "no job found a warm guest; last: " << second.dump(2);

    // moatctl show's text says the same (issue 12: the accelerator, the boot
    // and the guest kernel wherever the job is shown).
    Proc cold = ctl({"show", std::to_string(a.id)});
    ASSERT_EQ(cold.status, 0) << cold.err;
    const json info = show(a.id).value("sandbox", json::object());
    EXPECT_NE(cold.out.find("tier vm"), std::string::npos) << cold.out;
    EXPECT_NE(cold.out.find("  accelerator: " + info.value("accelerator", std::string("?")) + " (" +
                            info.value("accelerator_reason", std::string("?")) + ")"),
              std::string::npos)
        << cold.out;
    EXPECT_NE(cold.out.find(", cold (booted for this job)"), std::string::npos) << cold.out;
    EXPECT_NE(cold.out.find("  guest:       kernel " + info.value("guest_kernel", std::string("?"))), std::string::npos)
        << cold.out;
    EXPECT_NE(cold.out.find(", memory "), std::string::npos) << cold.out;
    EXPECT_NE(cold.out.find("  root image:  "), std::string::npos) << cold.out;
    if (warm) {
        Proc w = ctl({"show", second.value("id", json()).dump()});
        EXPECT_NE(w.out.find(", warm (a booted guest from the pool)"), std::string::npos) << w.out;
    }
}

}  // namespace

namespace {

TEST_F(VmTier, AGuestOomIsTheMemoryCause) {
    std::string pol = write_policy("vm-oom", vm_policy("vm-oom", "wall_time = \"60s\"\nmemory = \"48MiB\"\n"));
    Opts o;
    o.timeout_s = 120;
    // dash doubles the string until the guest cgroup's limit stops it.
    JobRun r = run_job(pol, {"/bin/sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"}, o);
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << r.proc.out << r.proc.err;
    json j = show(r.id);
    EXPECT_EQ(cause(j), "memory") << j.dump(2);
    EXPECT_NE(detail(j).find("48"), std::string::npos) << detail(j);
}

TEST_F(VmTier, AKillRuleInsideTheGuestIsTheSeccompCause) {
    std::string extra = "[[seccomp.rule]]\nsyscall = \"mkdir\"\naction = \"kill-process\"\n"
                        "[[seccomp.rule]]\nsyscall = \"mkdirat\"\naction = \"kill-process\"\n";
    std::string pol = write_policy("vm-kill", vm_policy("vm-kill", "wall_time = \"60s\"\n", extra));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/mkdir", "/tmp/never"}, o);
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << r.proc.out << r.proc.err;
    json j = show(r.id);
    EXPECT_EQ(cause(j), "seccomp") << j.dump(2);
    EXPECT_NE(detail(j).find("/tmp/never"), std::string::npos) << detail(j);
    const uid_t vmm = j.value("sandbox", json::object()).value("vmm_uid", 0u);
    EXPECT_TRUE(wait_for([&] { return qemus_of(vmm) == 0; }, 5)) << "QEMU of uid " << vmm << " still runs";
}

TEST_F(VmTier, ReplayAndLearnWorkInTheVmTier) {
    // Denied first (errno), then replayed in the same tier, then learned.
    std::string extra = "[[seccomp.rule]]\nsyscall = \"mkdir\"\naction = \"errno:EACCES\"\n"
                        "[[seccomp.rule]]\nsyscall = \"mkdirat\"\naction = \"errno:EACCES\"\n";
    std::string pol = write_policy("vm-replay", vm_policy("vm-replay", "wall_time = \"60s\"\n", extra));
    Opts o;
    o.timeout_s = 120;
    JobRun r = run_job(pol, {"/usr/bin/mkdir", "/tmp/replayed"}, o);
    ASSERT_NE(r.id, 0);
    Proc rp = ctl({"replay", std::to_string(r.id)}, o);
    std::istringstream lines(rp.out);
    std::string first;
    std::getline(lines, first);
    ASSERT_FALSE(first.empty()) << rp.out << rp.err;
    const int64_t again = std::stoll(first);
    json j = show(again);
    EXPECT_EQ(j.value("tier", ""), "vm") << j.dump(2);
    EXPECT_EQ(j.value("replay_of", json()).get<int64_t>(), r.id);
    EXPECT_FALSE(denials(events(again), "mkdir").empty() && denials(events(again), "mkdirat").empty())
        << "the replay did not meet the same denial";
    // Learn: recorded, not enforced; the proposal names mkdir.
    std::string out = s_root + "/vm-learned.toml";
    Proc lp = ctl({"replay", std::to_string(r.id), "--learn", "-o", out}, o);
    EXPECT_NE(read_text(out).find("mkdir"), std::string::npos) << lp.out << lp.err << read_text(out);
}

}  // namespace

namespace {

// A guest that is not moat-agent: what a job that took over its guest kernel
// could make it say. Each test starts its own moatd with that /init.
class HostileGuest : public VmTier {
protected:
    struct Result {
        Proc proc;
        json job;
        std::vector<json> events;
        std::string log;
    };
    Result run_hostile(int mode, const std::string& limits, const std::string& boot_timeout = "60s") {
        const std::vector<std::string> prog = {"/usr/bin/env"};
        Result res;
        Daemon d(s_root, "hostile" + std::to_string(mode));
        std::string why;
        const std::string agent = std::string(HOSTILE_AGENT_DIR) + "/vm-hostile-agent-" + std::to_string(mode);
        if (!d.start(&why, {"--vm-agent", agent, "--vm-pool-size", "0", "--vm-boot-timeout", boot_timeout})) {
            ADD_FAILURE() << why;
            return res;
        }
        std::string pol = write_policy("hostile-" + std::to_string(mode), vm_policy("hostile", limits));
        Opts o;
        o.timeout_s = 120;
        JobRun r = run_job(d, pol, prog, o);
        res.proc = r.proc;
        res.job = show(d, r.id);
        Proc ev = ctl(d, {"events", std::to_string(r.id), "--json"});
        res.events = json_lines(ev.out);
        // moatd still serves, and ends cleanly.
        Proc jobs = ctl(d, {"jobs", "--json"});
        EXPECT_EQ(jobs.status, 0) << jobs.err;
        const uid_t vmm = res.job.value("sandbox", json::object()).value("vmm_uid", 0u);
        EXPECT_TRUE(wait_for([&] { return vmm == 0 || qemus_of(vmm) == 0; }, 5)) << "QEMU of uid " << vmm << " still runs";
        EXPECT_EQ(d.terminate(), 0) << d.log();
        res.log = d.log();
        return res;
    }
};

TEST_F(HostileGuest, GarbageAfterHelloDestroysTheVmAndNamesTheBreak) {
    Result r = run_hostile(1, "wall_time = \"60s\"\n");
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << r.proc.err;
    EXPECT_EQ(cause(r.job), "signaled") << r.job.dump(2);
    EXPECT_NE(detail(r.job).find("broke the protocol"), std::string::npos) << detail(r.job);
    EXPECT_NE(detail(r.job).find("limit"), std::string::npos) << detail(r.job);
}

TEST_F(HostileGuest, AMuteGuestIsEndedByWallTime) {
    Result r = run_hostile(2, "wall_time = \"4s\"\n");
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << r.proc.err;
    EXPECT_EQ(cause(r.job), "wall-time") << r.job.dump(2);
}

TEST_F(HostileGuest, AGuestThatNeverSpeaksIsASetupFailure) {
    Result r = run_hostile(3, "wall_time = \"60s\"\n", "8s");
    EXPECT_EQ(r.proc.status, 125) << r.proc.err;
    EXPECT_EQ(cause(r.job), "setup-failed") << r.job.dump(2);
    EXPECT_NE(detail(r.job).find("did not start its agent within 8s"), std::string::npos) << detail(r.job);
}

TEST_F(HostileGuest, GarbageInsteadOfHelloIsASetupFailureThatNamesTheBreak) {
    Result r = run_hostile(5, "wall_time = \"60s\"\n");
    EXPECT_EQ(r.proc.status, 125) << r.proc.err;
    EXPECT_EQ(cause(r.job), "setup-failed") << r.job.dump(2);
    EXPECT_NE(detail(r.job).find("broke the protocol before moatd accepted its Hello"), std::string::npos) << detail(r.job);
    EXPECT_NE(detail(r.job).find("unknown frame type 238"), std::string::npos) << detail(r.job);
}

TEST_F(HostileGuest, AnAgentOfAnotherProtocolVersionIsRefusedAtItsHello) {
    Result r = run_hostile(6, "wall_time = \"60s\"\n");
    EXPECT_EQ(r.proc.status, 125) << r.proc.err;
    EXPECT_EQ(cause(r.job), "setup-failed") << r.job.dump(2);
    EXPECT_NE(detail(r.job).find("before moatd accepted its Hello"), std::string::npos) << detail(r.job);
    const std::string words = "protocol version " + std::to_string(MOAT_GUEST_PROTOCOL_VERSION + 1) +
                              ", moatd speaks " + std::to_string(MOAT_GUEST_PROTOCOL_VERSION);
    EXPECT_NE(detail(r.job).find(words), std::string::npos) << detail(r.job);
}

TEST_F(HostileGuest, ALogFloodIsBoundedAndCounted) {
    Result r = run_hostile(4, "wall_time = \"4s\"\n");
    EXPECT_EQ(cause(r.job), "wall-time") << r.job.dump(2);
    size_t logs = 0;
    uint64_t dropped = 0;
    for (const auto& e : r.events) {
        if (e.value("event", "") == "guest-log") ++logs;
        if (e.value("event", "") == "finished" && e.contains("events"))
            dropped = e["events"].value("guest_logs_not_stored", uint64_t(0));
    }
    EXPECT_LE(logs, 32u);
    EXPECT_GT(dropped, 0u) << "the flood was not counted";
}

}  // namespace
