#pragma once
// A single-threaded epoll loop: fds, one-shot and periodic timers, and
// cross-thread wake-ups. moatd runs its supervisor and IPC server on one loop
// so no job state is shared between threads.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "moat/common/error.h"
#include "moat/common/fd.h"

struct epoll_event;

namespace moat {

class EventLoop final {
public:
    using FdCallback = std::function<void(uint32_t events)>;
    using TimerId = uint64_t;

    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();

    // EPOLLIN etc.; the callback may remove its own or other fds.
    Result<void> add_fd(int fd, uint32_t events, FdCallback cb);
    Result<void> modify_fd(int fd, uint32_t events);
    void remove_fd(int fd);

    // Timers (CLOCK_MONOTONIC; one timerfd for all). period_ns = 0: one-shot,
    // gone before its callback runs. A callback may add and cancel timers,
    // its own too; a timer added by a callback runs in a later pass.
    Result<TimerId> add_timer(uint64_t first_ns, uint64_t period_ns, std::function<void()> cb);
    void cancel_timer(TimerId id);

    // Thread-safe: runs fn on the loop thread soon.
    void post(std::function<void()> fn);

    // Latency for a peer that answers within microseconds (a job's seccomp
    // notifications: the job waits in its syscall for moatd's answer, then
    // makes the next call). After spin_before_sleep(), the loop polls its fds
    // for up to spin_ns() before it next sleeps, so an event arriving
    // meanwhile costs no sleep and wake-up (on a VM each is a cross-CPU
    // interrupt and tens of microseconds). Polling is bounded per
    // kSpinWindowNs: at most kSpinBudgetNs of it in all (a job that spaces
    // its calls just under the poll's length could otherwise keep the loop
    // polling all the time), of which at most kSpinWasteBudgetNs in polls
    // that find nothing; past either, requests are refused until the window
    // ends (one poll may overrun by at most spin_ns()). Every fd is served
    // while polling, so no peer is favoured. set_spin_ns(0): never poll.
    static constexpr int64_t kDefaultSpinNs = 50'000;
    static constexpr int64_t kSpinWindowNs = 1'000'000'000;
    static constexpr int64_t kSpinBudgetNs = 250'000'000;      // a quarter of a core
    static constexpr int64_t kSpinWasteBudgetNs = 10'000'000;  // 1 % of a core
    void set_spin_ns(int64_t ns) { m_spin_len_ns = std::max<int64_t>(ns, 0); }
    // Tests: other budgets per window than the two above.
    void set_spin_budgets(int64_t all_ns, int64_t wasted_ns) {
        m_spin_budget_ns = all_ns;
        m_spin_waste_budget_ns = wasted_ns;
    }
    int64_t spin_ns() const { return m_spin_len_ns; }
    void spin_before_sleep() { m_spin_wanted = m_spin_len_ns > 0; }
    struct SpinStats {
        uint64_t spins = 0;    // polls begun
        uint64_t hits = 0;     // ... that found an event
        uint64_t refused = 0;  // requests refused by a budget
        int64_t spun_ns = 0;   // time spent polling, hits included
        int64_t wasted_ns = 0; // ... in polls that found nothing
    };
    const SpinStats& spin_stats() const { return m_spin; }

    void run();   // until stop()
    void stop();  // thread-safe
    bool running() const { return m_running; }

private:
    EventLoop() = default;
    struct Entry {
        FdCallback cb;
        uint64_t generation;
    };
    UniqueFd m_epoll, m_wake;
    std::map<int, std::shared_ptr<Entry>> m_fds;
    struct Timer {
        int64_t due;     // CLOCK_MONOTONIC ns
        int64_t period;  // 0: one-shot
        std::shared_ptr<std::function<void()>> cb;
    };
    std::map<TimerId, Timer> m_timers;
    std::set<std::pair<int64_t, TimerId>> m_due;  // (due, id), earliest first
    UniqueFd m_timer_fd;
    int64_t m_armed_for = 0;  // the deadline the timerfd is set for (0: disarmed)
    Result<void> arm_timers();
    void fire_timers();
    TimerId m_next_timer = 1;
    uint64_t m_generation = 0;
    std::mutex m_post_mu;
    std::vector<std::function<void()>> m_posted;
    bool m_running = false;
    int spin(::epoll_event* evs, int max);
    int64_t m_spin_len_ns = kDefaultSpinNs;
    bool m_spin_wanted = false;
    int64_t m_spin_window_start = 0;
    int64_t m_spin_window_wasted = 0;
    int64_t m_spin_window_spun = 0;
    int64_t m_spin_budget_ns = kSpinBudgetNs;
    int64_t m_spin_waste_budget_ns = kSpinWasteBudgetNs;
    SpinStats m_spin;
};

}  // namespace moat
