#include "moat/ipc/proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/common/fd.h"
#include "moat/ipc/frame.h"
#include "moat/ipc/input.h"
#include "moat/ipc/remote.h"

namespace moat::ipc {

namespace {

using nlohmann::json;

// How much the proxy holds before it stops reading the side that fills it.
constexpr size_t kMaxToDaemon = 2 * size_t(kMaxRequestBytes);
constexpr size_t kMaxToClient = 4u << 20;
constexpr size_t kOutputReadBelow = 1u << 20;  // the job's output waits while the client is this far behind
constexpr size_t kMaxFinalDrain = 16u << 20;   // read after the job ended, before its record goes out

int64_t now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// A key of a peer's JSON, or the default when missing or of another type
// (json::value() would throw on the wrong type).
std::string str_of(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
bool bool_of(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string host_name() {
    char h[HOST_NAME_MAX + 1] = {};
    if (gethostname(h, sizeof h - 1) < 0) return "?";
    return h;
}

struct Out {
    std::string data;
    size_t off = 0;
    std::vector<UniqueFd> fds;  // sent with the first byte, then closed here
};

struct Relay {
    bool active = false;
    bool started = false;  // moatd answered the run with its job id
    UniqueFd stdin_w;
    UniqueFd out_r[2];  // stdout, stderr
    std::string stdin_buf;
    bool stdin_eof_asked = false;
    bool out_eof_sent[2] = {false, false};
};

class Proxy {
public:
    Proxy(int in, int out) : m_in(in), m_out(out) {}

    int run(const std::string& socket_path) {
        set_nonblock(m_in);
        set_nonblock(m_out);
        if (auto r = connect_daemon(socket_path); !r) {
            report(r.error().message);
            flush_client_blocking();
            return 1;
        }
        for (;;) {
            // The client left: what it sent goes to moatd, then we go. A job
            // it ran ends when our connection closes (moatd records "the
            // client that ran it disconnected"), as for a local client.
            if (m_client_eof && (m_to_daemon.empty() || m_daemon_eof)) return m_status;
            if (m_daemon_eof && !m_relay.active && (client_pending() == 0 || m_client_dead)) return m_status;

            pollfd p[6];
            int n = 0;
            int i_in = -1, i_out = -1, i_d = -1, i_stdin = -1, i_o[2] = {-1, -1};
            // The client is read only while both of its queues have room: its
            // requests towards moatd, and the answers (and refusals of the
            // proxy's own) waiting for it to read them.
            if (!m_client_eof && daemon_pending() < kMaxToDaemon && client_pending() < kMaxToClient)
                p[i_in = n++] = {m_in, POLLIN, 0};
            if (!m_client_dead && client_pending() > 0) p[i_out = n++] = {m_out, POLLOUT, 0};
            if (!m_daemon_eof) {
                short ev = 0;
                if (m_client_dead || client_pending() < kMaxToClient) ev |= POLLIN;
                if (!m_to_daemon.empty()) ev |= POLLOUT;
                p[i_d = n++] = {m_daemon.get(), ev, 0};
            }
            if (m_relay.active) {
                if (m_relay.stdin_w && !m_relay.stdin_buf.empty()) p[i_stdin = n++] = {m_relay.stdin_w.get(), POLLOUT, 0};
                for (int s = 0; s < 2; ++s)
                    if (m_relay.out_r[s] && (m_client_dead || client_pending() < kOutputReadBelow))
                        p[i_o[s] = n++] = {m_relay.out_r[s].get(), POLLIN, 0};
            }
            if (::poll(p, nfds_t(n), -1) < 0) {
                if (errno == EINTR) continue;
                report(std::string("poll: ") + strerror(errno));
                return 1;
            }
            auto ready = [&](int i, short ev) { return i >= 0 && (p[i].revents & (ev | POLLHUP | POLLERR)); };
            if (ready(i_d, POLLOUT)) write_daemon();
            if (ready(i_d, POLLIN)) read_daemon();
            if (ready(i_in, POLLIN)) read_client();
            for (int s = 0; s < 2; ++s)
                if (ready(i_o[s], POLLIN) && m_relay.active) read_output(s, kRelayChunk);
            if (ready(i_stdin, POLLOUT)) write_stdin();
            if (m_ack && !m_client_dead) {
                append_client(relay_ack_frame(uint32_t(std::min<uint64_t>(m_ack, UINT32_MAX))));
                m_ack -= std::min<uint64_t>(m_ack, UINT32_MAX);
            }
            if (!m_client_dead && client_pending() > 0) write_client();
            if (m_fatal) {
                flush_client_blocking();
                return 1;
            }
        }
    }

private:
    size_t client_pending() const { return m_to_client.size() - m_client_off; }
    size_t daemon_pending() const { return m_to_daemon_bytes; }

    Result<void> connect_daemon(const std::string& path) {
        auto fd = connect_unix(path, true);
        if (!fd) return std::unexpected(moat::Error{fd.error().message + " (is moatd running there?)", fd.error().sys_errno});
        m_daemon = std::move(*fd);
        return {};
    }

    // Says what went wrong on stderr (ssh shows it to the user) and to the
    // client as an answer it can print.
    void report(const std::string& why) {
        const std::string text = "moatctl proxy on " + host_name() + ": " + why;
        fprintf(stderr, "%s\n", text.c_str());
        if (!m_client_dead)
            append_client(encode_frame(json{{"ok", false}, {"code", "proxy"}, {"error", text}}.dump(
                -1, ' ', false, json::error_handler_t::replace)));
        m_status = 1;
    }

    void append_client(const std::string& bytes) {
        if (m_client_dead) return;
        if (m_client_off > (1u << 20)) {
            m_to_client.erase(0, m_client_off);
            m_client_off = 0;
        }
        m_to_client += bytes;
    }

    void write_client() {
        while (client_pending() > 0) {
            ssize_t w = ::write(m_out, m_to_client.data() + m_client_off, client_pending());
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                client_gone();
                return;
            }
            m_client_off += size_t(w);
        }
        m_to_client.clear();
        m_client_off = 0;
    }

    // Before exiting after an error: what the client should read, within a
    // few seconds.
    void flush_client_blocking() {
        const int64_t until = now_ms() + 5000;
        while (!m_client_dead && client_pending() > 0 && now_ms() < until) {
            pollfd p{m_out, POLLOUT, 0};
            if (::poll(&p, 1, 100) > 0) write_client();
        }
    }

    void client_gone() {
        m_client_dead = true;
        m_to_client.clear();
        m_client_off = 0;
        client_eof();
    }

    void client_eof() { m_client_eof = true; }

    void queue_daemon(std::string bytes, std::vector<UniqueFd> fds) {
        m_to_daemon_bytes += bytes.size();
        // Frames without fds join the last buffer: a flood of tiny frames
        // costs their bytes, not a queue entry each.
        if (fds.empty() && !m_to_daemon.empty()) {
            m_to_daemon.back().data += bytes;
            return;
        }
        m_to_daemon.push_back(Out{std::move(bytes), 0, std::move(fds)});
    }

    void write_daemon() {
        while (!m_to_daemon.empty()) {
            Out& o = m_to_daemon.front();
            std::vector<int> raw;  // sent with the first byte only
            if (o.off == 0)
                for (auto& f : o.fds) raw.push_back(f.get());
            ssize_t w = send_with_fds(m_daemon.get(), o.data.data() + o.off, o.data.size() - o.off, raw.data(),
                                      raw.size(), MSG_DONTWAIT);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                daemon_gone();
                return;
            }
            o.fds.clear();  // they went with the first byte
            o.off += size_t(w);
            m_to_daemon_bytes -= size_t(w);
            if (o.off == o.data.size()) m_to_daemon.pop_front();
        }
    }

    // One read from a side into its decoder, then its complete frames to
    // `handle`; false at end of stream. Both sides take this path.
    template <class Handle>
    bool read_side(int fd, FrameDecoder& dec, const char* side, Handle handle) {
        char buf[65536];
        ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) return true;
        if (r <= 0) return false;
        try {
            if (auto f = dec.feed(buf, size_t(r)); !f) throw std::runtime_error(f.error().message);
            while (!m_fatal)
                if (auto frame = dec.next()) handle(*frame);
                else break;
        } catch (const std::exception& e) {  // too large, or a JSON shape nothing here expected
            report(std::string("from ") + side + ": " + e.what());
            m_fatal = true;
        }
        return true;
    }

    void read_daemon() {
        if (!read_side(m_daemon.get(), m_from_daemon, "moatd", [this](const std::string& f) { on_daemon_frame(f); }))
            daemon_gone();
    }

    void daemon_gone() {
        m_daemon_eof = true;
        m_to_daemon.clear();
        m_to_daemon_bytes = 0;
        if (m_relay.active) {
            drain_outputs();
            end_relay();
            report("moatd closed the connection while a job ran");
        }
    }

    void on_daemon_frame(const std::string& p) {
        if (m_relay.active) {
            auto j = json::parse(p, nullptr, false);
            if (j.is_object()) {
                const bool ok = bool_of(j, "ok");
                if (ok && !m_relay.started && j.contains("job")) {
                    m_relay.started = true;
                } else if (!ok && !m_relay.started) {
                    end_relay();  // refused: it never started
                }
                if (j.contains("finished")) {
                    drain_outputs();  // all it wrote comes before its record
                    end_relay();
                }
            }
        }
        append_client(encode_frame(p));
    }

    void read_client() {
        if (!read_side(m_in, m_from_client, "the client", [this](const std::string& f) { on_client_frame(f); }))
            client_eof();
    }

    void on_client_frame(const std::string& p) {
        if (!p.empty() && p[0] == kRelayStdin) {
            const size_t n = p.size() - 1;
            if (!m_relay.active || !m_relay.stdin_w) {
                m_ack += n;  // no one to read it: passed on to nowhere
                return;
            }
            if (n == 0) {
                m_relay.stdin_eof_asked = true;
                if (m_relay.stdin_buf.empty()) m_relay.stdin_w.reset();
                return;
            }
            if (m_relay.stdin_buf.size() + n > kRelayWindow) {
                report("the client sent more than " + std::to_string(kRelayWindow) +
                     " bytes of stdin without waiting for them to be taken");
                m_fatal = true;
                return;
            }
            m_relay.stdin_buf.append(p, 1, n);
            return;
        }
        if (p.find("\"relay_stdio\"") != std::string::npos) {
            auto j = json::parse(p, nullptr, false);
            if (j.is_object() && str_of(j, "op") == "run" && bool_of(j, "relay_stdio")) {
                start_run(std::move(j));
                return;
            }
        }
        // Everything else is moatd's to judge, byte for byte.
        queue_daemon(encode_frame(p), {});
    }

    void refuse(const std::string& code, const std::string& why) {
        append_client(encode_frame(json{{"ok", false}, {"code", code}, {"error", why}}.dump(
            -1, ' ', false, json::error_handler_t::replace)));
    }

    void start_run(json req) {
        if (m_relay.active) return refuse("busy", "one relayed run at a time per connection");
        std::vector<UniqueFd> fds;
        {
            int a[2], b[2], c[2];
            if (pipe2(a, O_CLOEXEC) < 0) return refuse("proxy", std::string("pipe2: ") + strerror(errno));
            UniqueFd a0(a[0]), a1(a[1]);
            if (pipe2(b, O_CLOEXEC) < 0) return refuse("proxy", std::string("pipe2: ") + strerror(errno));
            UniqueFd b0(b[0]), b1(b[1]);
            if (pipe2(c, O_CLOEXEC) < 0) return refuse("proxy", std::string("pipe2: ") + strerror(errno));
            UniqueFd c0(c[0]), c1(c[1]);
            fds.push_back(std::move(a0));
            fds.push_back(std::move(b1));
            fds.push_back(std::move(c1));
            m_relay.stdin_w = std::move(a1);
            m_relay.out_r[0] = std::move(b0);
            m_relay.out_r[1] = std::move(c0);
        }
        auto undo = [&] { m_relay = Relay{}; };
        json ins = json::array();
        if (req.contains("inputs")) {
            if (!req["inputs"].is_array() || req["inputs"].size() > kMaxInputs) {
                undo();
                return refuse("bad-request", "inputs: at most " + std::to_string(kMaxInputs) + " entries");
            }
            for (const auto& in : req["inputs"]) {
                if (!in.is_object() || !in.contains("host") || !in["host"].is_string()) {
                    undo();
                    return refuse("bad-request", "inputs: each needs a \"host\" path");
                }
                const std::string host = in["host"].get<std::string>();
                std::string why;
                int fd = open_input(host, bool_of(in, "no_symlinks"), &why);
                if (fd < 0) {
                    undo();
                    return refuse("input", "--input " + host + " on " + host_name() + ": " + why);
                }
                fds.emplace_back(fd);
                std::string real = opened_name(fd);
                if (real.empty()) {
                    undo();
                    return refuse("input", "--input " + host + ": cannot name the opened file");
                }
                std::string sandbox = in.contains("sandbox") && in["sandbox"].is_string() ? in["sandbox"].get<std::string>() : "";
                ins.push_back({{"host", real}, {"sandbox", sandbox.empty() ? real : sandbox}, {"fd", true}});
            }
        }
        req["inputs"] = ins;
        req.erase("relay_stdio");
        if (!req.contains("cwd")) {
            char cwd[PATH_MAX];
            req["cwd"] = getcwd(cwd, sizeof cwd) ? cwd : "/";
        }
        std::string payload = req.dump(-1, ' ', false, json::error_handler_t::replace);
        if (payload.size() > kMaxRequestBytes) {
            undo();
            return refuse("too-large", "request too large");
        }
        set_nonblock(m_relay.stdin_w.get());
        set_nonblock(m_relay.out_r[0].get());
        set_nonblock(m_relay.out_r[1].get());
        m_relay.active = true;
        queue_daemon(encode_frame(payload), std::move(fds));
    }

    void write_stdin() {
        auto& r = m_relay;
        while (r.stdin_w && !r.stdin_buf.empty()) {
            ssize_t w = ::write(r.stdin_w.get(), r.stdin_buf.data(), r.stdin_buf.size());
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                // EPIPE: the job closed its stdin or ended. What is left
                // counts as taken, so the client is not held up.
                m_ack += r.stdin_buf.size();
                r.stdin_buf.clear();
                r.stdin_w.reset();
                return;
            }
            m_ack += size_t(w);
            r.stdin_buf.erase(0, size_t(w));
        }
        if (r.stdin_buf.empty() && r.stdin_eof_asked) r.stdin_w.reset();
    }

    // Returns false at EOF or error (the pipe is then closed and its EOF sent).
    bool read_output(int s, size_t max) {
        auto& fd = m_relay.out_r[s];
        if (!fd) return false;
        char buf[kRelayChunk];
        ssize_t r = ::read(fd.get(), buf, std::min(max, sizeof buf));
        if (r < 0 && errno == EINTR) return true;
        if (r < 0 && errno == EAGAIN) return false;
        const char tag = s == 0 ? kRelayStdout : kRelayStderr;
        if (r <= 0) {
            fd.reset();
            send_eof(s);
            return false;
        }
        append_client(relay_frame(tag, buf, size_t(r)));
        return true;
    }

    void send_eof(int s) {
        if (m_relay.out_eof_sent[s]) return;
        m_relay.out_eof_sent[s] = true;
        append_client(relay_frame(s == 0 ? kRelayStdout : kRelayStderr, nullptr, 0));
    }

    void drain_outputs() {
        size_t total = 0;
        for (int s = 0; s < 2; ++s) {
            while (total < kMaxFinalDrain && m_relay.out_r[s]) {
                const size_t before = client_pending();
                if (!read_output(s, kRelayChunk)) break;
                total += client_pending() - before;
            }
            send_eof(s);
        }
    }

    void end_relay() {
        m_ack += m_relay.stdin_buf.size();  // never taken: counted, so the client's window is whole again
        m_relay = Relay{};
    }

    int m_in, m_out;
    UniqueFd m_daemon;
    FrameDecoder m_from_client{kMaxRequestBytes};
    FrameDecoder m_from_daemon{kMaxResponseBytes};
    std::string m_to_client;
    size_t m_client_off = 0;
    std::deque<Out> m_to_daemon;
    size_t m_to_daemon_bytes = 0;
    Relay m_relay;
    uint64_t m_ack = 0;
    bool m_client_eof = false, m_client_dead = false, m_daemon_eof = false, m_fatal = false;
    int m_status = 0;
};

}  // namespace

int run_proxy(int in, int out, const std::string& socket_path) {
    signal(SIGPIPE, SIG_IGN);
    Proxy p(in, out);
    return p.run(socket_path);
}

}  // namespace moat::ipc
