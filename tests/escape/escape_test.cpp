// The escape suite (issue 6, item 1): every known escape or abuse in
// attacks.c, attempted inside a real job of every tier, under
// policies/restrictive.toml, through a real moatd and moatctl (the scenario
// suites' fixture, tests/scenario/fixture.h).
//
// Each case (attack x tier) asserts that the attack printed `BLOCKED` (or, for
// the limit attacks, that the job ended with the expected cause), that every
// syscall the policy denies was recorded as a `denial` event, and the
// attack-specific facts checked from the host (the listener got no connection,
// the victim process lives, the file stayed within its limit, the host can
// fork during the fork bomb, nothing was typed into the terminal).
//
// With MOAT_ESCAPE_TABLE=FILE the binary writes the results as a Markdown
// table (attack x tier -> how it was stopped) to FILE;
// tests/escape/update-security-table.sh splices it into docs/security.md.
//
// The vm tier runs the same program in a QEMU guest, under the same policy
// but for read_only (the program's directory only: the guest's root image is
// exactly the read_only paths). Its cases skip, with moatd's reason, only when
// moatd says "tier vm unavailable". They share this process's moatd, whose
// warm pool boots guests ahead of the jobs (ctest runs them as one test,
// escape_test.vm). Where an attack means something else in a guest, the
// checks from the host prove the host untouched (see the per-attack checks).
//
// Adding a tier is one line: append it to kTiers.
#include <pty.h>
#include <termios.h>

#include <mutex>
#include <set>

// fixture.h defines helpers for every suite; not all of them are used here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fixture.h"
#pragma GCC diagnostic pop

namespace {

// ---- the tiers ----------------------------------------------------------------

const std::vector<std::string> kTiers = {
    "seccomp",
    "container",
    "vm",
};

// ---- the attacks ----------------------------------------------------------------

// A denial that must be recorded: by syscall name, or (foreign ABIs) by arch.
struct Denial {
    std::string syscall;
    std::string arch;
};

enum class Expect {
    Blocked,      // the attack prints BLOCKED and exits 0
    CauseMemory,  // the job is ended by the memory limit
    CauseCpu,     // the job is ended by the CPU-time limit
};

struct Attack {
    std::string mode;   // attacks.c's argv[1]
    std::string title;  // the table's row
    std::vector<Denial> denials = {};
    Expect expect = Expect::Blocked;
    // How a BLOCKED token reads in the table: "TIER:TOKEN" or "TOKEN" -> text.
    std::map<std::string, std::string> how = {};
    // For attacks with denials: what else stopped it, put before the denial.
    std::string note = {};
};

Denial sys(const std::string& s) { return {s, ""}; }
Denial arch(const std::string& a) { return {"", a}; }

const std::map<std::string, std::string> kFileHow = {
    {"seccomp:EACCES", "Landlock (EACCES)"},
    {"EACCES", "permission denied (EACCES)"},
    {"ENOENT", "not in the job's root (ENOENT)"},
    {"EROFS", "read-only root (EROFS)"},
    {"vm:ENOENT", "not in the guest's root image (ENOENT)"},
    {"vm:EROFS", "the guest's root is read-only (EROFS)"},
};

// Files that DAC also protects: the open fails in the DAC check before
// Landlock's hook is reached, but Landlock would refuse it too.
std::map<std::string, std::string> with(std::map<std::string, std::string> m, const std::string& key,
                                        const std::string& text) {
    m[key] = text;
    return m;
}

const std::vector<Attack> kAttacks = {
    {"read-shadow",
     "read `/etc/shadow`",
     {},
     Expect::Blocked,
     with(kFileHow, "seccomp:EACCES", "EACCES: outside the Landlock rules (and DAC: mode 0640 root:shadow)")},
    {"read-host-file", "read a host file outside the policy (`/var/tmp/...`, mode 0644)", {}, Expect::Blocked, kFileHow},
    {"write-etc", "create a file under `/etc`, open `/etc/hostname` for writing", {}, Expect::Blocked, kFileHow},
    {"ptrace-parent", "`ptrace(PTRACE_ATTACH)` of the parent", {sys("ptrace")}},
    {"ptrace-init", "`ptrace(PTRACE_ATTACH)` of pid 1", {sys("ptrace")}},
    {"mount-tmpfs", "`mount` a tmpfs", {sys("mount")}},
    {"unshare-user", "`unshare(CLONE_NEWUSER)`", {sys("unshare")}},
    {"clone-newns", "`clone(CLONE_NEWNS)`", {sys("clone")}},
    {"clone3-ns", "`clone3` with namespace flags", {sys("clone3")}},
    {"io-uring", "`io_uring_setup`", {sys("io_uring_setup")}},
    {"bpf", "`bpf(BPF_PROG_LOAD)`", {sys("bpf")}},
    {"userfaultfd", "`userfaultfd`", {sys("userfaultfd")}},
    {"keyctl", "`add_key`, `keyctl(JOIN_SESSION_KEYRING)`", {sys("add_key"), sys("keyctl")}},
    {"perf-event-open", "`perf_event_open`", {sys("perf_event_open")}},
    {"open-by-handle-at", "`open_by_handle_at` with a forged handle (\"shocker\")", {sys("open_by_handle_at")}},
    {"x32-abi", "x32 ABI (`syscall(0x40000000 \\| SYS_getpid)`)", {arch("x32")}},
    {"i386-abi", "i386 ABI (`int $0x80` getuid)", {arch("i386")}},
    {"tiocsti",
     "`TIOCSTI` on fd 0 (moatctl's stdin is a pty) and `/dev/tty`",
     {},
     Expect::Blocked,
     {{"ENOTTY", "fd 0 is moatd's relay pipe, never the client's terminal: ENOTTY; nothing typed"},
      {"vm:ENOTTY", "fd 0 is the guest agent's pipe (moatd relays it), never the client's terminal: ENOTTY; nothing typed"},
      {"EPERM", "not the controlling tty (`setsid`): kernel EPERM; nothing typed"},
      {"EIO", "TIOCSTI disabled (`dev.tty.legacy_tiocsti = 0`): EIO; nothing typed"}}},
    {"inherited-fds",
     "inherited fds (scan 3..1023; `moatctl` holds an extra fd on `/`)",
     {},
     Expect::Blocked,
     {{"none-open", "only fds 0-2 exist"},
      {"vm:none-open", "only fds 0-2 exist (no host fd enters the guest)"}}},
    {"env-secret",
     "secret in the environment (`MOAT_SECRET` set for `moatctl`)",
     {},
     Expect::Blocked,
     {{"filtered", "not passed (environment filtered)"}}},
    {"capabilities",
     "capabilities (`capget` sets non-zero, `setuid(0)`)",
     {sys("setuid")},
     Expect::Blocked,
     {},
     "CapEff = CapPrm = 0; `setuid`:"},
    {"net-connect",
     "TCP connect to a host listener on 127.0.0.1 under `network = \"none\"`",
     {},
     Expect::Blocked,
     {{"seccomp:EACCES", "Landlock net rule (EACCES)"},
      {"ENETUNREACH", "empty network namespace (ENETUNREACH)"},
      {"ECONNREFUSED", "empty network namespace (ECONNREFUSED)"},
      {"vm:ENETUNREACH", "no network device in the guest, `lo` down (ENETUNREACH); the host listener got no connection"}}},
    {"kill-host",
     "`kill(SIGTERM)` of a host process",
     {},
     Expect::Blocked,
     {{"seccomp:EPERM", "kernel EPERM (other uid; Landlock signal scope)"},
      {"ESRCH", "not in the job's pid namespace (ESRCH)"},
      {"vm:ESRCH", "no host process exists in the guest (ESRCH); the host process lives"}}},
    {"fork-bomb",
     "fork bomb",
     {},
     Expect::Blocked,
     {{"EAGAIN", "pids limit (EAGAIN at %forked% processes); host forks meanwhile"},
      {"vm:EAGAIN", "pids limit of the guest's job cgroup (EAGAIN at %forked% processes); host forks meanwhile"}}},
    {"memory-bomb", "memory bomb (allocate and touch)", {}, Expect::CauseMemory},
    {"disk-fill",
     "disk fill: one growing file in the `read_write` directory",
     {},
     Expect::Blocked,
     {{"EFBIG", "file_size limit (EFBIG at %mib% MiB)"},
      {"vm:EFBIG", "file_size limit (EFBIG at %mib% MiB) in the guest's tmpfs; the host's `read_write` directory stays empty"}}},
    {"tmp-fill",
     "disk fill: 1 MiB files in `/tmp`",
     {},
     Expect::Blocked,
     {{"seccomp:EACCES", "no tmpfs in this tier; host `/tmp`: Landlock (EACCES)"},
      {"ENOSPC", "tmpfs size (ENOSPC at %mib% MiB)"},
      {"vm:ENOSPC", "the guest's tmpfs size (ENOSPC at %mib% MiB)"}}},
    {"cpu-spin", "CPU spin", {}, Expect::CauseCpu},
    {"personality", "`personality(READ_IMPLIES_EXEC\\|ADDR_NO_RANDOMIZE)`", {sys("personality")}},
    {"process-vm-writev", "`process_vm_writev` into the parent", {sys("process_vm_writev")}},
    {"sysrq-trigger",
     "open `/proc/sysrq-trigger` for writing",
     {},
     Expect::Blocked,
     {{"ENOENT", "absent on this kernel (ENOENT)"},
      {"EACCES", "Landlock (EACCES)"},
      {"EROFS", "read-only (EROFS)"},
      {"vm:ENOENT", "absent in the guest (ENOENT); the host's `/proc` is not in the VM"},
      {"vm:EACCES", "the guest's own `/proc`: permission denied (EACCES); the host's `/proc` is not in the VM"},
      {"vm:EROFS", "the guest's own `/proc`: read-only (EROFS); the host's `/proc` is not in the VM"}}},
    {"chroot-escape",
     "chroot escape (`chroot(\"/tmp\")`, `chdir(\"..\")`, open `/etc/shadow`)",
     {sys("chroot")},
     Expect::Blocked,
     {},
     "`/etc/shadow` still unreadable;"},
    {"proc1-environ",
     "read `/proc/1/environ`",
     {},
     Expect::Blocked,
     {{"seccomp:EACCES", "EACCES: outside the Landlock rules (and DAC: pid 1 is root's)"},
      {"container:EACCES", "pid 1 is `moat-init`, another uid (EACCES)"},
      {"vm:EACCES", "pid 1 of the job's pid namespace in the guest is `moat-init`, another uid (EACCES); the host's pid 1 is not in the VM"},
      {"ENOENT", "no /proc (ENOENT)"}}},
};

// ---- results, for the table ------------------------------------------------------

std::mutex g_mu;
std::map<std::pair<std::string, std::string>, std::string> g_cells;  // (mode, tier) -> text

void record_cell(const std::string& mode, const std::string& tier, const std::string& text) {
    std::lock_guard lk(g_mu);
    g_cells[{mode, tier}] = text;
}

std::string md_escape(std::string s) {
    for (size_t p = 0; (p = s.find('|', p)) != std::string::npos; p += 2) s.replace(p, 1, "\\|");
    for (auto& c : s)
        if (c == '\n') c = ' ';
    return s;
}

class TableWriter : public ::testing::Environment {
public:
    void TearDown() override {
        const char* file = getenv("MOAT_ESCAPE_TABLE");
        if (!file || !*file) return;
        std::ostringstream t;
        t << "| attack |";
        for (const auto& tier : kTiers) t << " " << tier << " |";
        t << "\n| --- |";
        for (size_t i = 0; i < kTiers.size(); ++i) t << " --- |";
        t << "\n";
        std::lock_guard lk(g_mu);
        for (const auto& a : kAttacks) {
            t << "| " << a.title << " |";
            for (const auto& tier : kTiers) {
                auto it = g_cells.find({a.mode, tier});
                t << " " << (it == g_cells.end() ? std::string("not run") : it->second) << " |";
            }
            t << "\n";
        }
        std::ofstream(file, std::ios::trunc) << t.str();
    }
};

[[maybe_unused]] ::testing::Environment* const g_table = ::testing::AddGlobalTestEnvironment(new TableWriter);

// ---- running an attack -------------------------------------------------------------

// The `BLOCKED`/`ESCAPED` line of the attack's output.
struct Verdict {
    bool blocked = false, escaped = false;
    std::string how;   // the token after BLOCKED
    std::string line;  // the whole line
};

Verdict verdict(const std::string& out) {
    Verdict v;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("ESCAPED", 0) == 0) {
            v.escaped = true;
            v.line = line;
            return v;
        }
        if (line.rfind("BLOCKED ", 0) == 0 && !v.blocked) {
            v.blocked = true;
            v.line = line;
            std::istringstream f(line.substr(8));
            f >> v.how;
        }
    }
    return v;
}

using Param = std::tuple<Attack, std::string>;

void PrintTo(const Attack& a, std::ostream* os) { *os << a.mode; }

// One job's result as the test sees it.
struct Outcome {
    Proc proc;
    int64_t id = 0;
    json job;
    std::vector<json> denials;
};

class Escape : public Scenario, public ::testing::WithParamInterface<Param> {
protected:
    static void SetUpTestSuite() {
        // The vm tier's root images go to a cache of this run's own: their key
        // holds the temp dir's path, so each run makes new ones, which in the
        // shared /var/cache/moat would evict the operator's images (8 at most).
        s_daemon_args = {"--vm-cache-dir", "@ROOT@/vm-cache"};
        Scenario::SetUpTestSuite();
        if (!s_skip.empty() || !s_fatal.empty()) return;
        std::string to = s_root + "/bin/moat-escape-attacks";
        std::error_code ec;
        fs::copy_file(TESTPROG_PATH, to, fs::copy_options::overwrite_existing, ec);
        if (ec) s_fatal = std::string("copying ") + TESTPROG_PATH + ": " + ec.message();
        chmod(to.c_str(), 0755);
        // The vm tier's root image holds exactly the policy's read_only
        // paths: the static attack program alone, in a directory of its own.
        mkdir((s_root + "/vm-bin").c_str(), 0755);
        fs::copy_file(TESTPROG_PATH, s_root + "/vm-bin/moat-escape-attacks", fs::copy_options::overwrite_existing, ec);
        if (ec) s_fatal = std::string("copying ") + TESTPROG_PATH + ": " + ec.message();
        chmod((s_root + "/vm-bin/moat-escape-attacks").c_str(), 0755);
        // moatd says at start why a tier is unavailable.
        s_vm_unavailable.clear();
        s_vm_warmed = false;
        const std::string log = s_daemon->log();
        if (auto at = log.find("tier vm unavailable"); at != std::string::npos)
            s_vm_unavailable = log.substr(at, log.find('\n', at) - at);
    }

    static std::string attacks(const std::string& tier) {
        return s_root + (tier == "vm" ? "/vm-bin" : "/bin") + "/moat-escape-attacks";
    }

    // The policy for a tier. The vm tier's differs in one line: its
    // read_only list is the attack program's directory only (the root image
    // holds exactly those paths; the program is static and needs nothing
    // else), so that the image is built in milliseconds instead of copying
    // the host's /usr. Network, environment and seccomp are the same text as
    // the other tiers'; of the limits, cpu_time is 4 s and wall_time 10 s (below).
    static std::string policy_for(const std::string& tier, const std::string& text) {
        if (tier != "vm") return write_policy("escape-" + tier, text);
        std::string t = text;
        const std::string key = "\nread_only = [";
        auto at = t.find(key);
        EXPECT_NE(at, std::string::npos) << "the escape policy has no read_only line";
        if (at != std::string::npos) t.replace(at + 1, t.find('\n', at + 1) - at - 1, "read_only = [\"@ROOT@/vm-bin\"]");
        // And in the CPU time: the vm tier counts QEMU's host CPU, and under
        // TCG emulating the guest costs several times the job's own, so a
        // 30-process fork bomb could reach 2 s before its pids limit was
        // sampled (seen under ASan in CI). 4 s still ends cpu-spin within
        // the 8 s the check allows.
        // wall_time follows (10 s instead of 5 s) so the CPU limit, not the
        // wall clock, ends a spin that gets less than a whole core.
        const std::string cpu = "\ncpu_time = \"2s\"", wall = "\nwall_time = \"5s\"";
        if (auto c = t.find(cpu); c != std::string::npos) t.replace(c, cpu.size(), "\ncpu_time = \"4s\"");
        if (auto w = t.find(wall); w != std::string::npos) t.replace(w, wall.size(), "\nwall_time = \"10s\"");
        return write_policy("escape-" + tier, t);
    }

    // Boots the vm tier's first guest before the first vm attack and waits
    // until the warm pool holds one, so that no attack pays a cold boot
    // (which counts against its wall_time).
    void warm_vm() {
        if (s_vm_warmed) return;
        s_vm_warmed = true;
        const std::string pol = policy_for("vm", read_text(std::string(POLICY_DIR) + "/restrictive.toml"));
        const auto t0 = Clock::now();
        wait_for(
            [&] {
                std::string idf = new_id_file();
                Proc p = run_cmd({s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy", pol,
                                  "--tier", "vm", "--id-file", idf, "--", attacks("vm")},
                                 Opts{.cwd = s_root, .timeout_s = 60});
                int64_t id = read_id(idf);
                return id && show(id).value("sandbox", json::object()).value("warm", false);
            },
            90, 1.0);
        std::cerr << "[vm tier: a warm guest after " << since(t0) << " s]\n";
    }

    static inline std::string s_vm_unavailable;
    static inline bool s_vm_warmed = false;

    Outcome run_attack(const std::string& tier, const std::vector<std::string>& args, const Opts& o) {
        std::string idf = new_id_file();
        std::vector<std::string> argv = {s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run",
                                         "--policy",  policy_for(tier, read_text(std::string(POLICY_DIR) + "/restrictive.toml")),
                                         "--tier", tier, "--id-file", idf, "--", attacks(tier)};
        argv.insert(argv.end(), args.begin(), args.end());
        // MOAT_ESCAPE_POLICY=FILE runs the attacks under another policy (a
        // weaker one is a quick check that the suite notices escapes).
        if (const char* alt = getenv("MOAT_ESCAPE_POLICY"); alt && *alt)
            argv[5] = policy_for(tier, read_text(alt));
        Outcome r;
        Opts with_cwd = o;
        with_cwd.cwd = s_root;
        r.proc = run_cmd(argv, with_cwd);
        r.id = read_id(idf);
        if (r.id) {
            r.job = show(r.id);
            Proc e = ctl({"events", std::to_string(r.id), "--json", "--kind", "denial"});
            EXPECT_EQ(e.status, 0) << "moatctl events --kind denial: " << e.err;
            r.denials = json_lines(e.out);
        }
        return r;
    }
};

std::string describe(const Outcome& r) {
    std::string s = "moatctl status " + std::to_string(r.proc.status) + ", job " + std::to_string(r.id) + "\nstdout:\n" +
                    r.proc.out + "\nstderr:\n" + r.proc.err;
    if (!r.job.empty()) s += "\nshow: " + r.job.dump();
    return s;
}

std::string dump_denials(const std::vector<json>& ds) {
    std::string s;
    for (const auto& d : ds) s += d.dump() + "\n";
    return s.empty() ? "(none)\n" : s;
}

std::string kv_or(const std::string& line, const std::string& key, const std::string& dflt = "?") {
    auto v = kv(line, key);
    return v ? *v : dflt;
}

TEST_P(Escape, IsBlocked) {
    const Attack& a = std::get<0>(GetParam());
    const std::string& tier = std::get<1>(GetParam());
    Opts o;
    std::vector<std::string> args = {a.mode};
    std::string cell;  // the table's text for this case, when it passes

    // Per-attack set-up on the host.
    const std::string etc_hostname = read_text("/etc/hostname");
    std::string host_file, scratch, secret = "moat-escape-secret-" + std::to_string(getpid());
    std::unique_ptr<Bg> victim;
    std::unique_ptr<HostListener> listener;
    int master = -1, slave = -1, extra = -1;
    int host_forks_ok = -1;  // fork-bomb: host fork+exec results during the bomb
    struct Cleanup {
        std::function<void()> fn;
        ~Cleanup() { fn(); }
    } cleanup{[&] {
        std::error_code ec;
        if (!host_file.empty()) unlink(host_file.c_str());
        if (!scratch.empty()) fs::remove_all(scratch, ec);
        for (int fd : {master, slave, extra})
            if (fd >= 0) close(fd);
    }};
    if (tier == "vm") {
        if (!s_vm_unavailable.empty()) {
            record_cell(a.mode, tier, "not run: " + md_escape(s_vm_unavailable));
            GTEST_SKIP() << s_vm_unavailable;
        }
        warm_vm();
    }
    if (a.mode == "i386-abi" && tier != "vm" && !int80_available()) {
        record_cell(a.mode, tier, "not run on this machine: `int $0x80` faults (SIGSEGV) outside any sandbox too");
        GTEST_SKIP() << "int $0x80 is not delivered on this machine (SIGSEGV outside the sandbox too)";
    }
    if (a.mode == "read-host-file") {
        host_file = "/var/tmp/moat-escape-host-" + std::to_string(getpid()) + "-" + tier;
        write_text(host_file, "host secret\n", 0644);
        args.push_back(host_file);
    } else if (a.mode == "disk-fill") {
        scratch = rw() + "/disk-fill-" + tier;
        mkdir(scratch.c_str(), 0777);
        chmod(scratch.c_str(), 0777);
        // In a guest the read_write path is an empty tmpfs of its own: the
        // job fills the path itself, and the host's directory must stay empty.
        args.push_back(tier == "vm" ? rw() : scratch);
    } else if (a.mode == "kill-host") {
        victim = std::make_unique<Bg>(std::vector<std::string>{"/bin/sleep", "30"}, s_root);
        ASSERT_TRUE(victim->running());
        args.push_back(std::to_string(victim->pid()));
    } else if (a.mode == "net-connect") {
        listener = std::make_unique<HostListener>();
        ASSERT_GT(listener->port(), 0);
        args.push_back(std::to_string(listener->port()));
    } else if (a.mode == "tiocsti") {
        ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0) << strerror(errno);
        o.stdin_fd = slave;
    } else if (a.mode == "inherited-fds") {
        extra = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(extra, 0);
        o.extra_fd = extra;
    } else if (a.mode == "env-secret") {
        o.env = {"MOAT_SECRET=" + secret};
    } else if (a.mode == "fork-bomb") {
        // While the bomb holds every pid it could get, the host must still fork.
        o.on_output = [&](const std::string& out) {
            if (out.find("BLOCKED") == std::string::npos && out.find("ESCAPED") == std::string::npos) return false;
            host_forks_ok = 0;
            for (int i = 0; i < 3; ++i) {
                Proc t = run_cmd({"/bin/true"}, Opts{.timeout_s = 5});
                if (t.status == 0 && t.seconds < 2.0) ++host_forks_ok;
            }
            return true;
        };
    }

    Outcome r = run_attack(tier, args, o);
    if (slave >= 0) close(std::exchange(slave, -1));
    if (extra >= 0) close(std::exchange(extra, -1));
    Verdict v = verdict(r.proc.out);

    // Whatever else happens, an escape fails the case with the attack's output.
    if (v.escaped) {
        record_cell(a.mode, tier, "**ESCAPED**: " + md_escape(v.line));
        ADD_FAILURE() << "ESCAPE: attack " << a.mode << " in tier " << tier << "\n" << describe(r);
        return;
    }
    ASSERT_NE(r.proc.status, 125) << "the job could not be set up\n" << describe(r);
    ASSERT_GT(r.id, 0) << describe(r);

    switch (a.expect) {
    case Expect::CauseMemory:
        EXPECT_EQ(cause(r.job), "memory") << describe(r);
        EXPECT_EQ(r.proc.status, 128 + SIGKILL) << describe(r);
        EXPECT_LE(r.job["resources"].value("peak_memory_bytes", uint64_t(0)), uint64_t(72) << 20) << describe(r);
        cell = std::string(tier == "vm" ? "memory limit of the guest's job cgroup" : "memory limit") + ": cause `" +
               cause(r.job) + "` (SIGKILL)";
        break;
    case Expect::CauseCpu:
        EXPECT_EQ(cause(r.job), "cpu-time") << describe(r);
        EXPECT_GT(r.proc.status, 128) << describe(r);
        {
            // A vm job that found no warm guest waited for a boot first; the
            // limit must end the spin within 8 s of the job's start.
            const json info = r.job.value("sandbox", json::object());
            double boot_s = tier == "vm" && !info.value("warm", false) ? info.value("boot_ms", 0) / 1000.0 : 0;
            EXPECT_LT(r.proc.seconds - boot_s, 8.0) << describe(r);
        }
        cell = "CPU-time limit: cause `" + cause(r.job) + "`";
        break;
    case Expect::Blocked: {
        EXPECT_TRUE(v.blocked) << "the attack did not report BLOCKED\n" << describe(r);
        EXPECT_EQ(r.proc.status, 0) << describe(r);
        EXPECT_EQ(cause(r.job), "exited") << describe(r);
        if (!v.blocked) break;
        auto h = a.how.find(tier + ":" + v.how);
        if (h == a.how.end()) h = a.how.find(v.how);
        cell = h != a.how.end() ? h->second : v.how;
        for (auto [ph, key] : {std::pair{"%forked%", "forked"}, std::pair{"%mib%", "bytes"}}) {
            auto p = cell.find(ph);
            if (p == std::string::npos) continue;
            std::string val = kv_or(v.line, key);
            if (std::string(key) == "bytes" && val != "?") val = std::to_string(std::stoull(val) >> 20);
            cell.replace(p, strlen(ph), val);
        }
        break;
    }
    }

    // Every syscall the policy denies must be on record.
    bool all_recorded = !a.denials.empty();
    for (const auto& d : a.denials) {
        bool found = false;
        for (const auto& e : r.denials)
            if ((d.syscall.empty() || e.value("syscall", "") == d.syscall) && (d.arch.empty() || e.value("arch", "") == d.arch))
                found = true;
        if (!found) all_recorded = false;
        EXPECT_TRUE(found) << "no denial recorded for " << (d.syscall.empty() ? "arch " + d.arch : d.syscall)
                           << "; denials:\n" << dump_denials(r.denials) << describe(r);
    }
    if (!a.denials.empty()) {
        std::string names;
        for (const auto& d : a.denials)
            names += (names.empty() ? "" : ", ") + (d.syscall.empty() ? "with arch `" + d.arch + "`" : "`" + d.syscall + "`");
        cell = (a.note.empty() ? "" : a.note + " ") + "seccomp denial (" + v.how + "), recorded" +
               (all_recorded ? "" : " **NOT recorded**") +
               (a.denials.size() > 1 || !a.denials[0].arch.empty() ? " " + names : "");
    }

    // Attack-specific checks from the host.
    if (a.mode == "disk-fill" && tier == "vm") {
        // The guest wrote to its own tmpfs: nothing may reach the host's directory.
        std::error_code ec;
        EXPECT_FALSE(fs::exists(rw() + "/fill", ec)) << "the guest's file appeared on the host: " << rw() << "/fill";
        EXPECT_LE(std::stoull(kv_or(v.line, "bytes", "0")), uint64_t(8) << 20) << describe(r);
        EXPECT_EQ(v.how, "EFBIG") << describe(r);
    } else if (a.mode == "disk-fill") {
        std::error_code ec;
        auto size = fs::file_size(scratch + "/fill", ec);
        EXPECT_FALSE(ec) << scratch << "/fill: " << ec.message();
        EXPECT_LE(size, uint64_t(8) << 20) << "the file outgrew file_size";
        EXPECT_EQ(v.how, "EFBIG") << describe(r);
    } else if (a.mode == "write-etc") {
        // Checked on the host for every tier (in the vm tier the attack only
        // meets the guest's root): nothing created in /etc, /etc/hostname as it was.
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/etc", ec))
            EXPECT_NE(e.path().filename().string().rfind("moat-escape-", 0), 0u) << "created on the host: " << e.path();
        EXPECT_EQ(read_text("/etc/hostname"), etc_hostname) << "/etc/hostname changed on the host";
        cell += "; host `/etc` checked: nothing created, `/etc/hostname` unchanged";
    } else if (a.mode == "tmp-fill") {
        EXPECT_LE(std::stoull(kv_or(v.line, "bytes", "0")), uint64_t(8) << 20) << describe(r);
    } else if (a.mode == "kill-host") {
        EXPECT_TRUE(victim->running()) << "the host process was killed\n" << describe(r);
    } else if (a.mode == "net-connect") {
        EXPECT_EQ(listener->accepted(), 0) << "the host listener got a connection\n" << describe(r);
    } else if (a.mode == "tiocsti") {
        // The slave side's input queue must be empty: nothing was typed.
        int fl = fcntl(master, F_GETFL);
        fcntl(master, F_SETFL, fl | O_NONBLOCK);
        int s2 = open(ptsname(master), O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (s2 >= 0) {
            char buf[64];
            ssize_t n = read(s2, buf, sizeof buf);
            EXPECT_LE(n, 0) << "input was pushed into the terminal: " << std::string(buf, n > 0 ? size_t(n) : 0);
            close(s2);
        }
        // moatd relays stdio: the job must never hold the client's terminal.
        EXPECT_EQ(kv(v.line, "fd0_tty"), "no") << "the job's fd 0 is the client's pty\n" << describe(r);
    } else if (a.mode == "env-secret") {
        EXPECT_EQ(r.proc.out.find(secret), std::string::npos) << describe(r);
    } else if (a.mode == "fork-bomb") {
        EXPECT_EQ(v.how, "EAGAIN") << describe(r);
        EXPECT_EQ(host_forks_ok, 3) << "the host could not fork+exec while the bomb held its pids";
        EXPECT_LE(std::stoi(kv_or(v.line, "forked", "0")), 32) << describe(r);
        EXPECT_LE(r.job["resources"].value("peak_pids", 0), 32) << describe(r);
        EXPECT_EQ(r.job.value("state", ""), "finished") << describe(r);
        Proc e = ctl({"events", std::to_string(r.id), "--json", "--kind", "limit"});
        bool pids_limit = false;
        for (const auto& ev : json_lines(e.out))
            if (ev.value("limit", "") == "pids") pids_limit = true;
        EXPECT_TRUE(pids_limit) << "no `limit` event with limit \"pids\":\n" << e.out << e.err;
        if (pids_limit) cell += "; `limit` event recorded";
    }

    if (!HasFailure()) record_cell(a.mode, tier, md_escape(cell));
    else record_cell(a.mode, tier, "**FAILED** (see the test log): " + md_escape(v.line.empty() ? cause(r.job) : v.line));
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
    std::string s = std::get<0>(info.param).mode + "_" + std::get<1>(info.param);
    for (auto& c : s)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    return s;
}

INSTANTIATE_TEST_SUITE_P(AllTiers, Escape, ::testing::Combine(::testing::ValuesIn(kAttacks), ::testing::ValuesIn(kTiers)),
                         param_name);

}  // namespace
