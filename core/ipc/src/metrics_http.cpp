#include "moat/ipc/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace moat::ipc {

Result<ListenAddress> parse_listen_address(const std::string& s) {
    ListenAddress a;
    std::string host = "127.0.0.1", port = s;
    if (auto colon = s.rfind(':'); colon != std::string::npos) {
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        else if (host.find(':') != std::string::npos)
            return fail("--metrics " + s + ": write an IPv6 address in brackets, e.g. [::1]:9464");
    }
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535)
        return fail("--metrics " + s + ": the port must be a number from 0 to 65535");
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.addr);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(uint16_t(p));
        a.len = sizeof *v4;
        a.loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
        a.text = host + ":" + std::to_string(p);
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(uint16_t(p));
        a.len = sizeof *v6;
        a.loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
        a.text = "[" + host + "]:" + std::to_string(p);
    } else {
        return fail("--metrics " + s + ": \"" + host + "\" is not an IP address (host names are not resolved)");
    }
    return a;
}

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::create(MetricsHttpConfig cfg, EventLoop* loop,
                                                         std::function<std::string()> render) {
    auto addr = parse_listen_address(cfg.listen);
    if (!addr) return std::unexpected(addr.error());
    std::unique_ptr<MetricsHttp> m(new MetricsHttp());
    m->m_cfg = std::move(cfg);
    m->m_loop = loop;
    m->m_render = std::move(render);
    m->m_listen.reset(::socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!m->m_listen) return fail_sys("socket", errno);
    int one = 1;
    setsockopt(m->m_listen.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(m->m_listen.get(), reinterpret_cast<const sockaddr*>(&addr->addr), addr->len) < 0)
        return fail_sys("bind(" + addr->text + ")", errno);
    if (::listen(m->m_listen.get(), 16) < 0) return fail_sys("listen(" + addr->text + ")", errno);
    sockaddr_storage bound{};
    socklen_t bl = sizeof bound;
    getsockname(m->m_listen.get(), reinterpret_cast<sockaddr*>(&bound), &bl);
    m->m_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    m->m_address = addr->text.substr(0, addr->text.rfind(':') + 1) + std::to_string(m->m_port);
    MetricsHttp* raw = m.get();
    if (auto r = loop->add_fd(m->m_listen.get(), EPOLLIN, [raw](uint32_t) { raw->on_accept(); }); !r)
        return std::unexpected(r.error());
    return m;
}

MetricsHttp::~MetricsHttp() {
    while (!m_conns.empty()) close_conn(m_conns.begin()->first);
    if (m_listen) m_loop->remove_fd(m_listen.get());
}

void MetricsHttp::on_accept() {
    for (;;) {
        UniqueFd fd(::accept4(m_listen.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) return;  // EAGAIN, or a peer that left: nothing to do
        if (m_conns.size() >= m_cfg.max_connections) {
            // Full. Peers that hold connections without sending a request
            // must not lock the scraper out: the oldest one still being read
            // makes room. If every connection is being answered, the new one
            // is closed (a scraper retries).
            auto oldest = m_conns.end();
            for (auto it = m_conns.begin(); it != m_conns.end(); ++it)
                if (it->second->out.empty() && (oldest == m_conns.end() || it->second->seq < oldest->second->seq))
                    oldest = it;
            ++m_refused;
            if (oldest == m_conns.end()) continue;
            close_conn(oldest->first);
        }
        const int n = fd.get();
        auto c = std::make_unique<Conn>();
        c->fd = std::move(fd);
        c->seq = ++m_accepted;
        if (!m_loop->add_fd(n, EPOLLIN | EPOLLRDHUP, [this, n](uint32_t) {
                // Answering: only writing is left (an error or hang-up ends
                // it there, never as a read that returns at once and spins).
                if (auto it = m_conns.find(n); it != m_conns.end() && !it->second->out.empty()) on_writable(n);
                else on_readable(n);
            }))
            continue;
        if (auto t = m_loop->add_timer(uint64_t(m_cfg.request_timeout_ns), 0, [this, n] {
                if (auto it = m_conns.find(n); it != m_conns.end()) {
                    it->second->timer = 0;
                    ++m_timed_out;
                    close_conn(n);
                }
            }))
            c->timer = *t;
        m_conns.emplace(n, std::move(c));
    }
}

void MetricsHttp::close_conn(int fd) {
    auto it = m_conns.find(fd);
    if (it == m_conns.end()) return;
    if (it->second->timer) m_loop->cancel_timer(it->second->timer);
    m_loop->remove_fd(fd);
    m_conns.erase(it);  // closes
}

void MetricsHttp::on_readable(int fd) {
    auto it = m_conns.find(fd);
    if (it == m_conns.end()) return;
    Conn& c = *it->second;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            c.in.append(buf, size_t(n));
            if (c.in.size() > m_cfg.max_request_bytes) {
                answer(c, 431, "Request Header Fields Too Large", "request too large\n", false);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n == 0 && c.in.find("\r\n\r\n") != std::string::npos) break;  // sent it all, then shut down its side
        close_conn(fd);  // EOF before a whole request, or an error
        return;
    }
    const size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return;  // wait for the rest (the timer bounds it)
    const std::string line = c.in.substr(0, c.in.find("\r\n"));
    const size_t sp1 = line.find(' '), sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
        answer(c, 400, "Bad Request", "bad request\n", false);
        return;
    }
    const std::string method = line.substr(0, sp1);
    std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    if (method != "GET" && method != "HEAD") {
        answer(c, 405, "Method Not Allowed", "only GET /metrics\n", false);
        return;
    }
    if (target != "/metrics") {
        answer(c, 404, "Not Found", "only GET /metrics\n", method == "HEAD");
        return;
    }
    answer(c, 200, "OK", m_render(), method == "HEAD");
}

void MetricsHttp::answer(Conn& c, int status, const char* reason, const std::string& body, bool head) {
    c.in.clear();
    c.in.shrink_to_fit();
    c.out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    c.out += status == 200 ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                           : "Content-Type: text/plain; charset=utf-8\r\n";
    if (status == 405) c.out += "Allow: GET, HEAD\r\n";
    c.out += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (!head) c.out += body;
    const int fd = c.fd.get();
    (void)m_loop->modify_fd(fd, EPOLLOUT);
    on_writable(fd);
}

void MetricsHttp::on_writable(int fd) {
    auto it = m_conns.find(fd);
    if (it == m_conns.end()) return;
    Conn& c = *it->second;
    while (c.sent < c.out.size()) {
        ssize_t n = ::send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) {
            c.sent += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;  // EPOLLOUT brings us back; the timer bounds it
        break;                                 // the peer left
    }
    ::shutdown(fd, SHUT_WR);
    close_conn(fd);
}

}  // namespace moat::ipc
