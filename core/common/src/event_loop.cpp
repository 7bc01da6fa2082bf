#include "moat/common/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <cerrno>
#include <string>

#include "moat/common/timeutil.h"

namespace moat {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    std::unique_ptr<EventLoop> l(new EventLoop);
    l->m_epoll.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!l->m_epoll) return fail_sys("epoll_create1", errno);
    l->m_wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!l->m_wake) return fail_sys("eventfd", errno);
    EventLoop* raw = l.get();
    if (auto r = l->add_fd(l->m_wake.get(), EPOLLIN, [raw](uint32_t) {
            uint64_t v;
            (void)!read(raw->m_wake.get(), &v, sizeof v);
            std::vector<std::function<void()>> work;
            {
                std::lock_guard lk(raw->m_post_mu);
                work.swap(raw->m_posted);
            }
            for (auto& fn : work) fn();
        });
        !r)
        return std::unexpected(r.error());
    return l;
}

EventLoop::~EventLoop() = default;

namespace {
// An event carries its fd and the registration's generation: an event already
// fetched for an fd that a callback then closed must not reach whatever
// registers that fd number next in the same batch (a seccomp listener would
// block the loop in NOTIF_RECV on an event that was not its own).
uint64_t tag(int fd, uint64_t generation) { return (generation << 32) | uint32_t(fd); }
}  // namespace

Result<void> EventLoop::add_fd(int fd, uint32_t events, FdCallback cb) {
    const uint64_t gen = ++m_generation & 0xffffffffu;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag(fd, gen);
    if (epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return fail_sys("epoll_ctl(ADD)", errno);
    m_fds[fd] = std::make_shared<Entry>(Entry{std::move(cb), gen});
    return {};
}

Result<void> EventLoop::modify_fd(int fd, uint32_t events) {
    auto it = m_fds.find(fd);
    if (it == m_fds.end()) return fail("epoll_ctl(MOD): fd " + std::to_string(fd) + " is not registered");
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag(fd, it->second->generation);
    if (epoll_ctl(m_epoll.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return fail_sys("epoll_ctl(MOD)", errno);
    return {};
}

void EventLoop::remove_fd(int fd) {
    epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
    m_fds.erase(fd);
}

Result<EventLoop::TimerId> EventLoop::add_timer(uint64_t first_ns, uint64_t period_ns, std::function<void()> cb) {
    UniqueFd tfd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!tfd) return fail_sys("timerfd_create", errno);
    if (first_ns == 0) first_ns = 1;
    itimerspec its{};
    its.it_value.tv_sec = time_t(first_ns / 1'000'000'000);
    its.it_value.tv_nsec = long(first_ns % 1'000'000'000);
    its.it_interval.tv_sec = time_t(period_ns / 1'000'000'000);
    its.it_interval.tv_nsec = long(period_ns % 1'000'000'000);
    if (timerfd_settime(tfd.get(), 0, &its, nullptr) < 0) return fail_sys("timerfd_settime", errno);
    TimerId id = m_next_timer++;
    int fd = tfd.get();
    bool oneshot = period_ns == 0;
    auto r = add_fd(fd, EPOLLIN, [this, fd, id, oneshot, cb = std::move(cb)](uint32_t) {
        uint64_t expirations;
        if (read(fd, &expirations, sizeof expirations) != sizeof expirations) return;
        auto keep = cb;  // cancel_timer inside cb destroys the entry holding cb
        if (oneshot) cancel_timer(id);
        keep();
    });
    if (!r) return std::unexpected(r.error());
    m_timers.emplace(id, std::move(tfd));
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    auto it = m_timers.find(id);
    if (it == m_timers.end()) return;
    remove_fd(it->second.get());
    m_timers.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
    {
        std::lock_guard lk(m_post_mu);
        m_posted.push_back(std::move(fn));
    }
    uint64_t one = 1;
    (void)!write(m_wake.get(), &one, sizeof one);
}

void EventLoop::run() {
    m_running = true;
    epoll_event evs[64];
    while (m_running) {
        int n = m_spin_wanted ? spin(evs, 64) : 0;
        if (n == 0) n = epoll_wait(m_epoll.get(), evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n && m_running; ++i) {
            const int fd = int(uint32_t(evs[i].data.u64));
            auto it = m_fds.find(fd);
            // Removed by an earlier callback, or removed and its number taken again.
            if (it == m_fds.end() || it->second->generation != evs[i].data.u64 >> 32) continue;
            auto entry = it->second;          // keeps the callback alive while it runs
            entry->cb(evs[i].events);
        }
    }
}

int EventLoop::spin(epoll_event* evs, int max) {
    m_spin_wanted = false;
    const int64_t ns = m_spin_len_ns;
    const int64_t start = now_monotonic_ns();
    if (start - m_spin_window_start >= kSpinWindowNs) {
        m_spin_window_start = start;
        m_spin_window_wasted = 0;
        m_spin_window_spun = 0;
    }
    if (m_spin_window_wasted >= m_spin_waste_budget_ns || m_spin_window_spun >= m_spin_budget_ns) {
        ++m_spin.refused;
        return 0;
    }
    ++m_spin.spins;
    int64_t t = start;
    do {
        const int n = epoll_wait(m_epoll.get(), evs, max, 0);
        if (n != 0) {  // events, or an error the caller handles (EINTR)
            if (n > 0) ++m_spin.hits;
            const int64_t spent = now_monotonic_ns() - start;
            m_spin.spun_ns += spent;
            m_spin_window_spun += spent;
            return n;
        }
        t = now_monotonic_ns();
    } while (t - start < ns);
    m_spin.spun_ns += t - start;
    m_spin.wasted_ns += t - start;
    m_spin_window_wasted += t - start;
    m_spin_window_spun += t - start;
    return 0;
}

void EventLoop::stop() {
    post([this] { m_running = false; });
}

}  // namespace moat
