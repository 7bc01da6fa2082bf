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
    // warm guests' groups, each holding its QEMU; no group is left empty.
    const std::string parent = "moat-scn-" + std::to_string(getpid()) + "-moatd";
    std::error_code ec;
    std::vector<fs::path> roots = {fs::path("/sys/fs/cgroup/pids") / parent, fs::path("/sys/fs/cgroup") / parent};
    EXPECT_TRUE(wait_for(
        [&] {
            for (const auto& root : roots) {
                if (!fs::is_directory(root, ec)) continue;
                for (const auto& g : fs::directory_iterator(root, ec)) {
                    if (!g.is_directory(ec)) continue;
                    if (g.path().filename() == "job-" + std::to_string(r.id)) return false;
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
}

}  // namespace
