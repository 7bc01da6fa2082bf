#pragma once
// A single-threaded epoll loop: fds, one-shot and periodic timers, and
// cross-thread wake-ups. moatd runs its supervisor and IPC server on one loop
// so no job state is shared between threads.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "moat/common/error.h"
#include "moat/common/fd.h"

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

    // Timers (timerfd, CLOCK_MONOTONIC). period_ns = 0: one-shot.
    Result<TimerId> add_timer(uint64_t first_ns, uint64_t period_ns, std::function<void()> cb);
    void cancel_timer(TimerId id);

    // Thread-safe: runs fn on the loop thread soon.
    void post(std::function<void()> fn);

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
    std::map<TimerId, UniqueFd> m_timers;
    TimerId m_next_timer = 1;
    uint64_t m_generation = 0;
    std::mutex m_post_mu;
    std::vector<std::function<void()>> m_posted;
    bool m_running = false;
};

}  // namespace moat
