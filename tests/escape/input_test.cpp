// Issue 11, items 1 and 6: `--input` files cross the trust boundary as file
// descriptors the client opened with its own rights; moatd never opens a
// client-named path with root's. Each case below is an attack that worked
// before (a snapshot of /etc/shadow recorded for a non-root admin, a symlink
// followed as root, a path swapped after the client's check) or a stall of
// moatd's loop while inputs were copied.
//
// Runs against a real moatd and moatctl (tests/scenario/fixture.h) in every
// tier, like the rest of the escape suite; part of escape_test.
#include <grp.h>
#include <sys/socket.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fixture.h"
#pragma GCC diagnostic pop

namespace {

const std::vector<std::string> kInputTiers = {"seccomp", "container"};

std::string sha256_of(const std::string& path) {
    Proc p = run_cmd({"/usr/bin/sha256sum", path});
    return p.status == 0 ? p.out.substr(0, 64) : "";
}

// Sends a `run` and collects every answer until "finished" or an error.
std::vector<json> raw_run(const std::string& sock, const json& req, const std::vector<int>& extra_fds) {
    std::vector<json> out;
    RawConn c(sock);
    if (!c.ok()) return {{{"client_error", "connect"}}};
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    std::vector<int> fds = {null, null, null};
    fds.insert(fds.end(), extra_fds.begin(), extra_fds.end());
    const bool sent = c.send_frame(req.dump(), fds);
    close(null);
    if (!sent) return {{{"client_error", "send"}}};
    while (out.empty() || (out.back().value("ok", false) && !out.back().contains("finished"))) {
        auto f = c.recv_frame(30);
        json m = f ? json::parse(*f, nullptr, false) : json();
        if (!m.is_object()) {
            out.push_back({{"client_error", "no answer"}});
            break;
        }
        out.push_back(m);
    }
    return out;
}

class Inputs : public Scenario {
protected:
    static std::string restrictive() {
        return write_policy("inputs-restrictive", read_text(std::string(POLICY_DIR) + "/restrictive.toml"));
    }
    // A world-readable directory under the suite's root for this test's files.
    static std::string dir(const std::string& name) {
        std::string d = s_root + "/" + name;
        mkdir(d.c_str(), 0755);
        chmod(d.c_str(), 0755);
        return d;
    }
    static bool blob_exists(const std::string& sha) {
        return !sha.empty() && fs::exists(s_daemon->state() + "/artifacts/blobs/" + sha);
    }
    static json recording_input(int64_t id) {
        json rec = show(id).value("recording", json::object());
        if (!rec.contains("inputs") || !rec["inputs"].is_array() || rec["inputs"].empty()) return json::object();
        return rec["inputs"][0];
    }
};

// The normal path: the file the operator named is what the job reads, and the
// record says who opened it and what was snapshotted.
TEST_F(Inputs, OperatorInputIsTheFileTheClientOpenedAndIsRecordedAsSuch) {
    std::string d = dir("in-ok");
    std::string f = d + "/in.txt";
    write_text(f, "moat-input-payload-1\n", 0644);
    const std::string sha = sha256_of(f);
    for (const auto& tier : kInputTiers) {
        SCOPED_TRACE(tier);
        const std::string inside = tier == "container" ? "/data/in.txt" : f;
        std::string spec = tier == "container" ? f + ":/data/in.txt" : f;
        JobRun r = run_job(*s_daemon, restrictive(), {"/usr/bin/cat", inside}, {},
                           {"--tier", tier, "--input", spec});
        ASSERT_EQ(r.proc.status, 0) << describe(r);
        EXPECT_EQ(r.proc.out, "moat-input-payload-1\n") << describe(r);
        json in = recording_input(r.id);
        EXPECT_EQ(in.value("host", ""), f) << in.dump();
        EXPECT_EQ(in.value("opened_by", ""), "client") << in.dump();
        EXPECT_EQ(in.value("client_uid", -1), 0) << in.dump();
        EXPECT_EQ(in.value("sha256", ""), sha) << in.dump();
        EXPECT_EQ(in.value("bytes", 0), 21) << in.dump();
    }
}

// Before: moatctl resolved the link (realpath) and moatd opened the target as
// root, so /etc/shadow was snapshotted into the artifact store.
TEST_F(Inputs, SymlinkedInputIsRefusedNotFollowed) {
    std::string d = dir("in-link");
    std::string link = d + "/upload.png";
    unlink(link.c_str());
    ASSERT_EQ(symlink("/etc/shadow", link.c_str()), 0);
    // A symlink in the middle of the path: allowed by default, refused with
    // --input-no-symlinks.
    std::string real_dir = dir("in-link-real");
    write_text(real_dir + "/f.txt", "through-a-dir-link\n", 0644);
    std::string dir_link = d + "/dirlink";
    unlink(dir_link.c_str());
    ASSERT_EQ(symlink(real_dir.c_str(), dir_link.c_str()), 0);
    const std::string shadow_sha = sha256_of("/etc/shadow");
    ASSERT_FALSE(shadow_sha.empty());

    for (const auto& tier : kInputTiers) {
        SCOPED_TRACE(tier);
        JobRun r = run_job(*s_daemon, restrictive(), {"/usr/bin/true"}, {}, {"--tier", tier, "--input", link});
        EXPECT_EQ(r.proc.status, 125) << describe(r);
        EXPECT_NE(r.proc.err.find("symlink"), std::string::npos) << describe(r);
        EXPECT_FALSE(blob_exists(shadow_sha)) << "/etc/shadow was snapshotted";

        JobRun strict = run_job(*s_daemon, restrictive(), {"/usr/bin/true"}, {},
                                {"--tier", tier, "--input-no-symlinks", "--input", dir_link + "/f.txt"});
        EXPECT_EQ(strict.proc.status, 125) << describe(strict);
        EXPECT_NE(strict.proc.err.find("symlink"), std::string::npos) << describe(strict);
    }
    // Without the flag a directory link on the way is fine: the file itself is
    // opened, and its real path is what the job is granted.
    JobRun ok = run_job(*s_daemon, restrictive(), {"/usr/bin/cat", real_dir + "/f.txt"}, {},
                        {"--tier", "seccomp", "--input", dir_link + "/f.txt"});
    EXPECT_EQ(ok.proc.status, 0) << describe(ok);
    EXPECT_EQ(ok.proc.out, "through-a-dir-link\n") << describe(ok);
}

// Before: a member of moat-admin who is not root named /etc/shadow in the raw
// protocol and moatd snapshotted it as root (and a container replay handed it
// to the job). Now the path is opened with the client's credentials.
TEST_F(Inputs, NonRootAdminCannotHaveMoatdReadAFileItCannotRead) {
    if (!getgrnam("moat-admin")) {
        Proc g = run_cmd({"/usr/sbin/groupadd", "--system", "moat-admin"});
        ASSERT_TRUE(g.status == 0 && getgrnam("moat-admin")) << "groupadd moat-admin: " << g.err;
    }
    const gid_t admin = getgrnam("moat-admin")->gr_gid;
    const std::string shadow_sha = sha256_of("/etc/shadow");
    const std::string sock = s_daemon->socket();
    const std::string pol = read_text(restrictive());
    for (const auto& tier : kInputTiers) {
        SCOPED_TRACE(tier);
        json req = {{"op", "run"},       {"policy_toml", pol},         {"argv", {"/usr/bin/true"}},
                    {"cwd", "/"},        {"tier", tier},
                    {"inputs", {{{"host", "/etc/shadow"}, {"sandbox", tier == "container" ? "/data/s" : "/etc/shadow"}}}}};
        json got = as_user({61234, 61234, {admin}}, [&] { return json(raw_run(sock, req, {})); });
        ASSERT_TRUE(got.is_array() && !got.empty()) << got.dump();
        const json& last = got.back();
        ASSERT_TRUE(last.contains("finished")) << got.dump();
        const json& fin = last["finished"];
        EXPECT_EQ(fin["termination"].value("cause", ""), "setup-failed") << fin.dump();
        std::string why = fin["termination"].value("detail", "");
        EXPECT_NE(why.find("/etc/shadow"), std::string::npos) << why;
        EXPECT_NE(why.find("Permission denied"), std::string::npos) << why;
        EXPECT_NE(why.find("uid 61234"), std::string::npos) << why;
        EXPECT_FALSE(blob_exists(shadow_sha)) << "/etc/shadow was snapshotted for uid 61234";
    }
    // Control: the same request for a file that uid may read works.
    std::string d = dir("in-admin");
    write_text(d + "/ok.txt", "readable-by-all\n", 0644);
    json req = {{"op", "run"},   {"policy_toml", pol}, {"argv", {"/usr/bin/cat", d + "/ok.txt"}},
                {"cwd", "/"},    {"tier", "seccomp"},  {"inputs", {{{"host", d + "/ok.txt"}}}}};
    json got = as_user({61234, 61234, {admin}}, [&] { return json(raw_run(sock, req, {})); });
    ASSERT_TRUE(got.is_array() && got.back().contains("finished")) << got.dump();
    EXPECT_EQ(got.back()["finished"]["termination"].value("cause", ""), "exited") << got.dump();
    int64_t id = got.back()["finished"].value("id", int64_t(0));
    json in = recording_input(id);
    EXPECT_EQ(in.value("client_uid", -1), 61234) << in.dump();
    EXPECT_NE(in.value("opened_by", "").find("uid 61234"), std::string::npos) << in.dump();
    EXPECT_EQ(in.value("sha256", ""), sha256_of(d + "/ok.txt")) << in.dump();
}

// Before: moatd re-opened the path after the client's check, so a user who
// controls the directory swapped the file for a link to /etc/shadow in
// between. Now the job is granted the inode behind the client's fd only.
TEST_F(Inputs, PathSwappedAfterTheClientsOpenGrantsOnlyWhatWasOpened) {
    const std::string shadow_sha = sha256_of("/etc/shadow");
    const std::string pol = read_text(restrictive());
    for (const auto& tier : kInputTiers) {
        SCOPED_TRACE(tier);
        std::string d = dir("in-swap-" + tier);
        std::string f = d + "/in.txt";
        unlink(f.c_str());
        write_text(f, "public-bytes\n", 0644);
        const std::string public_sha = sha256_of(f);
        int fd = open(f.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        // The swap, between the client's open and moatd's use.
        std::string tmp = d + "/swap";
        unlink(tmp.c_str());
        ASSERT_EQ(symlink("/etc/shadow", tmp.c_str()), 0);
        ASSERT_EQ(rename(tmp.c_str(), f.c_str()), 0);
        const bool ctr = tier == "container";
        json req = {{"op", "run"},
                    {"policy_toml", pol},
                    {"argv", {"/usr/bin/cat", ctr ? "/data/in.txt" : f}},
                    {"cwd", "/"},
                    {"tier", tier},
                    {"inputs", {{{"host", f}, {"sandbox", ctr ? "/data/in.txt" : f}, {"fd", true}}}}};
        std::vector<json> got = raw_run(s_daemon->socket(), req, {fd});
        close(fd);
        ASSERT_FALSE(got.empty());
        ASSERT_TRUE(got.back().contains("finished")) << json(got).dump();
        const json& fin = got.back()["finished"];
        if (ctr) {
            // moat-init looks the path up again and finds a link, not the file.
            EXPECT_EQ(fin["termination"].value("cause", ""), "setup-failed") << fin.dump();
            EXPECT_NE(fin["termination"].value("detail", "").find("changed after the client's open"),
                      std::string::npos)
                << fin.dump();
        } else {
            // The job follows the link and is refused: /etc/shadow was never granted.
            EXPECT_EQ(fin["termination"].value("cause", ""), "exited") << fin.dump();
            EXPECT_EQ(fin.value("exit_code", -1), 1) << fin.dump();
            Proc out = ctl({"output", std::to_string(fin.value("id", int64_t(0)))});
            EXPECT_EQ(out.out, "") << "the job read something through the swapped path";
            json in = recording_input(fin.value("id", int64_t(0)));
            EXPECT_EQ(in.value("sha256", ""), public_sha) << "the snapshot is not what the client opened: "
                                                          << in.dump();
        }
        EXPECT_FALSE(blob_exists(shadow_sha)) << "/etc/shadow was snapshotted";
    }
}

// Item 6: inputs are copied off moatd's loop. While a job's inputs (hard links
// to one large sparse file) are being snapshotted, moatd answers other clients
// and a stop ends the job before it starts. Before, the copy ran on the loop:
// the job id came only after every copy, so the stop found a started job.
TEST_F(Inputs, StopWhileInputsAreCopiedEndsTheJobAndTheLoopStaysFree) {
    std::string d = dir("in-sparse");
    std::string big = d + "/big.bin";
    unlink(big.c_str());
    {
        int fd = open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(ftruncate(fd, (1ll << 30) - 4096), 0);  // just under --record-input-max's 1 GiB default
        close(fd);
    }
    std::vector<std::string> opts = {"--tier", "seccomp"};
    for (int i = 0; i < 6; ++i) {
        std::string l = d + "/link" + std::to_string(i);
        unlink(l.c_str());
        ASSERT_EQ(link(big.c_str(), l.c_str()), 0);
        opts.push_back("--input");
        opts.push_back(l);
    }
    std::string idf = new_id_file();
    std::vector<std::string> argv = {s_root + "/bin/moatctl", "--socket", s_daemon->socket(), "run", "--policy",
                                     restrictive(), "--id-file", idf};
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), {"--", "/usr/bin/true"});
    Opts o;
    o.cwd = s_root;
    auto t0 = Clock::now();
    Bg run(argv, s_root, o);
    ASSERT_TRUE(wait_for([&] { return read_id(idf) != 0; }, 20)) << run.err();
    const int64_t id = read_id(idf);
    const double id_after = since(t0);

    Proc jobs = ctl({"jobs", "--json"});
    ASSERT_EQ(jobs.status, 0) << jobs.err;
    Proc stop = ctl({"stop", std::to_string(id)});
    EXPECT_EQ(stop.status, 0) << stop.err;
    int st = run.wait(30);
    EXPECT_EQ(st, 125) << run.err();
    json j = show(id);
    EXPECT_EQ(cause(j), "stopped") << j.dump();
    EXPECT_NE(detail(j).find("while its inputs were being prepared"), std::string::npos)
        << "the job id came " << id_after << " s after the request; " << j.dump();
    EXPECT_TRUE(j["pid"].is_null() || j.value("pid", 0) <= 0) << "the job was started: " << j.dump();
    // The cancelled snapshot left nothing behind.
    std::error_code ec;
    size_t leftovers = 0;
    for (const auto& e : fs::directory_iterator(s_daemon->state() + "/artifacts/tmp", ec)) {
        (void)e;
        ++leftovers;
    }
    EXPECT_EQ(leftovers, 0u);
    // moatd is serving and can run the next job.
    JobRun next = run_job(*s_daemon, restrictive(), {"/usr/bin/true"}, {}, {"--tier", "seccomp"});
    EXPECT_EQ(next.proc.status, 0) << describe(next);
}

}  // namespace
