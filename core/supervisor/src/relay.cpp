#include "relay.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::supervisor {
namespace {

constexpr size_t kBuf = 64 * 1024;

void set_nonblock(int fd) {
    if (fd < 0) return;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// Keeps the last `max` bytes, trimming in large steps so appends stay O(1) amortised.
void keep_tail(std::string& tail, const char* p, size_t n, uint64_t max) {
    if (max == 0) return;
    tail.append(p, n);
    if (tail.size() > 2 * max) tail.erase(0, tail.size() - max);
}

}  // namespace

Relay::Relay(RelaySpec spec, std::function<void(RelayResult)> done)
    : m_spec(std::move(spec)), m_done(std::move(done)), m_cancel(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    // Our own pipe ends are non-blocking; the client's descriptors stay as they are.
    set_nonblock(m_spec.job_in.get());
    set_nonblock(m_spec.job_out.get());
    set_nonblock(m_spec.job_err.get());
    m_thread = std::thread([this] { run(); });
}

Relay::~Relay() {
    cancel();
    if (m_thread.joinable()) m_thread.join();
}

void Relay::cancel() {
    uint64_t one = 1;
    if (m_cancel) (void)!::write(m_cancel.get(), &one, sizeof one);
}

void Relay::run() {
    RelaySpec& s = m_spec;
    RelayResult res;
    std::string inbuf, outbuf, errbuf;
    char buf[kBuf];
    if (!s.src_in) s.job_in.reset();  // no stdin: the job reads EOF

    auto record = [&](const char* p, size_t n) {
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
        if (dst) pending.append(buf, size_t(n));
    };
    auto deliver = [&](UniqueFd& dst, std::string& pending) {
        // At most PIPE_BUF after POLLOUT: a blocking pipe or terminal takes it
        // without waiting.
        size_t n = std::min(pending.size(), size_t(PIPE_BUF));
        ssize_t w = ::write(dst.get(), pending.data(), n);
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
                    ssize_t r = ::read(s.src_in.get(), buf, kBuf - inbuf.size());
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
                case 5: deliver(s.dst_out, outbuf); break;
                case 6: deliver(s.dst_err, errbuf); break;
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
