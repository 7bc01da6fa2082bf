// Remote hosts (issue 16, item 6; docs/remote.md): moatctl reaches a moatd
// through a real sshd, the way an operator reaches another host. The suite
// starts its own moatd (fixture.h) and its own sshd: loopback only, a free
// port, host and client keys made here, nothing of the machine's ssh set-up
// used or changed. Skipped with a reason where /usr/sbin/sshd is missing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <set>

#include "fixture.h"

namespace {

class Remote : public Scenario {
protected:
    static void SetUpTestSuite() {
        Scenario::SetUpTestSuite();
        if (!s_skip.empty() || !s_fatal.empty()) return;
        if (access("/usr/sbin/sshd", X_OK) != 0) {
            s_skip = "no /usr/sbin/sshd (Debian's openssh-server; packaging/debian-packages.txt lists it)";
            return;
        }
        s_ssh_dir = s_root + "/ssh";
        mkdir(s_ssh_dir.c_str(), 0700);
        for (const char* k : {"host", "client"}) {
            Proc p = run_cmd({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", std::string("moat-test-") + k,
                              "-f", s_ssh_dir + "/" + k});
            if (p.status != 0) {
                s_fatal = "ssh-keygen: " + p.err;
                return;
            }
        }
        std::string pub = read_text(s_ssh_dir + "/client.pub");
        write_text(s_ssh_dir + "/authorized_keys", pub, 0600);
        // sshd's privilege separation directory (openssh-server's
        // tmpfiles.d makes it at boot; a fresh install without systemd may not have it).
        mkdir("/run/sshd", 0755);
        for (int attempt = 0; attempt < 5 && !s_sshd; ++attempt) start_sshd();
        if (!s_sshd) {
            s_fatal = "sshd did not start: " + read_text(s_ssh_dir + "/sshd.log");
            return;
        }
        write_text(s_ssh_dir + "/known_hosts",
                   "[127.0.0.1]:" + std::to_string(s_port) + " " + read_text(s_ssh_dir + "/host.pub"));
        write_text(s_ssh_dir + "/ssh_config",
                   "Host *\n"
                   "  IdentityFile " + s_ssh_dir + "/client\n"
                   "  IdentitiesOnly yes\n"
                   "  UserKnownHostsFile " + s_ssh_dir + "/known_hosts\n"
                   "  GlobalKnownHostsFile /dev/null\n"
                   "  StrictHostKeyChecking yes\n"
                   "  LogLevel ERROR\n",
                   0600);
        // MOAT_SSH names a program, not a shell line: the test's config goes
        // in through a wrapper.
        write_text(s_ssh_dir + "/ssh", "#!/bin/sh\nexec /usr/bin/ssh -F " + s_ssh_dir + "/ssh_config \"$@\"\n", 0755);
    }

    static void TearDownTestSuite() {
        delete s_sshd;
        s_sshd = nullptr;
        Scenario::TearDownTestSuite();
    }

    static int free_port() {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        int port = -1;
        if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        return port;
    }

    static void start_sshd() {
        s_port = free_port();
        write_text(s_ssh_dir + "/sshd_config",
                   "ListenAddress 127.0.0.1\n"
                   "Port " + std::to_string(s_port) + "\n"
                   "HostKey " + s_ssh_dir + "/host\n"
                   "AuthorizedKeysFile " + s_ssh_dir + "/authorized_keys\n"
                   "PidFile " + s_ssh_dir + "/sshd.pid\n"
                   "PubkeyAuthentication yes\n"
                   "PasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\n"
                   "PermitRootLogin prohibit-password\n"
                   "AllowUsers root\n"
                   "UsePAM no\n"
                   "StrictModes no\n"
                   "X11Forwarding no\n"
                   "AllowTcpForwarding no\n"
                   "LogLevel ERROR\n",
                   0600);
        auto* bg = new Bg({"/usr/sbin/sshd", "-D", "-e", "-f", s_ssh_dir + "/sshd_config"}, s_ssh_dir);
        bool up = wait_for(
            [&] {
                if (!bg->running()) return true;
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                sockaddr_in a{};
                a.sin_family = AF_INET;
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a.sin_port = htons(uint16_t(s_port));
                bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
                close(fd);
                return ok;
            },
            10);
        if (up && bg->running()) {
            s_sshd = bg;
        } else {
            write_text(s_ssh_dir + "/sshd.log", bg->err());
            delete bg;
        }
    }

    static std::string uri() { return "ssh://root@127.0.0.1:" + std::to_string(s_port) + s_daemon->socket(); }

    static Opts remote_opts(Opts o = {}) {
        o.env.push_back("MOAT_SSH=" + s_ssh_dir + "/ssh");
        o.env.push_back("MOAT_REMOTE_MOATCTL=" + s_root + "/bin/moatctl");
        return o;
    }

    // moatctl --connect ssh://... ARGS
    static Proc rctl(std::vector<std::string> args, Opts o = {}) {
        args.insert(args.begin(), {s_root + "/bin/moatctl", "--connect", uri()});
        o = remote_opts(std::move(o));
        if (o.cwd.empty()) o.cwd = s_root;
        return run_cmd(args, o);
    }

    static std::string plain_policy() {
        return write_policy("remote-plain",
                            "name = \"remote-plain\"\n"
                            "[limits]\nwall_time = \"120s\"\n"
                            "[filesystem]\n"
                            "read_only = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc/ld.so.cache\", \"@ROOT@\"]\n"
                            "tmpfs = []\n"
                            "[seccomp]\ndefault_action = \"errno:EPERM\"\n"
                            "allow = [\"@default\", \"@signal\", \"@file-system\"]\n");
    }

    // A `moatctl --connect ... run` of a long sleep in the background, once its
    // job runs (its id in *id); null (with a test failure) when it does not.
    static std::unique_ptr<Bg> remote_sleep_running(int64_t* id) {
        const std::string idf = new_id_file();
        auto c = std::make_unique<Bg>(std::vector<std::string>{s_root + "/bin/moatctl", "--connect", uri(), "run",
                                                               "--policy", plain_policy(), "--id-file", idf, "--",
                                                               "/bin/sleep", "100"},
                                      s_root, remote_opts([] {
                                          Opts o;
                                          o.cwd = s_root;
                                          return o;
                                      }()));
        json running = wait_running(*s_daemon, idf, 20);
        EXPECT_EQ(running.value("state", ""), "running") << running.dump() << c->err();
        if (running.value("state", "") != "running") return nullptr;
        *id = read_id(idf);
        return c;
    }

    static int fd_of(const std::string& path, const std::string& text) {
        write_text(path, text);
        return open(path.c_str(), O_RDONLY | O_CLOEXEC);
    }

    static inline Bg* s_sshd = nullptr;
    static inline std::string s_ssh_dir;
    static inline int s_port = 0;
};

TEST_F(Remote, RunOverSshRelaysStdioAndExitStatusAndTheJobIsListedThere) {
    // 2 MiB of stdin through the job and back: more than the relay's window
    // and the pipes' buffers, so the acknowledgements and back-pressure work.
    std::string big;
    for (int i = 0; big.size() < (2u << 20); ++i) big += "line " + std::to_string(i) + " of the remote relay test\n";
    Opts o;
    o.stdin_fd = fd_of(s_root + "/stdin-big", big);
    Proc p = rctl({"run", "--policy", plain_policy(), "--", "/bin/sh", "-c", "/bin/cat; echo to-stderr >&2; exit 7"}, o);
    close(o.stdin_fd);
    EXPECT_EQ(p.status, 7) << p.err;
    EXPECT_EQ(p.out.size(), big.size()) << p.err;
    EXPECT_TRUE(p.out == big) << "stdout differs from stdin";
    EXPECT_NE(p.err.find("to-stderr"), std::string::npos) << p.err;

    // The far host's list has it, and the local socket sees the same record.
    Proc jobs = rctl({"jobs", "--json"});
    ASSERT_EQ(jobs.status, 0) << jobs.err;
    json arr = json::parse(jobs.out, nullptr, false);
    ASSERT_TRUE(arr.is_array() && !arr.empty()) << jobs.out;
    int64_t id = arr[0]["id"].get<int64_t>();
    Proc show_r = rctl({"show", std::to_string(id), "--json"});
    ASSERT_EQ(show_r.status, 0) << show_r.err;
    json j = json::parse(show_r.out, nullptr, false);
    EXPECT_EQ(j.value("exit_code", -1), 7) << show_r.out;
    EXPECT_EQ(j["termination"].value("cause", ""), "exited");
    EXPECT_EQ(j, show(id)) << "over ssh and locally, show differs";
}

TEST_F(Remote, ADenialOfARemoteJobIsRecordedAndItsEventsReadOverSsh) {
    std::string pol = write_policy("remote-mkdir", read_text(DEMO_POLICY));
    Proc p = rctl({"run", "--policy", pol, "--", "/bin/mkdir", "/tmp/moat-remote-denied"});
    EXPECT_EQ(p.status, 1) << p.err;
    EXPECT_NE(p.err.find("Operation not permitted"), std::string::npos) << p.err;
    json arr = json::parse(rctl({"jobs", "--json", "--limit", "1"}).out, nullptr, false);
    ASSERT_TRUE(arr.is_array() && arr.size() == 1);
    int64_t id = arr[0]["id"].get<int64_t>();
    Proc ev = rctl({"events", std::to_string(id), "--json", "--kind", "denial"});
    ASSERT_EQ(ev.status, 0) << ev.err;
    auto ds = json_lines(ev.out);
    ASSERT_FALSE(ds.empty()) << ev.out;
    bool named = false;
    for (const auto& d : ds)
        named |= d.value("syscall", "") == "mkdir" && d.value("decoded", json()).is_string() &&
                 d["decoded"].get<std::string>().find("/tmp/moat-remote-denied") != std::string::npos;
    EXPECT_TRUE(named) << ev.out;
    // `follow` streams over ssh as well and ends with the job.
    Proc f = rctl({"events", std::to_string(id), "--follow", "--json"});
    EXPECT_EQ(f.status, 0) << f.err;
    EXPECT_GE(json_lines(f.out).size(), ds.size());
}

TEST_F(Remote, AnInputIsOpenedOnTheFarHostByTheProxyAndAMissingOneIsASetupError) {
    const std::string in = s_root + "/remote-input.txt";
    write_text(in, "remote input bytes\n", 0644);
    Proc p = rctl({"run", "--policy", plain_policy(), "--input", in, "--", "/bin/cat", in});
    EXPECT_EQ(p.status, 0) << p.err;
    EXPECT_EQ(p.out, "remote input bytes\n");
    json arr = json::parse(rctl({"jobs", "--json", "--limit", "1"}).out, nullptr, false);
    ASSERT_TRUE(arr.is_array() && arr.size() == 1);
    json j = show(arr[0]["id"].get<int64_t>());
    ASSERT_TRUE(j["recording"]["inputs"].is_array() && j["recording"]["inputs"].size() == 1) << j.dump();
    EXPECT_EQ(j["recording"]["inputs"][0].value("host", ""), in) << j.dump();
    EXPECT_TRUE(j["recording"]["inputs"][0].value("sha256", json()).is_string()) << "not snapshotted: " << j.dump();

    Proc miss = rctl({"run", "--policy", plain_policy(), "--input", s_root + "/no-such-input", "--", "/bin/true"});
    EXPECT_EQ(miss.status, 125);
    EXPECT_NE(miss.err.find("no-such-input"), std::string::npos) << miss.err;
    EXPECT_NE(miss.err.find("No such file"), std::string::npos) << miss.err;
}

TEST_F(Remote, InterruptStopsTheRemoteJobAndAKilledClientEndsIt) {
    // Ctrl-C: moatctl sends `stop` over the stream and waits for the record.
    int64_t id = 0;
    auto c = remote_sleep_running(&id);
    ASSERT_TRUE(c);
    kill(c->pid(), SIGINT);
    EXPECT_EQ(c->wait(20), 128 + SIGKILL) << c->err();
    EXPECT_EQ(cause(show(id)), "stopped") << show(id).dump();

    // SIGKILL: ssh sees EOF, the proxy's connection closes, moatd stops the
    // job as for a local client that disconnects.
    c = remote_sleep_running(&id);
    ASSERT_TRUE(c);
    kill(c->pid(), SIGKILL);
    c->wait(5);
    json j;
    ASSERT_TRUE(wait_for(
        [&] {
            j = show(id);
            return j.value("state", "") == "finished";
        },
        20, 0.1))
        << "the remote job outlived its client: " << j.dump();
    EXPECT_EQ(cause(j), "stopped") << j.dump();
    EXPECT_EQ(detail(j), "the client that ran it disconnected") << j.dump();
}

// moatctl started with its stdout closed (`>&-`): the next fd it opens (its
// connection to moatd, or the ssh stream) must not take number 1, or the job's
// output would be written into that connection as requests with the
// operator's role. A job prints a `stop` frame for another running job; the
// other job must survive, locally and over ssh.
TEST_F(Remote, AJobCannotSpeakForItsClientWhenTheClientsStdoutIsClosed) {
    std::string idf = new_id_file();
    auto victim = std::make_unique<Bg>(std::vector<std::string>{s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run",
                                                                "--policy", plain_policy(), "--id-file", idf, "--",
                                                                "/bin/sleep", "100"},
                                       s_root);
    json running = wait_running(*s_daemon, idf, 20);
    ASSERT_EQ(running.value("state", ""), "running") << victim->err();
    const int64_t id = read_id(idf);
    const std::string payload = json{{"op", "stop"}, {"job", id}}.dump();
    std::string frame;
    for (int shift : {24, 16, 8, 0}) frame += char((payload.size() >> shift) & 0xff);
    frame += payload;
    const std::string frame_file = s_root + "/stop-frame";
    write_text(frame_file, frame + frame + frame, 0644);
    const std::string ctl_bin = s_root + "/bin/moatctl";
    for (const std::string& how : {"--socket " + s_daemon->socket(), "--connect " + uri()}) {
        Opts o = remote_opts();
        o.cwd = s_root;
        Proc p = run_cmd({"/bin/sh", "-c",
                          "exec " + ctl_bin + " " + how + " run --policy " + plain_policy() + " -- /bin/cat " + frame_file +
                              " >&-"},
                         o);
        EXPECT_EQ(p.status, 0) << how << ": " << p.err;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        EXPECT_EQ(show(id).value("state", ""), "running") << how << ": the job's output stopped job " << id;
    }
    kill(victim->pid(), SIGINT);
    victim->wait(20);
}

// The proxy connects as the user it runs as: the far host's roles decide.
// sshd cannot log in as a user without a shell (uid 65534 here), so this one
// runs the far side through a stand-in for ssh that starts the same remote
// command line locally, as that user.
TEST_F(Remote, TheProxysOwnUserDecidesTheRoleOnTheFarHost) {
    const std::string fake = s_root + "/fake-ssh";
    write_text(fake, "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift 2\nexec /bin/sh -c \"$1\"\n", 0755);
    Opts o;
    o.env = {"MOAT_SSH=" + fake, "MOAT_REMOTE_MOATCTL=" + s_root + "/bin/moatctl"};
    o.as = Creds{65534, 65534, {}};
    o.cwd = "/";
    Proc p = run_cmd({s_root + "/bin/moatctl", "--connect", "ssh://nobody@far" + s_daemon->socket(), "jobs"}, o);
    EXPECT_NE(p.status, 0);
    EXPECT_NE(p.err.find("65534"), std::string::npos) << "the refusal should name the proxy's uid: " << p.err;

    // A proxy that cannot reach moatd says so, naming the host it ran on.
    o.as.reset();
    Proc q = run_cmd({s_root + "/bin/moatctl", "--connect", "ssh://far/nonexistent/moatd.sock", "jobs"}, o);
    EXPECT_EQ(q.status, 1);
    EXPECT_NE(q.err.find("moatctl proxy on"), std::string::npos) << q.err;
    EXPECT_NE(q.err.find("/nonexistent/moatd.sock"), std::string::npos) << q.err;
}

// moat-console with the local daemon and the same daemon over ssh (two
// hosts as far as the console knows): the all-hosts table has each host's
// jobs with its name in the Host column. Then the connection saved in
// QSettings brings the hosts window back without --connect.
TEST_F(Remote, ConsoleShowsTheJobsOfTheLocalAndTheSshHostWithAHostColumn) {
#ifndef CONSOLE_PATH
    GTEST_SKIP() << "moat-console is not built (-DMOAT_BUILD_GUI=OFF)";
#else
    Proc r = rctl({"run", "--policy", plain_policy(), "--", "/bin/true"});
    ASSERT_EQ(r.status, 0) << r.err;
    json jobs = json::parse(rctl({"jobs", "--json"}).out, nullptr, false);
    ASSERT_TRUE(jobs.is_array() && !jobs.empty());
    const std::string cfg = s_root + "/console-config";
    mkdir(cfg.c_str(), 0700);
    auto console = [&](std::vector<std::string> extra, const std::string& dump) {
        Opts o = remote_opts();
        o.env.push_back("QT_QPA_PLATFORM=offscreen");
        o.env.push_back("XDG_CONFIG_HOME=" + cfg);
        o.env.push_back("XDG_RUNTIME_DIR=" + cfg);
        o.timeout_s = 60;
        std::vector<std::string> argv = {CONSOLE_PATH, "--socket", s_daemon->socket()};
        argv.insert(argv.end(), extra.begin(), extra.end());
        argv.insert(argv.end(), {"--show-view", "hosts", "--screenshot", s_root + "/fleet.png", "--dump-hosts", dump,
                                 "--screenshot-delay", "5000"});
        Proc p = run_cmd(argv, o);
        EXPECT_EQ(p.status, 0) << p.err;
        return json::parse(read_text(dump), nullptr, false);
    };
    const std::string remote_name = "root@127.0.0.1:" + std::to_string(s_port);
    auto check = [&](const json& d) {
        ASSERT_TRUE(d.is_object()) << "no --dump-hosts output";
        ASSERT_EQ(d["hosts"].size(), 2u) << d.dump(2);
        EXPECT_EQ(d["hosts"][0].value("name", ""), "local");
        EXPECT_EQ(d["hosts"][1].value("name", ""), remote_name);
        for (const auto& h : d["hosts"]) {
            EXPECT_EQ(h.value("state", ""), "connected") << h.dump();
            EXPECT_EQ(h.value("role", ""), "admin") << h.dump();
        }
        std::set<int64_t> local_ids, remote_ids, want;
        for (const auto& j : jobs) want.insert(j["id"].get<int64_t>());
        for (const auto& row : d["all_jobs"])
            (row.value("host", "") == "local" ? local_ids : remote_ids).insert(row["id"].get<int64_t>());
        EXPECT_EQ(local_ids, want) << d.dump(2);
        EXPECT_EQ(remote_ids, want) << "the ssh host's rows (Host column " << remote_name << ")\n" << d.dump(2);
    };
    check(console({"--connect", uri()}, s_root + "/hosts1.json"));

    // Saved connections (Hosts > Connect to Host... writes this key).
    mkdir((cfg + "/moat").c_str(), 0700);
    write_text(cfg + "/moat/moat-console.conf", "[General]\nconnections=" + uri() + "\n");
    check(console({}, s_root + "/hosts2.json"));
#endif
}

TEST(RemoteAddress, SshUrisAreParsedStrictlyAndHostileOnesRefused) {
    // Checked through moatctl's option validation (no daemon needed).
    for (const char* bad : {"ssh://-oProxyCommand=x", "ssh://host:0", "ssh://host:99999", "ssh://us'er@host",
                            "ssh://host/so;cket", "ssh://", "http://host", "ssh://host:"}) {
        Proc p = run_cmd({MOATCTL_PATH, "--connect", bad, "jobs"});
        EXPECT_EQ(p.status, 2) << bad << ": " << p.err;
    }
}

}  // namespace
