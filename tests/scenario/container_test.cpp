// Container-tier scenario tests: real jobs with `tier = "container"` (or
// `moatctl run --tier container`) through a real moatd, checked from inside the
// container (moat-testprog reports what it sees) and from the host (moatctl's
// exit status, stderr, `show`/`events` JSON, /proc of the job's processes).
//
// This is issue 3's "Done when" list, as tests. Same fixture as scenario_test
// (fixture.h): one moatd per test process. moat-testprog is copied into a
// world-readable temp dir, which every policy here lists in read_only so the
// binary exists inside the container's root.
#include <sys/mount.h>

#include "fixture.h"

namespace {

// A container policy. Every field has the value most tests want; a test
// changes the few it is about.
struct Ctr {
    std::string name = "ctr";
    std::string hostname;  // empty: no key (default job-<id>)
    std::string network = "none";
    std::string limits = "wall_time = \"20s\"\n";
    std::vector<std::string> read_only = {"/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "@TESTDIR@"};
    std::vector<std::string> read_write;
    std::vector<std::string> tmpfs = {"/tmp"};
    std::string tmpfs_size;  // empty: no key (default 64MiB)
    std::string default_action = "errno:EPERM";
    std::vector<std::string> allow = {"@default", "@signal", "capget", "prctl"};
    std::string rules;  // appended after [seccomp] ([[seccomp.rule]] tables)
};

std::string toml_list(const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
    return s + "]";
}

std::string toml(const Ctr& c) {
    std::string t = "name = \"" + c.name + "\"\ntier = \"container\"\n";
    if (!c.hostname.empty()) t += "hostname = \"" + c.hostname + "\"\n";
    t += "[limits]\n" + c.limits;
    t += "[filesystem]\nread_only = " + toml_list(c.read_only) + "\nread_write = " + toml_list(c.read_write) +
         "\ntmpfs = " + toml_list(c.tmpfs) + "\n";
    if (!c.tmpfs_size.empty()) t += "tmpfs_size = \"" + c.tmpfs_size + "\"\n";
    t += "[network]\nmode = \"" + c.network + "\"\n";
    t += "[seccomp]\ndefault_action = \"" + c.default_action + "\"\nallow = " + toml_list(c.allow) + "\n";
    return t + c.rules;
}

std::string dump_all(const std::vector<json>& ev) {
    std::string s;
    for (const auto& e : ev) s += e.dump() + "\n";
    return s;
}

// The four ids of a `Uid:` / `Gid:` line in /proc/PID/status; empty when unreadable.
std::vector<long> status_ids(pid_t pid, const std::string& key) {
    std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) {
            std::istringstream f(line.substr(key.size() + 1));
            std::vector<long> v;
            for (long x; f >> x;) v.push_back(x);
            return v;
        }
    return {};
}

std::string status_field(pid_t pid, const std::string& key) {
    std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) {
            std::string v = line.substr(key.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    return "";
}

std::vector<pid_t> children_of(pid_t pid) {
    std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
    std::vector<pid_t> v;
    for (pid_t c; in >> c;) v.push_back(c);
    return v;
}

// A host directory with a tmpfs mounted on it for the length of a test.
class HostTmpfs {
public:
    explicit HostTmpfs(const std::string& dir) : m_dir(dir) {
        mkdir(dir.c_str(), 0777);
        m_ok = mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777") == 0;
        if (!m_ok) m_err = strerror(errno);
    }
    ~HostTmpfs() {
        if (m_ok) umount2(m_dir.c_str(), MNT_DETACH);
    }
    HostTmpfs(const HostTmpfs&) = delete;
    HostTmpfs& operator=(const HostTmpfs&) = delete;
    bool ok() const { return m_ok; }
    const std::string& error() const { return m_err; }

private:
    std::string m_dir, m_err;
    bool m_ok = false;
};

class Container : public Scenario {
protected:
    // The job's cgroup directories that exist (every v1 hierarchy, or v2).
    static std::vector<std::string> job_cgroup_dirs(int64_t id) {
        std::vector<std::string> out;
        std::error_code ec;
        std::vector<fs::path> roots = {"/sys/fs/cgroup"};
        for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) roots.push_back(h.path());
        for (const auto& r : roots) {
            fs::path d = r / s_daemon->cgroup_parent() / ("job-" + std::to_string(id));
            if (fs::is_directory(d, ec)) out.push_back(d.string());
        }
        return out;
    }

    static std::string ctr_policy(const Ctr& c) { return write_policy(c.name, toml(c)); }

    // moat-testprog MODE ARGS under the container policy c.
    static JobRun run_ctr(const Ctr& c, const std::vector<std::string>& args,
                          const std::vector<std::string>& run_opts = {}) {
        std::vector<std::string> prog = {testprog()};
        prog.insert(prog.end(), args.begin(), args.end());
        return run_job(*s_daemon, ctr_policy(c), prog, {}, run_opts);
    }

    // moatctl run in the background; idf receives the job's id.
    static std::unique_ptr<Bg> bg_ctr(const Ctr& c, const std::vector<std::string>& args, const std::string& idf) {
        std::vector<std::string> argv = {s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy",
                                         ctr_policy(c), "--id-file", idf, "--", testprog()};
        argv.insert(argv.end(), args.begin(), args.end());
        return std::make_unique<Bg>(argv, s_root);
    }

    // The job's record, or (when no id file was written) the newest job's.
    static json record(const JobRun& r) {
        if (r.id) return show(r.id);
        Proc p = ctl({"jobs", "--json"});
        json arr = json::parse(p.out, nullptr, false);
        EXPECT_TRUE(arr.is_array() && !arr.empty()) << p.out;
        return arr.is_array() && !arr.empty() ? arr[0] : json::object();
    }
};

// ---- 1. pid and UTS namespaces ---------------------------------------------------

TEST_F(Container, JobIsPid2UnderMoatInitWithJobHostname) {
    // The tier from the command line, the policy otherwise a seccomp-tier one.
    JobRun r = run_job(*s_daemon, policy("base"), {testprog(), "whoami"}, {}, {"--tier", "container"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    ASSERT_GT(r.id, 0) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "pid"), "2") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "ppid"), "1") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "init"), "moat-init") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "hostname"), "job-" + std::to_string(r.id)) << describe(r);
    json j = show(r.id);
    EXPECT_EQ(j.value("tier", ""), "container") << j.dump();
    EXPECT_EQ(cause(j), "exited") << j.dump();

    char host[256] = "";
    gethostname(host, sizeof host);
    EXPECT_NE(kv(r.proc.out, "hostname"), std::string(host)) << "the job sees the host's name";
}

// Each job's init is cloned by moatd's spawn helper (moat-init
// --spawn-helper: no exec per job) and is moatd's own child; a helper that
// was killed is replaced at the next job, which still starts.
TEST_F(Container, InitsComeFromTheSpawnHelperWhichIsReplacedWhenKilled) {
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "no spawn helper in a ThreadSanitizer build";
#endif
    // Its inits are moatd's children too, with the same command line: the
    // helper is the one named moat-spawner.
    auto helper_of = [](pid_t moatd) {
        for (pid_t c : children_of(moatd))
            if (read_text("/proc/" + std::to_string(c) + "/comm") == "moat-spawner\n") return c;
        return pid_t(-1);
    };
    Ctr c;
    c.name = "ctr-helper";
    JobRun a = run_ctr(c, {"whoami"});
    ASSERT_EQ(a.proc.status, 0) << describe(a);
    EXPECT_EQ(kv(a.proc.out, "init"), "moat-init") << describe(a);
    json ja = show(a.id);
    EXPECT_EQ(ja["sandbox"].value("init_started_by", ""), "spawn-helper") << ja["sandbox"].dump();
    const pid_t first = helper_of(s_daemon->pid());
    ASSERT_GT(first, 0) << "no spawn helper among moatd's children";

    ASSERT_EQ(kill(first, SIGKILL), 0);
    wait_for([&] { return read_text("/proc/" + std::to_string(first) + "/stat").find(") Z") != std::string::npos; }, 5);
    JobRun b = run_ctr(c, {"exit", "5"});
    EXPECT_EQ(b.proc.status, 5) << describe(b);
    json jb = show(b.id);
    EXPECT_EQ(cause(jb), "exited") << jb.dump();
    EXPECT_EQ(jb["sandbox"].value("init_started_by", ""), "spawn-helper") << jb["sandbox"].dump();
    const pid_t second = helper_of(s_daemon->pid());
    EXPECT_GT(second, 0);
    EXPECT_NE(second, first);
    EXPECT_NE(access(("/proc/" + std::to_string(first)).c_str(), F_OK), 0) << "the killed helper was not reaped";
}

// The job starts with every signal at its default and none blocked, as in
// the other tiers. With the spawn helper (whose own signals are reset once,
// at its start) nothing ignored reaches the job; the mask is also cleared by
// moat-init's job child (the half of this test that fails without it).
TEST_F(Container, TheJobStartsWithDefaultSignalsAndNoneBlocked) {
    Ctr c;
    c.name = "ctr-signals";
    JobRun r = run_ctr(c, {"cat", "/proc/self/status"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    for (const char* key : {"SigBlk:", "SigIgn:"}) {
        const auto at = r.proc.out.find(key);
        ASSERT_NE(at, std::string::npos) << r.proc.out;
        const auto line = r.proc.out.substr(at, r.proc.out.find('\n', at) - at);
        EXPECT_EQ(line.find_first_not_of("0", line.find_first_not_of(" \t", strlen(key))), std::string::npos)
            << line;
    }
}

TEST_F(Container, PolicyHostnameIsHonoured) {
    Ctr c;
    c.name = "ctr-hostname";
    c.hostname = "moat-scn-box";
    JobRun r = run_ctr(c, {"whoami"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "hostname"), "moat-scn-box") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "pid"), "2") << describe(r);
    char host[256] = "";
    gethostname(host, sizeof host);
    EXPECT_NE(std::string(host), "moat-scn-box") << "the job renamed the host";
}

// As Scenario.PeakPidsIsTheKernelsPeakNotASample, in the container tier
// (moat-init is one more process of the job's cgroup).
TEST_F(Container, PeakPidsIsTheKernelsPeakNotASample) {
    if (!kernel_has_pids_peak())
        GTEST_SKIP() << "no pids.peak on this kernel: peak_pids is sampled here (docs/store.md)";
    Ctr c;
    c.name = "ctr-peak-pids";
    c.limits = "wall_time = \"20s\"\npids = 64\n";
    c.rules = "[monitor]\nsample_interval = \"1h\"\n";
    JobRun r = run_job(*s_daemon, ctr_policy(c), {"/bin/sh", "-c", "for i in 1 2 3 4 5 6; do /bin/sleep 0.1 & done; wait"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    json j = record(r);
    EXPECT_GE(j["resources"].value("peak_pids", 0), 7) << "sh and its six children: " << j.dump();
}

// ---- 2. network -------------------------------------------------------------------

TEST_F(Container, NetworkNoneHasOnlyLoDownAndCannotReachHost) {
    Ctr c;
    c.name = "ctr-net-none";
    c.allow = {"@default", "@network-io", "ioctl"};
    JobRun d = run_ctr(c, {"netdevs"});
    ASSERT_EQ(d.proc.status, 0) << describe(d);
    EXPECT_EQ(kv(d.proc.out, "netdevs"), "lo:down") << describe(d);

    HostListener host;
    ASSERT_GT(host.port(), 0) << "could not listen on the host's 127.0.0.1";
    JobRun r = run_ctr(c, {"connect-tcp", std::to_string(host.port())});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "connect"), "fail") << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "ENETUNREACH") << describe(r);
    EXPECT_EQ(host.accepted(), 0) << "the job reached a listener on the host's loopback";
}

TEST_F(Container, NetworkLoopbackHasLoUpAndWorksButOnlyInside) {
    Ctr c;
    c.name = "ctr-net-lo";
    c.network = "loopback";
    c.allow = {"@default", "@network-io", "ioctl"};
    JobRun d = run_ctr(c, {"netdevs"});
    ASSERT_EQ(d.proc.status, 0) << describe(d);
    EXPECT_EQ(kv(d.proc.out, "netdevs"), "lo:up") << describe(d);

    JobRun t = run_ctr(c, {"tcp-self"});
    EXPECT_EQ(t.proc.status, 0) << describe(t);
    EXPECT_EQ(kv(t.proc.out, "tcp_self"), "ok") << describe(t);

    // Its 127.0.0.1 is its own: the host's listener is not there.
    HostListener host;
    ASSERT_GT(host.port(), 0);
    JobRun r = run_ctr(c, {"connect-tcp", std::to_string(host.port())});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "ECONNREFUSED") << describe(r);
    EXPECT_EQ(host.accepted(), 0) << "the job reached a listener on the host's loopback";
}

// The spawn helper keeps two network namespaces made ahead (refilled after
// 1 ms without a request). A job given one sees what a job whose init made
// its own sees: `none` only lo, down, nothing reachable; `loopback` lo up
// and its own.
TEST_F(Container, NetworkNamespacesMadeAheadBehaveAsTheJobsOwn) {
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "no spawn helper in a ThreadSanitizer build";
#endif
    HostListener host;
    ASSERT_GT(host.port(), 0);
    // A moatd that keeps no inits made ahead: each init is cloned by the
    // helper, with a network namespace from its pool.
    Daemon d(s_root, "no-inits-ahead");
    std::string why;
    ASSERT_TRUE(d.start(&why, {"--inits-ahead", "0"})) << why;
    auto run_ctr = [&](const Ctr& c, const std::vector<std::string>& args) {
        std::vector<std::string> prog = {testprog()};
        prog.insert(prog.end(), args.begin(), args.end());
        return run_job(d, ctr_policy(c), prog);
    };
    // A job whose namespace came from the pool: the pool is refilled 1 ms
    // after the last request, so one normally comes at the first try; on a
    // loaded machine the job is run again (up to 50 times, 100 ms apart).
    auto ahead = [&](const Ctr& c, const std::vector<std::string>& args) {
        JobRun r;
        for (int i = 0; i < 50; ++i) {
            usleep(100 * 1000);
            r = run_ctr(c, args);
            json sb = show(d, r.id)["sandbox"];
            EXPECT_FALSE(sb.value("init_made_ahead", true)) << sb.dump();
            if (sb.value("net_namespace", "") == "made ahead by the spawn helper") return r;
        }
        ADD_FAILURE() << "no job got a network namespace made ahead";
        return r;
    };
    // loopback first: a pooled namespace that went to two jobs would show lo
    // up to the `none` ones.
    for (const char* mode : {"loopback", "none"}) {
        SCOPED_TRACE(mode);
        Ctr c;
        c.name = std::string("ctr-net-ahead-") + mode;
        c.network = mode;
        c.allow = {"@default", "@network-io", "ioctl"};
        (void)run_ctr(c, {"exit", "0"});  // the helper runs from here on
        JobRun nd = ahead(c, {"netdevs"});
        ASSERT_EQ(nd.proc.status, 0) << describe(nd);
        EXPECT_EQ(kv(nd.proc.out, "netdevs"), std::string(mode) == "none" ? "lo:down" : "lo:up") << describe(nd);
        JobRun r = ahead(c, {"connect-tcp", std::to_string(host.port())});
        EXPECT_EQ(r.proc.status, 1) << describe(r);
        EXPECT_EQ(kv(r.proc.out, "errno"), std::string(mode) == "none" ? "ENETUNREACH" : "ECONNREFUSED")
            << describe(r);
        if (std::string(mode) == "loopback") {
            JobRun t = ahead(c, {"tcp-self"});
            EXPECT_EQ(t.proc.status, 0) << describe(t);
            EXPECT_EQ(kv(t.proc.out, "tcp_self"), "ok") << describe(t);
        }
    }
    EXPECT_EQ(host.accepted(), 0) << "a job reached a listener on the host's loopback";
    EXPECT_EQ(d.terminate(), 0) << d.log();
}

// Inits made ahead (moatd --inits-ahead, default 2; cgroup v1 only: on v2
// each init is born in its job's group): after a container job, the next
// ones start on an init the spawn helper made while idle. Such a job is the
// same as any other: pid 2 under moat-init, its own hostname, its own
// network namespace (made with the init, so lo comes up inside for
// loopback), the host's loopback out of reach, and the policy's binds taken
// from the mount table as it is when the job starts.
TEST_F(Container, JobsOnInitsMadeAheadAreLikeAnyOther) {
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "no spawn helper in a ThreadSanitizer build";
#endif
    if (show(run_ctr(Ctr{}, {"exit", "0"}).id)["sandbox"].value("cgroup_join", "") != "self")
        GTEST_SKIP() << "inits are made ahead only where each joins its cgroup itself (cgroup v1)";
    HostListener host;
    ASSERT_GT(host.port(), 0);
    // Made 1 ms after the helper's last request, so normally there at the
    // first try; on a loaded machine run again (up to 50 times, 100 ms apart).
    auto ahead = [&](const Ctr& c, const std::vector<std::string>& args) {
        JobRun r;
        for (int i = 0; i < 50; ++i) {
            usleep(100 * 1000);
            r = run_ctr(c, args);
            json sb = show(r.id)["sandbox"];
            if (sb.value("init_made_ahead", false)) {
                EXPECT_EQ(sb.value("net_namespace", ""), "made with the init") << sb.dump();
                EXPECT_EQ(sb.value("init_started_by", ""), "spawn-helper") << sb.dump();
                return r;
            }
        }
        ADD_FAILURE() << "no job started on an init made ahead";
        return r;
    };
    for (const char* mode : {"loopback", "none"}) {
        SCOPED_TRACE(mode);
        Ctr c;
        c.name = std::string("ctr-init-ahead-") + mode;
        c.network = mode;
        c.allow = {"@default", "@network-io", "ioctl"};
        (void)run_ctr(c, {"exit", "0"});
        JobRun w = ahead(c, {"whoami"});
        ASSERT_EQ(w.proc.status, 0) << describe(w);
        EXPECT_EQ(kv(w.proc.out, "pid"), "2") << describe(w);
        EXPECT_EQ(kv(w.proc.out, "ppid"), "1") << describe(w);
        EXPECT_EQ(kv(w.proc.out, "init"), "moat-init") << describe(w);
        EXPECT_EQ(kv(w.proc.out, "hostname"), "job-" + std::to_string(w.id)) << describe(w);
        JobRun nd = ahead(c, {"netdevs"});
        EXPECT_EQ(kv(nd.proc.out, "netdevs"), std::string(mode) == "none" ? "lo:down" : "lo:up") << describe(nd);
        JobRun r = ahead(c, {"connect-tcp", std::to_string(host.port())});
        EXPECT_EQ(r.proc.status, 1) << describe(r);
        EXPECT_EQ(kv(r.proc.out, "errno"), std::string(mode) == "none" ? "ENETUNREACH" : "ECONNREFUSED")
            << describe(r);
    }
    EXPECT_EQ(host.accepted(), 0) << "a job reached a listener on the host's loopback";

    // A policy's bind of a directory that got a mount (below a private one,
    // so no propagation could bring it) after the helper made the init that
    // runs the job: that init was among moatd's moat-ahead children before
    // the mount, and is gone after the job.
    const std::string outer = s_root + "/ahead-outer";
    fs::create_directories(outer);
    struct Unmount {
        std::string outer;
        ~Unmount() {
            umount2((outer + "/inner").c_str(), MNT_DETACH);
            umount2(outer.c_str(), MNT_DETACH);
        }
    } unmount{outer};
    ASSERT_EQ(mount("tmpfs", outer.c_str(), "tmpfs", 0, "size=64k,mode=0755"), 0) << strerror(errno);
    ASSERT_EQ(mount(nullptr, outer.c_str(), nullptr, MS_PRIVATE, nullptr), 0) << strerror(errno);
    fs::create_directories(outer + "/inner");
    Ctr c;
    c.name = "ctr-init-ahead-mounts";
    c.read_only.push_back(outer);
    (void)run_ctr(c, {"exit", "0"});
    auto waiting = [] {
        std::vector<pid_t> out;
        for (pid_t p : children_of(s_daemon->pid()))
            if (read_text("/proc/" + std::to_string(p) + "/comm") == "moat-ahead\n") out.push_back(p);
        return out;
    };
    std::vector<pid_t> before;
    wait_for([&] { return !(before = waiting()).empty(); }, 5);
    ASSERT_FALSE(before.empty()) << "moatd holds no init made ahead";
    ASSERT_EQ(mount("tmpfs", (outer + "/inner").c_str(), "tmpfs", 0, "size=64k,mode=0755"), 0) << strerror(errno);
    {
        std::ofstream mark(outer + "/inner/fresh");
        mark << "fresh";
    }
    JobRun f = run_ctr(c, {"read-file", outer + "/inner/fresh"});
    EXPECT_TRUE(show(f.id)["sandbox"].value("init_made_ahead", false)) << describe(f);
    size_t used = 0;
    for (pid_t p : before) used += kill(p, 0) != 0 || read_text("/proc/" + std::to_string(p) + "/comm") != "moat-ahead\n";
    EXPECT_GE(used, 1u) << "the job did not run on an init made before the mount";
    EXPECT_EQ(f.proc.status, 0) << describe(f);
    EXPECT_EQ(kv(f.proc.out, "ret"), "5") << "the job's bind was taken from an old mount table\n" << describe(f);
}

// ---- 3. the filesystem --------------------------------------------------------------

TEST_F(Container, UnlistedFilesAreAbsent) {
    ASSERT_TRUE(fs::exists("/etc/shadow"));
    Ctr c;
    c.name = "ctr-fs";
    JobRun r = run_ctr(c, {"read-file", "/etc/shadow"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "ENOENT") << describe(r);
    JobRun h = run_ctr(c, {"read-file", "/etc/hostname"});
    EXPECT_EQ(kv(h.proc.out, "errno"), "ENOENT") << describe(h);
    JobRun ok = run_ctr(c, {"read-file", "/etc/ld.so.cache"});
    EXPECT_EQ(ok.proc.status, 0) << "control: a read_only file must be readable\n" << describe(ok);
}

TEST_F(Container, ReadOnlyMountsFailWithErofsIncludingSubmounts) {
    // A directory anyone may write on the host, with a tmpfs below it: only the
    // policy's read_only can make writes fail, and it must reach the submount.
    std::string ro = s_root + "/ro";
    mkdir(ro.c_str(), 0777);
    chmod(ro.c_str(), 0777);
    HostTmpfs sub(ro + "/sub");
    ASSERT_TRUE(sub.ok()) << "mount tmpfs on " << ro << "/sub: " << sub.error();
    write_text(ro + "/sub/host-check", "x");
    ASSERT_TRUE(fs::exists(ro + "/sub/host-check")) << "the host tmpfs is not writable";

    Ctr c;
    c.name = "ctr-ro";
    c.read_only.push_back(ro);
    for (std::string target : {ro + "/top", ro + "/sub/inner", std::string("/usr/moat-ctr-x"), std::string("/moat-ctr-x")}) {
        JobRun r = run_ctr(c, {"writefile", target, "10"});
        EXPECT_EQ(r.proc.status, 1) << target << "\n" << describe(r);
        EXPECT_EQ(kv(r.proc.out, "errno"), "EROFS") << target << "\n" << describe(r);
    }
    EXPECT_FALSE(fs::exists(ro + "/top"));
    EXPECT_FALSE(fs::exists(ro + "/sub/inner"));
    EXPECT_FALSE(fs::exists("/usr/moat-ctr-x"));
    for (std::string path : {ro, ro + "/sub", std::string("/")}) {
        JobRun s = run_ctr(c, {"statvfs", path});
        EXPECT_EQ(kv(s.proc.out, "ro"), "1") << path << "\n" << describe(s);
        EXPECT_EQ(kv(s.proc.out, "nosuid"), "1") << path << "\n" << describe(s);
    }

    // Control: the same tree under read_write is writable, submount included.
    Ctr w;
    w.name = "ctr-ro-control";
    w.read_write.push_back(ro);
    for (std::string target : {ro + "/top", ro + "/sub/inner"}) {
        JobRun r = run_ctr(w, {"writefile", target, "10"});
        EXPECT_EQ(r.proc.status, 0) << target << "\n" << describe(r);
        EXPECT_TRUE(fs::exists(target)) << target;
    }
}

TEST_F(Container, ReadWriteBindIsWritableAndVisibleOnHost) {
    Ctr c;
    c.name = "ctr-rw";
    c.read_write = {rw()};
    std::string file = rw() + "/from-container";
    unlink(file.c_str());
    JobRun r = run_ctr(c, {"writefile", file, "12345"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    std::error_code ec;
    EXPECT_EQ(fs::file_size(file, ec), 12345u) << ec.message();
    struct stat st{};
    ASSERT_EQ(stat(file.c_str(), &st), 0);
    json j = show(r.id);
    EXPECT_EQ(long(st.st_uid), j.value("uid", -1L)) << "the file's owner on the host is not the job's host uid\n"
                                                    << j.dump();
    EXPECT_NE(st.st_uid, 0u);
}

TEST_F(Container, TmpfsSizeIsEnforced) {
    Ctr c;
    c.name = "ctr-tmpfs-1m";
    c.tmpfs_size = "1MiB";
    JobRun r = run_ctr(c, {"writefile", "/tmp/fill", std::to_string(4 << 20)});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "errno"), "ENOSPC") << describe(r);
    auto written = kv(r.proc.out, "written");
    ASSERT_TRUE(written) << describe(r);
    EXPECT_GE(std::stol(*written), 512L << 10) << describe(r);
    EXPECT_LE(std::stol(*written), 1L << 20) << describe(r);

    // Control: the default size (64MiB) takes the same 4 MiB.
    Ctr d;
    d.name = "ctr-tmpfs-default";
    JobRun ok = run_ctr(d, {"writefile", "/tmp/fill", std::to_string(4 << 20)});
    EXPECT_EQ(ok.proc.status, 0) << describe(ok);
    EXPECT_EQ(kv(ok.proc.out, "written"), std::to_string(4 << 20)) << describe(ok);
}

TEST_F(Container, InputFileIsVisibleReadOnlyAtItsSandboxPath) {
    std::string host = s_root + "/input.txt";
    write_text(host, "moat-input-42\n", 0666);  // writable by anyone on the host: only the mount can refuse
    Ctr c;
    c.name = "ctr-input";
    std::vector<std::string> in = {"--input", host + ":/data/input.txt"};
    JobRun r = run_ctr(c, {"cat", "/data/input.txt"}, in);
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    EXPECT_NE(r.proc.out.find("data:moat-input-42"), std::string::npos) << describe(r);

    JobRun w = run_ctr(c, {"writefile", "/data/input.txt", "3"}, in);
    EXPECT_EQ(w.proc.status, 1) << describe(w);
    EXPECT_EQ(kv(w.proc.out, "errno"), "EROFS") << describe(w);
    EXPECT_EQ(read_text(host), "moat-input-42\n") << "the job changed its input";

    // Not at the host path (that is not mounted).
    JobRun h = run_ctr(c, {"cat", host}, in);
    EXPECT_EQ(kv(h.proc.out, "errno"), "ENOENT") << describe(h);
}

TEST_F(Container, ProcIsTheJobsWithSensitivePathsMaskedOrReadOnly) {
    Ctr c;
    c.name = "ctr-proc";
    JobRun s = run_ctr(c, {"statvfs", "/proc/sys"});
    EXPECT_EQ(s.proc.status, 0) << describe(s);
    EXPECT_EQ(kv(s.proc.out, "ro"), "1") << "/proc/sys is writable\n" << describe(s);
    JobRun p = run_ctr(c, {"statvfs", "/proc"});
    EXPECT_EQ(kv(p.proc.out, "ro"), "0") << "control: /proc itself is not read-only\n" << describe(p);

    // sysrq-trigger: absent on some kernels, never writable.
    JobRun q = run_ctr(c, {"openw", "/proc/sysrq-trigger"});
    EXPECT_EQ(q.proc.status, 1) << describe(q);
    EXPECT_EQ(kv(q.proc.out, "openw"), "fail") << describe(q);
    if (!fs::exists("/proc/sysrq-trigger")) {
        EXPECT_EQ(kv(q.proc.out, "errno"), "ENOENT") << describe(q);
    }

    // Masked files read as empty (timer_list is never empty on a real /proc).
    ASSERT_FALSE(read_text("/proc/timer_list").empty());
    for (const char* path : {"/proc/keys", "/proc/timer_list"}) {
        JobRun k = run_ctr(c, {"read-file", path});
        EXPECT_EQ(k.proc.status, 0) << path << "\n" << describe(k);
        EXPECT_EQ(kv(k.proc.out, "ret"), "0") << path << " is not masked\n" << describe(k);
    }
}

// Every container job's /dev: the five devices, the /proc/self/fd links and
// nothing else, read-only, the devices usable.
TEST_F(Container, DevHoldsTheFiveDevicesAndTheFdLinksOnlyAndIsReadOnly) {
    Ctr c;
    c.name = "ctr-dev";
    JobRun t = run_ctr(c, {"tree", "/dev"});
    EXPECT_EQ(t.proc.status, 0) << describe(t);
    std::string tree;
    std::istringstream lines(t.proc.out);
    for (std::string line; std::getline(lines, line);)  // what the devices read is not the point
        tree += line.substr(0, line.find(" file data=")) + "\n";
    for (const char* e : {"tree: null 0666\n", "tree: zero 0666\n", "tree: full 0666\n", "tree: random 0666\n",
                          "tree: urandom 0666\n", "tree: fd 0777 symlink -> /proc/self/fd\n",
                          "tree: stdin 0777 symlink -> /proc/self/fd/0\n", "tree=ok entries=9\n"})
        EXPECT_NE(tree.find(e), std::string::npos) << e << "\n" << tree;
    JobRun w = run_ctr(c, {"openw", "/dev/null"});
    EXPECT_EQ(kv(w.proc.out, "openw"), "ok") << describe(w);
    JobRun k = run_ctr(c, {"mkdir", "/dev/x"});
    EXPECT_EQ(kv(k.proc.out, "errno"), "EROFS") << describe(k);
}

// ---- 4. identity ---------------------------------------------------------------------

TEST_F(Container, JobIsUnprivilegedInsideAndOnTheHost) {
    Ctr c;
    c.name = "ctr-ids";
    JobRun r = run_ctr(c, {"ids"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    auto num = [&](const char* k) { auto v = kv(r.proc.out, k); return v ? std::stoull(*v, nullptr, 0) : ~0ULL; };
    EXPECT_EQ(num("uid"), 1000u) << r.proc.out;
    EXPECT_EQ(num("euid"), 1000u) << r.proc.out;
    EXPECT_EQ(num("suid"), 1000u) << r.proc.out;
    EXPECT_NE(num("gid"), 0u) << r.proc.out;
    EXPECT_EQ(num("groups"), 0u) << r.proc.out;
    EXPECT_EQ(kv(r.proc.out, "capget"), "ok") << r.proc.out;
    EXPECT_EQ(num("capeff"), 0u) << r.proc.out;
    EXPECT_EQ(num("capprm"), 0u) << r.proc.out;
    EXPECT_EQ(num("capbnd"), 0u) << r.proc.out;
    EXPECT_EQ(num("nnp"), 1u) << r.proc.out;

    // From the host: the job's process (moat-init's child) and moat-init itself.
    std::string idf = new_id_file();
    auto job = bg_ctr(c, {"sleep", "30"}, idf);
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << job->err();
    pid_t init = running["pid"].get<pid_t>();
    std::vector<pid_t> kids;
    wait_for([&] { kids = children_of(init); return !kids.empty(); }, 5);
    ASSERT_EQ(kids.size(), 1u) << "moat-init (host pid " << init << ") should have exactly the job as its child";
    pid_t jp = kids[0];
    EXPECT_TRUE(wait_for([&] { return read_text("/proc/" + std::to_string(jp) + "/comm") == "moat-testprog\n"; }, 5))
        << read_text("/proc/" + std::to_string(jp) + "/comm");

    ASSERT_TRUE(running["uid"].is_number_integer()) << running.dump();
    long rec_uid = running["uid"].get<long>();
    EXPECT_NE(rec_uid, 0) << running.dump();
    std::vector<long> uids = status_ids(jp, "Uid");
    ASSERT_EQ(uids.size(), 4u) << read_text("/proc/" + std::to_string(jp) + "/status");
    for (long u : uids) EXPECT_EQ(u, rec_uid) << "job host pid " << jp << ": Uid " << status_field(jp, "Uid");
    std::vector<long> gids = status_ids(jp, "Gid");
    ASSERT_EQ(gids.size(), 4u);
    for (long g : gids) EXPECT_NE(g, 0) << "Gid " << status_field(jp, "Gid");
    EXPECT_EQ(status_field(jp, "CapEff"), "0000000000000000");
    EXPECT_EQ(status_field(jp, "NoNewPrivs"), "1");

    std::vector<long> init_uids = status_ids(init, "Uid");
    ASSERT_EQ(init_uids.size(), 4u);
    for (long u : init_uids) EXPECT_NE(u, 0) << "moat-init runs as host root: Uid " << status_field(init, "Uid");
    const json& sb = running.value("sandbox", json::object());
    ASSERT_TRUE(sb.contains("host_root_uid")) << running.dump();
    EXPECT_EQ(init_uids[0], sb["host_root_uid"].get<long>()) << running.dump();
    EXPECT_NE(init_uids[0], rec_uid) << "the container's root and the job share a host uid";

    ctl({"stop", read_text(idf).substr(0, read_text(idf).find('\n'))});
    job->wait(10);
}

// ---- 5. limits ------------------------------------------------------------------------

TEST_F(Container, MemoryHogEndsWithCauseMemory) {
    Ctr c;
    c.name = "ctr-memory";
    c.limits = "wall_time = \"20s\"\nmemory = \"32MiB\"\n";
    JobRun r = run_ctr(c, {"alloc", "200"});
    EXPECT_EQ(r.proc.status, 128 + SIGKILL) << describe(r);
    EXPECT_EQ(kv(r.proc.out, "alloc"), std::nullopt) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "memory") << j.dump();
    EXPECT_EQ(j.value("signal", json()), SIGKILL) << j.dump();
    EXPECT_LE(j["resources"].value("peak_memory_bytes", uint64_t(0)), uint64_t(40) << 20) << j.dump();
}

TEST_F(Container, ForkBombIsContainedByPidsLimitAndHostCanFork) {
    Ctr c;
    c.name = "ctr-pids";
    c.limits = "wall_time = \"4s\"\npids = 16\n";
    std::string idf = new_id_file();
    auto bomb = bg_ctr(c, {"forkbomb-tree"}, idf);
    ASSERT_TRUE(wait_for([&] { return bomb->out().find("bomb=started") != std::string::npos || !bomb->running(); }, 10))
        << bomb->err();
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << bomb->err();
    pid_t init = running["pid"].get<pid_t>();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ASSERT_TRUE(bomb->running()) << "the bomb ended early\n" << bomb->out() << bomb->err();

    // The host is unaffected: it can still fork and exec, quickly.
    for (int i = 0; i < 5; ++i) {
        Proc t = run_cmd({"/bin/true"}, Opts{.timeout_s = 5});
        EXPECT_EQ(t.status, 0) << "host fork+exec of /bin/true failed during the bomb: " << t.err;
        EXPECT_LT(t.seconds, 2.0);
    }

    int st = bomb->wait(15);
    EXPECT_EQ(st, 128 + SIGKILL) << "moatctl run: " << st << "\n" << bomb->out() << bomb->err();
    int64_t id = read_id(idf);
    ASSERT_GT(id, 0);
    json j = show(id);
    EXPECT_EQ(j.value("state", ""), "finished") << j.dump();
    EXPECT_EQ(cause(j), "wall-time") << j.dump();
    EXPECT_LE(j["resources"].value("peak_pids", 0), 16) << j.dump();
    auto ev = events(id);
    bool pids_limit = false;
    for (const auto& e : ev)
        if (e.value("kind", "") == "limit" && e.value("limit", "") == "pids") pids_limit = true;
    EXPECT_TRUE(pids_limit) << "no `limit` event with limit \"pids\":\n" << dump_all(ev);
    EXPECT_TRUE(kill(init, 0) < 0 && errno == ESRCH) << "moat-init (host pid " << init << ") outlived the job";

}

// ---- 6. denials inside -------------------------------------------------------------------

TEST_F(Container, DeniedSyscallIsRecordedWithThePathTheJobSees) {
    Ctr c;
    c.name = "ctr-demo";
    // demo.toml's list: mkdir is not allowed.
    c.allow = {"execve", "brk",  "mmap",   "munmap", "mprotect", "arch_prctl", "set_tid_address", "set_robust_list",
               "rseq",   "futex", "prlimit64", "getrandom", "newfstatat", "fstat", "openat", "read", "pread64", "close",
               "exit",   "exit_group", "access", "write", "lseek", "statfs", "umask"};
    // The client's cwd (the suite's temp dir) exists inside too: it holds the
    // read_only bind of @TESTDIR@ inside the /tmp tmpfs.
    std::string rel_expected = s_root + "/rel-x";
    // /usr/bin, not /bin: ProgramBehindPolicySymlinkRuns covers the /bin link.
    JobRun r = run_job(*s_daemon, ctr_policy(c), {"/usr/bin/mkdir", "/tmp/x", "rel-x"});
    EXPECT_EQ(r.proc.status, 1) << describe(r);
    EXPECT_NE(r.proc.err.find("Operation not permitted"), std::string::npos) << describe(r);
    ASSERT_GT(r.id, 0) << describe(r);

    auto ev = events(r.id);
    auto ds = denials(ev, "mkdir");
    ASSERT_EQ(ds.size(), 2u) << dump_all(ev);
    const json& d = ds[0];
    EXPECT_EQ(d.value("decoded", json()), "/tmp/x") << d.dump();
    ASSERT_TRUE(d["module"].is_string()) << d.dump();
    EXPECT_EQ(d["module"].get<std::string>().rfind("libc.so.6+0x", 0), 0u) << d.dump();
    EXPECT_EQ(d.value("arch", ""), "x86_64") << d.dump();
    EXPECT_EQ(d.value("nr", -1), 83) << d.dump();
    EXPECT_EQ(d.value("action", ""), "errno:EPERM") << d.dump();
    EXPECT_EQ(ds[1].value("decoded", json()), rel_expected) << "a relative path, resolved against the job's cwd "
                                                               "as the job sees it\n"
                                                            << ds[1].dump();
    json j = show(r.id);
    EXPECT_EQ(j.value("tier", ""), "container") << j.dump();
    EXPECT_EQ(j.value("denial_count", -1), 2) << j.dump();
}

TEST_F(Container, ProgramBehindPolicySymlinkRuns) {
    // /bin -> usr/bin on merged-/usr systems: the policy lists both, the link is
    // recreated inside the root and resolves to the read_only /usr. The program
    // named through it must run (the issue's demo runs /bin/mkdir).
    ASSERT_TRUE(fs::is_symlink("/bin")) << "this test needs a merged-/usr host (/bin a symlink)";
    Ctr c;
    c.name = "ctr-bin-link";
    JobRun r = run_job(*s_daemon, ctr_policy(c), {"/bin/true"});
    EXPECT_EQ(r.proc.status, 0) << describe(r);
    JobRun u = run_job(*s_daemon, ctr_policy(c), {"/usr/bin/true"});
    EXPECT_EQ(u.proc.status, 0) << "control: the real path\n" << describe(u);
    // And a program that execs through the link from inside.
    JobRun e = run_job(*s_daemon, ctr_policy(c), {"/usr/bin/env", "/bin/true"});
    EXPECT_EQ(e.proc.status, 0) << describe(e);
}

// ---- 7. setup failures ----------------------------------------------------------------------

TEST_F(Container, MissingMountSourceIsSetupFailure) {
    Ctr c;
    c.name = "ctr-missing";
    std::string missing = "/nonexistent-moat-ctr-" + std::to_string(getpid());
    c.read_only.push_back(missing);
    JobRun r = run_ctr(c, {"exit", "0"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find(missing), std::string::npos) << describe(r);
    EXPECT_NE(r.proc.err.find("ENOENT"), std::string::npos) << describe(r);
    json j = record(r);
    EXPECT_EQ(cause(j), "setup-failed") << j.dump();
    EXPECT_NE(detail(j).find(missing), std::string::npos) << j.dump();
    EXPECT_NE(detail(j).find("ENOENT"), std::string::npos) << j.dump();
    EXPECT_TRUE(j.value("exit_code", json()).is_null()) << j.dump();
}

TEST_F(Container, SymlinkInsidePolicyPathIsSetupFailure) {
    std::string real = s_root + "/real";
    std::string link = s_root + "/link";
    fs::create_directories(real + "/sub");
    chmod(real.c_str(), 0755);
    chmod((real + "/sub").c_str(), 0755);
    unlink(link.c_str());
    ASSERT_EQ(symlink("real", link.c_str()), 0) << strerror(errno);
    Ctr c;
    c.name = "ctr-symlink";
    c.read_only.push_back(link + "/sub");
    JobRun r = run_ctr(c, {"exit", "0"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find(link), std::string::npos) << describe(r);
    json j = record(r);
    EXPECT_EQ(cause(j), "setup-failed") << j.dump();
    EXPECT_NE(detail(j).find(link), std::string::npos) << j.dump();
    EXPECT_NE(detail(j).find("symlink"), std::string::npos) << j.dump();

    // Control: the real path is fine.
    Ctr ok;
    ok.name = "ctr-symlink-control";
    ok.read_only.push_back(real + "/sub");
    JobRun o = run_ctr(ok, {"exit", "0"});
    EXPECT_EQ(o.proc.status, 0) << describe(o);
}

// Issue 11, item 7: a program path that is a link to a path the container does
// not mount (/usr/bin/awk -> /etc/alternatives/awk, /etc not mounted), under an
// allowlist of only execve and exit_group. moat-init used to report the failed
// execve with a write() from under the job's filter, itself denied: exit 125,
// no reason, and a `write` denial the job never made. moatd must now record
// setup-failed with the dangling link and its target named.
TEST_F(Container, DanglingProgramLinkUnderAMinimalAllowlistIsANamedSetupFailure) {
    const std::string dir = s_root + "/ctr-alt-bin", hidden = s_root + "/ctr-alternatives";
    fs::create_directories(dir);
    fs::create_directories(hidden);
    chmod(dir.c_str(), 0755);
    chmod(hidden.c_str(), 0755);
    std::error_code ec;
    fs::copy_file(testprog(), hidden + "/prog", fs::copy_options::overwrite_existing, ec);  // exists on the host
    ASSERT_FALSE(ec) << ec.message();
    chmod((hidden + "/prog").c_str(), 0755);
    unlink((dir + "/prog").c_str());
    ASSERT_EQ(symlink((hidden + "/prog").c_str(), (dir + "/prog").c_str()), 0) << strerror(errno);
    Ctr c;
    c.name = "ctr-dangling-exe";
    c.read_only = {"/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", dir};  // not `hidden`
    c.allow = {"execve", "exit_group"};
    JobRun r = run_job(*s_daemon, ctr_policy(c), {dir + "/prog", "exit", "0"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    const std::string chain = dir + "/prog -> " + hidden + "/prog";
    EXPECT_NE(r.proc.err.find(chain), std::string::npos) << "moatctl must say which link dangles\n" << describe(r);
    json j = record(r);
    EXPECT_EQ(cause(j), "setup-failed") << j.dump();
    EXPECT_NE(detail(j).find(chain), std::string::npos) << j.dump();
    EXPECT_NE(detail(j).find(hidden + " does not exist in the sandbox"), std::string::npos)
        << "the first missing component of the target: " << j.dump();
    EXPECT_NE(detail(j).find("ENOENT"), std::string::npos) << j.dump();
    EXPECT_TRUE(j.value("exit_code", json()).is_null()) << j.dump();
    auto ev = events(r.id);
    EXPECT_TRUE(denials(ev, "write").empty()) << "a denial the job never made:\n" << dump_all(ev);
}

TEST_F(Container, NetworkHostIsSetupFailure) {
    Ctr c;
    c.name = "ctr-net-host";
    c.network = "host";
    JobRun r = run_ctr(c, {"exit", "0"});
    EXPECT_EQ(r.proc.status, 125) << describe(r);
    EXPECT_NE(r.proc.err.find("host"), std::string::npos) << describe(r);
    json j = record(r);
    EXPECT_EQ(cause(j), "setup-failed") << j.dump();
    EXPECT_NE(detail(j).find("network"), std::string::npos) << j.dump();
}

// ---- 8. termination -------------------------------------------------------------------------

TEST_F(Container, ExitCodeIsTheJobsNotInits) {
    Ctr c;
    c.name = "ctr-exit";
    JobRun r = run_ctr(c, {"exit", "7"});
    EXPECT_EQ(r.proc.status, 7) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "exited") << j.dump();
    EXPECT_EQ(j.value("exit_code", json()), 7) << j.dump();
    EXPECT_TRUE(j["signal"].is_null()) << j.dump();
}

TEST_F(Container, SignalIsTheJobsNotInits) {
    Ctr c;
    c.name = "ctr-signal";
    JobRun r = run_ctr(c, {"signal", std::to_string(SIGUSR1)});
    EXPECT_EQ(r.proc.status, 128 + SIGUSR1) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "signaled") << j.dump();
    EXPECT_EQ(j.value("signal", json()), SIGUSR1) << j.dump();
    EXPECT_TRUE(j["exit_code"].is_null()) << j.dump();
}

// On cgroup v1 a job starts in a spare group made ahead (job-spare-N) that
// takes the job's limits before the job is in it and its name, job-<id>,
// right after the start (issue 15: the renames left the start path). While
// the job runs: job-<id> in every hierarchy, holding the job's init, with the
// policy's limits; no spare holds it; and spares are ready for the next job.
TEST_F(Container, AJobsGroupHasItsLimitsAndItsNameWhileItRuns) {
    if (!fs::is_directory("/sys/fs/cgroup/memory")) GTEST_SKIP() << "no cgroup v1 memory hierarchy (spares are v1 only)";
    Ctr c;
    c.name = "ctr-named-group";
    c.limits = "wall_time = \"20s\"\nmemory = \"48MiB\"\npids = 23\n";
    const fs::path parent = s_daemon->cgroup_parent();
    auto spares_ready = [&] {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(fs::path("/sys/fs/cgroup/memory") / parent, ec))
            if (e.path().filename().string().starts_with("job-spare-")) return true;
        return false;
    };
    // Spares are made once a job has started (a fresh moatd has none yet).
    JobRun first = run_ctr(c, {"exit", "0"});
    ASSERT_EQ(first.proc.status, 0) << describe(first);
    ASSERT_TRUE(wait_for(spares_ready, 3)) << "moatd made no spare group";
    std::string idf = new_id_file();
    auto job = bg_ctr(c, {"sleep", "30"}, idf);
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << job->err();
    const int64_t id = read_id(idf);
    const std::string init = std::to_string(show(id).value("pid", 0));
    auto slurp = [](const fs::path& p) {
        std::ifstream f(p);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    const fs::path mem = fs::path("/sys/fs/cgroup/memory") / parent / ("job-" + std::to_string(id));
    const fs::path pids = fs::path("/sys/fs/cgroup/pids") / parent / ("job-" + std::to_string(id));
    EXPECT_TRUE(wait_for([&] { return fs::is_directory(mem) && fs::is_directory(pids); }, 3)) << mem << " or " << pids;
    EXPECT_EQ(slurp(mem / "memory.limit_in_bytes"), std::to_string(48u << 20) + "\n");
    EXPECT_EQ(slurp(pids / "pids.max"), "23\n");
    for (const fs::path& d : {mem, pids}) {
        EXPECT_NE(("\n" + slurp(d / "cgroup.procs")).find("\n" + init + "\n"), std::string::npos)
            << "the job's init " << init << " is not in " << d;
    }
    size_t spares = 0;
    for (const auto& e : fs::directory_iterator(fs::path("/sys/fs/cgroup/memory") / parent)) {
        if (!e.path().filename().string().starts_with("job-spare-")) continue;
        ++spares;
        EXPECT_EQ(slurp(e.path() / "cgroup.procs"), "") << e.path() << " holds a process";
    }
    EXPECT_GE(spares, 1u) << "no spare group is ready for the next job";
    EXPECT_EQ(ctl({"stop", std::to_string(id)}).status, 0);
    job->wait(10);
}

// The job ends with its first process. Its init then kills and reaps what it
// left and says so; moatd answers at that report, not
// at the init's exit (issue 15), and reaps the init and removes the job's
// cgroup after. Nothing of that may be skipped: the orphan is gone, moatd
// has no zombie, the cgroup directories are gone.
TEST_F(Container, TheAnswerComesWhenTheJobIsGoneAndTheInitAndCgroupGoAfter) {
    {
        // Where a job's cgroup is looked for exists while a job runs.
        std::string idf = new_id_file();
        auto job = bg_ctr(Ctr{}, {"sleep", "30"}, idf);
        json running = wait_running(*s_daemon, idf);
        ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << job->err();
        EXPECT_FALSE(job_cgroup_dirs(read_id(idf)).empty());
        EXPECT_EQ(ctl({"stop", std::to_string(read_id(idf))}).status, 0);
        job->wait(10);
    }
    Ctr c;
    c.name = "ctr-orphan";
    auto t0 = Clock::now();
    JobRun r = run_ctr(c, {"orphan", "5"});
    EXPECT_LT(since(t0), 10.0) << "the orphan held the answer up";
    EXPECT_EQ(r.proc.status, 5) << describe(r);
    EXPECT_NE(r.proc.out.find("orphan="), std::string::npos) << "the job's output was lost: " << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_EQ(cause(j), "exited") << j.dump();
    EXPECT_EQ(j.value("exit_code", json()), 5) << j.dump();
    const json st = j["sandbox"].value("startup_us", json::object());
    ASSERT_TRUE(st.contains("emptied") && st.contains("exited")) << st.dump();
    EXPECT_LE(st["emptied"].get<int64_t>(), st["exited"].get<int64_t>()) << st.dump();

    // The init (the job's recorded pid) is reaped: not even a zombie.
    const pid_t init = j.value("pid", 0);
    ASSERT_GT(init, 0) << j.dump();
    EXPECT_TRUE(wait_for([&] { return kill(init, 0) < 0 && errno == ESRCH; }, 3)) << "init " << init << " not reaped";
    for (pid_t k : children_of(s_daemon->pid()))
        EXPECT_NE(status_field(k, "State").substr(0, 1), "Z") << "moatd has a zombie child " << k;
    // Every hierarchy's directory of the job's cgroup is removed.
    std::vector<std::string> left;
    EXPECT_TRUE(wait_for([&] { return (left = job_cgroup_dirs(r.id)).empty(); }, 3))
        << (left.empty() ? std::string() : left.front()) << " is still there";
    // Its uids are free again and the next jobs start as usual.
    for (int i = 0; i < 3; ++i) {
        JobRun again = run_ctr(c, {"exit", "0"});
        EXPECT_EQ(again.proc.status, 0) << describe(again);
    }
}

TEST_F(Container, StopEndsTheWholeContainer) {
    Ctr c;
    c.name = "ctr-stop";
    std::string idf = new_id_file();
    auto job = bg_ctr(c, {"sleep", "30"}, idf);
    json running = wait_running(*s_daemon, idf);
    ASSERT_EQ(running.value("state", ""), "running") << running.dump() << "\n" << job->err();
    int64_t id = read_id(idf);
    pid_t init = running["pid"].get<pid_t>();
    std::vector<pid_t> kids;
    wait_for([&] { kids = children_of(init); return !kids.empty(); }, 5);
    auto t0 = Clock::now();
    Proc stop = ctl({"stop", std::to_string(id)});
    EXPECT_EQ(stop.status, 0) << stop.err;
    int st = job->wait(10);
    EXPECT_LT(since(t0), 5.0);
    EXPECT_GT(st, 128) << "moatctl run ended with " << st << "\n" << job->err();
    json j = show(id);
    EXPECT_EQ(cause(j), "stopped") << j.dump();
    EXPECT_EQ(j.value("state", ""), "finished") << j.dump();
    kids.push_back(init);
    for (pid_t p : kids)
        EXPECT_TRUE(wait_for([&] { return kill(p, 0) < 0 && errno == ESRCH; }, 2)) << "pid " << p << " still alive";
}

// ---- replay and learning (issue 5) --------------------------------------------

// The replay report printed after the id line (moatctl replay --json).
struct ReplayOut {
    int status = -1;
    int64_t id = 0;
    json report;
    std::string raw;
};

ReplayOut replay_json(const std::function<Proc(std::vector<std::string>)>& ctl_fn, int64_t job,
                      std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"replay", std::to_string(job), "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    Proc p = ctl_fn(args);
    ReplayOut r;
    r.status = p.status;
    r.raw = p.out + p.err;
    auto nl = p.out.find('\n');
    if (nl == std::string::npos) return r;
    r.id = std::atoll(p.out.substr(0, nl).c_str());  // contract: the new job's id on the first line
    r.report = json::parse(p.out.substr(nl + 1), nullptr, false);
    return r;
}

// What the start no longer does on its way (issue 15) is still done: the
// row's pid and uid are there when the answer comes (written after the first
// exec's answer), an empty stdin is recorded as the empty blob without a temp
// file and replays, and the job's first exec read no maps.
TEST_F(Container, TheRecordIsCompleteWhenTheAnswerComesAndAnEmptyStdinReplays) {
    Ctr c;
    c.name = "ctr-record";
    JobRun r = run_ctr(c, {"exit", "0"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    ASSERT_GT(r.id, 0);
    json j = show(r.id);
    EXPECT_TRUE(j["pid"].is_number_integer() && j["pid"].get<int>() > 0) << j.dump();
    EXPECT_TRUE(j["uid"].is_number_integer() && j["uid"].get<int>() > 0) << j.dump();
    EXPECT_EQ(j["sandbox"].value("init_started_by", ""), "spawn-helper") << j.dump();
    const json in = j["recording"].value("stdin", json::object());
    const std::string empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";  // sha256("")
    EXPECT_EQ(in.value("sha256", json()), empty) << in.dump();
    EXPECT_EQ(in.value("bytes", -1), 0) << in.dump();
    EXPECT_TRUE(in.value("complete", false)) << in.dump();
    EXPECT_TRUE(fs::exists(s_daemon->state() + "/artifacts/blobs/" + empty));
    std::error_code ec;
    EXPECT_TRUE(fs::is_empty(s_daemon->state() + "/artifacts/tmp", ec)) << "a temp file was left";
    json fin;
    for (const auto& e : events(r.id))
        if (e.value("event", "") == "finished") fin = e;
    ASSERT_TRUE(fin.is_object()) << dump_all(events(r.id));
    EXPECT_EQ(fin["events"].value("maps_reads", -1), 0) << fin.dump();

    ReplayOut again = replay_json([](std::vector<std::string> a) { return ctl(a); }, r.id);
    EXPECT_EQ(again.status, 0) << again.raw;
    ASSERT_GT(again.id, r.id) << again.raw;
    EXPECT_EQ(show(again.id).value("exit_code", json()), 0);
}

TEST_F(Container, BrittleAllowlistIsLearnedFixedAndVerifiedByReplay) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    std::string input = s_root + "/convert-in.txt";
    write_text(input, "hello ", 0644);
    std::string stdin_file = s_root + "/convert-stdin.txt";
    write_text(stdin_file, "world\n", 0644);
    Ctr c;
    c.name = "brittle";
    std::string v1 = ctr_policy(c);
    std::vector<std::string> in = {"--input", input + ":/data/in.txt"};
    auto run_with_stdin = [&](const std::string& version) {
        int sin = open(stdin_file.c_str(), O_RDONLY | O_CLOEXEC);
        Opts o;
        o.stdin_fd = sin;
        JobRun r = run_job(*s_daemon, v1, {testprog(), "convert", version, "/data/in.txt", "/tmp"}, o, in);
        close(sin);
        return r;
    };

    // v1 of the converter passes under policy v1; the job saw its stdin.
    JobRun ok = run_with_stdin("v1");
    ASSERT_EQ(ok.proc.status, 0) << describe(ok);
    EXPECT_EQ(kv(ok.proc.out, "bytes"), "12") << describe(ok);

    // Its "upgraded" v2 makes one more syscall and fails under v1.
    JobRun bad = run_with_stdin("v2");
    ASSERT_EQ(bad.proc.status, 1) << describe(bad);
    EXPECT_EQ(kv(bad.proc.out, "errno"), "EPERM") << describe(bad);
    std::vector<json> denials;
    for (const auto& e : events(bad.id))
        if (e.value("kind", "") == "denial") denials.push_back(e);
    ASSERT_EQ(denials.size(), 1u) << dump_all(events(bad.id));
    EXPECT_EQ(denials[0].value("syscall", ""), "renameat2");
    EXPECT_EQ(denials[0].value("decoded", json()), "/tmp/out.tmp -> /tmp/out") << denials[0].dump();

    // What replay needs was recorded: stdin, the input snapshot, the output.
    json rec = show(bad.id).value("recording", json::object());
    EXPECT_EQ(rec["stdin"].value("bytes", 0), 6) << rec.dump();
    EXPECT_FALSE(rec["stdin"].value("truncated", true)) << rec.dump();
    ASSERT_EQ(rec["inputs"].size(), 1u) << rec.dump();
    EXPECT_EQ(rec["inputs"][0].value("sandbox", ""), "/data/in.txt");
    EXPECT_TRUE(rec["inputs"][0]["sha256"].is_string()) << rec.dump();
    // The text form says the same (issue 14 item 6: it showed only in --json).
    Proc shown = ctl({"show", std::to_string(bad.id)});
    EXPECT_NE(shown.out.find("  stdin:       6B recorded"), std::string::npos) << shown.out;
    EXPECT_NE(shown.out.find("  input:       " + input + " -> /data/in.txt, snapshot "), std::string::npos) << shown.out;
    Proc out = ctl({"output", std::to_string(bad.id)});
    EXPECT_NE(out.out.find("rename errno=EPERM"), std::string::npos) << out.out << out.err;
    Proc err = ctl({"output", std::to_string(bad.id), "--stderr"});
    EXPECT_NE(err.out.find("convert: publishing /tmp/out"), std::string::npos) << err.out << err.err;

    // The input changes on the host afterwards: replays still see the snapshot.
    write_text(input, "CHANGED ", 0644);

    // Plain replay under v1 reproduces the failure.
    ReplayOut again = replay_json(ctl_fn, bad.id);
    EXPECT_EQ(again.status, 1) << again.raw;
    ASSERT_GT(again.id, bad.id) << again.raw;
    ASSERT_TRUE(again.report.is_object()) << again.raw;
    EXPECT_TRUE(again.report["comparison"].value("reproduced", false)) << again.report.dump();
    Proc again_out = ctl({"output", std::to_string(again.id)});
    EXPECT_EQ(kv(again_out.out, "errno"), "EPERM") << again_out.out;
    EXPECT_EQ(show(again.id).value("replay_of", json()), bad.id);

    // Learn: denials recorded, not enforced; the proposal is exactly renameat2.
    std::string v2 = s_root + "/policies/brittle-v2.toml";
    ReplayOut learn = replay_json(ctl_fn, bad.id, {"--learn", "-o", v2});
    EXPECT_EQ(learn.status, 0) << learn.raw;  // the job passed once nothing was enforced
    ASSERT_TRUE(learn.report.is_object()) << learn.raw;
    const json& adds = learn.report["proposal"]["additions"];
    ASSERT_EQ(adds.size(), 1u) << learn.report.dump(2);
    EXPECT_EQ(adds[0].value("entry", ""), "renameat2") << adds.dump();
    EXPECT_TRUE(adds[0]["rule"].is_null()) << adds.dump();
    EXPECT_TRUE(show(learn.id).value("learn", false));
    Proc learn_out = ctl({"output", std::to_string(learn.id)});
    EXPECT_EQ(kv(learn_out.out, "bytes"), "12") << "the learn replay did not get the recorded stdin and input: "
                                                << learn_out.out;
    Proc d = ctl({"policy", "diff", v1, v2});
    EXPECT_EQ(d.status, 1) << d.out << d.err;
    EXPECT_EQ(d.out, "+ allow renameat2\n") << d.out;

    // The proposal saved as v2 passes...
    ReplayOut fixed = replay_json(ctl_fn, bad.id, {"--policy", v2});
    EXPECT_EQ(fixed.status, 0) << fixed.raw;
    ASSERT_TRUE(fixed.report.is_object()) << fixed.raw;
    EXPECT_FALSE(fixed.report["comparison"].value("reproduced", true));
    EXPECT_NE(fixed.report["replay"].value("outcome", "").find("no denials"), std::string::npos) << fixed.report.dump();
    json fj = show(fixed.id);
    EXPECT_EQ(fj["policy"].value("version", 0), 2) << fj.dump();
    EXPECT_EQ(fj["policy"].value("name", ""), "brittle");

    // ...and the original still reproduces its failure under v1.
    ReplayOut still = replay_json(ctl_fn, bad.id);
    EXPECT_EQ(still.status, 1) << still.raw;
    EXPECT_TRUE(still.report["comparison"].value("reproduced", false)) << still.report.dump();
    EXPECT_EQ(show(still.id)["policy"].value("version", 0), 1);
}

// Issue 14 item 3: learn never widens what passes and never overrides an
// operator's deny unless asked to, by a flag that says so.
TEST_F(Container, LearnKeepsExplicitDeniesAndAPassingJobNeedsNoChange) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    Ctr c;
    c.name = "no-sockets";
    c.rules = "\n[[seccomp.rule]]\nsyscall = \"socket\"\naction = \"errno:EACCES\"\n";
    const std::string pol = ctr_policy(c);

    // A job that falls back when refused a socket passes: nothing to learn.
    JobRun ok = run_job(*s_daemon, pol, {testprog(), "socket-or-not", "unix"});
    ASSERT_EQ(ok.proc.status, 0) << describe(ok);
    EXPECT_EQ(kv(ok.proc.out, "errno"), "EACCES") << describe(ok);
    ReplayOut calm = replay_json(ctl_fn, ok.id, {"--learn"});
    EXPECT_EQ(calm.status, 0) << calm.raw;
    ASSERT_TRUE(calm.report.is_object()) << calm.raw;
    EXPECT_TRUE(calm.report["proposal"]["additions"].empty()) << calm.report.dump(2);
    const json& notes = calm.report["proposal"]["notes"];
    ASSERT_FALSE(notes.empty()) << calm.report.dump(2);
    EXPECT_EQ(notes[0], "job " + std::to_string(ok.id) + " passed under this policy (exited 0): no change needed");
    // The rule was enforced in the learn replay as in production.
    EXPECT_EQ(kv(ctl({"output", std::to_string(calm.id)}).out, "errno"), "EACCES");
    bool enforced = false;
    for (const auto& e : events(calm.id))
        if (e.value("kind", "") == "denial" && e.value("syscall", "") == "socket") enforced = e.value("enforced", false);
    EXPECT_TRUE(enforced) << dump_all(events(calm.id));

    // A job that fails on the denied socket: reported, not proposed.
    JobRun bad = run_job(*s_daemon, pol, {testprog(), "socket", "unix"});
    ASSERT_EQ(bad.proc.status, 1) << describe(bad);
    ReplayOut kept = replay_json(ctl_fn, bad.id, {"--learn"});
    EXPECT_EQ(kept.status, 1) << kept.raw;
    ASSERT_TRUE(kept.report.is_object()) << kept.raw;
    EXPECT_TRUE(kept.report["proposal"]["additions"].empty()) << kept.report.dump(2);
    EXPECT_NE(kept.report["proposal"]["notes"].dump().find("denied by your rule seccomp.rule[0] (errno:EACCES)"),
              std::string::npos) << kept.report.dump(2);
    EXPECT_NE(kept.report["replay"].value("outcome", "").find("denied: socket"), std::string::npos) << kept.report.dump();

    // Asked for: the call runs and the override is proposed, narrow, and says so.
    const std::string v2 = s_root + "/policies/no-sockets-v2.toml";
    ReplayOut over = replay_json(ctl_fn, bad.id, {"--learn", "--override-deny-rules", "-o", v2});
    EXPECT_EQ(over.status, 0) << over.raw;
    ASSERT_TRUE(over.report.is_object()) << over.raw;
    const json& adds = over.report["proposal"]["additions"];
    ASSERT_EQ(adds.size(), 1u) << over.report.dump(2);
    EXPECT_EQ(adds[0].value("entry", ""), "allow socket when arg0 == AF_UNIX");
    EXPECT_NE(adds[0].value("risk", "").find("overrides your explicit deny seccomp.rule[0]"), std::string::npos)
        << adds.dump();
    EXPECT_NE(over.report["replay"].value("outcome", "").find("let through (learn): socket"), std::string::npos)
        << over.report.dump();
    ReplayOut fixed = replay_json(ctl_fn, bad.id, {"--policy", v2});
    EXPECT_EQ(fixed.status, 0) << fixed.raw;
    // Other families are still refused by the operator's rule.
    JobRun inet = run_job(*s_daemon, v2, {testprog(), "socket", "inet"});
    EXPECT_EQ(kv(inet.proc.out, "errno"), "EACCES") << describe(inet);
}

// A directory input: nested directories, a file only its owner (the client)
// may read, a symlink, a FIFO. What the job sees of it, as moat-testprog's
// `tree` lists it (sorted, symlinks not followed).
std::string make_input_tree(const std::string& dir) {
    mkdir(dir.c_str(), 0755);
    mkdir((dir + "/sub").c_str(), 0755);
    mkdir((dir + "/sub/private").c_str(), 0700);
    write_text(dir + "/top.txt", "top\n", 0644);
    write_text(dir + "/sub/secret", "only the client\n", 0600);
    write_text(dir + "/sub/private/x", "x\n", 0644);
    symlink("sub/secret", (dir + "/link").c_str());
    mkfifo((dir + "/fifo").c_str(), 0644);
    return dir;
}

TEST_F(Container, DirectoryInputIsSnapshottedAndReplayedAsTheJobSawIt) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    const std::string dir = make_input_tree(s_root + "/tree-in");
    Ctr c;
    c.name = "dir-input";
    JobRun r = run_ctr(c, {"tree", "/data/tree"}, {"--input", dir + ":/data/tree"});
    ASSERT_EQ(r.proc.status, 0) << describe(r);
    const std::string seen = r.proc.out;
    EXPECT_NE(seen.find("tree: top.txt 0644 file data=top|"), std::string::npos) << seen;
    EXPECT_NE(seen.find("tree: link 0777 symlink -> sub/secret"), std::string::npos) << seen;
    EXPECT_NE(seen.find("tree: sub/secret 0600 file open=Permission denied"), std::string::npos) << seen;
    EXPECT_NE(seen.find("tree: sub/private 0700 dir"), std::string::npos) << seen;
    EXPECT_EQ(r.proc.err.find("not snapshotted"), std::string::npos) << r.proc.err;

    json in = show(r.id)["recording"]["inputs"].at(0);
    EXPECT_EQ(in.value("kind", ""), "directory") << in.dump();
    EXPECT_TRUE(in["sha256"].is_string()) << in.dump();
    EXPECT_EQ(in.value("entries", 0), 6) << in.dump();   // top.txt link sub sub/secret sub/private sub/private/x
    EXPECT_EQ(in.value("bytes", 0), 4 + 16 + 2) << in.dump();
    EXPECT_NE(in.value("note", "").find("fifo: a FIFO (not recorded)"), std::string::npos) << in.dump();

    // The host tree changes afterwards: the replay still sees the snapshot,
    // with the recorded modes and the symlink as a symlink.
    write_text(dir + "/top.txt", "CHANGED\n", 0644);
    unlink((dir + "/link").c_str());
    unlink((dir + "/fifo").c_str());  // the original saw it; the replay cannot (the note said so)
    ReplayOut again = replay_json(ctl_fn, r.id);
    ASSERT_EQ(again.status, 0) << again.raw;
    EXPECT_TRUE(again.report["comparison"].value("reproduced", false)) << again.report.dump();
    auto without_fifo = [](const std::string& text) {
        std::istringstream in(text);
        std::string kept;
        for (std::string line; std::getline(in, line);)
            if (line.find("tree: fifo ") != 0 && line.find("tree=ok") != 0) kept += line + "\n";
        return kept;
    };
    Proc out = ctl({"output", std::to_string(again.id)});
    EXPECT_NE(seen.find("tree: fifo "), std::string::npos) << seen;
    EXPECT_EQ(out.out.find("tree: fifo "), std::string::npos) << out.out;
    EXPECT_EQ(without_fifo(out.out), without_fifo(seen)) << "the replay saw another tree";
    json rin = show(again.id)["recording"]["inputs"].at(0);
    EXPECT_EQ(rin.value("kind", ""), "directory") << rin.dump();
    EXPECT_EQ(rin.value("sha256", ""), in.value("sha256", "")) << rin.dump();

    // The seccomp tier reads the host tree, which is no longer the recorded one.
    Proc sec = ctl({"replay", std::to_string(r.id), "--tier", "seccomp"});
    EXPECT_EQ(sec.status, 125) << sec.out << sec.err;
    EXPECT_NE(sec.err.find("is not the directory tree the job saw"), std::string::npos) << sec.err;
    EXPECT_NE(sec.err.find("--tier container"), std::string::npos) << sec.err;
}

TEST_F(Container, DirectoryInputOverTheEntryBoundRunsButSaysAtOnceThatItWillNotReplay) {
    Daemon d(s_root, "few-entries");
    std::string why;
    ASSERT_TRUE(d.start(&why, {"--record-input-entries", "3"})) << why;
    const std::string dir = make_input_tree(s_root + "/tree-big");
    Ctr c;
    c.name = "dir-input-big";
    JobRun r = run_job(d, ctr_policy(c), {testprog(), "tree", "/data/tree"}, {}, {"--input", dir + ":/data/tree"});
    EXPECT_EQ(r.proc.status, 0) << describe(r);
    EXPECT_NE(r.proc.out.find("tree: top.txt 0644 file data=top|"), std::string::npos) << r.proc.out;
    EXPECT_NE(r.proc.err.find("tree-big was not snapshotted, so `moatctl replay " + std::to_string(r.id) +
                              "` will refuse it: not snapshotted: more than 3 entries (moatd --record-input-entries)"),
              std::string::npos)
        << r.proc.err;
    Proc p = ctl(d, {"replay", std::to_string(r.id)});
    EXPECT_EQ(p.status, 125) << p.out << p.err;
    EXPECT_NE(p.err.find("more than 3 entries"), std::string::npos) << p.err;
    EXPECT_EQ(d.terminate(), 0) << d.log();
}

// Issue 14 item 4: a threaded job's learned policy must hold the thread
// start/exit set however many CPUs the learn replay had, moatd records the
// CPUs and the clone3 probes it answered, and the clone3 note appears.
TEST_F(Container, LearnedPolicyOfAThreadedJobPassesReruns) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    Ctr c;
    c.name = "threads";
    // @default without what only a thread's start and exit need.
    c.allow = {"execve", "brk", "mmap", "munmap", "mprotect", "mremap", "arch_prctl", "set_tid_address",
               "set_robust_list", "rseq", "prlimit64", "getrandom", "access", "faccessat", "faccessat2", "uname",
               "openat", "read", "pread64", "readv", "write", "writev", "close", "lseek", "newfstatat", "fstat",
               "stat", "lstat", "statx", "statfs", "fstatfs", "readlink", "readlinkat", "getcwd", "getdents64",
               "fcntl", "dup", "dup2", "dup3", "pipe2", "getuid", "geteuid", "getgid", "getegid", "getpid",
               "getppid", "gettid", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
               "sched_getaffinity", "sched_yield", "clock_gettime", "clock_nanosleep", "nanosleep", "wait4",
               "kill", "exit_group", "restart_syscall", "capget", "prctl"};
    const std::string v1 = ctr_policy(c);
    const std::vector<std::string> thread_set = {"clone", "futex", "madvise", "exit"};

    // No thread can start: clone is refused (after clone3's ENOSYS).
    JobRun bad = run_job(*s_daemon, v1, {testprog(), "threads", "4"});
    ASSERT_EQ(bad.proc.status, 1) << describe(bad);
    EXPECT_TRUE(kv(bad.proc.out, "pthread_create_errno").has_value()) << describe(bad);
    json sb = show(bad.id).value("sandbox", json::object());
    EXPECT_GE(sb.value("cpus", 0), 1) << sb.dump();
    ASSERT_TRUE(sb.contains("clone3")) << sb.dump();
    EXPECT_GE(sb["clone3"].value("threads", 0), 1) << sb.dump();
    EXPECT_FALSE(sb.contains("cpus_learn")) << "only a learn replay has its affinity widened: " << sb.dump();

    // Learn: the proposal holds the whole thread set, and says why.
    const std::string v2 = s_root + "/policies/threads-v2.toml";
    ReplayOut learn = replay_json(ctl_fn, bad.id, {"--learn", "-o", v2});
    EXPECT_EQ(learn.status, 0) << learn.raw;
    ASSERT_TRUE(learn.report.is_object()) << learn.raw;
    json lsb = show(learn.id).value("sandbox", json::object());
    EXPECT_GE(lsb.value("cpus", 0), 1) << lsb.dump();
    ASSERT_TRUE(lsb.contains("cpus_learn")) << lsb.dump();
    EXPECT_EQ(lsb["cpus_learn"].value("after", 0), lsb.value("cpus", -1)) << lsb.dump();
    EXPECT_GE(lsb["clone3"].value("threads", 0), 4) << lsb.dump();
    const json& proposal = learn.report["proposal"];
    std::set<std::string> denied;
    for (const auto& e : events(learn.id))
        if (e.value("kind", "") == "denial") denied.insert(e.value("syscall", ""));
    for (const auto& a : proposal["additions"]) {
        const std::string entry = a.value("entry", "");
        // A thread-set call this run did not make is proposed on the thread evidence.
        if (std::find(thread_set.begin(), thread_set.end(), entry) != thread_set.end() && !denied.count(entry)) {
            EXPECT_NE(a.value("evidence", "").find("the job starts threads"), std::string::npos) << a.dump();
        }
    }
    EXPECT_NE(proposal["notes"].dump().find("clone3: "), std::string::npos) << proposal.dump(2);
    EXPECT_NE(proposal["notes"].dump().find("Moat never lets clone3 run, by design"), std::string::npos)
        << proposal.dump(2);
    Proc d = ctl({"policy", "diff", v1, v2});
    for (const auto& name : thread_set)
        EXPECT_NE(d.out.find("+ allow " + name + "\n"), std::string::npos) << name << "\n" << d.out << learn.raw;

    // The learned policy passes fresh runs with every CPU moatd has.
    for (int i = 0; i < 4; ++i) {
        JobRun again = run_job(*s_daemon, v2, {testprog(), "threads"});
        EXPECT_EQ(again.proc.status, 0) << "run " << i << ": " << describe(again);
        EXPECT_TRUE(kv(again.proc.out, "threads").has_value()) << describe(again);
    }
}

// ---- learning the filesystem view (issue 14 item 1) ----------------------------

// The proposal's filesystem additions ("read_only /x", "tmpfs /y") by kind;
// `other` gets every other entry (syscalls).
struct PathAdds {
    std::set<std::string> read_only, tmpfs, other;
};
PathAdds path_adds(const json& proposal) {
    PathAdds p;
    for (const auto& a : proposal.value("additions", json::array())) {
        const std::string e = a.value("entry", "");
        if (e.rfind("read_only ", 0) == 0) p.read_only.insert(e.substr(10));
        else if (e.rfind("tmpfs ", 0) == 0) p.tmpfs.insert(e.substr(6));
        else p.other.insert(e);
    }
    return p;
}

// A directory too broad to add whole (a symlink of that name is recreated
// as a link, so /lib -> usr/lib on a merged-/usr host is fine).
bool broad_host_dir(const std::string& path) {
    static const std::set<std::string> broad = {"/", "/etc", "/usr", "/var", "/home", "/opt", "/srv", "/run", "/tmp",
                                                "/lib", "/lib64", "/bin", "/sbin", "/usr/lib", "/usr/share",
                                                "/usr/local", "/usr/bin", "/usr/sbin", "/var/lib"};
    return broad.count(path) && !fs::is_symlink(path);
}

// A dir of the test's own, traversable by the job's uid.
std::string job_dir(const std::string& path) {
    fs::create_directories(path);
    chmod(path.c_str(), 0755);
    return path;
}

// /usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk, rebuilt under the
// test's own directory: the program is named through a link the view has,
// whose target (a link in a directory the view lacks) leads to the real
// binary. Learning must add that hop alone (not its directory, nothing
// broad), then the data file once the program runs, and the result must pass.
TEST_F(Container, AnAlternativesLinkAndADataFileAreLearnedAsExactPathsAndVerified) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    const std::string t = job_dir(s_root + "/fsl-alt");
    job_dir(t + "/alt");
    job_dir(t + "/etc-alt");
    job_dir(t + "/data");
    const std::string data = t + "/data/in.txt", hop = t + "/etc-alt/prog", prog = t + "/alt/prog";
    write_text(data, "alternative data\n", 0644);
    write_text(t + "/data/other.txt", "not read\n", 0644);
    ASSERT_EQ(symlink(testprog().c_str(), hop.c_str()), 0) << strerror(errno);
    ASSERT_EQ(symlink(hop.c_str(), prog.c_str()), 0) << strerror(errno);
    Ctr c;
    c.name = "fsl-alt";
    c.read_only.push_back(t + "/alt");  // neither etc-alt nor data
    c.tmpfs = {};  // the suite's files are under /tmp: a tmpfs there is the job's own, never learned
    const std::string v1 = ctr_policy(c);

    JobRun bad = run_job(*s_daemon, v1, {prog, "cat", data});
    ASSERT_EQ(bad.proc.status, 125) << "the program's link dangles in the view\n" << describe(bad);
    ASSERT_GT(bad.id, 0) << describe(bad);
    EXPECT_EQ(cause(show(bad.id)), "setup-failed");

    // Round 1: the job never started, so the set-up is all there is to
    // learn from: the hop, and nothing the view already has (the link in
    // alt/, the binary, its interpreter and libraries under /usr).
    const std::string v2 = s_root + "/policies/fsl-alt-v2.toml";
    ReplayOut l1 = replay_json(ctl_fn, bad.id, {"--learn", "-o", v2});
    EXPECT_EQ(l1.status, 125) << "the learn replay could not be set up either\n" << l1.raw;
    ASSERT_TRUE(l1.report.is_object()) << "the proposal is printed even so\n" << l1.raw;
    PathAdds a1 = path_adds(l1.report["proposal"]);
    EXPECT_EQ(a1.read_only, std::set<std::string>{hop}) << l1.report.dump(2);
    EXPECT_TRUE(a1.tmpfs.empty() && a1.other.empty()) << l1.report.dump(2);
    EXPECT_NE(l1.report["proposal"].dump().find("a symlink on the way: " + hop + " -> " + testprog()),
              std::string::npos)
        << "the evidence names the hop\n" << l1.report.dump(2);
    json lp = show(l1.id)["sandbox"]["learn_paths"];
    bool chain = false;
    for (const auto& e : lp.value("paths", json::array()))
        if (e.value("path", "") == prog)
            chain = e.value("links", json()) == json({prog + " -> " + hop, hop + " -> " + testprog()}) &&
                    e.value("syscall", "") == "execve";
    EXPECT_TRUE(chain) << "sandbox.learn_paths must carry the program's chain\n" << lp.dump(2);

    // v2 starts the program; it fails on the data file it cannot see.
    ReplayOut r2 = replay_json(ctl_fn, bad.id, {"--policy", v2});
    EXPECT_EQ(r2.status, 1) << r2.raw;
    EXPECT_EQ(kv(ctl({"output", std::to_string(r2.id)}).out, "errno"), "ENOENT");

    // Round 2: now the program runs, and the file is learned: exactly it.
    const std::string v3 = s_root + "/policies/fsl-alt-v3.toml";
    ReplayOut l2 = replay_json(ctl_fn, bad.id, {"--learn", "--policy", v2, "-o", v3});
    ASSERT_TRUE(l2.report.is_object()) << l2.raw;
    PathAdds a2 = path_adds(l2.report["proposal"]);
    EXPECT_EQ(a2.read_only, std::set<std::string>{data}) << l2.report.dump(2);
    EXPECT_TRUE(a2.tmpfs.empty() && a2.other.empty()) << l2.report.dump(2);

    ReplayOut ok = replay_json(ctl_fn, bad.id, {"--policy", v3});
    EXPECT_EQ(ok.status, 0) << ok.raw;
    Proc out = ctl({"output", std::to_string(ok.id)});
    EXPECT_NE(out.out.find("data:alternative data"), std::string::npos) << out.out;
    // All that changed from v1: the two exact paths.
    Proc d = ctl({"policy", "diff", v1, v3});
    EXPECT_NE(d.out.find(hop), std::string::npos) << d.out;
    EXPECT_NE(d.out.find(data), std::string::npos) << d.out;
    EXPECT_EQ(d.out.find(t + "/etc-alt\n"), std::string::npos) << d.out;
    EXPECT_EQ(d.out.find("other.txt"), std::string::npos) << d.out;
    EXPECT_EQ(d.out.find("allow"), std::string::npos) << "no syscall was needed\n" << d.out;
}

// Issue 14 item 1's benchmark case in small: from read_only = [] and no
// tmpfs, `replay --learn -o` applied round after round reaches a policy
// under which the replay passes, and never by adding a broad directory.
TEST_F(Container, FromAnEmptyViewTheLearnedPolicyPassesWithinFiveRounds) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    const std::string t = job_dir(s_root + "/fsl-empty");
    const std::string data = t + "/in.txt";
    write_text(data, "from nothing\n", 0644);
    Ctr c;
    c.name = "fsl-empty";
    c.read_only = {};
    c.tmpfs = {};
    const std::string v1 = ctr_policy(c);
    JobRun bad = run_job(*s_daemon, v1, {testprog(), "cat", data});
    ASSERT_EQ(bad.proc.status, 125) << "the program is not in an empty view\n" << describe(bad);
    ASSERT_GT(bad.id, 0) << describe(bad);

    std::string pol;  // "": the recorded policy (v1)
    std::set<std::string> learned;
    std::string history;
    int passed_at = 0;
    for (int round = 1; round <= 5 && !passed_at; ++round) {
        const std::string next = s_root + "/policies/fsl-empty-r" + std::to_string(round) + ".toml";
        std::vector<std::string> extra = {"--learn", "-o", next};
        if (!pol.empty()) extra.insert(extra.end(), {"--policy", pol});
        ReplayOut l = replay_json(ctl_fn, bad.id, extra);
        ASSERT_TRUE(l.report.is_object()) << "round " << round << "\n" << l.raw << history;
        PathAdds a = path_adds(l.report["proposal"]);
        history += "\nround " + std::to_string(round) + ": " + l.report["proposal"].dump(1);
        ASSERT_FALSE(a.read_only.empty() && a.tmpfs.empty() && a.other.empty())
            << "a failing job and nothing to propose: learning is stuck" << history;
        for (const auto& p : a.read_only) {
            EXPECT_FALSE(broad_host_dir(p)) << p << history;
            EXPECT_FALSE(learned.count(p)) << p << " proposed twice" << history;
            learned.insert(p);
        }
        pol = next;
        ReplayOut v = replay_json(ctl_fn, bad.id, {"--policy", pol});
        if (v.status == 0) passed_at = round;
        history += "\nverify: " + std::to_string(v.status) + " " + v.report.dump();
    }
    ASSERT_GT(passed_at, 0) << "no passing policy within 5 rounds" << history;
    EXPECT_GE(passed_at, 2) << "the data file cannot be seen before the program runs" << history;
    EXPECT_TRUE(learned.count(testprog())) << history;
    EXPECT_TRUE(learned.count(data)) << history;
    // Fresh runs under the learned policy pass too.
    JobRun again = run_job(*s_daemon, pol, {testprog(), "cat", data});
    EXPECT_EQ(again.proc.status, 0) << describe(again) << history;
    EXPECT_NE(again.proc.out.find("data:from nothing"), std::string::npos) << describe(again);
}

// A path that holds a key is never proposed, whatever the job wanted; the
// proposal says so. Controls: a harmless file next to it is proposed.
TEST_F(Container, ASecretTheJobReadsIsRefusedWithANote) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    const std::string t = job_dir(s_root + "/fsl-secret");
    const std::string key = t + "/site.key", pem = t + "/site.pem";
    write_text(key, "-----BEGIN PRIVATE KEY-----\n", 0644);
    write_text(pem, "-----BEGIN CERTIFICATE-----\n", 0644);
    Ctr c;
    c.name = "fsl-secret";
    c.tmpfs = {};  // as above: /tmp would be the job's own scratch space
    const std::string v1 = ctr_policy(c);

    std::vector<std::pair<std::string, std::string>> secrets = {{key, "a key file by its name"}};
    if (access("/etc/ssh/ssh_config", R_OK) == 0)
        secrets.emplace_back("/etc/ssh/ssh_config", "under /etc/ssh, where credentials and keys live");
    else
        std::cerr << "note: no readable /etc/ssh/ssh_config here; only the key file by name is checked\n";
    for (const auto& [path, why] : secrets) {
        JobRun bad = run_job(*s_daemon, v1, {testprog(), "cat", path});
        ASSERT_EQ(bad.proc.status, 1) << describe(bad);
        EXPECT_EQ(kv(bad.proc.out, "errno"), "ENOENT") << describe(bad);
        ReplayOut l = replay_json(ctl_fn, bad.id, {"--learn"});
        EXPECT_EQ(l.status, 1) << "the file stays invisible in learn mode\n" << l.raw;
        ASSERT_TRUE(l.report.is_object()) << l.raw;
        PathAdds a = path_adds(l.report["proposal"]);
        EXPECT_TRUE(a.read_only.empty() && a.tmpfs.empty()) << path << "\n" << l.report.dump(2);
        EXPECT_NE(l.report["proposal"]["notes"].dump().find(path + ": not proposed (" + why), std::string::npos)
            << l.report.dump(2);
    }

    JobRun control = run_job(*s_daemon, v1, {testprog(), "cat", pem});
    ASSERT_EQ(control.proc.status, 1) << describe(control);
    ReplayOut l = replay_json(ctl_fn, control.id, {"--learn"});
    ASSERT_TRUE(l.report.is_object()) << l.raw;
    EXPECT_EQ(path_adds(l.report["proposal"]).read_only, std::set<std::string>{pem}) << l.report.dump(2);
}

// Issue 14 item 1 in the seccomp tier: Landlock refuses a file outside the
// policy's paths (EACCES, no mount namespace); a forced learn replay
// proposes exactly that file, looked up as the client.
TEST_F(Container, LandlockInTheSeccompTierIsLearnedToo) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    mkdir((s_root + "/outside").c_str(), 0755);
    const std::string data = s_root + "/outside/data.txt";
    write_text(data, "data\n", 0644);
    const std::string pol = write_policy("landlock-learn", R"(name = "landlock-learn"
tier = "seccomp"
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "@TESTDIR@"]
tmpfs = []
[seccomp]
allow = ["@default", "@signal", "capget", "prctl"]
)");
    JobRun bad = run_job(*s_daemon, pol, {testprog(), "read-file", data});
    ASSERT_EQ(bad.proc.status, 1) << describe(bad);
    EXPECT_EQ(kv(bad.proc.out, "errno"), "EACCES") << describe(bad);
    const std::string v2 = s_root + "/policies/landlock-learn-v2.toml";
    ReplayOut learn = replay_json(ctl_fn, bad.id, {"--learn", "--force", "-o", v2});
    ASSERT_TRUE(learn.report.is_object()) << learn.raw;
    std::vector<std::string> ro;
    for (const auto& a : learn.report["proposal"]["additions"])
        if (a["read_only"].is_string()) ro.push_back(a["read_only"].get<std::string>());
    EXPECT_EQ(ro, std::vector<std::string>{data}) << learn.report.dump(2);
    EXPECT_EQ(show(learn.id)["sandbox"]["learn_paths"].value("tier_view", ""), "landlock");
    ReplayOut fixed = replay_json(ctl_fn, bad.id, {"--policy", v2});
    EXPECT_EQ(fixed.status, 0) << fixed.raw;
}

// A learn replay never makes namespaces of its own: a clone3 asking for one
// is recorded as enforced and answered as in production (default_action).
TEST_F(Container, LearnNeverLetsANamespaceClone3Run) {
    auto ctl_fn = [](std::vector<std::string> a) { return ctl(std::move(a)); };
    Ctr c;
    c.name = "no-userns";
    JobRun r = run_ctr(c, {"clone3", "newuser"});
    ASSERT_GT(r.id, 0) << describe(r);
    ReplayOut learn = replay_json(ctl_fn, r.id, {"--learn"});
    ASSERT_TRUE(learn.report.is_object()) << learn.raw;
    EXPECT_EQ(kv(r.proc.out, "errno"), "EPERM") << describe(r);
    EXPECT_EQ(kv(ctl({"output", std::to_string(learn.id)}).out, "errno"), "EPERM");
    bool seen = false;
    for (const auto& e : events(learn.id))
        if (e.value("kind", "") == "denial" && e.value("syscall", "") == "clone3") {
            seen = true;
            EXPECT_TRUE(e.value("enforced", false)) << e.dump();
        }
    EXPECT_TRUE(seen) << dump_all(events(learn.id));
    for (const auto& a : learn.report["proposal"]["additions"]) EXPECT_EQ(a["syscalls"].dump().find("clone3"), std::string::npos);
}

TEST_F(Container, LearnIsRefusedInTheSeccompTierUnlessForced) {
    JobRun r = run_job(*s_daemon, policy("base"), {testprog(), "mkdir", "/tmp/moat-learn-x"});
    ASSERT_GT(r.id, 0) << describe(r);
    Proc p = ctl({"replay", std::to_string(r.id), "--learn"});
    EXPECT_EQ(p.status, 125) << p.out << p.err;
    EXPECT_NE(p.err.find("--force"), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("seccomp tier"), std::string::npos) << p.err;
    EXPECT_TRUE(p.out.empty()) << "no job may start: " << p.out;
}

TEST_F(Container, ReplayOfAnUnknownOrRunningJobIsAClearError) {
    Proc p = ctl({"replay", "999999"});
    EXPECT_EQ(p.status, 125) << p.out << p.err;
    EXPECT_NE(p.err.find("no job 999999"), std::string::npos) << p.err;
}

}  // namespace
