#include "moat/common/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <cerrno>
#include <climits>
#include <string>

#include "moat/common/timeutil.h"

namespace moat {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    std::unique_ptr<EventLoop> l(new EventLoop);
    l->m_epoll.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!l->m_epoll) return fail_sys("epoll_create1", errno);
    l->m_wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!l->m_wake) return fail_sys("eventfd", errno);
    l->m_timer_fd.reset(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!l->m_timer_fd) return fail_sys("timerfd_create", errno);
    EventLoop* raw = l.get();
    if (auto r = l->add_fd(l->m_timer_fd.get(), EPOLLIN, [raw](uint32_t) { raw->fire_timers(); }); !r)
        return std::unexpected(r.error());
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

// Timers: one timerfd for all of them, armed (absolute) for the earliest
// deadline. A timerfd per timer cost each one five system calls and an fd
// (create, set, epoll add, epoll remove, close): a job start arms and cancels
// several (issue 15).
Result<EventLoop::TimerId> EventLoop::add_timer(uint64_t first_ns, uint64_t period_ns, std::function<void()> cb) {
    if (first_ns == 0) first_ns = 1;
    const int64_t due = now_monotonic_ns() + int64_t(std::min<uint64_t>(first_ns, uint64_t(INT64_MAX / 2)));
    const TimerId id = m_next_timer++;
    m_timers.emplace(id, Timer{due, int64_t(std::min<uint64_t>(period_ns, uint64_t(INT64_MAX / 2))),
                               std::make_shared<std::function<void()>>(std::move(cb))});
    m_due.emplace(due, id);
    if (auto r = arm_timers(); !r) {
        cancel_timer(id);
        return std::unexpected(r.error());
    }
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    auto it = m_timers.find(id);
    if (it == m_timers.end()) return;
    m_due.erase({it->second.due, id});
    m_timers.erase(it);
    // The timerfd stays armed for what may now be nothing due: it then fires
    // once for nothing and is armed again (a system call saved per cancel).
}

Result<void> EventLoop::arm_timers() {
    const int64_t want = m_due.empty() ? 0 : m_due.begin()->first;
    if (want == m_armed_for || (want != 0 && m_armed_for != 0 && m_armed_for <= want)) return {};
    itimerspec its{};
    if (want != 0) {
        its.it_value.tv_sec = time_t(want / 1'000'000'000);
        its.it_value.tv_nsec = long(want % 1'000'000'000);
    }
    if (timerfd_settime(m_timer_fd.get(), TFD_TIMER_ABSTIME, &its, nullptr) < 0) return fail_sys("timerfd_settime", errno);
    m_armed_for = want;
    return {};
}

void EventLoop::fire_timers() {
    uint64_t expirations;
    (void)!read(m_timer_fd.get(), &expirations, sizeof expirations);
    m_armed_for = 0;
    const int64_t now = now_monotonic_ns();
    // What is due now, in deadline order; each runs unless an earlier one
    // cancelled it. A timer a callback adds runs in a later pass, however
    // soon it is due, so callbacks that keep adding cannot hold the loop.
    std::vector<TimerId> fire;
    for (auto it = m_due.begin(); it != m_due.end() && it->first <= now; ++it) fire.push_back(it->second);
    for (TimerId id : fire) {
        auto t = m_timers.find(id);
        if (t == m_timers.end()) continue;
        auto cb = t->second.cb;  // the callback may cancel its own timer
        m_due.erase({t->second.due, id});
        if (t->second.period == 0) {
            m_timers.erase(t);  // one-shot: gone before it runs, as if cancelled
        } else {
            // The next period after now (a loop that fell behind skips the
            // missed ones, as a timerfd's expiration count would fold them).
            int64_t next = t->second.due + t->second.period;
            if (next <= now) next += ((now - next) / t->second.period + 1) * t->second.period;
            t->second.due = next;
            m_due.emplace(next, id);
        }
        (*cb)();
    }
    (void)arm_timers();
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
