// The event loop's fd bookkeeping: an event fetched for an fd that an earlier
// callback of the same batch closed must not reach the next owner of that fd
// number (found by review: a stale event sent to a seccomp listener would block
// moatd's loop in SECCOMP_IOCTL_NOTIF_RECV).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "moat/common/event_loop.h"

namespace {

TEST(EventLoop, AStaleEventDoesNotReachTheFdNumbersNextOwner) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    int fds[2] = {eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK), eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)};  // both readable
    int stale_calls = 0, replaced = -1, first = -1;
    for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(l.add_fd(fds[i], EPOLLIN, [&, i](uint32_t) {
            if (first >= 0) return;  // the other one was replaced: this must not run
            first = i;
            int other = fds[1 - i];
            l.remove_fd(other);
            close(other);
            int again = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // not readable: any call is the stale event
            ASSERT_EQ(again, other) << "the kernel reuses the lowest free number";
            replaced = again;
            ASSERT_TRUE(l.add_fd(again, EPOLLIN, [&](uint32_t) { ++stale_calls; }));
            l.stop();
        }));
    }
    l.run();
    EXPECT_GE(first, 0);
    EXPECT_EQ(stale_calls, 0) << "the replaced fd's event was delivered to its successor";
    l.remove_fd(fds[first]);
    l.remove_fd(replaced);
    close(fds[first]);
    close(replaced);
}

// A callback asks the loop to poll before it sleeps; an event that another
// thread makes meanwhile is served from that poll (a hit), not after a sleep.
TEST(EventLoop, AnEventDuringASpinIsServedFromIt) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    const int go = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK), answer = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    std::thread peer;
    int answered = 0;
    l.set_spin_ns(10'000'000'000);  // long enough to be certain; a poll ends at the first event
    ASSERT_TRUE(l.add_fd(go, EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!read(go, &v, sizeof v);
        l.spin_before_sleep();
        peer = std::thread([answer] {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            uint64_t one = 1;
            (void)!write(answer, &one, sizeof one);
        });
    }));
    ASSERT_TRUE(l.add_fd(answer, EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!read(answer, &v, sizeof v);
        ++answered;
        l.stop();
    }));
    l.run();
    peer.join();
    EXPECT_EQ(answered, 1);
    const auto& st = l.spin_stats();
    EXPECT_EQ(st.spins, 1u);
    EXPECT_EQ(st.hits, 1u);
    EXPECT_EQ(st.wasted_ns, 0);
    EXPECT_GT(st.spun_ns, 0);
    l.remove_fd(go);
    l.remove_fd(answer);
    close(go);
    close(answer);
}

// Polling that finds nothing is bounded: past kSpinWasteBudgetNs in a window,
// requests are refused (a job that denies one call now and then must not keep
// moatd spinning).
TEST(EventLoop, FruitlessSpinningStopsAtItsBudget) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    constexpr int64_t kSpin = 4'000'000;  // 4 ms a request; the timer comes every 20 ms
    int ticks = 0;
    l.set_spin_ns(kSpin);
    auto t = l.add_timer(1, 20'000'000, [&] {
        if (++ticks == 12) l.stop();
        else l.spin_before_sleep();
    });
    ASSERT_TRUE(t);
    l.run();
    const auto& st = l.spin_stats();
    const uint64_t fruitless = st.spins - st.hits;
    // 12 ticks take 220 ms: one window. The budget buys at most
    // ceil(10 ms / 4 ms) = 3 fruitless polls; every later request is refused.
    EXPECT_GE(st.wasted_ns, moat::EventLoop::kSpinWasteBudgetNs);
    EXPECT_LE(fruitless, uint64_t((moat::EventLoop::kSpinWasteBudgetNs + kSpin - 1) / kSpin));
    EXPECT_GE(st.refused, 11u - st.spins);
    EXPECT_EQ(st.spins + st.refused, 11u);
    l.cancel_timer(*t);
}

// Polling that finds events is bounded too: a peer that answers just inside
// the poll's length (a job spacing its calls so) cannot keep the loop polling
// all the time. Ping-pong with a peer that takes 3 ms per answer; with 10 ms
// of polling allowed per window, at most 4 polls run, the rest are refused.
TEST(EventLoop, PollingThatFindsEventsStopsAtItsBudgetToo) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    l.set_spin_ns(1'000'000'000);
    l.set_spin_budgets(10'000'000, 10'000'000);
    const int ping = eventfd(0, EFD_CLOEXEC), answer = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    constexpr int kRounds = 10;
    std::thread peer([&] {
        for (int k = 0; k < kRounds; ++k) {
            uint64_t v;
            if (k > 0 && read(ping, &v, sizeof v) != sizeof v) return;  // blocks until the loop pings
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
            uint64_t one = 1;
            (void)!write(answer, &one, sizeof one);
        }
    });
    int answers = 0;
    ASSERT_TRUE(l.add_fd(answer, EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!read(answer, &v, sizeof v);
        if (++answers == kRounds) {
            l.stop();
            return;
        }
        l.spin_before_sleep();
        uint64_t one = 1;
        (void)!write(ping, &one, sizeof one);
    }));
    l.run();
    peer.join();
    const auto& st = l.spin_stats();
    EXPECT_EQ(answers, kRounds);
    EXPECT_EQ(st.spins + st.refused, uint64_t(kRounds - 1));
    EXPECT_LE(st.spins, 4u) << "each poll lasts at least the peer's 3 ms";
    EXPECT_GE(st.refused, 5u);
    EXPECT_GE(st.spun_ns, 10'000'000);
    l.remove_fd(answer);
    close(ping);
    close(answer);
}

// set_spin_ns(0) (moatd --notify-spin 0): requests are ignored, nothing polls.
TEST(EventLoop, NoSpinWhenTurnedOff) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    l.set_spin_ns(0);
    int n = 0;
    auto t = l.add_timer(1, 1'000'000, [&] {
        l.spin_before_sleep();
        if (++n == 5) l.stop();
    });
    ASSERT_TRUE(t);
    l.run();
    EXPECT_EQ(l.spin_stats().spins, 0u);
    EXPECT_EQ(l.spin_stats().refused, 0u);
    l.cancel_timer(*t);
}

}  // namespace

// Timers share one timerfd (issue 15): they must still run in deadline
// order, a cancelled one never, a one-shot once, a periodic one again and
// again, and a callback may cancel its own or others and add new ones.
namespace timers {

TEST(EventLoopTimers, RunInDeadlineOrderAndACancelledOneNever) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    std::vector<int> order;
    // Added out of order; the 20 ms one is cancelled by the 10 ms one.
    auto t30 = l.add_timer(30'000'000, 0, [&] { order.push_back(30); });
    auto t20 = l.add_timer(20'000'000, 0, [&] { order.push_back(20); });
    ASSERT_TRUE(t30 && t20);
    auto t10 = l.add_timer(10'000'000, 0, [&] {
        order.push_back(10);
        l.cancel_timer(*t20);
    });
    auto t5 = l.add_timer(5'000'000, 0, [&] { order.push_back(5); });
    auto stop = l.add_timer(60'000'000, 0, [&] { l.stop(); });
    ASSERT_TRUE(t10 && t5 && stop);
    l.run();
    EXPECT_EQ(order, (std::vector<int>{5, 10, 30}));
    l.cancel_timer(*t30);  // already gone: nothing happens
}

TEST(EventLoopTimers, APeriodicTimerRepeatsUntilItCancelsItself) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    int ticks = 0, once = 0, after = -1;
    moat::EventLoop::TimerId self = 0;
    // At its fifth tick it cancels itself and asks for a stop 30 ms later
    // (six more of its periods): no sixth tick may come meanwhile. A 5 s
    // timer stops a loop whose periodic timer never got that far.
    auto t = l.add_timer(1'000'000, 5'000'000, [&] {
        if (++ticks != 5) return;
        l.cancel_timer(self);
        ASSERT_TRUE(l.add_timer(30'000'000, 0, [&] {
            after = ticks;
            l.stop();
        }));
    });
    ASSERT_TRUE(t);
    self = *t;
    ASSERT_TRUE(l.add_timer(3'000'000, 0, [&] { ++once; }));
    ASSERT_TRUE(l.add_timer(5'000'000'000ull, 0, [&] { l.stop(); }));
    l.run();
    EXPECT_EQ(ticks, 5) << "the periodic timer did not reach five ticks within 5 s";
    EXPECT_EQ(after, 5) << "a periodic timer ran on after cancelling itself";
    EXPECT_EQ(once, 1);
}

TEST(EventLoopTimers, ATimerAddedByACallbackRunsInALaterPassAndEarlierThanTheArmedOne) {
    auto loop = moat::EventLoop::create();
    ASSERT_TRUE(loop);
    moat::EventLoop& l = **loop;
    // The timerfd is armed for the 10 s timer; one added later for 1 ms must
    // re-arm it earlier. A callback that adds a due-now timer each time must
    // not keep the loop in one pass: the fd added below gets served between.
    bool late_ran = false;
    ASSERT_TRUE(l.add_timer(10'000'000'000ull, 0, [&] { late_ran = true; }));
    int chain = 0, other_fd_calls = 0;
    std::function<void()> again = [&] {
        if (++chain < 1000 && !other_fd_calls) ASSERT_TRUE(l.add_timer(0, 0, again));
        else l.stop();
    };
    int efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    ASSERT_GE(efd, 0);
    ASSERT_TRUE(l.add_timer(1'000'000, 0, [&] {
        ASSERT_TRUE(l.add_fd(efd, EPOLLIN, [&](uint32_t) {
            uint64_t v;
            (void)!read(efd, &v, sizeof v);
            ++other_fd_calls;
        }));
        again();
    }));
    const auto t0 = std::chrono::steady_clock::now();
    l.run();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "the 1 ms timer waited for the 10 s one";
    EXPECT_FALSE(late_ran);
    EXPECT_EQ(other_fd_calls, 1) << "timers added by callbacks kept the loop from its other fds";
    EXPECT_LT(chain, 1000);
    l.remove_fd(efd);
    close(efd);
}

}  // namespace timers
