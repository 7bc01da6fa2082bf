#include "agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/landlock.h>
#include <linux/reboot.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/cgroup/cgroup.h"
#include "moat/common/error.h"
#include "moat/common/fd.h"
#include "moat/common/timeutil.h"
#include "moat/guest/protocol.h"
#include "moat/guest/prefetch.h"
#include "moat/sandbox/container_init.h"
#include "moat/sandbox/container_plan.h"
#include "moat/sandbox/spawn.h"
#include "moat/supervisor/decode.h"

namespace moat::agent {

namespace g = moat::guest;

namespace {

// Output is read from the job only while less than this is queued for the
// host: a slow host slows the job's writes down (its pipe fills), it never
// makes the agent buffer without bound. Samples are skipped above it too.
constexpr size_t kHighWater = 256u << 10;
// The stdin bytes the agent holds for the job: the host keeps within
// kStdinWindow (StdinConsumed tells it what went through); past this bound
// the host broke the window and the excess is dropped with a Log.
constexpr size_t kStdinCap = g::kStdinWindow + g::kMaxChunk;
constexpr uint64_t kAckEvery = 64u << 10;
constexpr uint64_t kCloneNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                          CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x00000080 /*CLONE_NEWTIME*/;
constexpr const char* kRootImage = "/mnt/root";

std::string clip(std::string s, size_t max) {
    if (s.size() > max) s.resize(max);
    return s;
}

int64_t boottime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int landlock_abi_now() {
    long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : int(std::min<long>(v, 255));
}

void console(const std::string& text) {
    std::string line = "moat-agent: " + text + "\n";
    (void)!::write(2, line.data(), line.size());
}

bool set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

Result<void> mkdir_p(const std::string& path, mode_t mode) {
    std::string cur;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i + 1);
        if (j == std::string::npos) j = path.size();
        cur = path.substr(0, j);
        if (!cur.empty() && ::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST)
            return fail_sys("mkdir(\"" + cur + "\")", errno);
        i = j;
    }
    return {};
}

void remove_tree(const std::string& path) {
    DIR* d = opendir(path.c_str());
    if (d) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n == "." || n == "..") continue;
            std::string p = path + "/" + n;
            struct stat st{};
            if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p);
            else ::unlink(p.c_str());
        }
        closedir(d);
    }
    ::rmdir(path.c_str());
}

// ---- guest bring-up (not in test mode) ----

struct Boot {
    std::vector<g::SetupStatus> notes;  // reported once the control port is open
};

void mount_one(Boot& b, const char* src, const char* target, const char* type, unsigned long flags, const char* data) {
    ::mkdir(target, 0755);
    if (::mount(src, target, type, flags, data) < 0 && errno != EBUSY)
        b.notes.push_back({std::string("mount(") + target + ")", errno, type, false});
}

void load_modules(Boot& b) {
    // /modules.order: one module per line, a path relative to /lib/modules
    // (only its file name is used: the initramfs keeps them flat).
    FILE* f = fopen("/modules.order", "re");
    if (!f) return;  // a kernel with everything built in
    char line[512];
    while (fgets(line, sizeof line, f)) {
        std::string m = line;
        while (!m.empty() && (m.back() == '\n' || m.back() == '\r' || m.back() == ' ')) m.pop_back();
        if (m.empty() || m[0] == '#') continue;
        std::string name = m.substr(m.rfind('/') == std::string::npos ? 0 : m.rfind('/') + 1);
        // The vm kit's initramfs names each module without its suffix
        // (core/vm/src/initramfs.cpp: lib/modules/<name>.ko).
        if (name.size() < 3 || name.compare(name.size() - 3, 3, ".ko") != 0) name += ".ko";
        std::string path = "/lib/modules/" + name;
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) {
            b.notes.push_back({"open(module)", errno, path, false});
            continue;
        }
        if (syscall(SYS_finit_module, fd.get(), "", 0) < 0 && errno != EEXIST)
            b.notes.push_back({"finit_module", errno, path, false});
    }
    fclose(f);
}

// The control port's device: /sys/class/virtio-ports/<vportXpY>/name == "moat.ctl".
std::string find_ctl_port(int wait_ms) {
    const int64_t deadline = now_monotonic_ns() + int64_t(wait_ms) * 1'000'000;
    for (;;) {
        if (DIR* d = opendir("/sys/class/virtio-ports")) {
            std::string found;
            while (dirent* e = readdir(d)) {
                std::string n = e->d_name;
                if (n == "." || n == "..") continue;
                FILE* f = fopen(("/sys/class/virtio-ports/" + n + "/name").c_str(), "re");
                if (!f) continue;
                char buf[64] = {};
                bool match = fgets(buf, sizeof buf, f) && std::string(buf).rfind("moat.ctl", 0) == 0;
                fclose(f);
                if (match) found = "/dev/" + n;
            }
            closedir(d);
            if (!found.empty() && access(found.c_str(), F_OK) == 0) return found;
        }
        if (now_monotonic_ns() > deadline) return "";
        usleep(20'000);
    }
}

[[noreturn]] void power_off() {
    sync();
    reboot(RB_AUTOBOOT);
    // Only reached when reboot failed: pid 1 must not exit (a kernel panic).
    for (;;) pause();
}

// ---- the agent proper ----

class Agent {
public:
    Agent(const Options& opt, UniqueFd ctl) : m_opt(opt), m_ctl(std::move(ctl)), m_dec(g::Direction::HostToGuest) {}
    ~Agent() {
        if (!m_work.empty() && m_own_work) remove_tree(m_work);
    }

    Result<void> init_work_dir() {
        if (!m_opt.work_dir.empty()) {
            m_work = m_opt.work_dir;
            if (auto r = mkdir_p(m_work, 0755); !r) return r;
        } else if (m_opt.test_mode) {
            char tmpl[] = "/tmp/moat-agent.XXXXXX";
            if (!mkdtemp(tmpl)) return fail_sys("mkdtemp(/tmp/moat-agent.XXXXXX)", errno);
            m_work = tmpl;
            m_own_work = true;
        } else {
            m_work = "/run/moat";
            if (auto r = mkdir_p(m_work, 0755); !r) return r;
        }
        ::chmod(m_work.c_str(), 0755);
        m_inputs = m_work + "/inputs";
        m_newroot = m_work + "/newroot";
        for (const auto& d : {m_inputs, m_newroot})
            if (::mkdir(d.c_str(), 0755) < 0 && errno != EEXIST) return fail_sys("mkdir(\"" + d + "\")", errno);
        return {};
    }

    template <class M>
    void send(const M& m) {
        auto f = g::encode(m);
        if (!f) {
            console("not sent: " + f.error().message);
            return;
        }
        m_out_bytes += f->size();
        m_out.push_back(std::move(*f));
    }
    void log(const std::string& text) { send(g::Log{clip(text, g::kMaxText)}); }
    void setup_status(const std::string& step, int err, const std::string& detail, bool fatal) {
        send(g::SetupStatus{clip(step.empty() ? "?" : step, g::kMaxStep), (err < 0 || err > 4095) ? 0 : err,
                            clip(detail, g::kMaxText), fatal});
    }

    // Runs until the job has ended (or never started) and everything is sent.
    // Returns 0 when a job ran to its end, 1 on a setup failure or a lost host.
    int loop() {
        for (;;) {
            if (m_done && m_out.empty()) return m_exit_code;
            if (m_ctl_dead) {
                abandon_job();
                return 1;
            }
            std::vector<pollfd> p;
            std::vector<int> role;
            auto add = [&](int fd, short ev, int r) {
                if (fd < 0 || ev == 0) return;
                p.push_back({fd, ev, 0});
                role.push_back(r);
            };
            add(m_ctl.get(), short((m_done ? 0 : POLLIN) | (m_out.empty() ? 0 : POLLOUT)), 0);
            if (m_job) {
                auto& j = *m_job;
                if (j.proc.listener && !j.listener_gone) add(j.proc.listener.get(), POLLIN, 1);
                if (j.proc.pidfd && !j.init_exited) add(j.proc.pidfd.get(), POLLIN, 2);
                if (j.proc.status) add(j.proc.status.get(), POLLIN, 3);
                if (m_out_bytes < kHighWater) {
                    add(j.out[0].get(), POLLIN, 4);
                    add(j.out[1].get(), POLLIN, 5);
                }
                if (j.in && !j.stdin_buf.empty()) add(j.in.get(), POLLOUT, 6);
            }
            int timeout = -1;
            if (m_job && m_job->interval_ns && !m_job->init_exited) {
                int64_t left = m_job->next_sample - now_monotonic_ns();
                timeout = left <= 0 ? 0 : int(std::min<int64_t>(left / 1'000'000 + 1, 60'000));
            }
            if (m_job && m_job->init_exited) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
            int n = ::poll(p.data(), p.size(), timeout);
            if (n < 0 && errno != EINTR) {
                console("poll: " + std::string(strerror(errno)));
                return 1;
            }
            for (size_t i = 0; n > 0 && i < p.size(); ++i) {
                if (!p[i].revents) continue;
                switch (role[i]) {
                    case 0:
                        if (p[i].revents & POLLOUT) flush_some();
                        if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) read_ctl();
                        break;
                    case 1: on_notify(p[i].revents); break;
                    case 2: on_init_exit(); break;
                    case 3: on_status(); break;
                    case 4: on_output(0); break;
                    case 5: on_output(1); break;
                    case 6: on_stdin_writable(); break;
                }
                if (!m_job && m_done) break;  // the job state went away under us
            }
            if (m_job) {
                maybe_sample();
                maybe_finish();
            }
        }
    }

    // Best effort: push the queue out within a few seconds (before a reboot).
    void drain(int timeout_ms) {
        const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
        while (!m_out.empty() && !m_ctl_dead && now_monotonic_ns() < deadline) {
            pollfd p{m_ctl.get(), POLLOUT, 0};
            if (::poll(&p, 1, 100) > 0) flush_some();
        }
    }

private:
    struct Pending {
        pid_t pid;
        bool exec;
        bool clone3 = false;  // never continued, whatever the verdict (as in moatd's local tiers)
    };
    struct RunningJob {
        sandbox::Spawned proc;
        std::optional<cgroup::JobCgroup> cg;
        UniqueFd in, out[2];
        std::string stdin_buf;
        bool stdin_eof = false;
        uint64_t stdin_written = 0, stdin_acked = 0;
        std::map<uint64_t, Pending> pending;
        supervisor::ModuleResolver modules;
        bool killed = false, listener_gone = false, init_exited = false;
        int init_status = 0;
        std::optional<int> inner_status;
        bool exec_failed = false;
        uint64_t interval_ns = 0;
        int64_t next_sample = 0;
        int64_t exited_at = 0;
    };

    // ---- control channel ----

    void flush_some() {
        while (!m_out.empty()) {
            std::string& f = m_out.front();
            ssize_t w = ::write(m_ctl.get(), f.data() + m_out_off, f.size() - m_out_off);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                console("write(control port): " + std::string(strerror(errno)));
                m_ctl_dead = true;
                return;
            }
            m_out_off += size_t(w);
            if (m_out_off == f.size()) {
                m_out_bytes -= f.size();
                m_out.pop_front();
                m_out_off = 0;
            }
        }
    }

    void read_ctl() {
        char buf[64 * 1024];
        for (int rounds = 0; rounds < 16; ++rounds) {
            ssize_t n = ::read(m_ctl.get(), buf, sizeof buf);
            if (n > 0 && m_dec.failed()) continue;  // reported once; the rest of the stream is discarded
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                lost_host("read(control port): " + std::string(strerror(errno)));
                return;
            }
            if (n == 0) {
                lost_host("the host closed the control port");
                return;
            }
            std::vector<g::Frame> frames;
            auto r = m_dec.feed(std::string_view(buf, size_t(n)), frames);
            for (const auto& f : frames) {
                auto m = g::parse_host(f);
                if (!m) {
                    protocol_error(m.error().message);
                    return;
                }
                std::visit([this](auto& x) { on_message(x); }, *m);
                if (m_done) return;
            }
            if (!r) {
                protocol_error(r.error().message);
                return;
            }
        }
    }

    void lost_host(const std::string& why) {
        console(why);
        m_ctl_dead = true;
        if (m_job) kill_job();
    }

    void protocol_error(const std::string& why) {
        setup_status("protocol", EPROTO, why, true);
        if (m_job) kill_job();
        else finish_without_job();
    }

    void finish_without_job() {
        m_done = true;
        m_exit_code = 1;
    }

    // ---- host messages ----

    void on_message(g::InputFile& m) {
        if (m_job || m_input_fd) return protocol_error("InputFile after the Job or inside another input");
        std::string path = m_inputs + "/" + std::to_string(m_input_list.size());
        m_input_fd.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!m_input_fd) {
            setup_status("open(input)", errno, m.path, true);
            return finish_without_job();
        }
        m_input_left = m.size;
        m_input_list.push_back({path, m.path, m.mode});
    }
    void on_message(g::InputData& m) {
        if (!m_input_fd) return protocol_error("InputData outside an input");
        if (m.bytes.size() > m_input_left) return protocol_error("InputData beyond the announced size");
        size_t off = 0;
        while (off < m.bytes.size()) {
            ssize_t w = ::write(m_input_fd.get(), m.bytes.data() + off, m.bytes.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                setup_status("write(input)", errno, m_input_list.back().sandbox, true);
                return finish_without_job();
            }
            off += size_t(w);
        }
        m_input_left -= m.bytes.size();
    }
    void on_message(g::InputEnd&) {
        if (!m_input_fd) return protocol_error("InputEnd outside an input");
        if (m_input_left != 0) return protocol_error("InputEnd before the announced size");
        // The job's uid owns it, so the mode the host gave is the job's rights
        // (setuid/setgid bits dropped); the bind is read-only anyway.
        const auto& in = m_input_list.back();
        if (fchown(m_input_fd.get(), m_opt.uid_base + 1, m_opt.uid_base + 1) < 0 ||
            fchmod(m_input_fd.get(), in.mode & 0777) < 0) {
            setup_status("fchown/fchmod(input)", errno, in.sandbox, true);
            return finish_without_job();
        }
        m_input_fd.reset();
    }
    void on_message(g::Stdin& m) {
        if (!m_job) return;  // not started: the bytes go nowhere
        if (!m_job->in) {
            // The job closed its stdin: the bytes go nowhere, as with a closed
            // pipe, but they count as consumed so the host's window moves on.
            m_job->stdin_written += m.bytes.size();
            m_job->stdin_acked = m_job->stdin_written;
            send(g::StdinConsumed{m_job->stdin_written});
            return;
        }
        if (m_job->stdin_buf.size() + m.bytes.size() > kStdinCap) {
            log("the host sent stdin beyond its window; " + std::to_string(m.bytes.size()) + " bytes dropped");
            return;
        }
        m_job->stdin_buf += m.bytes;
    }
    void on_message(g::StdinEof&) {
        if (!m_job) return;
        m_job->stdin_eof = true;
        if (m_job->stdin_buf.empty()) m_job->in.reset();
    }
    void on_message(g::Kill&) {
        if (!m_job) return finish_without_job();
        kill_job();
    }
    void on_message(g::Verdict& v) {
        if (!m_job) return;
        auto& j = *m_job;
        auto it = j.pending.find(v.id);
        if (it == j.pending.end()) return;  // answered already, or the task died and the kernel dropped it
        Pending p = it->second;
        j.pending.erase(it);
        if (v.flags & g::Verdict::kKill) {
            // Never answered: the task dies with the notification pending.
            kill_job();
            return;
        }
        if (v.flags & g::Verdict::kTrap) syscall(SYS_tkill, p.pid, SIGSYS);
        seccomp_notif_resp* resp = m_resp;
        memset(resp, 0, sizeof *resp);
        resp->id = v.id;
        resp->error = -v.error;
        resp->flags = (v.flags & g::Verdict::kContinue) ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
        if (p.clone3 && resp->flags) {
            // A learn replay's or a logging policy's "continue" never runs
            // clone3 (docs/policy.md): the denial is recorded, the answer ENOSYS.
            resp->flags = 0;
            resp->error = -ENOSYS;
        }
        if ((v.flags & g::Verdict::kContinue) && p.exec) j.modules.forget(p.pid);
        seccomp_notify_respond(j.proc.listener.get(), resp);  // ENOENT: the task is gone
    }
    void on_message(g::Job& m) {
        if (m_job || m_input_fd) return protocol_error("a second Job, or a Job inside an input");
        m_had_job = true;
        start_job(m);
    }
    void on_message(g::Rehearse& m) {
        if (m_had_job || m_rehearsed || m_input_fd || !m_input_list.empty())
            return protocol_error("a Rehearse after a Job, an input or another Rehearse");
        m_rehearsed = true;
        rehearse(m);
    }

    // ---- the job ----

    // Builds the job's guest cgroup, stdio pipes and plan and starts moat-init
    // (spawn_container_job: on return the job waits in its first execve for
    // the answer to its exec notice). On failure everything made is undone
    // and the step that failed is said in `step`.
    struct SpawnFailure {
        std::string step;
        Error error;
    };
    std::expected<std::unique_ptr<RunningJob>, SpawnFailure> spawn_job(const g::Job& m, const char* cgroup_name, bool rehearsal) {
        std::unique_ptr<RunningJob> rj;
        auto fatal = [this, &rj](const std::string& step, const Error& e) {
            if (rj && rj->cg) {
                (void)rj->cg->destroy();
                remove_cgroup_parent();
            }
            return std::unexpected(SpawnFailure{step, e});
        };
        auto j = nlohmann::json::parse(m.plan_json, nullptr, false);
        if (j.is_discarded()) return fatal("parse(plan)", Error::msg("the Job's plan is not JSON"));
        auto plan = sandbox::ContainerPlan::from_json(j);
        if (!plan) return fatal("parse(plan)", plan.error());
        sandbox::ContainerPlan& cp = *plan;
        cp.newroot = m_newroot;
        // A job's program this guest has not read ahead (a cold guest, or a
        // warm one rehearsed for another): start its reads now, so virtio-blk
        // fills the page cache while the set-up below runs (under TCG the
        // exec of /usr/bin/true then took ~65 ms instead of ~100).
        if (!rehearsal && cp.exe != m_prefetched) prefetch(cp.exe, true);
        const std::string img = kRootImage;
        for (auto& mt : cp.mounts) {
            if (mt.kind != sandbox::MountSpec::Kind::BindRo && mt.kind != sandbox::MountSpec::Kind::BindRw) continue;
            if (mt.source == img || mt.source.rfind(img + "/", 0) == 0) {
                std::string rest = mt.source.substr(img.size());
                mt.source = m_opt.root_dir == "/" ? (rest.empty() ? "/" : rest) : m_opt.root_dir + rest;
            }
        }
        for (const auto& in : m_input_list) {
            sandbox::MountSpec ms;
            ms.kind = sandbox::MountSpec::Kind::BindRo;
            ms.source = in.guest;
            ms.target = in.sandbox;
            cp.mounts.push_back(std::move(ms));
        }

        rj = std::make_unique<RunningJob>();
        rj->interval_ns = m.sample_interval_ns;
        rj->next_sample = now_monotonic_ns() + int64_t(m.sample_interval_ns);

        // The guest cgroup: limits the job and gives the samples.
        cgroup::Limits lim;
        if (m.memory_max) lim.memory_bytes = m.memory_max;
        if (m.pids_max) lim.pids = m.pids_max;
        Result<cgroup::Layout> layout = m_opt.test_mode ? cgroup::Layout::detect()
                                                        : Result<cgroup::Layout>(cgroup::Layout::v2_at("/sys/fs/cgroup"));
        std::string parent = m_opt.cgroup_parent;
        if (parent.empty()) parent = m_opt.test_mode ? "moat-agent-test-" + std::to_string(getpid()) : "moat";
        m_cg_parent = parent;
        if (layout && !m_opt.test_mode) {
            // Only the controllers whose files this agent writes or reads
            // (memory.max, pids.max, their events and peaks; cpu.stat needs
            // none): each one enabled is set-up work the guest pays on its
            // first job (cpu and io were ~5 ms of a cold job under TCG). The
            // job's CPU is bounded outside, by QEMU's cgroup on the host.
            auto& c = layout->v2_controllers;
            std::erase_if(c, [](const std::string& x) { return x != "memory" && x != "pids"; });
        }
        if (layout) m_layout = *layout;
        auto cg = layout ? cgroup::JobCgroup::create(*layout, parent, cgroup_name, lim)
                         : Result<cgroup::JobCgroup>(std::unexpected(layout.error()));
        if (cg) rj->cg.emplace(std::move(*cg));
        else if (m_opt.test_mode) log("test mode: the job runs without a cgroup (no limits, no samples): " + cg.error().message);
        else return fatal("cgroup", cg.error());

        UniqueFd job_ends[3];
        for (int i = 0; i < 3; ++i) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0) return fatal("pipe2(stdio)", Error::sys("pipe2", errno));
            job_ends[i].reset(i == 0 ? p[0] : p[1]);
            UniqueFd ours(i == 0 ? p[1] : p[0]);
            set_nonblock(ours.get());
            if (i == 0) rj->in = std::move(ours);
            else rj->out[i - 1] = std::move(ours);
        }
        // moat-init's code runs in the cloned child itself (this agent is
        // single-threaded): no exec of a second static binary and no second
        // parse of the plan, ~40 ms of a warm start under TCG.
        sandbox::ContainerSpawnPlan sp;
        sp.plan_in_process = &cp;
        sp.run_in_process = &sandbox::container_init_run;
        sp.host_root_uid = sp.host_root_gid = m_opt.uid_base;
        sp.host_job_uid = sp.host_job_gid = m_opt.uid_base + 1;
        sp.inside_uid = cp.uid;
        sp.inside_gid = cp.gid;
        for (int i = 0; i < 3; ++i) sp.stdio[i] = job_ends[i].get();
        sp.cgroup = rj->cg ? &*rj->cg : nullptr;
        // The guest has no network device and this agent no socket or ipc
        // object: the job keeps the guest's network and ipc namespaces (its
        // `lo` stays down), unless the policy asks for loopback, which needs
        // a namespace whose `lo` the job's init may bring up. docs/vm.md.
        sp.new_net_ipc = m_opt.test_mode || cp.loopback;
        auto spawned = sandbox::spawn_container_job(sp);
        if (!spawned) return fatal("spawn", spawned.error());
        rj->proc = std::move(*spawned);
        return rj;
    }

    void start_job(const g::Job& m) {
        auto rj = spawn_job(m, "job", false);
        if (!rj) {
            setup_status(rj.error().step, rj.error().error.sys_errno, rj.error().error.message, true);
            return finish_without_job();
        }
        for (const auto& w : (*rj)->proc.warnings) setup_status(w.step, w.err, w.detail, false);
        send(g::Started{int32_t((*rj)->proc.pid)});
        m_job = std::move(*rj);
    }

    // A warm guest's dress rehearsal (g::Rehearse): the whole set-up of the
    // plan, up to an exec of a path that does not exist, which this agent
    // refuses itself; then everything is undone. Nothing goes to the host:
    // the guest sits in moatd's pool meanwhile, and a Job that comes waits in
    // the port until this returns. Its only purpose is that TCG translates
    // the set-up's code (the agent's, moat-init's, the guest kernel's) here,
    // before a job is waiting for it; the guest console says how long it took.
    void rehearse(const g::Rehearse& m) {
        const int64_t t0 = now_monotonic_ns();
        auto rj = spawn_job(m.job, "rehearsal", true);
        if (!rj) {
            console("rehearsal: " + rj.error().step + ": " + rj.error().error.message);
            return;
        }
        RunningJob& j = **rj;
        const int64_t spawned = now_monotonic_ns();
        const int64_t deadline = spawned + 10'000'000'000;
        bool exited = false;
        while (!exited && now_monotonic_ns() < deadline) {
            pollfd p[2] = {{j.proc.pidfd.get(), POLLIN, 0}, {j.proc.listener.get(), POLLIN, 0}};
            if (::poll(p, j.proc.listener && !j.listener_gone ? 2 : 1, 1000) < 0 && errno != EINTR) break;
            if (p[1].revents & POLLIN) {
                seccomp_notif* req = m_req;
                memset(req, 0, sizeof *req);
                if (seccomp_notify_receive(j.proc.listener.get(), req) == 0) {
                    uint64_t args[6];
                    for (int i = 0; i < 6; ++i) args[i] = req->data.args[i];
                    // The same decoding a job's notices get (that code is warmed too).
                    if (req->data.arch == AUDIT_ARCH_X86_64 && !(req->data.nr & 0x40000000))
                        (void)supervisor::decode_args(pid_t(req->pid), req->data.nr, args);
                    (void)j.modules.resolve(pid_t(req->pid), req->data.instruction_pointer, now_monotonic_ns());
                    seccomp_notif_resp* resp = m_resp;
                    memset(resp, 0, sizeof *resp);
                    resp->id = req->id;
                    resp->error = -ENOENT;
                    seccomp_notify_respond(j.proc.listener.get(), resp);
                }
            } else if (p[1].revents) {
                j.listener_gone = true;
            }
            if (p[0].revents & POLLIN) {
                int ws;
                exited = waitpid(j.proc.pid, &ws, WNOHANG) == j.proc.pid;
            }
        }
        if (!exited) {
            ::kill(j.proc.pid, SIGKILL);
            int ws;
            while (waitpid(j.proc.pid, &ws, 0) < 0 && errno == EINTR) {}
        }
        if (j.cg) {
            // The parent (with its controllers enabled) stays for the job.
            (void)j.cg->kill_all(2000);
            (void)j.cg->destroy();
        }
        const int64_t t1 = now_monotonic_ns();
        console("rehearsal: set-up " + std::to_string((spawned - t0) / 1'000'000) + " ms, to the end " +
                std::to_string((t1 - t0) / 1'000'000) + " ms" + (exited ? "" : " (moat-init killed after 10 s)"));
        if (!m.prefetch.empty()) prefetch(m.prefetch, false);
    }

    // Reads the key's last program and the files its exec will read from the
    // root image into the page cache (moat/guest/prefetch.h): the job's exec
    // then does not wait on virtio-blk. Bounded (32 files, 32 MiB), so a job
    // that arrives meanwhile waits at most that long. `advise`: only start the
    // reads (a job is waiting).
    void prefetch(const std::string& program, bool advise) {
        const int64_t t0 = now_monotonic_ns();
        m_prefetched = program;
        UniqueFd root(::open(m_opt.root_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return console("prefetch: open(" + m_opt.root_dir + "): " + strerror(errno));
        g::PrefetchLimits lim;
        lim.advise = advise;
        auto r = g::prefetch_program(root.get(), program, lim);
        std::string line = std::string(advise ? "read-ahead: " : "prefetch: ") + std::to_string(r.files.size()) +
                           " file(s), " + std::to_string(r.bytes >> 10) + " KiB in " +
                           std::to_string((now_monotonic_ns() - t0) / 1'000'000) + " ms";
        for (const auto& s : r.skipped) line += "; " + s;
        console(clip(line, 2000));
    }

    void on_notify(short revents) {
        auto& j = *m_job;
        if (!(revents & POLLIN)) {
            // Every task using the filter is gone.
            j.listener_gone = true;
            return;
        }
        seccomp_notif* req = m_req;
        memset(req, 0, sizeof *req);
        if (seccomp_notify_receive(j.proc.listener.get(), req) < 0) return;  // the task died meanwhile
        const int nr = req->data.nr;
        const uint32_t arch = req->data.arch;
        const pid_t tid = pid_t(req->pid);
        uint64_t args[6];
        for (int i = 0; i < 6; ++i) args[i] = req->data.args[i];
        const bool native = arch == AUDIT_ARCH_X86_64 && !(nr & 0x40000000);
        std::optional<std::string> decoded = native ? supervisor::decode_args(tid, nr, args) : std::nullopt;
        std::optional<std::string> module = j.modules.resolve(tid, req->data.instruction_pointer, now_monotonic_ns());
        if (native && nr == SYS_clone3) {
            // As moatd's seccomp and container tiers do: every clone3 is refused.
            // Without namespace flags it is ENOSYS (glibc falls back to clone)
            // and nobody needs to hear of it; with them it is a denial worth
            // recording, and the host answers it.
            uint64_t flags = 0;
            auto raw = supervisor::read_remote(tid, args[0], sizeof flags);
            if (raw) memcpy(&flags, raw->data(), sizeof flags);
            if (!raw || !(flags & kCloneNamespaceFlags)) {
                seccomp_notif_resp* resp = m_resp;
                memset(resp, 0, sizeof *resp);
                resp->id = req->id;
                resp->error = -ENOSYS;
                seccomp_notify_respond(j.proc.listener.get(), resp);
                return;
            }
            static const std::pair<uint64_t, const char*> kNs[] = {
                {CLONE_NEWNS, "CLONE_NEWNS"},   {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {CLONE_NEWUTS, "CLONE_NEWUTS"},
                {CLONE_NEWIPC, "CLONE_NEWIPC"}, {CLONE_NEWUSER, "CLONE_NEWUSER"},     {CLONE_NEWPID, "CLONE_NEWPID"},
                {CLONE_NEWNET, "CLONE_NEWNET"}, {0x00000080, "CLONE_NEWTIME"}};
            std::string names;
            for (auto [bit, n] : kNs)
                if (flags & bit) names += (names.empty() ? "" : "|") + std::string(n);
            decoded = "flags " + names;
        }
        if (decoded) decoded = clip(supervisor::printable(*decoded), g::kMaxText);
        if (module) module = clip(supervisor::printable(*module), g::kMaxText);
        // The memory read is meaningful only if the request is still live.
        if (seccomp_notify_id_valid(j.proc.listener.get(), req->id) < 0) return;
        g::Notice n;
        n.id = req->id;
        n.pid = tid;
        n.nr = nr;
        n.arch = arch;
        for (int i = 0; i < 6; ++i) n.args[i] = args[i];
        n.ip = req->data.instruction_pointer;
        n.decoded = std::move(decoded);
        n.module = std::move(module);
        const bool exec = native && (nr == SYS_execve || nr == SYS_execveat);
        j.pending[req->id] = Pending{tid, exec, native && nr == SYS_clone3};
        send(n);
    }

    void on_status() {
        auto& j = *m_job;
        auto s = sandbox::read_setup_status(j.proc.status.get());
        for (const auto& r : s.records) {
            if (std::string(r.step) == "exit" && !r.fatal) j.inner_status = r.err;  // moat-init: the job's wait status
            else if (sandbox::is_progress_record(r))
                continue;
            else {
                if (r.fatal) j.exec_failed = true;
                setup_status(r.step, r.err, r.detail, r.fatal != 0);
            }
        }
        if (s.eof) j.proc.status.reset();
    }

    void on_output(int k) {
        auto& j = *m_job;
        char buf[g::kMaxChunk];
        ssize_t n = ::read(j.out[k].get(), buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            j.out[k].reset();
            send(g::OutputEof{uint8_t(k + 1)});
            return;
        }
        send(g::Output{uint8_t(k + 1), std::string(buf, size_t(n))});
    }

    void on_stdin_writable() {
        auto& j = *m_job;
        ssize_t w = ::write(j.in.get(), j.stdin_buf.data(), j.stdin_buf.size());
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            // EPIPE: the job closed its stdin; what is left goes nowhere.
            j.stdin_written += j.stdin_buf.size();
            j.stdin_buf.clear();
            j.in.reset();
        } else {
            j.stdin_written += uint64_t(w);
            j.stdin_buf.erase(0, size_t(w));
        }
        if (j.stdin_buf.empty() && j.stdin_eof) j.in.reset();
        if (j.stdin_written - j.stdin_acked >= kAckEvery || j.stdin_buf.empty()) {
            j.stdin_acked = j.stdin_written;
            send(g::StdinConsumed{j.stdin_written});
        }
    }

    void on_init_exit() {
        auto& j = *m_job;
        int ws = 0;
        pid_t r;
        do r = waitpid(j.proc.pid, &ws, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == 0) return;
        j.init_exited = true;
        j.init_status = ws;
        j.exited_at = now_monotonic_ns();
        // moat-init killed the rest of its namespace; make sure of it.
        if (j.cg) (void)j.cg->kill_all(2000);
    }

    // The host is gone: nobody will answer a notification or read an Exit.
    // Kill the job, reap moat-init and remove the cgroup (test mode lives on
    // a host that keeps running; in the guest, a power-off follows).
    void abandon_job() {
        if (!m_job) return;
        kill_job();
        if (!m_job->init_exited) {
            int ws;
            while (waitpid(m_job->proc.pid, &ws, 0) < 0 && errno == EINTR) {}
        }
        if (m_job->cg) {
            (void)m_job->cg->kill_all(2000);
            (void)m_job->cg->destroy();
            remove_cgroup_parent();
        }
        m_job.reset();
    }

    void remove_cgroup_parent() {
        if (m_layout.version == cgroup::Version::V2) ::rmdir((m_layout.v2_root + "/" + m_cg_parent).c_str());
        else
            for (const auto& [ctl, mnt] : m_layout.v1) ::rmdir((mnt + "/" + m_cg_parent).c_str());
    }

    void kill_job() {
        auto& j = *m_job;
        j.killed = true;
        // moat-init is pid 1 of the job's pid namespace: when it dies, every
        // process in the namespace dies with it.
        if (!j.init_exited) ::kill(j.proc.pid, SIGKILL);
    }

    void maybe_sample() {
        auto& j = *m_job;
        if (!j.interval_ns || j.init_exited || !j.cg) return;
        const int64_t now = now_monotonic_ns();
        if (now < j.next_sample) return;
        j.next_sample = now + int64_t(j.interval_ns);
        if (m_out_bytes >= kHighWater) return;  // the host is behind: a later sample says the same
        send_sample();
    }

    void send_sample() {
        auto s = m_job->cg->sample();
        if (!s) return;
        send(g::Sample{s->cpu_ns, s->memory_bytes, s->memory_peak_bytes, s->pids, s->oom_kills, s->pids_max_hits});
    }

    void maybe_finish() {
        auto& j = *m_job;
        if (!j.init_exited) return;
        // Wait for the last output and the last records (bounded: 5 s after the
        // exit, in case something still holds a pipe end).
        const bool drained = !j.out[0] && !j.out[1] && !j.proc.status;
        if (!drained && now_monotonic_ns() - j.exited_at < 5'000'000'000) return;
        if (j.proc.status) on_status();
        for (int k = 0; k < 2; ++k)
            if (j.out[k]) {
                j.out[k].reset();
                send(g::OutputEof{uint8_t(k + 1)});
            }
        if (j.cg) send_sample();
        // What counts is the job's status (moat-init reports it), not moat-init's.
        int status = j.inner_status.value_or(j.init_status);
        if (WIFSTOPPED(status) || WIFCONTINUED(status)) status = SIGKILL;
        send(g::Exit{status, j.killed});
        if (j.cg) {
            (void)j.cg->kill_all(2000);
            (void)j.cg->destroy();
            remove_cgroup_parent();
        }
        m_job.reset();
        m_done = true;
        m_exit_code = 0;
    }

    struct InputRec {
        std::string guest, sandbox;
        uint32_t mode;
    };

    const Options& m_opt;
    UniqueFd m_ctl;
    g::Decoder m_dec;
    std::deque<std::string> m_out;
    size_t m_out_off = 0, m_out_bytes = 0;
    bool m_ctl_dead = false, m_done = false;
    int m_exit_code = 1;
    std::string m_work, m_inputs, m_newroot, m_cg_parent;
    std::string m_prefetched;  // the program whose files were last read ahead
    bool m_own_work = false;
    bool m_had_job = false, m_rehearsed = false;
    cgroup::Layout m_layout;
    UniqueFd m_input_fd;
    uint64_t m_input_left = 0;
    std::vector<InputRec> m_input_list;
    std::unique_ptr<RunningJob> m_job;
    seccomp_notif* m_req = nullptr;
    seccomp_notif_resp* m_resp = nullptr;

public:
    bool alloc_notif() { return seccomp_notify_alloc(&m_req, &m_resp) == 0; }
};

}  // namespace

int run(const Options& opt) {
    signal(SIGPIPE, SIG_IGN);
    const int64_t started_boottime = boottime_ns();
    Boot boot;
    UniqueFd ctl;
    if (opt.test_mode) {
        ctl.reset(opt.ctl_fd);
    } else {
        // pid 1 of the guest: the kernel gave us nothing but the initramfs.
        mount_one(boot, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
        mount_one(boot, "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
        mount_one(boot, "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        // The kernel opens /dev/console as fds 0-2 only when the initramfs has
        // the node. Fill the gaps, so no later open (the control port) lands
        // on 2, where console() writes.
        for (int fd = 0; fd <= 2; ++fd) {
            if (fcntl(fd, F_GETFD) >= 0) continue;
            int c = ::open("/dev/console", O_RDWR | O_NOCTTY);
            if (c < 0) c = ::open("/dev/null", O_RDWR);
            if (c >= 0 && c != fd) {
                dup2(c, fd);
                ::close(c);
            }
        }
        mount_one(boot, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        mount_one(boot, "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
        load_modules(boot);
        std::string port = find_ctl_port(5000);
        if (port.empty()) {
            console("no virtio port named moat.ctl appeared within 5 s; powering off");
            power_off();
        }
        ctl.reset(::open(port.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
        if (!ctl) {
            console("open(" + port + "): " + strerror(errno));
            power_off();
        }
        // favordynmods (Linux 6.0+): moving a task into a cgroup (the job's
        // init, at each job) does not wait for an RCU grace period, which
        // under TCG is ~10 ms of a cold job's set-up. Without it on an older
        // guest kernel, the plain mount.
        if (::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods") < 0)
            mount_one(boot, "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    }
    set_nonblock(ctl.get());
    fcntl(ctl.get(), F_SETFD, FD_CLOEXEC);

    Agent a(opt, std::move(ctl));
    utsname u{};
    uname(&u);
    a.send(g::Hello{g::kProtocolVersion, clip(u.release, g::kMaxRelease), uint64_t(started_boottime), landlock_abi_now()});
    for (auto& n : boot.notes) a.setup_status(n.step, n.err, n.detail, false);
    bool fatal = false;
    if (!opt.test_mode && access("/dev/vda", F_OK) == 0) {
        ::mkdir(kRootImage, 0755);
        if (::mount("/dev/vda", kRootImage, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, "noload") < 0) {
            a.setup_status("mount(/dev/vda)", errno, std::string("ext4 ro,noload at ") + kRootImage, true);
            fatal = true;
        }
    }
    if (!fatal) {
        if (auto r = a.init_work_dir(); !r) {
            a.setup_status("work directory", r.error().sys_errno, r.error().message, true);
            fatal = true;
        }
    }
    if (!fatal && !a.alloc_notif()) {
        a.setup_status("seccomp_notify_alloc", ENOMEM, "", true);
        fatal = true;
    }
    int code = fatal ? 1 : a.loop();
    a.drain(5000);
    if (opt.test_mode) return code;
    power_off();
}

}  // namespace moat::agent
