#pragma once
// A job whose processes run on moatd's own kernel (the seccomp and container
// tiers): moatd holds the filter's listener, reads and decodes each notified
// syscall itself, reaps the first process through its pidfd and reads its
// set-up pipe.
#include "../tier.h"
#include "moat/supervisor/decode.h"

namespace moat::supervisor {

class LocalRunning final : public Running {
public:
    explicit LocalRunning(sandbox::Spawned proc) : m_proc(std::move(proc)) {}

    pid_t pid() const override { return m_proc.pid; }
    void watch(EventLoop& loop, JobEvents& events) override;
    void unwatch(EventLoop& loop) override;
    void kill() override;
    bool ended() override;
    void answer_waiting() override;
    // The seccomp tier's pid is the program; the container tier's is its
    // init, which passes these signals on to the program.
    Result<void> signal(int sig) override;
    Outcome outcome() override;
    UniqueFd take_exiting() override;
    nlohmann::json costs() const override;
    std::vector<std::string> setup_notes() const override;
    std::vector<std::pair<const char*, int64_t>> inner_steps() const override { return m_proc.timings; }
    nlohmann::json end_info() const override;

    const sandbox::Spawned& proc() const { return m_proc; }

private:
    void on_notify();
    void on_status();
    void on_status_ready();
    void on_exit();

    sandbox::Spawned m_proc;
    EventLoop* m_loop = nullptr;
    JobEvents* m_events = nullptr;
    bool m_listener_registered = false, m_status_registered = false, m_pidfd_registered = false;
    std::optional<int> m_waited_exit, m_waited_signal;
    std::optional<int> m_inner_status;  // container tier: the job's wait status, reported by moat-init
    // Container tier: moat-init said "emptied" (nothing of the job is left in
    // its namespace), so the job's end is known before the init has exited;
    // then the init's pidfd goes to the supervisor (take_exiting).
    bool m_emptied = false, m_ended_early = false;
    std::optional<sandbox::SetupRecord> m_exec_failure;
    ModuleResolver m_modules;
    // The last module answer (printable), for the same tid and ip: a loop of
    // denials from one call site resolves once. Valid while m_modules'
    // generation is the one it was made in (no maps read, no exec since).
    // Only a found module is reused: "none" may change once kRereadNs passed.
    struct LastModule {
        pid_t pid = 0;
        uint64_t ip = 0, generation = ~0ull;
        std::optional<std::string> module;
    } m_last_module;
    // moatd's time spent decoding this job's denials (kWorkBudgetNs).
    int64_t m_work_window_mono = 0, m_work_ns = 0, m_modules_off_until = 0;
    uint64_t m_modules_skipped = 0;
    bool m_work_limit_reported = false;
    bool m_spawn_exec_seen = false;  // the job's first notice (its first execve, see on_notify) came
    // clone3 calls answered ENOSYS, and how many of them asked for CLONE_THREAD
    // (a thread library starting a thread; glibc then falls back to clone).
    uint64_t m_clone3_calls = 0, m_clone3_threads = 0;
};

// The job's `cpus` (and, for a learn replay, what moatd did to its affinity)
// into its `sandbox` info.
void describe_cpus(const sandbox::Spawned& proc, bool learn, nlohmann::json& info);

}  // namespace moat::supervisor
