// moatctl: the operator's and scripts' client (contract sections 2, 3, 5).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "moat/common/fd.h"
#include "moat/common/paths.h"
#include "moat/common/signals.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/ipc/client.h"
#include "moat/ipc/frame.h"
#include "moat/ipc/input.h"
#include "moat/ipc/proxy.h"
#include "moat/ipc/remote.h"
#include "moat/ipc/run_end.h"
#include "moat/ipc/incident_copy.h"  // kDefaultDatabase (light: only the constant is used)
#include "moat/policy/parser.h"       // kMaxPolicyBytes (likewise)
#if !MOATCTL_LIGHT
#include "moat/learn/replay.h"
#include "moat/policy/diff.h"
#include "moat/policy/lint.h"
#include "moat/policy/k8s.h"
#include "moat/policy/oci.h"
#include "moat/store/backup.h"
#include "moat/common/base64.h"
#endif

extern char** environ;

namespace {

using nlohmann::json;
constexpr int kExitSetup = moat::ipc::kRunSetupFailed;

// An answer's JSON lacking a key or holding the wrong type (a broken or
// hostile far host) throws from nlohmann::json (cmake/json_assert.h); the
// commands let it reach main(), which says so and exits with the command's
// failure status.
int g_fail_status = 1;

volatile sig_atomic_t g_signal = 0;
int g_sigpipe[2] = {-1, -1};
void on_signal(int sig) {
    g_signal = sig;
    char b = 1;
    (void)!write(g_sigpipe[1], &b, 1);
}

// Text for a human's terminal: moat/ipc/run_end.h says why and how.
using moat::ipc::lines_for_terminal;

int die(const std::string& msg, int code = 1) {
    fprintf(stderr, "moatctl: %s\n", lines_for_terminal(msg).c_str());
    return code;
}

std::optional<std::string> read_file(const std::string& path, std::string* err,
                                     size_t limit = moat::policy::kMaxPolicyBytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        *err = path + ": " + strerror(errno);
        return std::nullopt;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (s.size() > limit) {
        *err = path + ": larger than " + std::to_string(limit >> 20) + " MiB";
        return std::nullopt;
    }
    return s;
}

// A field for display (escaped for the terminal), or dflt when missing/null.
std::string str_or(const json& j, const char* key, const char* dflt = "-") {
    return moat::ipc::field_for_terminal(j, key, dflt);
}

// A JSON string array (argv) joined with spaces, each element escaped.
std::string joined_for_terminal(const json& arr) {
    std::string out;
    if (!arr.is_array()) return out;
    for (const auto& a : arr)
        out += (out.empty() ? "" : " ") + (a.is_string() ? moat::for_terminal(a.get_ref<const std::string&>()) : a.dump());
    return out;
}

std::string human_size(uint64_t b) {
    char buf[32];
    if (b >= (1ULL << 30)) snprintf(buf, sizeof buf, "%.1fGiB", double(b) / double(1ULL << 30));
    else if (b >= (1ULL << 20)) snprintf(buf, sizeof buf, "%.1fMiB", double(b) / double(1ULL << 20));
    else if (b >= 1024) snprintf(buf, sizeof buf, "%.1fKiB", double(b) / 1024.0);
    else snprintf(buf, sizeof buf, "%lluB", (unsigned long long)b);
    return buf;
}

std::string duration_of(const json& job) {
    return str_or(job, "ended_at") == "-" ? "running" : "";
}

// "850 ms", "2.41 s".
std::string boot_time(const json& ms) {
    if (!ms.is_number_integer()) return "-";
    const int64_t v = ms.get<int64_t>();
    char buf[32];
    if (v < 1000) snprintf(buf, sizeof buf, "%lld ms", (long long)v);
    else snprintf(buf, sizeof buf, "%.2f s", double(v) / 1000.0);
    return buf;
}

// A vm-tier job's sandbox (docs/vm.md): the accelerator and why, the boot
// (a warm guest from the pool or one booted for the job), the guest kernel
// and memory, the root image. Strings the guest reported (its kernel
// release) are escaped like every other job-controlled text; a field the
// record does not have yet (the guest has not booted) prints as "-".
void print_vm_sandbox(json j, json s) {
    printf("  sandbox:     uid %s, cgroup %s, %s as uid %s\n", str_or(j, "uid").c_str(),
           str_or(s, "cgroup_version").c_str(), str_or(s, "vmm", "qemu microvm").c_str(), str_or(s, "vmm_uid").c_str());
    std::string accel = str_or(s, "accelerator", str_or(j, "accelerator").c_str());
    if (s.contains("accelerator_reason") && s["accelerator_reason"].is_string())
        accel += " (" + str_or(s, "accelerator_reason") + ")";
    printf("  accelerator: %s\n", accel.c_str());
    std::string boot = boot_time(s.value("boot_ms", json()));
    if (auto w = s.find("warm"); w != s.end() && w->is_boolean())
        boot += *w ? ", warm (a booted guest from the pool)" : ", cold (booted for this job)";
    printf("  boot:        %s\n", boot.c_str());
    std::string kernel = str_or(s, "guest_kernel");
    if (s.contains("guest_kernel_package") && s["guest_kernel_package"].is_string())
        kernel += " (" + str_or(s, "guest_kernel_package") + ")";
    if (auto r = s.find("guest_kernel_reported");
        r != s.end() && r->is_string() && *r != s.value("guest_kernel", json()))
        kernel += ", the guest reports " + str_or(s, "guest_kernel_reported");
    printf("  guest:       kernel %s, memory %s\n", kernel.c_str(),
           s.contains("guest_memory_bytes") && s["guest_memory_bytes"].is_number_integer()
               ? human_size(s["guest_memory_bytes"].get<uint64_t>()).c_str()
               : "-");
    if (auto img = s.find("root_image"); img != s.end() && img->is_object()) {
        const json& i = *img;
        printf("  root image:  %s, %s entries, %s (sha256 %s)\n",
               i.value("bytes", json()).is_number_integer() ? human_size(i["bytes"].get<uint64_t>()).c_str() : "-",
               str_or(i, "entries").c_str(),
               i.value("cached", false) ? "cached" : "built for this job", str_or(i, "sha256").substr(0, 12).c_str());
    }
}

// What replay will have of the job: stdin, inputs, and every note that says
// what was not recorded or not delivered (the same as `show --json`'s recording).
void print_recording(const json& rec) {
    if (!rec.is_object() || rec.empty()) return;
    auto line = [](const char* key, const std::string& text) {
        printf("  %-12s %s\n", key, moat::for_terminal(text).c_str());
    };
    if (rec.contains("evicted") && rec["evicted"].is_string())
        line("recording:", "removed (" + rec["evicted"].get<std::string>() + "): the job cannot be replayed");
    const json in = rec.value("stdin", json());
    if (in.is_object()) {
        std::string t = in["sha256"].is_string() ? human_size(in.value("bytes", 0ULL)) + " recorded" : "not recorded";
        if (in.value("truncated", false)) t += " (truncated at the recording limit)";
        if (in.contains("complete") && !in.value("complete", true)) t += " (the job closed stdin before its end)";
        if (in.contains("note") && in["note"].is_string()) t += ": " + in["note"].get<std::string>();
        line("stdin:", t);
    }
    for (const auto& i : rec.value("inputs", json::array())) {
        if (!i.is_object()) continue;
        std::string t = str_or(i, "host") + " -> " + str_or(i, "sandbox", "(same path)");
        t += i["sha256"].is_string() ? ", snapshot " + str_or(i, "sha256").substr(0, 12) : ", no snapshot";
        if (i.contains("kind") && i["kind"].is_string()) t += " (" + i["kind"].get<std::string>() + ")";
        if (i.contains("note") && i["note"].is_string()) t += ": " + i["note"].get<std::string>();
        line("input:", t);
    }
    for (const char* k : {"output_cut", "warning"})
        if (rec.contains(k) && rec[k].is_string()) line("recording:", rec[k].get<std::string>());
}

void print_job(json j) {  // a copy: a missing key reads as null
    printf("job %s  %s  tier %s\n", str_or(j, "id").c_str(), str_or(j, "state").c_str(), str_or(j, "tier").c_str());
    printf("  argv:        %s\n", joined_for_terminal(j.value("argv", json::array())).c_str());
    const json& p = j["policy"];
    printf("  policy:      %s v%s (sha256 %s)\n", str_or(p, "name").c_str(), str_or(p, "version").c_str(),
           str_or(p, "sha256").substr(0, 12).c_str());
    printf("  started:     %s\n", str_or(j, "started_at").c_str());
    printf("  ended:       %s\n", str_or(j, "ended_at").c_str());
    const json& t = j["termination"];
    printf("  termination: %s%s%s\n", str_or(t, "cause").c_str(), t["detail"].is_string() ? ": " : "",
           t["detail"].is_string() ? str_or(t, "detail").c_str() : "");
    printf("  exit code:   %s   signal: %s\n", str_or(j, "exit_code").c_str(), str_or(j, "signal").c_str());
    const json& r = j["resources"];
    printf("  resources:   cpu %s, peak memory %s, peak pids %s\n",
           moat::format_duration_ns(r.value("cpu_time_ns", 0ULL)).c_str(),
           human_size(r.value("peak_memory_bytes", 0ULL)).c_str(), str_or(r, "peak_pids").c_str());
    printf("  denials:     %s\n", str_or(j, "denial_count").c_str());
    const json s = j.value("sandbox", json::object());
    if (str_or(j, "tier") == "vm") print_vm_sandbox(j, s);
    else
        printf("  sandbox:     uid %s, cgroup %s, landlock %s (ABI %s)\n", str_or(j, "uid").c_str(),
               str_or(s, "cgroup_version").c_str(), str_or(s, "landlock").c_str(), str_or(s, "landlock_abi").c_str());
    for (const auto& n : s.value("notes", json::array()))
        printf("  note:        %s\n", moat::for_terminal(n.is_string() ? n.get<std::string>() : n.dump()).c_str());
    if (j.contains("replay_of") && j["replay_of"].is_number_integer())
        printf("  replay of:   job %s%s\n", str_or(j, "replay_of").c_str(),
               j.value("learn", false) ? " (learn: denials recorded, not enforced)" : "");
    print_recording(j.value("recording", json::object()));
    (void)duration_of;
}

std::string event_summary(const json& e) {
    std::string kind = str_or(e, "kind");
    if (kind == "denial") {
        std::string s = str_or(e, "syscall") + "(";
        if (e.contains("decoded") && e["decoded"].is_string()) s += str_or(e, "decoded");
        s += ") -> " + str_or(e, "action") + "  pid " + str_or(e, "pid") + "  at " + str_or(e, "module", "?") +
             " [" + str_or(e, "arch") + "]";
        return s;
    }
    if (kind == "lifecycle") {
        std::string s = str_or(e, "event");
        for (const char* k : {"path", "cause", "detail", "exit_code", "signal"})
            if (e.contains(k) && !e[k].is_null()) s += std::string(" ") + k + "=" + str_or(e, k);
        return s;
    }
    if (kind == "resource")
        return "cpu " + str_or(e, "cpu_percent") + "%  mem " + human_size(e.value("memory_bytes", 0ULL)) + "  pids " +
               str_or(e, "pids");
    json copy = e;
    for (const char* k : {"id", "time", "job", "kind", "count"}) copy.erase(k);
    return moat::for_terminal(copy.dump(-1, ' ', false, json::error_handler_t::replace));
}

struct Global {
    std::string socket;
    std::string connect;  // ssh://[USER@]HOST[:PORT][/SOCKET]: moatd on another host (docs/remote.md)
};

// The local socket, or the ssh:// address with --socket as the far socket
// when the address names none.
moat::Result<moat::ipc::Client> connect(const Global& g) {
    if (g.connect.empty()) return moat::ipc::Client::connect(moat::ipc::socket_path(g.socket));
    auto t = moat::ipc::with_far_socket(g.connect, g.socket);
    if (!t) return std::unexpected(t.error());
    return moat::ipc::Client::connect_to(*t);
}

// What one answer to a `run` means for moatctl: nullopt = keep going, else
// the exit status.
struct RunState {
    int64_t job = 0;
    bool stop_sent = false;
    std::string id_file;
};

std::optional<int> on_run_answer(moat::ipc::Client& c, RunState& st, json m) {
    if (!m.value("ok", false)) {
        std::string code = str_or(m, "code");
        if (st.stop_sent && code == "not-found") return std::nullopt;  // it ended before our stop arrived
        return die(m.value("error", std::string("-")), kExitSetup);
    }
    if (m.contains("job") && m["job"].is_number_integer() && !m.contains("finished")) {
        st.job = m["job"].get<int64_t>();
        if (!st.id_file.empty()) {
            std::ofstream out(st.id_file);
            out << st.job << "\n";
        }
        if (g_signal && !st.stop_sent) {
            st.stop_sent = true;
            (void)c.send({{"op", "stop"}, {"job", st.job}});
        }
        return std::nullopt;
    }
    if (!m.contains("finished")) return std::nullopt;
    // The same words and status moatd gives a brief client (moat/ipc/run_end.h).
    const moat::ipc::RunEnd end = moat::ipc::describe_run_end(st.job, m["finished"]);
    fputs(end.text.c_str(), stderr);
    return end.status;
}

bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

// A run over SSH: our stdin goes out in relay frames (at most kRelayWindow
// bytes not yet taken by the far side), the job's stdout and stderr come back
// in them (moat/ipc/remote.h).
int relay_run(moat::ipc::Client& c, RunState& st) {
    namespace ipc = moat::ipc;
    // ensure_stdio_open() keeps the stream off fds 0-2; checked again here
    // because the job's output must never be written into the stream.
    if (c.fd() <= 2) return die("internal error: the ssh stream is on a standard fd", kExitSetup);
    bool stdin_open = true, out_broken = false;
    size_t unacked = 0;
    int signals = 0;
    // Frames are read as they arrive (never a blocking read of a whole
    // frame), so a stalled far side cannot make Ctrl-C go unheard.
    ipc::FrameDecoder decoder(ipc::kMaxResponseBytes);
    for (;;) {
        const bool want_stdin = stdin_open && unacked + ipc::kRelayChunk <= ipc::kRelayWindow;
        pollfd p[3] = {{c.fd(), POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}, {want_stdin ? 0 : -1, POLLIN, 0}};
        if (::poll(p, 3, -1) < 0 && errno != EINTR) return die("poll", kExitSetup);
        if (g_signal && st.job && !st.stop_sent) {
            st.stop_sent = true;
            (void)c.send({{"op", "stop"}, {"job", st.job}});
        }
        if (g_signal && (p[1].revents & POLLIN)) {
            char drain[16];
            while (::read(g_sigpipe[0], drain, sizeof drain) > 0) {
            }
            // A second signal while the far side does not answer: give up.
            if (++signals > 1 && st.stop_sent) return die("interrupted; the far side did not answer the stop", 128 + g_signal);
        }
        if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[ipc::kRelayChunk];
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            } else if (n <= 0) {
                stdin_open = false;
                if (auto r = c.send_bytes(ipc::relay_frame(ipc::kRelayStdin, nullptr, 0)); !r)
                    return die(r.error().message, kExitSetup);
            } else {
                unacked += size_t(n);
                if (auto r = c.send_bytes(ipc::relay_frame(ipc::kRelayStdin, buf, size_t(n))); !r)
                    return die(r.error().message, kExitSetup);
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char in[65536];
        ssize_t got = ::recv(c.fd(), in, sizeof in, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) return die("the connection to " + c.peer() + " ended before the job's record came", kExitSetup);
        if (auto r = decoder.feed(in, size_t(got)); !r) return die(r.error().message, kExitSetup);
        while (auto f = decoder.next()) {
            if (f->empty() || (*f)[0] == '{') {
                auto m = json::parse(*f, nullptr, false);
                if (!m.is_object()) return die("moatd sent a malformed answer", kExitSetup);
                if (auto rc = on_run_answer(c, st, m)) return *rc;
                continue;
            }
            const char tag = (*f)[0];
            if (tag == ipc::kRelayAck) {
                const int64_t n = ipc::relay_ack_count(*f);
                if (n < 0 || size_t(n) > unacked)
                    return die("the remote proxy sent a malformed acknowledgement", kExitSetup);
                unacked -= size_t(n);
            } else if ((tag == ipc::kRelayStdout || tag == ipc::kRelayStderr) && f->size() > 1) {
                const int to = tag == ipc::kRelayStdout ? 1 : 2;
                if (!write_all(to, f->data() + 1, f->size() - 1) && to == 1 && !out_broken) {
                    // Our reader went away (`| head`): locally the job would get
                    // SIGPIPE at its next write; here it is stopped instead.
                    out_broken = true;
                    if (st.job && !st.stop_sent) {
                        fprintf(stderr, "moatctl: stdout closed; stopping job %lld\n", (long long)st.job);
                        st.stop_sent = true;
                        (void)c.send({{"op", "stop"}, {"job", st.job}});
                    }
                }
            }
        }
    }
}

int cmd_run(const Global& g, const std::string& policy_file, const std::string& tier,
            const std::vector<std::string>& inputs, bool no_symlinks, const std::string& id_file,
            const std::string& rootfs, const std::vector<std::string>& argv) {
    g_fail_status = kExitSetup;
    std::string err;
    auto toml = read_file(policy_file, &err);
    if (!toml) return die(err, kExitSetup);
    if (argv.empty()) return die("run: no program given (use: moatctl run --policy FILE -- PROGRAM [ARG...])", kExitSetup);
    for (size_t i = 0; i < argv.size(); ++i)
        if (!moat::valid_utf8(argv[i]))
            return die("argument " + std::to_string(i) + " is not valid UTF-8; moatd's protocol carries text only",
                       kExitSetup);
    const bool remote = !g.connect.empty();
    json req = {{"op", "run"}, {"policy_toml", *toml}, {"policy_source", policy_file}, {"argv", argv}};
    if (!tier.empty()) req["tier"] = tier;
    std::vector<std::string> env;
    // Variables that are not UTF-8 cannot be carried; the policy would have to
    // name them to pass them anyway. Over ssh only the ones the policy passes
    // leave this host: the far host has no business with the rest (tokens,
    // agent sockets). moatd applies the same filter either way.
    std::vector<std::string> pass;
#if !MOATCTL_LIGHT
    if (remote) {
        auto parsed = moat::policy::parse_policy(*toml, policy_file);
        if (parsed.policy) pass = parsed.policy->environment.pass;
    }
#endif
    for (char** e = environ; *e; ++e) {
        if (!moat::valid_utf8(*e)) continue;
        if (remote) {
            const std::string_view kv(*e);
            const std::string_view name = kv.substr(0, kv.find('='));
            if (std::find(pass.begin(), pass.end(), name) == pass.end()) continue;
        }
        env.emplace_back(*e);
    }
    req["env"] = env;
    // Over SSH our directory means nothing on the far host: the proxy's own
    // (the SSH user's home) is used.
    char cwd[PATH_MAX];
    if (!remote) req["cwd"] = getcwd(cwd, sizeof cwd) ? cwd : "/";
    json ins = json::array();
    std::vector<int> fds = {0, 1, 2};
    if (inputs.size() > moat::ipc::kMaxInputs)
        return die("at most " + std::to_string(moat::ipc::kMaxInputs) + " --input files per job", kExitSetup);
    for (const auto& spec : inputs) {
        auto colon = spec.find(':');
        std::string host = spec.substr(0, colon);
        std::string sandbox = colon == std::string::npos ? "" : spec.substr(colon + 1);
        if (remote) {
            // A path on the far host, opened there by the proxy with the SSH
            // user's rights, exactly as below.
            ins.push_back({{"host", host}, {"sandbox", sandbox}, {"no_symlinks", no_symlinks}});
            continue;
        }
        // Opened here, with the operator's own rights, and passed to moatd
        // (SCM_RIGHTS): moatd snapshots and grants exactly this file and never
        // opens the path itself (a swap after this open changes nothing).
        std::string why;
        int fd = moat::ipc::open_input(host, no_symlinks, &why);
        if (fd < 0) return die("--input " + host + ": " + why, kExitSetup);
        fds.push_back(fd);
        std::string real = moat::ipc::opened_name(fd);
        if (real.empty()) return die("--input " + host + ": cannot name the opened file", kExitSetup);
        ins.push_back({{"host", real}, {"sandbox", sandbox.empty() ? real : sandbox}, {"fd", true}});
    }
    req["inputs"] = ins;
    if (!rootfs.empty()) {
        // The job's root: this directory, opened here with the operator's
        // rights and passed as an fd (moatd clones its mount tree; it never
        // looks the path up). DIR:rw makes it writable.
        if (remote) return die("--rootfs passes a directory as an fd, which cannot cross ssh", kExitSetup);
        std::string dir = rootfs;
        bool rw = false;
        if (dir.size() > 3 && dir.compare(dir.size() - 3, 3, ":rw") == 0) {
            rw = true;
            dir.resize(dir.size() - 3);
        } else if (dir.size() > 3 && dir.compare(dir.size() - 3, 3, ":ro") == 0) {
            dir.resize(dir.size() - 3);
        }
        int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return die("--rootfs " + dir + ": " + strerror(errno), kExitSetup);
        fds.push_back(fd);
        std::string real = moat::ipc::opened_name(fd);
        req["rootfs"] = {{"read_only", !rw}, {"origin", "moatctl run --rootfs " + (real.empty() ? dir : real)}};
    }

    auto c = connect(g);
    if (!c) return die(c.error().message, kExitSetup);
    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) return die("pipe2", kExitSetup);
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    RunState st;
    st.id_file = id_file;
    if (remote) {
        req["relay_stdio"] = true;
        if (auto r = c->send(req); !r) return die(r.error().message, kExitSetup);
        return relay_run(*c, st);
    }
    if (auto r = c->send(req, fds); !r) return die(r.error().message, kExitSetup);
    for (size_t i = 3; i < fds.size(); ++i) ::close(fds[i]);
    for (;;) {
        pollfd p[2] = {{c->fd(), POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
        if (::poll(p, 2, -1) < 0 && errno != EINTR) return die("poll", kExitSetup);
        if (g_signal && st.job && !st.stop_sent) {
            st.stop_sent = true;
            (void)c->send({{"op", "stop"}, {"job", st.job}});
        }
        if (!(p[0].revents & (POLLIN | POLLHUP))) continue;
        auto m = c->receive();
        if (!m) return die(m.error().message, kExitSetup);
        if (auto rc = on_run_answer(*c, st, *m)) return *rc;
    }
}

#if !MOATCTL_LIGHT
// What only moatctl-full does (replay, output; below: db backup and the
// policy tools).

// Writes `text` to `out` ("" = stdout). A partial file is removed so a failed
// write never leaves something that looks like a result.
bool write_output(const std::string& out, const std::string& text) {
    if (out.empty()) {
        if (fwrite(text.data(), 1, text.size(), stdout) == text.size() && fflush(stdout) == 0) return true;
        die(std::string("stdout: ") + strerror(errno));
        return false;
    }
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    if (f) f.write(text.data(), std::streamsize(text.size()));
    if (f) f.close();
    if (!f) {
        int e = errno;
        ::unlink(out.c_str());
        die(out + ": " + strerror(e));
        return false;
    }
    return true;
}

// Every denial event of a job (paged).
moat::Result<std::vector<json>> fetch_denials(moat::ipc::Client& c, int64_t job) {
    std::vector<json> out;
    int64_t after = 0;
    for (;;) {
        auto r = c.call({{"op", "events"}, {"job", job}, {"kind", "denial"}, {"after", after}, {"limit", 5000}});
        if (!r) return std::unexpected(r.error());
        for (const auto& e : (*r)["events"]) out.push_back(e);
        if ((*r)["next"].is_null()) break;
        after = (*r)["next"].get<int64_t>();
    }
    return out;
}

// Exit status: like `run`, the replayed job's (0 when it passed); 125 when it
// could not be replayed or set up.
// The last bytes of a job's stderr as one printable line ("" when none).
std::string stderr_tail(moat::ipc::Client& c, int64_t job) {
    constexpr size_t kTail = 400;
    auto r = c.call({{"op", "output"}, {"job", job}, {"stream", "stderr"}});
    if (!r) return {};
    auto data = moat::base64_decode(r->value("data_b64", std::string()));
    if (!data || data->empty()) return {};
    std::string t = data->size() > kTail ? "..." + data->substr(data->size() - kTail) : *data;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    for (char& ch : t)
        if (ch == '\n') ch = ' ';
    return moat::for_terminal(t);
}

int cmd_replay(const Global& g, int64_t job, const std::string& policy_file, const std::string& tier, bool learn,
               bool force, bool override_rules, bool as_json, const std::string& write_policy) {
    json req = {{"op", "replay"}, {"job", job}, {"learn", learn}, {"force", force}};
    if (override_rules) req["override_deny_rules"] = true;
    std::string err;
    std::optional<std::string> toml;
    if (!policy_file.empty()) {
        toml = read_file(policy_file, &err);
        if (!toml) return die(err, kExitSetup);
        req["policy_toml"] = *toml;
        req["policy_source"] = policy_file;
    }
    if (!tier.empty()) req["tier"] = tier;
    auto c = connect(g);
    if (!c) return die(c.error().message, kExitSetup);
    if (auto r = c->send(req); !r) return die(r.error().message, kExitSetup);
    int64_t new_job = 0;
    json finished;
    while (finished.is_null()) {
        auto m = c->receive();
        if (!m) return die(m.error().message, kExitSetup);
        if (!m->value("ok", false)) return die(m->value("error", std::string("-")), kExitSetup);
        if (m->contains("job") && (*m)["job"].is_number_integer()) {
            new_job = (*m)["job"].get<int64_t>();
            printf("%lld\n", (long long)new_job);  // contract: the new job's id first
            fflush(stdout);
        } else if (m->contains("finished")) {
            finished = (*m)["finished"];
        }
    }
    // A learn replay that could not be set up may still have learned what
    // the set-up lacked (a program outside the view): the proposal says.
    const bool setup_failed = str_or(finished["termination"], "cause") == "setup-failed";
    if (setup_failed && !learn)
        return die("replay job " + std::to_string(new_job) + " could not be set up: " +
                       str_or(finished["termination"], "detail"), kExitSetup);

    auto orig = c->call({{"op", "show"}, {"job", job}});
    auto again = c->call({{"op", "show"}, {"job", new_job}});
    if (!orig) return die(orig.error().message, kExitSetup);
    if (!again) return die(again.error().message, kExitSetup);
    auto d_orig = fetch_denials(*c, job);
    auto d_again = fetch_denials(*c, new_job);
    if (!d_orig) return die(d_orig.error().message, kExitSetup);
    if (!d_again) return die(d_again.error().message, kExitSetup);
    const json& oj = (*orig)["job"];
    const json& aj = (*again)["job"];
    auto o1 = moat::learn::outcome_of(oj, *d_orig);
    auto o2 = moat::learn::outcome_of(aj, *d_again);
    auto cmp = moat::learn::compare(o1, o2, oj);

    json report = {{"original", {{"job", job}, {"outcome", o1.describe()}}},
                   {"replay", {{"job", new_job}, {"outcome", o2.describe()}, {"learn", learn}}},
                   {"comparison", cmp.to_json()}};
    std::optional<moat::learn::Proposal> proposal;
    std::string fragment, full;
    if (learn) {
        // The policy the replay ran under: the file given, or the original's version.
        if (!toml) {
            auto p = c->call({{"op", "policy"}, {"id", aj["policy"].value("id", int64_t(0))}});
            if (!p) return die(p.error().message, kExitSetup);
            toml = p->value("toml", std::string());
        }
        auto base = moat::policy::parse_policy(*toml, policy_file.empty() ? "recorded policy" : policy_file);
        if (!base.policy) return die("the replay's policy does not parse any more", kExitSetup);
        moat::learn::LearnContext ctx;
        ctx.original_job = job;
        // Only the original's own policy can have let it pass.
        ctx.original_passed = policy_file.empty() && o1.cause == "exited" && o1.exit_code == 0;
        ctx.through_rules = override_rules;
        ctx.replay_job = aj;
        ctx.original = oj;
        ctx.original_denials = *d_orig;
        if (setup_failed) ctx.setup_detail = str_or(finished["termination"], "detail");
        else if (!(o2.cause == "exited" && o2.exit_code == 0)) ctx.stderr_tail = stderr_tail(*c, new_job);
        proposal = moat::learn::propose(*base.policy, *d_again, o2, ctx);
        fragment = moat::learn::fragment(*base.policy, proposal->additions);
        full = moat::learn::apply(*base.policy, proposal->additions);
        report["proposal"] = proposal->to_json();
        report["proposal"]["toml_fragment"] = fragment;
        report["proposal"]["policy_toml"] = full;
        if (!write_policy.empty() && !write_output(write_policy, full)) return kExitSetup;
    }

    if (as_json) {
        printf("%s\n", report.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
        using moat::for_terminal;
        printf("original job %lld: %s\n", (long long)job, for_terminal(o1.describe()).c_str());
        printf("replay   job %lld: %s%s\n", (long long)new_job, for_terminal(o2.describe()).c_str(),
               learn ? " [learn: not enforced]" : "");
        if (!learn) {
            printf("reproduced: %s\n", cmp.reproduced ? "yes (same cause, exit code and denied syscalls)" : "no");
            for (const auto& d : cmp.differences) printf("  difference: %s\n", for_terminal(d).c_str());
        }
        for (const auto& n : cmp.notes) printf("  note: %s\n", for_terminal(n).c_str());
        if (proposal) {
            if (proposal->empty())
                printf("learn: no change proposed%s\n", proposal->notes.empty() ? "; nothing was denied" : " (notes below)");
            else printf("\n%s", lines_for_terminal(fragment).c_str());
            for (const auto& n : proposal->notes) printf("# note: %s\n", for_terminal(n).c_str());
            if (!write_policy.empty()) printf("# the whole proposed policy was written to %s\n", write_policy.c_str());
        }
    }
    fflush(stdout);
    if (setup_failed) {
        fprintf(stderr, "moatctl: replay job %lld could not be set up: %s\n", (long long)new_job,
                moat::for_terminal(str_or(finished["termination"], "detail")).c_str());
        return kExitSetup;
    }
    if (finished["exit_code"].is_number_integer()) return finished["exit_code"].get<int>();
    if (finished["signal"].is_number_integer()) return 128 + finished["signal"].get<int>();
    return kExitSetup;
}

int cmd_output(const Global& g, int64_t job, bool err_stream, bool as_json) {
    auto c = connect(g);
    if (!c) return die(c.error().message);
    auto r = c->call({{"op", "output"}, {"job", job}, {"stream", err_stream ? "stderr" : "stdout"}});
    if (!r) return die(r.error().message);
    if (as_json) {
        printf("%s\n", r->dump().c_str());
        return 0;
    }
    auto data = moat::base64_decode((*r).value("data_b64", std::string()));
    if (!data) return die("moatd sent malformed output data");
    if ((*r).value("truncated", false))
        fprintf(stderr, "moatctl: showing the last %zu of %llu bytes\n", data->size(),
                (unsigned long long)(*r).value("total_bytes", uint64_t(0)));
    return write_output("", *data) ? 0 : 1;
}

#endif  // !MOATCTL_LIGHT

int cmd_show(const Global& g, int64_t job, bool as_json) {
    auto c = connect(g);
    if (!c) return die(c.error().message);
    auto r = c->call({{"op", "show"}, {"job", job}});
    if (!r) return die(r.error().message);
    if (as_json) printf("%s\n", (*r)["job"].dump().c_str());
    else print_job((*r)["job"]);
    return 0;
}

void print_event(const json& e, bool as_json) {
    if (as_json) printf("%s\n", e.dump().c_str());
    else
        printf("%-30s %-9s %5s  %s\n", str_or(e, "time").c_str(), str_or(e, "kind").c_str(), str_or(e, "count").c_str(),
               event_summary(e).c_str());
}

// --follow: moatd pushes the stored events, then each new one as it is
// stored, and "end" once the job has ended and its last event was sent
// (docs/protocol.md "watch"). Nothing is polled.
int follow_events(const Global& g, int64_t job, bool as_json, const std::string& kind, const std::string& syscall) {
    auto c = connect(g);
    if (!c) return die(c.error().message);
    json req = {{"op", "watch"}, {"job", job}};
    if (!kind.empty()) req["kind"] = kind;
    if (auto r = c->call(req); !r) return die(r.error().message);
    for (;;) {
        auto m = c->receive();
        if (!m) return die("moatd: " + m.error().message);
        const std::string push = m->value("push", "");
        if (push == "events") {
            for (const auto& e : (*m)["events"]) {
                if (!syscall.empty() && e.value("syscall", "") != syscall) continue;
                print_event(e, as_json);
            }
            fflush(stdout);
        } else if (push == "end") {
            return 0;
        } else if (push == "error" || m->contains("ok")) {
            return die(m->value("error", std::string("moatd ended the watch")));
        }
    }
}

int cmd_events(const Global& g, int64_t job, bool as_json, const std::string& kind, const std::string& syscall,
               bool follow) {
    if (!as_json) printf("%-30s %-9s %5s  %s\n", "TIME", "KIND", "COUNT", "WHAT");
    if (follow) return follow_events(g, job, as_json, kind, syscall);
    auto c = connect(g);
    if (!c) return die(c.error().message);
    int64_t after = 0;
    for (;;) {
        json req = {{"op", "events"}, {"job", job}, {"after", after}, {"limit", 5000}};
        if (!kind.empty()) req["kind"] = kind;
        if (!syscall.empty()) req["syscall"] = syscall;
        auto r = c->call(req);
        if (!r) return die(r.error().message);
        for (const auto& e : (*r)["events"]) print_event(e, as_json);
        if ((*r)["next"].is_null()) break;
        after = (*r)["next"].get<int64_t>();
    }
    return 0;
}

std::string job_row(json j) {
    std::string argv = joined_for_terminal(j["argv"]);
    if (argv.size() > 40) argv = moat::for_terminal(argv.substr(0, 37)) + "...";
    std::string pol = str_or(j["policy"], "name") + " v" + str_or(j["policy"], "version");
    std::string exit = j["exit_code"].is_null() ? (j["signal"].is_null() ? "-" : "sig " + str_or(j, "signal"))
                                                : str_or(j, "exit_code");
    char line[1024];
    snprintf(line, sizeof line, "%-6s %-10s %-9s %-20s %-14s %-8s %-8s %s\n", str_or(j, "id").c_str(),
             str_or(j, "tier").c_str(), str_or(j, "state").c_str(), pol.c_str(), str_or(j["termination"], "cause").c_str(),
             exit.c_str(), str_or(j, "denial_count").c_str(), argv.c_str());
    return line;
}
void print_job_row(const json& j) { printf("%s", job_row(j).c_str()); }

void print_jobs_header() {
    printf("%-6s %-10s %-9s %-20s %-14s %-8s %-8s %s\n", "ID", "TIER", "STATE", "POLICY", "CAUSE", "EXIT", "DENIALS",
           "COMMAND");
}

// --watch: the list (moatd's snapshot of the recent jobs), then each job as
// it changes (created, its denial count, finished). A snapshot again means
// moatctl fell behind; moatd says by how many changes.
int watch_jobs(const Global& g, bool as_json) {
    auto c = connect(g);
    if (!c) return die(c.error().message);
    if (auto r = c->call({{"op", "watch"}, {"jobs", true}}); !r) return die(r.error().message);
    bool first = true;
    // The rows as last received (a "live" push carries only a running job's
    // figures and is merged into its row), and the text last printed for
    // each: a row is printed again only when what it shows changed.
    std::map<int64_t, json> rows;
    std::map<int64_t, std::string> shown;
    auto print_if_changed = [&](const json& j) {
        const std::string text = as_json ? j.dump() + "\n" : job_row(j);
        auto& last = shown[j.value("id", int64_t(0))];
        if (last == text) return;
        last = text;
        printf("%s", text.c_str());
    };
    for (;;) {
        auto m = c->receive();
        if (!m) return die("moatd: " + m.error().message);
        const std::string push = m->value("push", "");
        if (push == "jobs" && m->value("snapshot", false)) {
            const json& jobs = (*m)["jobs"];
            if (!first) fprintf(stderr, "moatctl: fell behind by %llu changes; the list again:\n",
                                (unsigned long long)m->value("missed", uint64_t(0)));
            first = false;
            rows.clear();
            shown.clear();
            if (as_json) printf("%s\n", jobs.dump().c_str());
            else print_jobs_header();
            for (const auto& j : jobs) {
                const int64_t id = j.value("id", int64_t(0));
                rows[id] = j;
                shown[id] = as_json ? j.dump() + "\n" : job_row(j);
                if (!as_json) printf("%s", shown[id].c_str());
            }
        } else if (push == "jobs" || push == "live") {
            for (const auto& j : (*m)["jobs"]) {
                const int64_t id = j.value("id", int64_t(0));
                if (push == "jobs") rows[id] = j;
                else if (auto it = rows.find(id); it != rows.end()) it->second.update(j);
                else continue;  // figures of a job whose row has not come yet
                print_if_changed(rows[id]);
            }
        } else if (push == "error" || m->contains("ok")) {
            return die(m->value("error", std::string("moatd ended the watch")));
        }
        fflush(stdout);
    }
}

int cmd_jobs(const Global& g, bool as_json, int limit, bool watch) {
    if (watch) return watch_jobs(g, as_json);
    auto c = connect(g);
    if (!c) return die(c.error().message);
    auto r = c->call({{"op", "jobs"}, {"limit", limit}});
    if (!r) return die(r.error().message);
    if (as_json) {
        printf("%s\n", (*r)["jobs"].dump().c_str());
        return 0;
    }
    print_jobs_header();
    for (const auto& j : (*r)["jobs"]) print_job_row(j);
    return 0;
}

#if !MOATCTL_LIGHT
// `db backup FILE` (docs/cli.md, "db backup"): made with the operator's own
// rights, or, for an admin who cannot read the state directory, written by
// moatd into the file this process created (moat/ipc/incident_copy.h).
int cmd_db_backup(const Global& g, std::string db, const std::string& dest) {
    if (!g.connect.empty())
        return die("db backup passes the new file to moatd, which SSH cannot carry: run `moatctl db backup` on the "
                   "far host and copy the file");
    auto r = moat::ipc::make_incident_copy(moat::ipc::socket_path(g.socket), std::move(db), dest);
    if (!r) return die("db backup: " + r.error().message);
    printf("%s: %s %s, %s: %lld jobs, %lld events, %lld policy versions\n", moat::for_terminal(dest).c_str(),
           r->by_moatd ? "copy made by moatd of" : "copy of", moat::for_terminal(r->source).c_str(),
           human_size(r->info.bytes).c_str(), (long long)r->info.jobs, (long long)r->info.events,
           (long long)r->info.policies);
    return 0;
}

#endif  // !MOATCTL_LIGHT

int cmd_stop(const Global& g, int64_t job) {
    auto c = connect(g);
    if (!c) return die(c.error().message);
    auto r = c->call({{"op", "stop"}, {"job", job}});
    if (!r) return die(r.error().message);
    return 0;
}

// SIGTERM, TERM or 15.
int cmd_signal(const Global& g, int64_t job, const std::string& name) {
    const int sig = moat::parse_signal(name);
    if (sig == 0) return die("unknown signal \"" + name + "\"");
    auto c = connect(g);
    if (!c) return die(c.error().message);
    auto r = c->call({{"op", "signal"}, {"job", job}, {"signal", sig}});
    if (!r) return die(r.error().message);
    return 0;
}

#if !MOATCTL_LIGHT
int cmd_policy_check(const std::string& file, bool explain) {
    std::string err;
    auto text = read_file(file, &err);
    if (!text) return die(err);
    auto res = moat::policy::parse_policy(*text, file);
    auto diags = res.diagnostics;
    if (res.policy) {
        auto l = moat::policy::lint(*res.policy);
        diags.insert(diags.end(), l.begin(), l.end());
    }
    for (const auto& d : diags) fprintf(stderr, "%s\n", lines_for_terminal(d.str()).c_str());
    if (!res.policy || moat::policy::has_errors(diags)) return 1;
    if (explain) printf("%s", moat::policy::explain(*res.policy).c_str());
    return 0;
}

void print_diagnostics(const std::vector<moat::policy::Diagnostic>& diags) {
    for (const auto& d : diags) fprintf(stderr, "%s\n", lines_for_terminal(d.str()).c_str());
}

// "profiles/docker-default.json" -> "docker-default": a valid policy name.
std::string name_from_path(const std::string& path) {
    std::string base = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
    if (auto dot = base.rfind('.'); dot != std::string::npos && dot > 0) base.resize(dot);
    std::string name;
    for (char c : base)
        name += (isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '-';
    if (name.size() > 64) name.resize(64);
    return name.empty() ? "imported" : name;
}

int cmd_policy_import(const std::string& file, const std::string& out, std::string name) {
    std::string err;
    auto text = read_file(file, &err, moat::policy::kMaxOciProfileBytes);
    if (!text) return die(err);
    if (name.empty()) name = name_from_path(file);
    auto res = moat::policy::import_oci(*text, file, name);
    print_diagnostics(res.diagnostics);
    if (moat::policy::has_errors(res.diagnostics)) return 1;
    return write_output(out, res.toml) ? 0 : 1;
}

// Parses a policy file for tools that need a valid one; errors are printed.
std::optional<moat::policy::Policy> load_policy(const std::string& file) {
    std::string err;
    auto text = read_file(file, &err);
    if (!text) {
        die(err);
        return std::nullopt;
    }
    auto res = moat::policy::parse_policy(*text, file);
    print_diagnostics(res.diagnostics);
    return std::move(res.policy);
}

int cmd_policy_export(const std::string& to, const std::string& file, const std::string& out) {
    auto p = load_policy(file);
    if (!p) return 1;
    if (to == "k8s") {
        auto res = moat::policy::export_k8s(*p);
        print_diagnostics(res.diagnostics);
        if (moat::policy::has_errors(res.diagnostics) || res.yaml.empty()) return 1;
        return write_output(out, res.yaml) ? 0 : 1;
    }
    auto res = moat::policy::export_oci(*p);
    print_diagnostics(res.diagnostics);
    if (moat::policy::has_errors(res.diagnostics)) return 1;
    return write_output(out, res.json) ? 0 : 1;
}

// Exit status as diff(1): 0 equal, 1 different, 2 trouble.
int cmd_policy_diff(const std::string& a, const std::string& b, bool as_json) {
    auto pa = load_policy(a);
    auto pb = load_policy(b);
    if (!pa || !pb) return 2;
    auto d = moat::policy::diff(*pa, *pb);
    std::string text = as_json ? moat::policy::to_json(d).dump(2, ' ', false, json::error_handler_t::replace) + "\n"
                               : lines_for_terminal(moat::policy::to_text(d));
    if (!write_output("", text)) return 2;
    return d.empty() ? 0 : 1;
}

#endif  // !MOATCTL_LIGHT

#if MOATCTL_LIGHT
// Runs moatctl-full with our arguments: next to this program (the build
// tree, or an install's bin/), then ../libexec/moat/, then /usr/libexec/moat/.
int exec_full(char** argv, int fail_code) {
    std::vector<std::string> candidates;
    if (std::string dir = moat::exe_dir(); !dir.empty())
        candidates = {dir + "/moatctl-full", dir + "/../libexec/moat/moatctl-full"};
    candidates.push_back("/usr/libexec/moat/moatctl-full");
    for (const auto& c : candidates) {
        if (access(c.c_str(), X_OK) != 0) continue;
        execv(c.c_str(), argv);
        return die(c + ": " + strerror(errno), fail_code);
    }
    return die("this command needs moatctl-full, which was not found (looked in " + candidates.front() + " and " +
                   candidates.back() + ")",
               fail_code);
}
#endif

int moatctl_main(int argc, char** argv);

// Where `run`'s PROGRAM [ARG...] begins in argv (at the `--` before it, or at
// its first word), or argc when there is none or no `run`: the first word
// that neither is an option nor an option's value, after the `run`
// subcommand (itself the first such word after the global options). Which
// options take a value is asked of CLI11's own definitions.
int program_from(const CLI::App& app, const CLI::App& run, int argc, char** argv) {
    auto takes_value = [](const CLI::App& a, std::string_view word) {
        if (word.find('=') != std::string_view::npos) return false;  // --opt=value: one word
        const CLI::Option* o = a.get_option_no_throw(std::string(word));
        return o != nullptr && o->get_expected_min() > 0;  // a flag expects none
    };
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && std::string_view(argv[i]) != "--"; ++i)
        if (takes_value(app, argv[i])) ++i;
    if (i >= argc || std::string_view(argv[i]) != "run") return argc;
    for (++i; i < argc; ++i) {
        const std::string_view w(argv[i]);
        if (w == "--" || w.empty() || w[0] != '-') return i;
        if (takes_value(run, w)) ++i;
    }
    return argc;
}

}  // namespace

int main(int argc, char** argv) {
    moat::ensure_stdio_open();
    try {
        return moatctl_main(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "moatctl: moatd sent a malformed answer (%s)\n", e.what());
        return g_fail_status;
    }
}

namespace {

int moatctl_main(int argc, char** argv) {
    CLI::App app{"moatctl: run jobs in Moat sandboxes and investigate what they did"};
    app.set_version_flag("--version", "moatctl " MOAT_VERSION);
    app.require_subcommand(1);
    Global g;
    app.add_option("--socket", g.socket, "moatd socket (default: $MOAT_SOCKET, else /run/moat/moatd.sock); with "
                                         "--connect, the socket on the far host");
    app.add_option("--connect", g.connect,
                   "reach moatd on another host over SSH: ssh://[USER@]HOST[:PORT][/SOCKET] (runs `moatctl proxy` there)")
        ->check([](const std::string& v) {
            auto t = moat::ipc::parse_ssh_uri(v);
            return t ? std::string() : t.error().message;
        });

    auto* proxy = app.add_subcommand(
        "proxy", "bridge stdin/stdout to the local moatd socket (what --connect ssh:// runs on the far host)");

    auto* run = app.add_subcommand("run", "run a program in a sandbox; exit status is the job's");
    std::string policy_file, tier, id_file;
    std::vector<std::string> inputs, prog;
    run->add_option("--policy", policy_file, "policy TOML file")->required();
    run->add_option("--tier", tier, "override the policy's tier")->check(CLI::IsMember({"seccomp", "container", "vm"}));
    run->add_option("--input", inputs, "HOST_PATH[:SANDBOX_PATH], visible read-only to the job (repeatable)")
        ->allow_extra_args(false);
    bool no_symlinks = false;
    run->add_flag("--input-no-symlinks", no_symlinks,
                  "refuse an --input whose path has a symlink anywhere (default: only the last component)");
    run->add_option("--id-file", id_file, "write the job id to FILE as soon as it exists");
    std::string rootfs;
    run->add_option("--rootfs", rootfs,
                    "DIR[:rw]: the job's root filesystem is this directory (container tier; read-only unless :rw)");
    // Described here, but never given to CLI11 (program_from below): CLI11
    // splits a vector option's value shaped like "[a,b]" into "a" and "b",
    // and a job's arguments are its own (`grep '[abc]'`, `sh -c '[ -f x ]'`).
    run->add_option("program", prog, "-- PROGRAM [ARG...]");

    bool as_json = false;
    int64_t job = 0;
    auto* show = app.add_subcommand("show", "one job's record");
    show->add_option("job", job)->required();
    show->add_flag("--json", as_json);

    std::string kind, syscall;
    auto* events = app.add_subcommand("events", "a job's events, oldest first");
    events->add_option("job", job)->required();
    events->add_flag("--json", as_json, "JSON Lines");
    events->add_option("--kind", kind)->check(CLI::IsMember({"lifecycle", "resource", "denial", "limit"}));
    events->add_option("--syscall", syscall);
    bool follow = false;
    events->add_flag("--follow,-f", follow, "then each new event as moatd stores it, until the job has ended");

    int limit = 100;
    auto* jobs = app.add_subcommand("jobs", "recent jobs, newest first");
    jobs->add_flag("--json", as_json);
    jobs->add_option("--limit", limit)->capture_default_str();
    bool watch = false;
    jobs->add_flag("--watch,-w", watch, "the list, then each change as it happens (until interrupted)");

    auto* stop = app.add_subcommand("stop", "stop a running job (cause \"stopped\")");
    stop->add_option("job", job)->required();
    std::string signame;
    auto* sigcmd = app.add_subcommand("signal", "send a running job's program a signal (TERM, INT, HUP, QUIT, USR1, "
                                                "USR2, WINCH; KILL stops it)");
    sigcmd->add_option("job", job)->required();
    sigcmd->add_option("signal", signame, "name (TERM, SIGTERM) or number")->required();

    std::string replay_policy, write_policy;
    bool learn = false, force = false;
    auto* replay = app.add_subcommand("replay", "run a recorded job again and compare; --learn proposes a policy fix");
    replay->add_option("job", job)->required();
    replay->add_option("--policy", replay_policy, "replay under this policy instead of the recorded version");
    replay->add_option("--tier", tier, "override the tier")->check(CLI::IsMember({"seccomp", "container", "vm"}));
    replay->add_flag("--learn", learn, "record denials without enforcing them, then propose the smallest policy change");
    replay->add_flag("--force", force, "allow --learn in the seccomp tier (denied calls then run on the host)");
    bool override_rules = false;
    replay->add_flag("--override-deny-rules", override_rules,
                     "with --learn: also let calls run that an explicit [[seccomp.rule]] denies, and propose "
                     "allowing them (overrides the operator's deny)");
    replay->add_option("-o,--write-policy", write_policy, "with --learn: write the whole proposed policy here");
    replay->add_flag("--json", as_json, "after the id line, one JSON object with the comparison (and proposal)");

    bool err_stream = false;
    auto* output = app.add_subcommand("output", "the recorded tail of a job's stdout (or --stderr)");
    output->add_option("job", job)->required();
    output->add_flag("--stderr", err_stream);
    output->add_flag("--json", as_json);

    auto* policy = app.add_subcommand("policy", "policy tools");
    policy->require_subcommand(1);
    std::string file;
    bool explain = false;
    auto* check = policy->add_subcommand("check", "validate and lint; errors as FILE:LINE:COL: message");
    check->add_option("file", file)->required();
    check->add_flag("--explain", explain, "print the effective policy with every default");

    std::string from, to, out, name;
    auto* import = policy->add_subcommand("import", "convert an OCI / Docker seccomp profile (JSON) to policy TOML");
    import->add_option("--from", from, "input format")->required()->check(CLI::IsMember({"oci"}));
    import->add_option("file", file, "seccomp profile (or runtime-spec config.json)")->required();
    import->add_option("-o,--output", out, "write the policy here instead of stdout");
    import->add_option("--name", name, "policy name (default: from the file name)");

    auto* export_ = policy->add_subcommand(
        "export", "convert a policy to an OCI seccomp profile (JSON) or a Kubernetes SeccompProfile (YAML)");
    export_->add_option("--to", to, "oci: OCI seccomp profile; k8s: Security Profiles Operator SeccompProfile with "
                                    "the Pod securityContext/resources to use it")
        ->required()
        ->check(CLI::IsMember({"oci", "k8s"}));
    export_->add_option("file", file, "policy TOML file")->required();
    export_->add_option("-o,--output", out, "write the profile here instead of stdout");

    std::string file_b;
    auto* pdiff = policy->add_subcommand("diff", "semantic difference of two policies; exit 0 equal, 1 different, 2 error");
    pdiff->add_option("a", file, "old policy")->required();
    pdiff->add_option("b", file_b, "new policy")->required();
    pdiff->add_flag("--json", as_json);

    auto* db = app.add_subcommand("db", "the state database");
    db->require_subcommand(1);
    std::string db_path, db_dest;
    auto* backup = db->add_subcommand(
        "backup", "a consistent copy of moatd's database while it runs (SQLite online backup), for moat-console --open-db");
    backup->add_option("file", db_dest, "the copy to create (must not exist)")->required();
    backup->add_option("--db", db_path,
                       std::string("the database to copy (default: the one moatd reports, else ") + moat::ipc::kDefaultDatabase + ")");

    try {
        // PROGRAM [ARG...] taken from argv as it is, CLI11 parsing only what
        // comes before it.
        const int program_at = program_from(app, *run, argc, argv);
        app.parse(program_at, argv);
        prog.assign(argv + program_at + (program_at < argc && std::string_view(argv[program_at]) == "--"), argv + argc);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        // `run` usage errors are set-up failures in the contract's terms;
        // import and export fail with 1, diff (like diff(1)) with 2.
        if (rc != 0 && (run->parsed() || replay->parsed())) return kExitSetup;
        if (rc != 0 && (import->parsed() || export_->parsed())) return 1;
        return rc == 0 ? 0 : 2;
    }
    if (!g.connect.empty())
        if (auto t = moat::ipc::with_far_socket(g.connect, g.socket); !t) return die(t.error().message, 2);
    if (proxy->parsed()) {
        if (!g.connect.empty()) return die("proxy bridges to the local moatd; --connect makes no sense here", 2);
        return moat::ipc::run_proxy(0, 1, moat::ipc::socket_path(g.socket));
    }
#if MOATCTL_LIGHT
    // A run over ssh sends only the environment the policy passes, which
    // takes the policy parser: moatctl-full does it.
    if (run->parsed() && !g.connect.empty()) return exec_full(argv, kExitSetup);
#endif
    if (run->parsed()) return cmd_run(g, policy_file, tier, inputs, no_symlinks, id_file, rootfs, prog);
    if (show->parsed()) return cmd_show(g, job, as_json);
    if (events->parsed()) return cmd_events(g, job, as_json, kind, syscall, follow);
    if (jobs->parsed()) return cmd_jobs(g, as_json, limit, watch);
    if (stop->parsed()) return cmd_stop(g, job);
    if (sigcmd->parsed()) return cmd_signal(g, job, signame);
#if MOATCTL_LIGHT
    // The policy tools, replay, output and db backup parse TOML, compile
    // filters, decode base64 or open SQLite: their libraries (toml++,
    // libseccomp, libcrypto, sqlite) would cost every `moatctl run` their
    // loading. moatctl-full, the same program with them, does those commands
    // (docs/cli.md).
    return exec_full(argv, replay->parsed() ? kExitSetup : 2);
#else
    if (backup->parsed()) return cmd_db_backup(g, db_path, db_dest);
    if (replay->parsed()) return cmd_replay(g, job, replay_policy, tier, learn, force, override_rules, as_json, write_policy);
    if (output->parsed()) return cmd_output(g, job, err_stream, as_json);
    if (check->parsed()) return cmd_policy_check(file, explain);
    if (import->parsed()) return cmd_policy_import(file, out, name);
    if (export_->parsed()) return cmd_policy_export(to, file, out);
    if (pdiff->parsed()) return cmd_policy_diff(file, file_b, as_json);
    return 2;
#endif
}

}  // namespace
