// The stdio relay (core/supervisor/src/relay.h): what the job is given, what
// the client gets and what is recorded, with pipes standing in for the job.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <set>
#include <thread>

#include "relay.h"

namespace {

using moat::UniqueFd;
using moat::supervisor::Relay;
using moat::supervisor::RelayResult;
using moat::supervisor::RelaySpec;

struct Pipe {
    UniqueFd r, w;
    Pipe() {
        int p[2];
        EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
        r.reset(p[0]);
        w.reset(p[1]);
    }
};

std::string read_all(int fd) {
    std::string s;
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, size_t(n));
    return s;
}

void write_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = write(fd, s.data() + off, s.size() - off);
        ASSERT_GT(n, 0);
        off += size_t(n);
    }
}

// The job writes `bytes` into its stdout pipe (blocking), then closes both
// output pipes; it stops early when the relay closed its end (EPIPE).
std::thread flood(UniqueFd& out, UniqueFd& err, size_t bytes) {
    signal(SIGPIPE, SIG_IGN);
    return std::thread([&out, &err, bytes] {
        std::string chunk(4096, 'x');  // lines: a terminal turns each "\n" into "\r\n" (ONLCR)
        for (size_t i = 99; i < chunk.size(); i += 100) chunk[i] = '\n';
        for (size_t done = 0; done < bytes; done += chunk.size())
            if (write(out.get(), chunk.data(), chunk.size()) < 0) break;
        out.reset();
        err.reset();
    });
}

// A client descriptor the relay cannot fill: after cancel() the relay must
// return within a liveness bound, and the client's own open file description
// must keep its flags (O_NONBLOCK there would leak to the client's terminal).
// `peer` is closed at the end (declared after the relay, so destroyed first):
// on a relay that stays blocked in write() that is what lets the test end.
void expect_cancel_returns(UniqueFd dst, UniqueFd& peer) {
    UniqueFd client_copy(fcntl(dst.get(), F_DUPFD_CLOEXEC, 0));  // the "client's" view of the same description
    const int flags_before = fcntl(client_copy.get(), F_GETFL);
    Pipe job_out, job_err;
    RelaySpec s;
    s.job_out = std::move(job_out.r);
    s.job_err = std::move(job_err.r);
    s.dst_out = std::move(dst);
    std::promise<RelayResult> done;
    auto fut = done.get_future();
    std::thread job;
    {
        Relay relay(std::move(s), [&](RelayResult r) { done.set_value(std::move(r)); });
        job = flood(job_out.w, job_err.w, 4u << 20);
        // Let the relay fill the client's buffer and try to write more.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        EXPECT_EQ(fut.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout) << "nothing read it yet";
        relay.cancel();
        bool returned = fut.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
        EXPECT_TRUE(returned) << "the relay is still blocked on the client's descriptor after cancel";
        if (!returned) peer.reset();  // unblocks a write() stuck on it, so the test can end
        RelayResult r = fut.get();
        EXPECT_TRUE(r.cancelled);
        EXPECT_GT(r.out.total_bytes, 0u);
    }
    job.join();
    EXPECT_EQ(fcntl(client_copy.get(), F_GETFL), flags_before) << "the client's file status flags changed";
    EXPECT_FALSE(fcntl(client_copy.get(), F_GETFL) & O_NONBLOCK);
}

TEST(Relay, ASocketWithATinySendBufferThatIsNotReadIsCancellable) {
    // The report: a socket with a tiny SO_SNDBUF that is never read
    // (whether a PIPE_BUF write after POLLOUT blocks there depends on the
    // kernel's accounting; the relay must not care).
    int sp[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    UniqueFd peer(sp[0]), dst(sp[1]);
    int tiny = 1;
    ASSERT_EQ(setsockopt(dst.get(), SOL_SOCKET, SO_SNDBUF, &tiny, sizeof tiny), 0);
    expect_cancel_returns(std::move(dst), peer);
}

TEST(Relay, ATerminalNobodyReadsIsCancellableAndKeepsItsFlags) {
    // A pty whose master end is never read: its slave stops taking output once
    // the pty's buffer is full, and POLLOUT there does not mean a PIPE_BUF
    // write of lines fits (ONLCR doubles the newlines), so a blocking write
    // waits for a reader that never comes. A terminal cannot be made
    // non-blocking without changing the client's own description.
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    ASSERT_TRUE(master) << strerror(errno);
    ASSERT_EQ(grantpt(master.get()), 0);
    ASSERT_EQ(unlockpt(master.get()), 0);
    const char* name = ptsname(master.get());
    ASSERT_NE(name, nullptr);
    UniqueFd slave(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    ASSERT_TRUE(slave) << strerror(errno);
    expect_cancel_returns(std::move(slave), master);
}

TEST(Relay, APipeNobodyReadsIsCancellableAndKeepsItsFlags) {
    Pipe p;
    expect_cancel_returns(std::move(p.w), p.r);
}

TEST(Relay, CopiesBothWaysRecordsStdinAndKeepsOutputTails) {
    Pipe job_in, job_out, job_err, client_in, client_out, client_err;
    char tmpl[] = "/tmp/moat-relay-test.XXXXXX";
    int rec = mkstemp(tmpl);
    ASSERT_GE(rec, 0);
    RelaySpec s;
    s.job_in = std::move(job_in.w);
    s.job_out = std::move(job_out.r);
    s.job_err = std::move(job_err.r);
    s.src_in = std::move(client_in.r);
    s.dst_out = std::move(client_out.w);
    s.dst_err = std::move(client_err.w);
    s.record_in.reset(rec);
    s.record_in_max = 10;  // stdin beyond 10 bytes is relayed but not recorded
    s.tail_max = 8;
    std::promise<RelayResult> done;
    Relay relay(std::move(s), [&](RelayResult r) { done.set_value(std::move(r)); });

    // The "job": echoes its stdin to stdout, writes a line to stderr.
    std::thread job([&] {
        std::string in = read_all(job_in.r.get());
        write_all(job_out.w.get(), "OUT:" + in);
        write_all(job_err.w.get(), "error line\n");
        job_out.w.reset();
        job_err.w.reset();
    });
    std::thread client_reader_err;
    std::string client_got_err;
    client_reader_err = std::thread([&] { client_got_err = read_all(client_err.r.get()); });
    write_all(client_in.w.get(), "hello relay world");  // 17 bytes
    client_in.w.reset();
    std::string client_got = read_all(client_out.r.get());
    job.join();
    client_reader_err.join();
    RelayResult r = done.get_future().get();

    EXPECT_EQ(client_got, "OUT:hello relay world");
    EXPECT_EQ(client_got_err, "error line\n");
    EXPECT_EQ(r.in_bytes, 17u);
    EXPECT_EQ(r.in_recorded, 10u);
    EXPECT_TRUE(r.in_truncated) << "the marker for a cut recording";
    EXPECT_FALSE(r.in_recorded_complete);
    UniqueFd recfd(open(tmpl, O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(read_all(recfd.get()), "hello rela");
    unlink(tmpl);
    EXPECT_EQ(r.out.total_bytes, 21u);
    EXPECT_EQ(r.out.data, "ay world") << "the tail is the last tail_max bytes";
    EXPECT_EQ(r.err.data, "or line\n");
    EXPECT_FALSE(r.cancelled);
}

TEST(Relay, NoClientStillRecordsAndAClientThatStopsReadingIsCancellable) {
    Pipe job_out, job_err, client_out;
    RelaySpec s;
    s.job_out = std::move(job_out.r);
    s.job_err = std::move(job_err.r);
    s.dst_out = std::move(client_out.w);  // nobody ever reads client_out.r
    s.tail_max = 1 << 20;
    std::promise<RelayResult> done;
    Relay relay(std::move(s), [&](RelayResult r) { done.set_value(std::move(r)); });
    // More than the pipes and the relay buffer hold, written blocking: the
    // relay must not block in write() on the client's descriptor, and cancel
    // must end it (closing the job's pipe, so the writer sees EPIPE).
    signal(SIGPIPE, SIG_IGN);
    std::thread job([&] {
        std::string chunk(4096, 'x');
        for (int i = 0; i < 256; ++i)
            if (write(job_out.w.get(), chunk.data(), chunk.size()) < 0) break;
        job_out.w.reset();
        job_err.w.reset();
    });
    auto fut = done.get_future();
    EXPECT_EQ(fut.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
        << "output not delivered yet, so the relay must still be waiting";
    relay.cancel();
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready) << "cancel must end the relay";
    RelayResult r = fut.get();
    job.join();
    EXPECT_TRUE(r.cancelled) << "total " << r.out.total_bytes << " error " << r.error;
    EXPECT_GT(r.out.total_bytes, 0u);
}

TEST(Relay, WithoutStdinTheJobReadsEof) {
    Pipe job_in, job_out, job_err;
    RelaySpec s;
    s.job_in = std::move(job_in.w);
    s.job_out = std::move(job_out.r);
    s.job_err = std::move(job_err.r);
    std::promise<RelayResult> done;
    Relay relay(std::move(s), [&](RelayResult r) { done.set_value(std::move(r)); });
    EXPECT_EQ(read_all(job_in.r.get()), "");  // returns: the write end was closed
    job_out.w.reset();
    job_err.w.reset();
    RelayResult r = done.get_future().get();
    EXPECT_EQ(r.in_bytes, 0u);
}

// Relay threads are kept for the next job (relay.h): a relay that ended
// leaves its thread idle, and the next relay runs on such a thread. Relays
// alive at once each have a thread of their own, more of them than stay idle:
// six relays whose jobs end only after all six started all finish (one
// waiting for another's thread would hang here).
TEST(Relay, ThreadsAreKeptForTheNextRelayAndNoRelayWaitsForAnothers) {
    auto run_one = [] {
        Pipe job_out, job_err;
        RelaySpec s;
        s.job_out = std::move(job_out.r);
        s.job_err = std::move(job_err.r);
        std::promise<pid_t> tid;
        Relay relay(std::move(s), [&](RelayResult) { tid.set_value(gettid()); });
        job_out.w.reset();
        job_err.w.reset();
        return tid.get_future().get();
    };
    // The relay threads of this process now: named moat-relay.
    auto relay_threads = [] {
        std::set<pid_t> out;
        DIR* d = opendir("/proc/self/task");
        if (!d) return out;
        while (dirent* e = readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
            std::string name;
            std::getline(comm, name);
            if (name == "moat-relay") out.insert(pid_t(std::atoi(e->d_name)));
        }
        closedir(d);
        return out;
    };
    // A thread goes idle just after its relay's destructor returned.
    auto wait_idle = [] {
        for (int i = 0; i < 200 && Relay::idle_threads() == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return Relay::idle_threads();
    };
    const pid_t first = run_one();
    EXPECT_NE(first, gettid());
    EXPECT_GE(wait_idle(), 1u) << "the relay's thread ended with its relay";
    const std::set<pid_t> kept = relay_threads();
    EXPECT_TRUE(kept.count(first)) << "the first relay's thread is gone or unnamed";
    const pid_t second = run_one();
    EXPECT_TRUE(kept.count(second)) << "the second relay ran on a new thread, not on an idle one";

    constexpr int kAtOnce = 6;
    Pipe outs[kAtOnce], errs[kAtOnce];
    std::promise<pid_t> tids[kAtOnce];
    std::vector<std::unique_ptr<Relay>> relays;
    std::atomic<int> relayed{0};
    for (int i = 0; i < kAtOnce; ++i) {
        RelaySpec s;
        s.job_out = std::move(outs[i].r);
        s.job_err = std::move(errs[i].r);
        s.live = std::make_shared<moat::supervisor::LiveOutput>();
        s.live->on_append = [&] { ++relayed; };
        relays.push_back(std::make_unique<Relay>(std::move(s), [&, i](RelayResult) { tids[i].set_value(gettid()); }));
        write_all(outs[i].w.get(), "x");
    }
    // Every relay has taken its job's first byte: all six are running at once
    // (each stays in its loop until its pipes end), so no two share a thread.
    for (int i = 0; i < 500 && relayed < kAtOnce; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(relayed.load(), kAtOnce) << "a relay did not run while the others waited for their jobs' end";
    for (int i = 0; i < kAtOnce; ++i) {
        outs[i].w.reset();
        errs[i].w.reset();
    }
    std::set<pid_t> distinct;
    for (auto& t : tids) {
        auto f = t.get_future();
        ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "a relay waited for another's thread";
        distinct.insert(f.get());
    }
    EXPECT_EQ(distinct.size(), size_t(kAtOnce)) << "two live relays shared a thread";
    relays.clear();
    // Six threads are done: once they settled, at most four of them wait.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_LE(Relay::idle_threads(), 4u) << "more relay threads stay idle than kept";
    EXPECT_LE(relay_threads().size(), 4u) << "threads beyond the idle ones did not end";
}

}  // namespace
