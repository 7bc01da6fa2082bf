// The vm tier (docs/vm.md): each job runs in a QEMU microvm guest of its own,
// started jailed (an unprivileged uid, the job's cgroup, QEMU's -sandbox, no
// network device, no host filesystem shared), whose pid 1 is the guest agent.
// Inside, the agent runs the job the way the container tier does on the host
// (namespaces, the same compiled filter with user notification, rlimits,
// a cgroup) and forwards each notified syscall; moatd judges it with the
// policy, exactly as for the other tiers, and the agent carries the answer out.
//
// Boot is paid before the job where possible: a warm pool keeps booted guests
// per (root image, guest memory) recently used. A guest serves one job and is
// destroyed. Everything the guest says is read through the framed, bounded,
// validated protocol of core/guest (docs/vm-protocol.md).
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "../tier.h"
#include "moat/common/log.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"
#include "moat/guest/protocol.h"
#include "moat/sandbox/container_plan.h"
#include "moat/supervisor/decode.h"
#include "moat/vm/accel.h"
#include "moat/vm/guest_kernel.h"
#include "moat/vm/initramfs.h"
#include "moat/vm/qemu_jail.h"
#include "moat/vm/root_image.h"

namespace moat::supervisor {

namespace {

constexpr const char* kCtlPort = "moat.ctl";
constexpr const char* kImageRoot = "/mnt/root";       // where the agent mounts the root image
constexpr const char* kRehearsalExe = "/.moat-rehearsal/no-such-program";  // a warm guest's rehearsal execs this
constexpr size_t kReadPerWake = 256 << 10;         // guest bytes read per loop wake-up, per guest
constexpr size_t kMaxOutbound = 1 << 20;           // bytes queued to a guest before inputs/stdin pause
constexpr size_t kMaxQueued = 8 << 20;             // bytes queued to a guest at all: past it, the guest is broken
constexpr int kMaxGuestLogs = 32;                  // guest Log lines stored per job; the rest are counted
constexpr size_t kConsoleTail = 2048;              // console bytes quoted in a boot failure
constexpr uint64_t kPoolSweepNs = 5'000'000'000;
constexpr size_t kMaxPoolKeys = 4;

std::string tail_of(const std::string& s, size_t n) {
    std::string t = s.size() > n ? s.substr(s.size() - n) : s;
    return printable(t);
}

uint64_t round_mib(uint64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }

// What prepare() makes on the worker thread.
struct Prepared {
    vm::RootImage image;
    vm::AccelVerdict accel;
};

struct VmPlan final : Plan {
    std::vector<sandbox::MountSpec> mounts;  // the guest's view: binds from the image, tmpfs for read_write
    std::shared_ptr<Prepared> prepared;
    uint64_t guest_ram = 0;                  // bytes
    std::string pool_key;
    std::vector<std::string> notes;
    std::vector<UniqueFd> inputs;            // each --input, streamed to the guest
    std::vector<std::string> input_paths;    // their sandbox paths
};

// One QEMU guest: started jailed, its control port and console read on the
// loop. Owned by the pool until a job takes it, then by the job.
class Guest final {
public:
    using OnMessage = std::function<void(guest::GuestMessage&&)>;
    using OnEnd = std::function<void()>;

    Guest(EventLoop& loop, std::function<void(uid_t)> release) : m_loop(loop), m_release(std::move(release)) {}
    ~Guest() {
        stop();
        if (m_cg) {
            (void)m_cg->kill_all(1000);
            (void)m_cg->destroy();
        }
        if (m_owned_uid && m_release) m_release(m_owned_uid);
    }

    Result<void> start(vm::QemuConfig cfg) {
        int ctl[2], con[2], log[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) return std::unexpected(Error::sys("socketpair", errno));
        UniqueFd ctl_ours(ctl[0]), ctl_theirs(ctl[1]);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0) return std::unexpected(Error::sys("socketpair", errno));
        UniqueFd con_ours(con[0]), con_theirs(con[1]);
        if (pipe2(log, O_CLOEXEC) < 0) return std::unexpected(Error::sys("pipe2", errno));
        UniqueFd log_ours(log[0]), log_theirs(log[1]);
        cfg.ports = {{kCtlPort, ctl_theirs.get()}};
        cfg.console_fd = con_theirs.get();
        cfg.log_fd = log_theirs.get();
        m_launched_mono = now_monotonic_ns();
        auto q = vm::launch_qemu(cfg);
        if (!q) return std::unexpected(q.error());
        m_qemu = std::move(*q);
        m_ctl = std::move(ctl_ours);
        m_console = std::move(con_ours);
        m_log = std::move(log_ours);
        for (int fd : {m_ctl.get(), m_console.get(), m_log.get()}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        (void)m_loop.add_fd(m_ctl.get(), EPOLLIN, [this](uint32_t ev) { on_ctl(ev); });
        m_ctl_events = EPOLLIN;
        (void)m_loop.add_fd(m_console.get(), EPOLLIN, [this](uint32_t) {
            if (!m_console_log.drain(m_console.get())) {
                m_loop.remove_fd(m_console.get());
                m_console.reset();
            }
        });
        (void)m_loop.add_fd(m_log.get(), EPOLLIN, [this](uint32_t) {
            if (!m_qemu_log.drain(m_log.get())) {
                m_loop.remove_fd(m_log.get());
                m_log.reset();
            }
        });
        (void)m_loop.add_fd(m_qemu.pidfd.get(), EPOLLIN, [this](uint32_t) { on_qemu_exit(); });
        return {};
    }

    void set_handlers(OnMessage m, OnEnd e) {
        m_on_message = std::move(m);
        m_on_end = std::move(e);
    }

    // Queues a whole frame for the guest.
    void send(std::string frame) {
        if (!m_ctl || !m_protocol_error.empty()) return;
        m_out += frame;
        flush();
        // What moatd sends unasked is paced by outbound(); answers (verdicts)
        // are not, so a guest that sends notices but never reads its port
        // would make this queue grow: past the bound the guest is broken.
        if (m_out.size() > kMaxQueued) violation("the guest does not read its control port (" +
                                                 std::to_string(m_out.size()) + " bytes queued for it)");
    }
    size_t outbound() const { return m_out.size(); }
    void set_on_drained(std::function<void()> f) { m_on_drained = std::move(f); }

    // Backpressure: while paused nothing more is read from the guest (QEMU's
    // virtio-serial then stops the guest's writes).
    void pause_reading(bool paused) {
        m_paused = paused;
        update_interest();
    }

    void kill() {
        if (m_qemu.pid > 0 && !m_exited) ::kill(m_qemu.pid, SIGKILL);
    }

    pid_t pid() const { return m_qemu.pid; }
    bool ended() const { return m_exited; }
    bool said_hello() const { return m_hello.has_value(); }
    const guest::Hello& hello() const { return *m_hello; }
    int64_t boot_ns() const { return m_hello_mono - m_launched_mono; }
    int64_t hello_mono() const { return m_hello_mono; }
    const std::string& protocol_error() const { return m_protocol_error; }
    std::optional<int> qemu_status() const { return m_status; }
    std::string console_tail() const { return tail_of(m_console_log.text(), kConsoleTail); }
    std::string qemu_log_tail() const { return tail_of(m_qemu_log.text(), 1024); }
    const std::vector<std::string>& argv() const { return m_qemu.argv; }

    // A pool guest brings its own cgroup and uid.
    std::optional<cgroup::JobCgroup>& cgroup() { return m_cg; }
    void own_uid(uid_t u) { m_owned_uid = u; }
    uid_t uid = 0;
    std::string pool_key;

private:
    void stop() {
        if (m_ctl) m_loop.remove_fd(m_ctl.get());
        if (m_console) m_loop.remove_fd(m_console.get());
        if (m_log) m_loop.remove_fd(m_log.get());
        if (m_qemu.pidfd) {
            m_loop.remove_fd(m_qemu.pidfd.get());
            if (!m_exited) {
                ::kill(m_qemu.pid, SIGKILL);
                siginfo_t si{};
                waitid(idtype_t(3), id_t(m_qemu.pidfd.get()), &si, WEXITED);  // P_PIDFD: QEMU dies at once
                m_exited = true;
            }
        }
        m_ctl.reset();
    }

    void update_interest() {
        if (!m_ctl) return;
        uint32_t want = (m_paused ? 0u : uint32_t(EPOLLIN)) | (m_out.empty() ? 0u : uint32_t(EPOLLOUT));
        if (want != m_ctl_events) {
            (void)m_loop.modify_fd(m_ctl.get(), want);
            m_ctl_events = want;
        }
    }

    void flush() {
        while (!m_out.empty() && m_ctl) {
            ssize_t n = ::send(m_ctl.get(), m_out.data(), m_out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno != EAGAIN) m_out.clear();  // the guest is gone; its end is reported by QEMU's exit
                break;
            }
            m_out.erase(0, size_t(n));
        }
        update_interest();
        if (m_out.size() < kMaxOutbound / 2 && m_on_drained) m_on_drained();
    }

    void violation(const std::string& what) {
        if (m_protocol_error.empty()) m_protocol_error = what;
        m_paused = true;
        m_out.clear();
        update_interest();
        kill();
    }

    // Reads what the guest sent (bounded per wake-up) and hands each message on.
    void read_ctl(size_t budget) {
        char buf[16384];
        while (budget > 0 && m_ctl && !m_paused && m_protocol_error.empty()) {
            ssize_t n = ::recv(m_ctl.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            budget -= std::min(budget, size_t(n));
            std::vector<guest::Frame> frames;
            // The frames whole before a break in the same read still count
            // (a Hello then garbage is a guest that broke the protocol, not
            // one that never spoke); the break is acted on after them.
            auto fed = m_decoder.feed({buf, size_t(n)}, frames);
            for (auto& f : frames) {
                auto m = guest::parse_guest(f);
                if (!m) return violation(m.error().message);
                if (auto* h = std::get_if<guest::Hello>(&*m)) {
                    if (m_hello) return violation("a second Hello");
                    if (h->version != guest::kProtocolVersion)
                        return violation("protocol version " + std::to_string(h->version) + ", moatd speaks " +
                                         std::to_string(guest::kProtocolVersion));
                    m_hello = *h;
                    m_hello_mono = now_monotonic_ns();
                } else if (!m_hello) {
                    return violation(std::string("a ") + guest::type_name(f.type) + " before Hello");
                }
                if (m_on_message) m_on_message(std::move(*m));
                if (!m_ctl) return;
            }
            if (!fed) return violation(fed.error().message);
        }
    }

    void on_ctl(uint32_t ev) {
        if (ev & EPOLLOUT) flush();
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_ctl(kReadPerWake);
    }

    void on_qemu_exit() {
        siginfo_t si{};
        if (waitid(idtype_t(3), id_t(m_qemu.pidfd.get()), &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) return;
        m_exited = true;
        m_status = si.si_code == CLD_EXITED ? si.si_status << 8 : si.si_status;
        m_loop.remove_fd(m_qemu.pidfd.get());
        // What the guest wrote before it ended still counts (its Exit).
        m_paused = false;
        if (m_ctl) read_ctl(guest::kMaxGuestPayload * 4);
        if (m_console) m_console_log.drain(m_console.get());
        if (m_log) m_qemu_log.drain(m_log.get());
        if (m_on_end) m_on_end();  // may destroy this
    }

    EventLoop& m_loop;
    std::function<void(uid_t)> m_release;
    vm::QemuProcess m_qemu;
    UniqueFd m_ctl, m_console, m_log;
    uint32_t m_ctl_events = 0;
    bool m_paused = false, m_exited = false;
    std::optional<int> m_status;
    guest::Decoder m_decoder{guest::Direction::GuestToHost};
    std::string m_out;
    std::optional<guest::Hello> m_hello;
    int64_t m_launched_mono = 0, m_hello_mono = 0;
    std::string m_protocol_error;
    vm::ConsoleLog m_console_log{16 * 1024}, m_qemu_log{4 * 1024};
    OnMessage m_on_message;
    OnEnd m_on_end;
    std::function<void()> m_on_drained;
    std::optional<cgroup::JobCgroup> m_cg;
    uid_t m_owned_uid = 0;
};

class VmTier;

// A job in a guest.
class VmRunning final : public Running {
public:
    VmRunning(const VmTier& tier, std::unique_ptr<Guest> g, VmPlan& plan, const LaunchInput& in, bool warm);
    ~VmRunning() override;

    pid_t pid() const override { return m_guest->pid(); }
    void watch(EventLoop& loop, JobEvents& events) override;
    bool clock_at_launch() const override { return false; }  // from the guest's Hello
    void unwatch(EventLoop& loop) override;
    void kill() override {
        m_killed = true;
        m_guest->kill();
    }
    Outcome outcome() override;
    nlohmann::json costs() const override {
        return {{"guest_logs_not_stored", m_logs_dropped}, {"guest_bytes_out", m_out_bytes}};
    }
    cgroup::Sample adjust_sample(const cgroup::Sample& host) override;
    // This job's plan scrubbed of what is the job's own, as a Rehearse frame
    // for the pool's next guest of the same key (empty if it did not encode).
    const std::string& rehearsal_frame() const { return m_rehearsal_frame; }
    // Called once, when the job's first exec has its verdict (the program
    // starts), and once when this job ends.
    void on_program_start(std::function<void()> f) { m_on_program_start = std::move(f); }
    void on_end(std::function<void()> f) { m_on_end = std::move(f); }

private:
    void on_message(guest::GuestMessage&& m);
    void send_job();
    void pump();  // inputs, then stdin, as far as the guest's queue allows
    void on_output(int stream, std::string bytes);
    void drain_output(int stream);
    void close_output(int stream);
    void boot_failed(const std::string& why);
    std::function<void()> m_on_program_start, m_on_end;

    const VmTier& m_tier;
    std::unique_ptr<Guest> m_guest;
    EventLoop* m_loop = nullptr;
    JobEvents* m_events = nullptr;
    bool m_warm = false;
    // What the job is sent.
    std::string m_job_frame;
    std::string m_rehearsal_frame;
    std::vector<UniqueFd> m_inputs;
    std::vector<std::string> m_input_paths;
    size_t m_input_index = 0;
    uint64_t m_input_off = 0;
    bool m_input_open = false, m_job_sent = false, m_inputs_done = false, m_talking = false;
    UniqueFd m_stdin;                 // the job's end of its stdin pipe: read here, sent to the guest
    bool m_stdin_watched = false, m_stdin_eof = false;
    uint64_t m_stdin_sent = 0, m_stdin_consumed = 0;
    UniqueFd m_outfd[3];              // [1], [2]: the job's ends of stdout/stderr, written here
    std::string m_pending[3];         // output the pipe did not take yet (at most one frame)
    bool m_out_watched[3] = {false, false, false};
    bool m_out_eof[3] = {false, false, false};
    // What the guest reported.
    std::optional<int> m_exit_status;
    std::optional<sandbox::SetupRecord> m_exec_failure;
    std::optional<guest::Sample> m_sample;
    std::string m_boot_error;
    EventLoop::TimerId m_boot_timer = 0;
    int m_logs = 0;
    uint64_t m_logs_dropped = 0, m_out_bytes = 0;
    uint64_t m_boot_timeout_ns = 0;
    bool m_killed = false;  // the supervisor destroyed the VM (a limit, a stop, a kill rule)
};

class VmTier final : public Tier {
public:
    VmTier(const Config& cfg, TierHost host) : m_cfg(cfg), m_host(std::move(host)) {
        const auto& v = cfg.vm;
        if (!v.enabled) {
            m_unavailable = "the vm tier is turned off in this moatd (moatd --vm-off)";
            return;
        }
        auto k = vm::GuestKernel::find(v.guest_dir.empty() ? vm::default_guest_dir() : v.guest_dir);
        if (!k) {
            m_unavailable = "the vm tier has no guest kernel: " + k.error().message;
            return;
        }
        m_kernel = std::move(*k);
        if (v.agent_exe.empty() || access(v.agent_exe.c_str(), R_OK) != 0) {
            m_unavailable = "the vm tier needs the static guest agent moat-agent, which moatd did not find (" +
                            (v.agent_exe.empty() ? std::string("moatd --vm-agent") : v.agent_exe) + ")";
            return;
        }
        if (access(v.qemu.c_str(), X_OK) != 0) {
            m_unavailable = "the vm tier needs QEMU (" + v.qemu + "; Debian package qemu-system-x86)";
            return;
        }
        vm::InitramfsInputs ii;
        ii.agent = v.agent_exe;
        ii.cache_dir = v.cache_dir + "/initramfs";
        auto rd = vm::BaseInitramfs::build(*m_kernel, ii);
        if (!rd) {
            m_unavailable = "the vm tier could not build the guest's initramfs: " + rd.error().message;
            return;
        }
        m_initramfs = std::move(*rd);
        // The accelerator probe boots its own tiny initramfs (its /init prints
        // the marker the probe waits for). Without it: TCG, and the record says why.
        if (!v.probe_exe.empty()) {
            vm::InitramfsInputs pi;
            pi.agent = v.probe_exe;
            pi.cache_dir = v.cache_dir + "/initramfs";
            if (auto pr = vm::BaseInitramfs::build(*m_kernel, pi)) m_probe_initramfs = std::move(*pr);
        }
        // Warm guests' groups of a moatd that was killed (its QEMUs died with
        // it: PR_SET_PDEATHSIG) are removed by moatd's start-up sweep
        // (JobCgroup::sweep_stale_groups), under its hold on the parent.
        if (m_host.loop) {
            if (auto t = m_host.loop->add_timer(kPoolSweepNs, kPoolSweepNs, [this] { sweep_pool(); })) m_sweep = *t;
        }
    }
    ~VmTier() override {
        if (m_sweep && m_host.loop) m_host.loop->cancel_timer(m_sweep);
        for (auto& [g, t] : m_boot_timers) m_host.loop->cancel_timer(t);
        m_boot_timers.clear();
        m_pool.clear();
        m_booting.clear();
        m_booting_guests.clear();
        m_graveyard.clear();
    }

    policy::Tier kind() const override { return policy::Tier::Vm; }
    std::optional<Error> unavailable() const override {
        if (!m_unavailable.empty()) return Error::msg(m_unavailable);
        return std::nullopt;
    }

    cgroup::Limits host_limits(const policy::Policy& pol) const override {
        // QEMU and its threads: the guest's RAM plus QEMU's own (documented
        // overhead). Inside, the agent holds the job to limits.memory/pids.
        cgroup::Limits l;
        l.memory_bytes = guest_ram(pol) + m_cfg.vm.vmm_overhead_bytes;
        l.pids = 64;
        return l;
    }

    bool prepares() const override { return true; }
    Result<std::shared_ptr<void>> prepare(const policy::Policy& pol, const std::atomic<bool>& cancel) const override {
        auto p = std::make_shared<Prepared>();
        p->accel = accel();
        if (cancel) return fail("cancelled");
        auto img = image_for(pol.filesystem.read_only);
        if (!img) return std::unexpected(img.error());
        p->image = std::move(*img);
        return std::shared_ptr<void>(p);
    }

    Result<void> restore_input(const Config&, int64_t, size_t, InputFile& in, const std::string& blob, const Identities&,
                               const ClientCreds&, const std::atomic<bool>&, std::string&, UniqueFd& fd, struct stat& st,
                               nlohmann::json& rec) const override {
        // The snapshot itself is streamed into the guest: nothing on the host
        // is staged or shared. A guest gets files only (as in a run).
        if (in.directory)
            return fail("input " + in.host_path +
                        " is a directory: the vm tier streams regular files only into the guest; replay this job "
                        "with --tier container");
        fd.reset(::open(blob.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd || fstat(fd.get(), &st) < 0) return std::unexpected(Error::sys("open the snapshot of " + in.host_path, errno));
        rec["bytes"] = uint64_t(st.st_size);
        return {};
    }

    Result<std::unique_ptr<Plan>> plan(const LaunchInput& in) const override {
        const auto& pol = *in.policy;
        const auto& fs = pol.filesystem;
        if (pol.network == policy::NetworkMode::Host)
            return fail("network.mode = \"host\" is not supported in the vm tier (a guest has no network device "
                        "unless the policy asks for loopback)");
        if (pol.network == policy::NetworkMode::Engine)
            return fail("network.mode = \"engine\" (a network namespace from the client) needs the container tier");
        auto p = std::make_unique<VmPlan>();
        p->prepared = std::static_pointer_cast<Prepared>(in.prepared);
        if (!p->prepared) return fail("the vm tier's preparation did not run");
        for (size_t k = 0; k < in.inputs->size(); ++k) {
            const auto& input = (*in.inputs)[k];
            if (k >= in.input_fds->size() || !(*in.input_fds)[k]) return fail("input " + input.host_path + " was not opened");
            struct stat st{};
            if (fstat((*in.input_fds)[k].get(), &st) < 0 || !S_ISREG(st.st_mode))
                return fail("input " + input.host_path + ": the vm tier streams regular files only into the guest");
            UniqueFd dup(fcntl((*in.input_fds)[k].get(), F_DUPFD_CLOEXEC, 3));
            if (!dup) return std::unexpected(Error::sys("dup(input)", errno));
            p->inputs.push_back(std::move(dup));
            p->input_paths.push_back(input.sandbox_path);
            // The agent binds each input at its path itself, after the plan's mounts.
        }
        auto m = sandbox::plan_mounts(fs.read_only, fs.read_write, fs.tmpfs, fs.tmpfs_size_bytes, {});
        if (!m) return std::unexpected(m.error().wrap("planning the guest's mounts"));
        // The program must be inside: under a read-only or read-write path.
        if (!program_under_binds(in.exe, *m, true))
            return fail("program " + in.exe + " is not inside any filesystem.read_only path of the guest (the vm "
                        "tier's image holds exactly the read_only paths)");
        for (auto& mt : *m) {
            if (mt.kind == sandbox::MountSpec::Kind::BindRo) {
                mt.source = std::string(kImageRoot) + mt.source;
            } else if (mt.kind == sandbox::MountSpec::Kind::BindRw) {
                // No host directory is shared writable with a guest.
                p->notes.push_back("read_write " + mt.target + " is an empty tmpfs of " + format_size(fs.tmpfs_size_bytes) +
                                   " in the guest: no host directory is shared writable with a VM");
                mt.kind = sandbox::MountSpec::Kind::Tmpfs;
                mt.source.clear();
                mt.size = fs.tmpfs_size_bytes;
            }
        }
        p->mounts = std::move(*m);
        p->guest_ram = guest_ram(pol);
        p->pool_key = p->prepared->image.key + ":" + std::to_string(round_mib(p->guest_ram)) + ":" +
                      vm::accel_name(p->prepared->accel.accel);
        for (const auto& miss : p->prepared->image.missing)
            p->notes.push_back("read_only " + miss + " does not exist on the host: not in the guest's image");
        return p;
    }

    Result<std::unique_ptr<Running>> launch(Plan& plan, const LaunchInput& in) const override {
        auto& p = static_cast<VmPlan&>(plan);
        std::unique_ptr<Guest> g;
        bool warm = false;
        auto it = m_pool.find(p.pool_key);
        // A guest that broke the protocol after its Hello put it in the pool
        // (both read at once): its QEMU is killed, its end not handled yet.
        // Destroyed now, never given a job. (A pooled guest whose end was
        // handled has left the pool already: its end handler drops it.)
        while (it != m_pool.end() && !it->second.empty() && !it->second.front().guest->protocol_error().empty()) {
            Guest* f = it->second.front().guest.get();
            drop_ready(f, "it broke the protocol (" + printable(f->protocol_error()) + ")");
        }
        if (it != m_pool.end() && !it->second.empty()) {
            g = std::move(it->second.front().guest);
            it->second.pop_front();
            warm = true;
            // The guest's cgroup becomes the job's (it holds QEMU since boot).
            if (*in.cgroup_slot) (void)(*in.cgroup_slot)->destroy();
            *in.cgroup_slot = std::move(*g->cgroup());
            g->cgroup().reset();
        } else {
            g = std::make_unique<Guest>(*m_host.loop, m_host.release_uid);
            g->uid = in.uid;
            if (auto r = g->start(qemu_config(p.prepared->image, p.prepared->accel, p.guest_ram, in.uid, in.cgroup)); !r)
                return std::unexpected(r.error().wrap("starting QEMU"));
        }
        auto run = std::make_unique<VmRunning>(*this, std::move(g), p, in, warm);
        m_last_image[p.pool_key] = {p.prepared, p.guest_ram, now_monotonic_ns(), run->rehearsal_frame()};
        // The pool's next guest boots when this job ends, or a second after
        // its program started, whichever comes first: under TCG a booting
        // QEMU takes a host core for seconds, and booting it while this job
        // set up or exec'd put 20-80 ms into most warm starts on the 2-core
        // machine. (A job that needs a guest meanwhile boots its own.)
        auto once = std::make_shared<bool>(false);
        auto go = [alive = std::weak_ptr<int>(m_alive), this, key = p.pool_key, once] {
            if (*once || !alive.lock()) return;
            *once = true;
            refill(key);
        };
        run->on_program_start([loop = m_host.loop, go] { (void)loop->add_timer(1'000'000'000, 0, go); });
        run->on_end([loop = m_host.loop, go] { loop->post(go); });
        return run;
    }

    void describe(const Plan& plan, const LaunchInput& in, const Running& run, nlohmann::json& info) const override {
        const auto& p = static_cast<const VmPlan&>(plan);
        (void)run;
        info["notes"] = p.notes;
        info["accelerator"] = vm::accel_name(p.prepared->accel.accel);
        info["accelerator_reason"] = p.prepared->accel.reason;
        info["guest_kernel"] = m_kernel->release();
        info["guest_kernel_package"] = m_kernel->package();
        info["guest_memory_bytes"] = p.guest_ram;
        // The guest has one vCPU (qemu_jail.cpp: -smp 1), in learn mode too:
        // learn's CPU warning says what that hides (docs/replay.md).
        info["cpus"] = 1;
        info["vmm"] = "qemu microvm";
        info["vmm_uid"] = in.uid;
        info["root_image"] = {{"sha256", p.prepared->image.key},
                              {"bytes", p.prepared->image.image_bytes},
                              {"entries", p.prepared->image.entries},
                              {"cached", p.prepared->image.cache_hit}};
        info["network"] = policy::network_mode_name(in.policy->network);
        // Inside the guest. Without loopback the job keeps the guest's own
        // network (no device; `lo` down) and ipc namespaces (the agent uses
        // neither): docs/vm.md, "Network".
        info["namespaces"] = {"user", "mnt", "pid", "uts", "cgroup"};
        if (in.policy->network == policy::NetworkMode::Loopback) info["namespaces"].insert(info["namespaces"].end(), {"net", "ipc"});
        info["landlock"] = "not used (mount namespace in the guest)";
    }

    const Config& cfg() const { return m_cfg; }

private:
    friend class VmRunning;

    uint64_t guest_ram(const policy::Policy& pol) const {
        return round_mib(pol.limits.memory_bytes + m_cfg.vm.guest_overhead_bytes) << 20;
    }

    vm::AccelVerdict accel() const {
        if (!m_probe_initramfs) return {vm::Accel::Tcg, "no KVM test boot possible (moat-vm-probe-init not found)", 0};
        vm::ProbeConfig pc;
        pc.qemu = m_cfg.vm.qemu;
        pc.kernel = m_kernel->vmlinux();
        pc.initrd = m_probe_initramfs->path();
        pc.uid = m_cfg.vm.image_uid;
        pc.gid = m_cfg.vm.image_gid;
        return vm::probe_accelerator(pc);
    }

    Result<vm::RootImage> image_for(const std::vector<std::string>& paths) const {
        std::lock_guard lk(m_image_mu);  // one mkfs at a time; the second job finds it cached
        vm::RootImageOptions o;
        o.paths = paths;
        o.uid = m_cfg.vm.image_uid;
        o.gid = m_cfg.vm.image_gid;
        o.cache_dir = m_cfg.vm.cache_dir + "/images";
        auto r = vm::build_root_image(o);
        if (!r) return std::unexpected(r.error().wrap("building the guest's root image"));
        return r;
    }

    vm::QemuConfig qemu_config(const vm::RootImage& img, const vm::AccelVerdict& a, uint64_t ram, uid_t uid,
                               const cgroup::JobCgroup* cg) const {
        vm::QemuConfig q;
        q.qemu = m_cfg.vm.qemu;
        q.kernel = m_kernel->vmlinux();
        q.initrd = m_initramfs->path();
        q.root_image = img.path;
        q.memory_mib = uint32_t(ram >> 20);
        q.accel = a.accel;
        q.uid = uid;
        q.gid = uid;
        q.cgroup = cg;
        return q;
    }

    // Keeps pool_size guests booted (or booting) for `key`.
    void refill(const std::string& key) const {
        if (m_cfg.vm.pool_size == 0 || !m_unavailable.empty()) return;
        auto li = m_last_image.find(key);
        if (li == m_last_image.end()) return;
        size_t have = m_pool[key].size();
        for (auto& [g, k] : m_booting)
            if (k == key) ++have;
        while (have < m_cfg.vm.pool_size) {
            if (auto r = boot_warm(key, li->second); !r) {
                moat::logf(moat::LogLevel::Warning, "vm pool: %s\n", r.error().message.c_str());
                return;
            }
            ++have;
        }
        // Only the most recently used keys keep guests.
        while (m_last_image.size() > kMaxPoolKeys) {
            auto oldest = m_last_image.begin();
            for (auto it = m_last_image.begin(); it != m_last_image.end(); ++it)
                if (it->second.used_mono < oldest->second.used_mono) oldest = it;
            m_pool.erase(oldest->first);
            std::vector<Guest*> drop;
            for (auto& [g, k] : m_booting)
                if (k == oldest->first) drop.push_back(g);
            for (Guest* g : drop) drop_booting(g);
            m_last_image.erase(oldest);
        }
    }

    struct LastImage {
        std::shared_ptr<Prepared> prepared;
        uint64_t guest_ram = 0;
        int64_t used_mono = 0;
        std::string rehearsal;  // guest::Rehearse frame from the key's last job
    };

    Result<void> boot_warm(const std::string& key, const LastImage& li) const {
        auto uid = m_host.allocate_uid();
        if (!uid) return std::unexpected(uid.error());
        auto g = std::make_unique<Guest>(*m_host.loop, m_host.release_uid);
        g->own_uid(*uid);
        g->uid = *uid;
        g->pool_key = key;
        cgroup::Limits l;
        l.memory_bytes = li.guest_ram + m_cfg.vm.vmm_overhead_bytes;
        l.pids = 64;
        auto cg = cgroup::JobCgroup::create(m_cfg.cgroups, m_cfg.cgroup_parent, "vm-warm-" + std::to_string(getpid()) + "-" + std::to_string(++m_warm_seq), l);
        if (!cg) return std::unexpected(cg.error().wrap("creating a warm guest's cgroup"));
        g->cgroup().emplace(std::move(*cg));
        if (auto r = g->start(qemu_config(li.prepared->image, li.prepared->accel, li.guest_ram, *uid, &*g->cgroup())); !r)
            return std::unexpected(r.error().wrap("starting a warm guest"));
        Guest* raw = g.get();
        raw->set_handlers([this, raw](guest::GuestMessage&& m) { on_warm_message(raw, std::move(m)); },
                          [this, raw] { on_warm_end(raw); });
        // Boot deadline: a warm guest that does not talk in time is dropped.
        m_booting_guests.emplace(raw, std::move(g));
        m_booting.emplace(raw, key);
        // A warm guest that does not talk in time is dropped.
        if (auto t = m_host.loop->add_timer(m_cfg.vm.boot_timeout_ns, 0, [this, raw] {
                m_boot_timers.erase(raw);
                if (m_booting.count(raw)) {
                    moat::logf(moat::LogLevel::Warning, "vm pool: a warm guest did not boot in %s; console: %s\n",
                            format_duration_ns(m_cfg.vm.boot_timeout_ns).c_str(), raw->console_tail().c_str());
                    drop_booting(raw);
                }
            }))
            m_boot_timers[raw] = *t;
        return {};
    }

    void on_warm_message(Guest* g, guest::GuestMessage&& m) const {
        auto it = m_booting.find(g);
        if (it != m_booting.end() && std::holds_alternative<guest::Hello>(m)) {
            std::string key = it->second;
            auto own = std::move(m_booting_guests[g]);
            m_booting_guests.erase(g);
            m_booting.erase(it);
            cancel_boot_timer(g);
            auto li = m_last_image.find(key);
            if (li == m_last_image.end()) return bury(std::move(own));  // the key was evicted meanwhile
            own->set_handlers([this, g](guest::GuestMessage&&) { drop_ready(g, "it spoke out of turn"); },
                              [this, g] { drop_ready(g, "it ended"); });
            // The guest rehearses the key's last plan while it waits (the agent
            // says nothing back; a job that takes it meanwhile queues behind).
            if (!li->second.rehearsal.empty()) own->send(li->second.rehearsal);
            m_pool[key].push_back({std::move(own), now_monotonic_ns()});
            return;
        }
        if (it != m_booting.end()) return;  // nothing else comes before Hello (Guest checks)
    }

    void on_warm_end(Guest* g) const {
        if (m_booting.count(g)) {
            moat::logf(moat::LogLevel::Warning, "vm pool: a warm guest ended while booting (QEMU: %s; console: %s)\n",
                    g->qemu_log_tail().c_str(), g->console_tail().c_str());
            drop_booting(g);
        }
    }

    void cancel_boot_timer(Guest* g) const {
        if (auto t = m_boot_timers.find(g); t != m_boot_timers.end()) {
            m_host.loop->cancel_timer(t->second);
            m_boot_timers.erase(t);
        }
    }

    // A dropped guest is killed at once and destroyed at the next sweep, never
    // from inside one of its own callbacks.
    void bury(std::unique_ptr<Guest> g) const {
        if (!g) return;
        g->set_handlers(nullptr, nullptr);
        g->kill();
        m_graveyard.push_back(std::move(g));
    }

    void drop_booting(Guest* g) const {
        m_booting.erase(g);
        cancel_boot_timer(g);
        if (auto it = m_booting_guests.find(g); it != m_booting_guests.end()) {
            bury(std::move(it->second));
            m_booting_guests.erase(it);
        }
    }

    void drop_ready(Guest* g, const std::string& why) const {
        for (auto& [key, q] : m_pool)
            for (auto it = q.begin(); it != q.end(); ++it)
                if (it->guest.get() == g) {
                    moat::logf(moat::LogLevel::Warning, "vm pool: a warm guest was destroyed: %s\n", why.c_str());
                    bury(std::move(it->guest));
                    q.erase(it);
                    return;
                }
    }

    void sweep_pool() const {
        m_graveyard.clear();
        const int64_t now = now_monotonic_ns();
        for (auto& [key, q] : m_pool)
            while (!q.empty() && now - q.front().since_mono >= int64_t(m_cfg.vm.pool_idle_ns)) q.pop_front();
        for (auto it = m_last_image.begin(); it != m_last_image.end();)
            it = now - it->second.used_mono >= int64_t(m_cfg.vm.pool_idle_ns) ? m_last_image.erase(it) : std::next(it);
    }

    const Config& m_cfg;
    TierHost m_host;
    std::string m_unavailable;
    std::optional<vm::GuestKernel> m_kernel;
    std::optional<vm::BaseInitramfs> m_initramfs, m_probe_initramfs;
    mutable std::mutex m_image_mu;
    struct Warm {
        std::unique_ptr<Guest> guest;
        int64_t since_mono = 0;
    };
    mutable std::map<std::string, std::deque<Warm>> m_pool;
    mutable std::map<Guest*, std::string> m_booting;
    mutable std::map<Guest*, EventLoop::TimerId> m_boot_timers;
    mutable std::vector<std::unique_ptr<Guest>> m_graveyard;
    mutable std::map<Guest*, std::unique_ptr<Guest>> m_booting_guests;
    mutable std::map<std::string, LastImage> m_last_image;
    mutable uint64_t m_warm_seq = 0;
    std::shared_ptr<int> m_alive = std::make_shared<int>(0);  // posted work checks the tier still exists
    EventLoop::TimerId m_sweep = 0;
};

VmRunning::VmRunning(const VmTier& tier, std::unique_ptr<Guest> g, VmPlan& plan, const LaunchInput& in, bool warm)
    : m_tier(tier), m_guest(std::move(g)), m_warm(warm) {
    m_boot_timeout_ns = tier.cfg().vm.boot_timeout_ns;
    // The job's plan, as the container tier's moat-init takes it, with the
    // guest's paths (docs/vm.md, "Inside the guest").
    const auto& pol = *in.policy;
    sandbox::ContainerPlan cp;
    cp.hostname = pol.hostname.empty() ? "job-" + std::to_string(in.job_id) : pol.hostname;
    cp.loopback = pol.network == policy::NetworkMode::Loopback;
    cp.mounts = plan.mounts;
    cp.rlimits = in.rlimits;
    cp.argv = *in.argv;
    cp.env = *in.env;
    cp.exe = in.exe;
    cp.cwd = in.cwd;
    cp.filter = in.filter->program();
    guest::Job job;
    job.plan_json = cp.to_json().dump();
    job.sample_interval_ns = pol.monitor.sample_interval_ns;
    job.memory_max = pol.limits.memory_bytes;
    job.pids_max = pol.limits.pids;
    if (auto f = guest::encode(job)) m_job_frame = std::move(*f);
    // The rehearsal (guest::Rehearse, docs/vm.md "Warm pool") keeps the set-up
    // (mounts from the same image, limits, the compiled filter) and nothing of
    // the job itself: no argv, env or cwd, and a program that does not exist,
    // so nothing is executed even if the agent were to let the exec through.
    sandbox::ContainerPlan rp = cp;
    rp.hostname = "rehearsal";
    rp.exe = kRehearsalExe;
    rp.argv = {kRehearsalExe};
    rp.env.clear();
    rp.cwd = "/";
    guest::Rehearse rehearse{job, cp.exe};  // prefetch: the program's files, read only
    rehearse.job.plan_json = rp.to_json().dump();
    if (auto f = guest::encode(rehearse)) m_rehearsal_frame = std::move(*f);
    m_inputs = std::move(plan.inputs);
    m_input_paths = plan.input_paths;
    m_stdin.reset(fcntl(in.stdio[0], F_DUPFD_CLOEXEC, 3));
    for (int s : {1, 2}) {
        m_outfd[s].reset(fcntl(in.stdio[s], F_DUPFD_CLOEXEC, 3));
        if (m_outfd[s]) fcntl(m_outfd[s].get(), F_SETFL, fcntl(m_outfd[s].get(), F_GETFL) | O_NONBLOCK);
    }
    if (m_stdin) fcntl(m_stdin.get(), F_SETFL, fcntl(m_stdin.get(), F_GETFL) | O_NONBLOCK);
}

VmRunning::~VmRunning() {
    if (m_loop) unwatch(*m_loop);
    if (m_on_end) m_on_end();
}

void VmRunning::watch(EventLoop& loop, JobEvents& events) {
    m_loop = &loop;
    m_events = &events;
    m_guest->set_handlers([this](guest::GuestMessage&& m) { on_message(std::move(m)); },
                          [this] { m_events->exited(); });
    m_guest->set_on_drained([this] { pump(); });
    if (m_job_frame.empty()) {
        boot_failed("the job's plan does not fit the guest protocol (over " + format_size(guest::kMaxPlan) + ")");
        return;
    }
    if (m_warm) {
        m_events->info({{"boot_ms", m_guest->boot_ns() / 1'000'000},
                        {"warm", true},
                        {"guest_landlock_abi", m_guest->hello().landlock_abi},
                        {"guest_kernel_reported", printable(m_guest->hello().kernel_release)},
                        {"vmm_uid", m_guest->uid}});
        m_events->start_clock();
        send_job();
    } else if (auto t = loop.add_timer(m_boot_timeout_ns, 0, [this] {
                   m_boot_timer = 0;
                   if (!m_guest->said_hello())
                       boot_failed("the guest did not start its agent within " + format_duration_ns(m_boot_timeout_ns));
               })) {
        m_boot_timer = *t;
    }
}

void VmRunning::unwatch(EventLoop& loop) {
    if (m_boot_timer) loop.cancel_timer(m_boot_timer);
    m_boot_timer = 0;
    if (m_stdin_watched) loop.remove_fd(m_stdin.get());
    m_stdin_watched = false;
    for (int s : {1, 2})
        if (m_out_watched[s]) {
            loop.remove_fd(m_outfd[s].get());
            m_out_watched[s] = false;
        }
    m_guest->set_handlers(nullptr, nullptr);
    m_guest->set_on_drained(nullptr);
}

void VmRunning::boot_failed(const std::string& why) {
    if (m_boot_error.empty()) m_boot_error = why;
    m_guest->kill();
}


// The guest agent takes the inputs first, then the Job (docs/vm-protocol.md).
void VmRunning::send_job() {
    if (m_talking) return;
    m_talking = true;
    pump();
}

void VmRunning::pump() {
    if (!m_talking || m_guest->ended()) return;
    // Inputs first, chunk by chunk while the guest's queue has room.
    while (!m_inputs_done && m_guest->outbound() < kMaxOutbound) {
        if (m_input_index >= m_inputs.size()) {
            m_inputs_done = true;
            break;
        }
        const int fd = m_inputs[m_input_index].get();
        if (!m_input_open) {
            struct stat st{};
            fstat(fd, &st);
            guest::InputFile f{m_input_paths[m_input_index], 0444, uint64_t(st.st_size)};
            auto frame = guest::encode(f);
            if (!frame) return boot_failed("input " + m_input_paths[m_input_index] + ": " + frame.error().message);
            m_guest->send(std::move(*frame));
            m_input_open = true;
            m_input_off = 0;
            continue;
        }
        std::string buf(guest::kMaxChunk, '\0');
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(m_input_off));
        struct stat st{};
        fstat(fd, &st);
        if (n < 0 || (n == 0 && m_input_off < uint64_t(st.st_size)))
            return boot_failed("input " + m_input_paths[m_input_index] + " could not be read: " + strerror(n < 0 ? errno : EIO));
        // The size was announced: a file that grew is cut there.
        uint64_t left = uint64_t(st.st_size) - std::min<uint64_t>(m_input_off, uint64_t(st.st_size));
        if (n == 0 || left == 0) {
            m_guest->send(*guest::encode(guest::InputEnd{}));
            m_input_open = false;
            m_inputs[m_input_index].reset();
            ++m_input_index;
            continue;
        }
        buf.resize(std::min<uint64_t>(uint64_t(n), left));
        m_input_off += buf.size();
        m_guest->send(*guest::encode(guest::InputData{std::move(buf)}));
    }
    if (!m_inputs_done) return;
    if (!m_job_sent) {
        m_job_sent = true;
        m_guest->send(m_job_frame);
    }
    // Then stdin, within the guest's window.
    if (m_stdin && !m_stdin_eof) {
        bool room = m_guest->outbound() < kMaxOutbound && m_stdin_sent - m_stdin_consumed < guest::kStdinWindow;
        if (room && !m_stdin_watched) {
            (void)m_loop->add_fd(m_stdin.get(), EPOLLIN, [this](uint32_t) {
                std::string buf(guest::kMaxChunk, '\0');
                ssize_t n = ::read(m_stdin.get(), buf.data(), buf.size());
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
                if (n <= 0) {
                    m_stdin_eof = true;
                    m_loop->remove_fd(m_stdin.get());
                    m_stdin_watched = false;
                    m_stdin.reset();
                    m_guest->send(*guest::encode(guest::StdinEof{}));
                    return;
                }
                buf.resize(size_t(n));
                m_stdin_sent += uint64_t(n);
                m_guest->send(*guest::encode(guest::Stdin{std::move(buf)}));
                pump();
            });
            m_stdin_watched = true;
        } else if (!room && m_stdin_watched) {
            m_loop->remove_fd(m_stdin.get());
            m_stdin_watched = false;
        }
    }
}

void VmRunning::on_message(guest::GuestMessage&& msg) {
    std::visit(
        [this](auto&& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, guest::Hello>) {
                if (m_boot_timer) m_loop->cancel_timer(m_boot_timer);
                m_boot_timer = 0;
                m_events->info({{"boot_ms", m_guest->boot_ns() / 1'000'000},
                                {"warm", false},
                                {"guest_landlock_abi", m.landlock_abi},
                                {"guest_kernel_reported", printable(m.kernel_release)}});
                m_events->start_clock();
                send_job();
            } else if constexpr (std::is_same_v<T, guest::Notice>) {
                Notice n;
                n.pid = m.pid;
                n.nr = m.nr;
                n.arch = m.arch;
                for (int i = 0; i < 6; ++i) n.args[i] = m.args[size_t(i)];
                n.ip = m.ip;
                // The guest's words: escaped here, whatever the agent did.
                if (m.decoded) n.decoded = printable(*m.decoded);
                if (m.module) n.module = printable(*m.module);
                const Answer a = m_events->notice(n);
                guest::Verdict v;
                v.id = m.id;
                switch (a.kind) {
                    case Answer::Kind::Continue: v.flags = guest::Verdict::kContinue; break;
                    case Answer::Kind::Fail: v.error = a.error; break;
                    case Answer::Kind::Trap:
                        v.flags = guest::Verdict::kTrap;
                        v.error = a.error;
                        break;
                    case Answer::Kind::Kill: return;  // the supervisor is destroying the VM
                }
                if (auto f = guest::encode(v)) m_guest->send(std::move(*f));
                if (m_on_program_start) std::exchange(m_on_program_start, nullptr)();
            } else if constexpr (std::is_same_v<T, guest::Output>) {
                m_out_bytes += m.bytes.size();
                on_output(m.stream, std::move(m.bytes));
            } else if constexpr (std::is_same_v<T, guest::OutputEof>) {
                m_out_eof[m.stream] = true;
                if (m_pending[m.stream].empty()) close_output(m.stream);
            } else if constexpr (std::is_same_v<T, guest::Sample>) {
                m_sample = m;
            } else if constexpr (std::is_same_v<T, guest::Exit>) {
                m_exit_status = m.wait_status;
                // Exit is the agent's last message (after every OutputEof and
                // the last Sample): the job is over, and the guest would only
                // tear itself down and reboot before QEMU exits. It is never
                // reused, so QEMU is ended now (the guest's reboot stays the
                // path when this kill is lost).
                m_guest->kill();
            } else if constexpr (std::is_same_v<T, guest::SetupStatus>) {
                if (m.fatal) {
                    sandbox::SetupRecord r{};
                    snprintf(r.step, sizeof r.step, "%s", printable(m.step).c_str());
                    snprintf(r.detail, sizeof r.detail, "%s", printable(m.detail).c_str());
                    r.err = m.err;
                    r.fatal = 1;
                    if (!m_exec_failure) m_exec_failure = r;
                } else {
                    m_events->event(store::EventKind::Lifecycle,
                                    {{"event", "setup-warning"},
                                     {"detail", printable(m.step) + "(\"" + printable(m.detail) +
                                                    "\") failed in the guest: " + errno_name(m.err)}});
                }
            } else if constexpr (std::is_same_v<T, guest::Log>) {
                if (m_logs < kMaxGuestLogs) {
                    ++m_logs;
                    m_events->event(store::EventKind::Lifecycle, {{"event", "guest-log"}, {"detail", printable(m.text)}});
                } else {
                    ++m_logs_dropped;
                }
            } else if constexpr (std::is_same_v<T, guest::StdinConsumed>) {
                if (m.total <= m_stdin_sent && m.total >= m_stdin_consumed) m_stdin_consumed = m.total;
                pump();
            }
            // Started and Exec: the job's first exec arrives as a Notice (the
            // filter notifies execve), which is what the supervisor records.
        },
        std::move(msg));
}

void VmRunning::on_output(int stream, std::string bytes) {
    if (stream != 1 && stream != 2) return;
    if (!m_outfd[stream]) return;  // the reader is gone: dropped (the relay records what it got)
    m_pending[stream] += bytes;
    drain_output(stream);
}

void VmRunning::drain_output(int stream) {
    std::string& p = m_pending[stream];
    while (!p.empty() && m_outfd[stream]) {
        ssize_t n = ::write(m_outfd[stream].get(), p.data(), p.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) {  // EPIPE: nobody reads any more
            p.clear();
            close_output(stream);
            break;
        }
        p.erase(0, size_t(n));
    }
    const bool blocked = !p.empty();
    if (blocked && !m_out_watched[stream]) {
        (void)m_loop->add_fd(m_outfd[stream].get(), EPOLLOUT, [this, stream](uint32_t) { drain_output(stream); });
        m_out_watched[stream] = true;
    } else if (!blocked && m_out_watched[stream]) {
        m_loop->remove_fd(m_outfd[stream].get());
        m_out_watched[stream] = false;
    }
    // A full pipe stops the guest: nothing more is read from it until it drains.
    m_guest->pause_reading(!m_pending[1].empty() || !m_pending[2].empty());
    if (!blocked && m_out_eof[stream]) close_output(stream);
}

void VmRunning::close_output(int stream) {
    if (m_out_watched[stream]) {
        m_loop->remove_fd(m_outfd[stream].get());
        m_out_watched[stream] = false;
    }
    m_outfd[stream].reset();
}

cgroup::Sample VmRunning::adjust_sample(const cgroup::Sample& host) {
    // CPU time is QEMU's on the host (what the job costs the machine, and
    // what the guest cannot misreport); memory, pids and OOM kills are the
    // guest's figures for the job's own cgroup in the guest.
    cgroup::Sample s = host;
    // QEMU's thread peak is not the job's; the guest reports no peak of its
    // own (its Sample has none), so pids stay sampled in this tier.
    s.pids_peak = 0;
    if (!m_sample) {
        // Nothing from the guest yet (it is booting): QEMU's own memory and
        // threads are not the job's.
        s.memory_bytes = s.memory_peak_bytes = s.pids = s.pids_max_hits = 0;
    } else {
        s.memory_bytes = m_sample->memory_bytes;
        s.memory_peak_bytes = m_sample->memory_peak_bytes;
        s.pids = m_sample->pids;
        s.oom_kills = std::max(host.oom_kills, m_sample->oom_kills);
        s.pids_max_hits = m_sample->pids_max_hits;
    }
    return s;
}

Outcome VmRunning::outcome() {
    for (int s : {1, 2}) {
        // Output still held for a slow reader is written as far as the pipe
        // takes it; the relay has the rest of the job's ending to deliver it.
        if (!m_pending[s].empty()) drain_output(s);
        close_output(s);
    }
    Outcome o;
    if (!m_boot_error.empty()) {
        o.cause = "setup-failed";
        o.detail = m_boot_error + "; QEMU said: " + (m_guest->qemu_log_tail().empty() ? "nothing" : m_guest->qemu_log_tail()) +
                   "; guest console: " + (m_guest->console_tail().empty() ? "(empty)" : m_guest->console_tail());
        return o;
    }
    if (!m_guest->said_hello() && !m_guest->protocol_error().empty()) {
        o.cause = "setup-failed";
        o.detail = "the guest broke the protocol before moatd accepted its Hello (" +
                   printable(m_guest->protocol_error()) + "); its VM was destroyed; guest console: " +
                   m_guest->console_tail();
        return o;
    }
    if (!m_guest->said_hello()) {
        o.cause = "setup-failed";
        o.detail = "QEMU ended before the guest agent spoke (" +
                   (m_guest->qemu_status() ? "wait status " + std::to_string(*m_guest->qemu_status()) : std::string("?")) +
                   "); QEMU said: " + m_guest->qemu_log_tail() + "; guest console: " + m_guest->console_tail();
        return o;
    }
    if (!m_guest->protocol_error().empty()) {
        o.cause = "signaled";
        o.detail = "the guest broke the protocol (" + printable(m_guest->protocol_error()) +
                   "); its VM was destroyed";
        o.signal = SIGKILL;  // the job died with its VM
        return o;
    }
    if (m_exec_failure) {
        o.exec_failure = m_exec_failure;
        return o;
    }
    if (m_exit_status) {
        const int st = *m_exit_status;
        if (WIFEXITED(st)) o.exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st)) o.signal = WTERMSIG(st);
        return o;
    }
    if (m_killed) {
        // The job died with its VM: SIGKILL, for the cause the supervisor recorded.
        o.signal = SIGKILL;
        return o;
    }
    o.cause = "signaled";
    o.detail = "the guest ended without reporting the job's end (QEMU " +
               (m_guest->qemu_status() ? "wait status " + std::to_string(*m_guest->qemu_status()) : std::string("?")) +
               "); guest console: " + m_guest->console_tail();
    return o;
}

}  // namespace

std::unique_ptr<Tier> make_vm_tier(const Config& cfg, TierHost host) { return std::make_unique<VmTier>(cfg, std::move(host)); }

}  // namespace moat::supervisor
