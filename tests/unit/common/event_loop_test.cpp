// The event loop's fd bookkeeping: an event fetched for an fd that an earlier
// callback of the same batch closed must not reach the next owner of that fd
// number (found by review: a stale event sent to a seccomp listener would block
// moatd's loop in SECCOMP_IOCTL_NOTIF_RECV).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

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

}  // namespace
