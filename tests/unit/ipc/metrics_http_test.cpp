// The metrics endpoint's HTTP side (docs/metrics.md): one page, and a peer is
// as hostile as any client: bounded request size and time, bounded
// connections, and nothing but GET/HEAD /metrics answered with the page.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "moat/ipc/metrics_http.h"

namespace {

using moat::EventLoop;
using moat::ipc::MetricsHttp;
using moat::ipc::MetricsHttpConfig;
using moat::ipc::parse_listen_address;

TEST(MetricsAddress, PortAloneIsLoopbackAndOthersAreLiterals) {
    auto a = parse_listen_address("9464");
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_TRUE(a->loopback);
    EXPECT_EQ(a->text, "127.0.0.1:9464");
    auto b = parse_listen_address("0.0.0.0:9464");
    ASSERT_TRUE(b);
    EXPECT_FALSE(b->loopback);
    auto c = parse_listen_address("[::1]:1");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_TRUE(c->loopback);
    EXPECT_EQ(c->text, "[::1]:1");
    EXPECT_TRUE(parse_listen_address("127.0.0.2:0")->loopback);
    for (const char* bad : {"", "x", "70000", "127.0.0.1:", "127.0.0.1:-1", "::1:80", "localhost:80", "1.2.3:80",
                            "127.0.0.1:80 ", "[::1]"}) {
        auto r = parse_listen_address(bad);
        EXPECT_FALSE(r) << '"' << bad << "\" was accepted";
    }
    EXPECT_NE(parse_listen_address("localhost:80").error().message.find("not an IP address"), std::string::npos);
}

// A loop on its own thread serving a page that counts its renders.
class MetricsHttpTest : public ::testing::Test {
protected:
    void start(MetricsHttpConfig cfg) {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop);
        m_loop = std::move(*loop);
        cfg.listen = "127.0.0.1:0";
        auto m = MetricsHttp::create(cfg, m_loop.get(), [this] {
            ++m_renders;
            return std::string("moat_test_total 1\n");
        });
        ASSERT_TRUE(m) << m.error().message;
        m_http = std::move(*m);
        m_thread = std::thread([this] { m_loop->run(); });
    }
    void TearDown() override {
        if (m_loop) {
            m_loop->stop();
            if (m_thread.joinable()) m_thread.join();
            m_http.reset();
        }
    }
    int connect_() const {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(m_http->port());
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
        return fd;
    }
    // Everything the server sends until it closes (or timeout_ms passes).
    static std::string read_all(int fd, int timeout_ms = 5000) {
        std::string out;
        char buf[4096];
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now())
                               .count());
            if (left <= 0) return out + "<still open>";
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, left) <= 0) continue;
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) return out;
            out.append(buf, size_t(n));
        }
    }
    std::string request(const std::string& req) const {
        int fd = connect_();
        EXPECT_EQ(write(fd, req.data(), req.size()), ssize_t(req.size()));
        std::string r = read_all(fd);
        close(fd);
        return r;
    }

    std::unique_ptr<EventLoop> m_loop;
    std::unique_ptr<MetricsHttp> m_http;
    std::thread m_thread;
    std::atomic<int> m_renders{0};
};

TEST_F(MetricsHttpTest, ServesTheOnePageAndRefusesTheRest) {
    start({});
    std::string ok = request("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    EXPECT_TRUE(ok.starts_with("HTTP/1.1 200 OK\r\n")) << ok;
    EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos) << ok;
    EXPECT_NE(ok.find("Content-Length: 18\r\n"), std::string::npos) << ok;
    EXPECT_TRUE(ok.ends_with("\r\n\r\nmoat_test_total 1\n")) << ok;
    EXPECT_TRUE(request("GET /metrics?name[]=x HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK")) << "a query is ignored";
    std::string head = request("HEAD /metrics HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK")) << head;
    EXPECT_TRUE(head.ends_with("\r\n\r\n")) << "HEAD has no body: " << head;
    EXPECT_EQ(m_renders.load(), 3);

    EXPECT_TRUE(request("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 ")) << "only /metrics";
    EXPECT_TRUE(request("GET /metrics/../etc HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    std::string post = request("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    EXPECT_TRUE(post.starts_with("HTTP/1.1 405 ")) << post;
    EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos) << post;
    for (const char* bad : {"GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n", "\r\n\r\n",
                            "GET  /metrics HTTP/1.1\r\n\r\n"})
        EXPECT_TRUE(request(bad).starts_with("HTTP/1.1 4")) << '"' << bad << '"';
    EXPECT_EQ(m_renders.load(), 3) << "nothing but a GET or HEAD of /metrics renders the page";
}

TEST_F(MetricsHttpTest, AnOversizedRequestIsRefused) {
    start({});
    std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(9000, 'a') + "\r\n\r\n";
    int fd = connect_();
    (void)!write(fd, big.data(), big.size());
    std::string r = read_all(fd);
    close(fd);
    // The server may reset the connection (unread bytes) before the answer is read.
    EXPECT_TRUE(r.empty() || r.starts_with("HTTP/1.1 431 ")) << r.substr(0, 200);
    EXPECT_EQ(m_renders.load(), 0);
}

TEST_F(MetricsHttpTest, ASlowPeerIsClosedAtTheTimeout) {
    MetricsHttpConfig cfg;
    cfg.request_timeout_ns = 300'000'000;
    start(cfg);
    int fd = connect_();
    (void)!write(fd, "GET /metr", 9);  // and nothing more
    std::string r = read_all(fd, 5000);
    close(fd);
    EXPECT_EQ(r, "") << "closed without an answer";
    EXPECT_EQ(m_http->timed_out(), 1u);
}

// Peers that connect and say nothing cannot lock a scraper out: when all
// connections are taken, the oldest one still sending its request makes room.
TEST_F(MetricsHttpTest, IdlePeersAtTheLimitAreEvictedForANewOne) {
    MetricsHttpConfig cfg;
    cfg.max_connections = 3;
    start(cfg);
    std::vector<int> idle;
    for (int i = 0; i < 3; ++i) {
        idle.push_back(connect_());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // accepted in this order
    }
    std::string ok = request("GET /metrics HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(ok.starts_with("HTTP/1.1 200 OK")) << ok;
    EXPECT_EQ(m_http->refused(), 1u);
    EXPECT_EQ(read_all(idle[0], 2000), "") << "the oldest idle peer was closed";
    EXPECT_EQ(read_all(idle[2], 200), "<still open>") << "the others keep their connections";
    for (int fd : idle) close(fd);
}

// A client that sends its request and then shuts its side down (nc -N) still
// gets the page.
TEST_F(MetricsHttpTest, AHalfClosedRequestIsAnswered) {
    start({});
    int fd = connect_();
    const std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
    ASSERT_EQ(write(fd, req.data(), req.size()), ssize_t(req.size()));
    shutdown(fd, SHUT_WR);
    std::string r = read_all(fd);
    close(fd);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK")) << r;
    // One that shuts down before a whole request is closed without one.
    fd = connect_();
    (void)!write(fd, "GET /met", 8);
    shutdown(fd, SHUT_WR);
    EXPECT_EQ(read_all(fd), "");
    close(fd);
}

}  // namespace
