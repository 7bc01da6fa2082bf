#include "relay.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace moat::supervisor {
namespace {

constexpr size_t kBuf = 64 * 1024;

void set_nonblock(int fd) {
    if (fd < 0) return;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// How long a read or write of a client descriptor that cannot be made
// non-blocking may block before the slice timer interrupts it (relay.h).
constexpr long kSliceMs = 100;

// The slice timer's signal: sent by a per-thread POSIX timer to the relay
// thread that armed it, never to another thread. Its handler does nothing; it
// is installed without SA_RESTART so the blocked call returns (EINTR or a
// partial count).
int slice_signal() { return SIGRTMIN + 3; }

void on_slice_signal(int) {}

void install_slice_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        sa.sa_handler = on_slice_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART: the interrupted call must return
        sigaction(slice_signal(), &sa, nullptr);
    });
}

// How the relay does I/O on one client descriptor (relay.h).
enum class Io { Socket, Own, Plain, Sliced };

// Classifies a client descriptor; a pipe is replaced by a non-blocking open
// file description of its own (the client's keeps its flags).
Io prepare(UniqueFd& fd, bool for_write) {
    struct stat st{};
    if (!fd || fstat(fd.get(), &st) < 0) return Io::Sliced;
    if (S_ISSOCK(st.st_mode)) return Io::Socket;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return Io::Plain;
    if (S_ISFIFO(st.st_mode)) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd.get());
        UniqueFd own(::open(path, (for_write ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
        struct stat st2{};
        // ENXIO: a FIFO without a reader (the write would fail anyway);
        // no /proc: fall back to slices.
        if (own && fstat(own.get(), &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino) {
            fd = std::move(own);
            return Io::Own;
        }
    }
    return Io::Sliced;  // terminals, other character devices, anonymous inodes
}

// Keeps the last `max` bytes, trimming in large steps so appends stay O(1) amortised.
void keep_tail(std::string& tail, const char* p, size_t n, uint64_t max) {
    if (max == 0) return;
    tail.append(p, n);
    if (tail.size() > 2 * max) tail.erase(0, tail.size() - max);
}

}  // namespace

// A per-thread interval timer that keeps interrupting the calling thread while
// armed (one per relay thread, made when the thread starts). An interval (not one shot) closes the race of an expiry that lands
// just before the blocking call starts.
class SliceTimer {
public:
    SliceTimer() {
        install_slice_handler();
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, slice_signal());
        pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
        struct sigevent sev{};
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = slice_signal();
        sev._sigev_un._tid = gettid();
        m_ok = timer_create(CLOCK_MONOTONIC, &sev, &m_id) == 0;
    }
    ~SliceTimer() {
        if (m_ok) timer_delete(m_id);
        // A signal generated just before the delete stays pending, blocked,
        // and goes away with the thread.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, slice_signal());
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
    }
    SliceTimer(const SliceTimer&) = delete;
    SliceTimer& operator=(const SliceTimer&) = delete;
    bool ok() const { return m_ok; }
    void arm(bool on) {
        if (!m_ok) return;
        itimerspec its{};
        if (on) its.it_value.tv_nsec = its.it_interval.tv_nsec = kSliceMs * 1'000'000;
        timer_settime(m_id, 0, &its, nullptr);
    }

private:
    timer_t m_id{};
    bool m_ok = false;
};

namespace {

// The relay threads (relay.h). Each runs one relay at a time; one that ends
// its relay waits for the next (at most kIdleMax do, each for kIdleFor) and
// otherwise ends. Its slice timer is made once and kept.
class RelayThreads {
public:
    using Task = std::function<void(SliceTimer&)>;
    // Never destroyed: idle threads may still wait on it while the process exits.
    static RelayThreads& get() {
        static RelayThreads* p = new RelayThreads;
        return *p;
    }
    // Runs `task` on an idle thread, or on a new one when none is idle.
    void run(Task task) {
        {
            std::lock_guard lk(m_mu);
            if (m_idle > m_tasks.size()) {
                m_tasks.push_back(std::move(task));
                m_cv.notify_one();
                return;
            }
        }
        std::thread([this, t = std::move(task)]() mutable { work(std::move(t)); }).detach();
    }
    size_t idle() {
        std::lock_guard lk(m_mu);
        return m_idle - std::min(m_idle, m_tasks.size());
    }

private:
    static constexpr size_t kIdleMax = 4;
    static constexpr auto kIdleFor = std::chrono::seconds(30);
    void work(Task task) {
        pthread_setname_np(pthread_self(), "moat-relay");
        SliceTimer slice;
        for (;;) {
            task(slice);
            task = nullptr;  // what it holds goes now, not when the next comes
            // A thread whose slice timer could not be made ends with its
            // relay: the next relay gets a new thread and a new try.
            if (!slice.ok()) return;
            std::unique_lock lk(m_mu);
            if (m_idle >= kIdleMax) return;
            ++m_idle;
            m_cv.wait_for(lk, kIdleFor, [&] { return !m_tasks.empty(); });
            --m_idle;
            if (m_tasks.empty()) return;  // idle for kIdleFor: the thread ends
            task = std::move(m_tasks.front());
            m_tasks.pop_front();
        }
    }
    std::mutex m_mu;
    std::condition_variable m_cv;
    std::deque<Task> m_tasks;
    size_t m_idle = 0;  // threads waiting in work(); those beyond m_tasks.size() are unclaimed
};

}  // namespace

// Shared by the relay and its task: the task marks it when run() has
// returned; the relay's destructor waits for that.
struct Relay::Finished {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
};

Relay::Relay(RelaySpec spec, std::function<void(RelayResult)> done)
    : m_spec(std::move(spec)), m_done(std::move(done)), m_cancel(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    // Our own pipe ends are non-blocking; the client's descriptors stay as they are.
    set_nonblock(m_spec.job_in.get());
    set_nonblock(m_spec.job_out.get());
    set_nonblock(m_spec.job_err.get());
    m_finished = std::make_shared<Finished>();
    RelayThreads::get().run([this, f = m_finished](SliceTimer& slice) {
        run(slice);
        std::lock_guard lk(f->mu);
        f->done = true;
        f->cv.notify_all();
    });
}

Relay::~Relay() {
    cancel();
    std::unique_lock lk(m_finished->mu);
    m_finished->cv.wait(lk, [&] { return m_finished->done; });
}

size_t Relay::idle_threads() { return RelayThreads::get().idle(); }

void LiveOutput::append(int stream, const char* p, size_t n) {
    {
        std::lock_guard lk(mu);
        Stream& st = streams[stream];
        st.total += n;
        keep_tail(st.data, p, n, max);
    }
    if (on_append) on_append();
}

void Relay::cancel() {
    uint64_t one = 1;
    if (m_cancel) (void)!::write(m_cancel.get(), &one, sizeof one);
}

void Relay::run(SliceTimer& slice) {
    RelaySpec& s = m_spec;
    RelayResult res;
    std::string inbuf, outbuf, errbuf;
    char buf[kBuf];
    if (!s.src_in) s.job_in.reset();  // no stdin: the job reads EOF
    const Io io_in = prepare(s.src_in, false);
    const Io io_out = prepare(s.dst_out, true);
    const Io io_err = prepare(s.dst_err, true);
    // One read or write of a client descriptor, never blocking past a slice.
    auto client_read = [&](int fd, Io io, char* p, size_t n) -> ssize_t {
        if (io == Io::Socket) return ::recv(fd, p, n, MSG_DONTWAIT);
        if (io != Io::Sliced) return ::read(fd, p, n);
        slice.arm(true);
        ssize_t r = ::read(fd, p, n);
        int e = errno;
        slice.arm(false);
        errno = e;
        return r;
    };
    auto client_write = [&](int fd, Io io, const char* p, size_t n) -> ssize_t {
        if (io == Io::Socket) return ::send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (io != Io::Sliced) return ::write(fd, p, n);
        // At most PIPE_BUF after POLLOUT: a pipe or terminal with room takes it
        // at once; the slice timer bounds the rest.
        slice.arm(true);
        ssize_t w = ::write(fd, p, std::min(n, size_t(PIPE_BUF)));
        int e = errno;
        slice.arm(false);
        errno = e;
        return w;
    };

    auto record = [&](const char* p, size_t n) {
        if (!s.record_in && s.make_record_in && n) {
            auto t = s.make_record_in();
            s.make_record_in = nullptr;  // once
            if (!t) {
                res.error = "recording stdin: " + t.error().message;
                res.in_truncated = true;
                res.in_record_failed = true;
                return;
            }
            s.record_in.reset(t->first);
            res.in_temp = t->second;
        }
        if (!s.record_in) return;
        size_t take = n;
        if (res.in_recorded + take > s.record_in_max) {
            take = size_t(s.record_in_max - res.in_recorded);
            res.in_truncated = true;
        }
        const char* q = p;
        size_t left = take;
        while (left) {
            ssize_t w = ::write(s.record_in.get(), q, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                res.error = std::string("recording stdin: ") + strerror(errno);
                res.in_truncated = true;
                res.in_record_failed = true;
                s.record_in.reset();
                return;
            }
            q += w;
            left -= size_t(w);
        }
        res.in_recorded += take;
        if (res.in_truncated) s.record_in.reset();  // the marker says the rest is missing
    };
    // Reads one output pipe: into the tail, and into the client buffer when
    // there is a client to deliver to.
    auto pump_out = [&](UniqueFd& src, std::string& pending, const UniqueFd& dst, store::JobOutput& out) {
        ssize_t n = ::read(src.get(), buf, kBuf - pending.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (n <= 0) {
            src.reset();
            return;
        }
        out.total_bytes += uint64_t(n);
        keep_tail(out.data, buf, size_t(n), s.tail_max);
        if (s.live) s.live->append(&out == &res.out ? 0 : 1, buf, size_t(n));
        if (dst) pending.append(buf, size_t(n));
    };
    auto deliver = [&](UniqueFd& dst, Io io, std::string& pending) {
        ssize_t w = client_write(dst.get(), io, pending.data(), pending.size());
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (w <= 0) {  // the client's reader is gone (EPIPE...): keep recording, stop delivering
            dst.reset();
            pending.clear();
            return;
        }
        pending.erase(0, size_t(w));
    };

    for (;;) {
        if (!s.job_out && !s.job_err && outbuf.empty() && errbuf.empty()) break;
        pollfd p[7];
        int kinds[7];
        nfds_t n = 0;
        auto add = [&](int fd, short ev, int kind) {
            p[n] = {fd, ev, 0};
            kinds[n++] = kind;
        };
        add(m_cancel.get(), POLLIN, 0);
        if (s.src_in && s.job_in && inbuf.size() < kBuf) add(s.src_in.get(), POLLIN, 1);
        if (s.job_in && !inbuf.empty()) add(s.job_in.get(), POLLOUT, 2);
        if (s.job_out && outbuf.size() < kBuf) add(s.job_out.get(), POLLIN, 3);
        if (s.job_err && errbuf.size() < kBuf) add(s.job_err.get(), POLLIN, 4);
        if (s.dst_out && !outbuf.empty()) add(s.dst_out.get(), POLLOUT, 5);
        if (s.dst_err && !errbuf.empty()) add(s.dst_err.get(), POLLOUT, 6);
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR) continue;
            res.error = std::string("poll: ") + strerror(errno);
            res.cancelled = true;
            break;
        }
        bool cancelled = false;
        for (nfds_t i = 0; i < n; ++i) {
            if (!p[i].revents) continue;
            switch (kinds[i]) {
                case 0:
                    cancelled = true;
                    break;
                case 1: {
                    ssize_t r = client_read(s.src_in.get(), io_in, buf, kBuf - inbuf.size());
                    if (r < 0 && (errno == EINTR || errno == EAGAIN)) break;
                    if (r <= 0) {  // EOF (or an error, which ends stdin the same way)
                        s.src_in.reset();
                        res.in_recorded_complete = !res.in_truncated && r == 0;
                        if (inbuf.empty()) s.job_in.reset();
                        break;
                    }
                    record(buf, size_t(r));
                    inbuf.append(buf, size_t(r));
                    break;
                }
                case 2: {
                    ssize_t w = ::write(s.job_in.get(), inbuf.data(), inbuf.size());
                    if (w < 0 && (errno == EINTR || errno == EAGAIN)) break;
                    if (w <= 0) {  // the job closed its stdin (EPIPE): stop reading the client's
                        s.job_in.reset();
                        s.src_in.reset();
                        inbuf.clear();
                        break;
                    }
                    res.in_bytes += uint64_t(w);
                    inbuf.erase(0, size_t(w));
                    if (inbuf.empty() && !s.src_in) s.job_in.reset();
                    break;
                }
                case 3: pump_out(s.job_out, outbuf, s.dst_out, res.out); break;
                case 4: pump_out(s.job_err, errbuf, s.dst_err, res.err); break;
                case 5: deliver(s.dst_out, io_out, outbuf); break;
                case 6: deliver(s.dst_err, io_err, errbuf); break;
            }
            if (cancelled) break;
        }
        if (cancelled) {
            res.cancelled = !(outbuf.empty() && errbuf.empty() && !s.job_out && !s.job_err);
            break;
        }
        // A pipe whose reader went away with data pending: nothing to deliver to.
        if (!s.dst_out) outbuf.clear();
        if (!s.dst_err) errbuf.clear();
    }
    for (auto* o : {&res.out, &res.err})
        if (o->data.size() > s.tail_max) o->data.erase(0, o->data.size() - s.tail_max);
    // Let go of the client's descriptors now, not when the relay is destroyed:
    // a reader of the client's stdout sees EOF as soon as the job's output is delivered.
    s.record_in.reset();
    s.src_in.reset();
    s.job_in.reset();
    s.dst_out.reset();
    s.dst_err.reset();
    s.job_out.reset();
    s.job_err.reset();
    if (m_done) m_done(std::move(res));
}

}  // namespace moat::supervisor
