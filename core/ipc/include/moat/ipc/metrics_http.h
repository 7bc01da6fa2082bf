#pragma once
// moatd's metrics endpoint (docs/metrics.md): a minimal HTTP/1.x responder on
// moatd's event loop that serves one page, GET /metrics, and closes. Peers are
// hostile like any client: the request is bounded in size and time, the
// connections in number, and nothing a peer sends reaches anything but the
// request-line check.
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "moat/common/error.h"
#include "moat/common/event_loop.h"
#include "moat/common/fd.h"

namespace moat::ipc {

struct MetricsHttpConfig {
    std::string listen;                          // "PORT", "HOST:PORT" or "[V6]:PORT"; HOST an IP literal
    size_t max_connections = 8;                  // past it the oldest peer still sending its request is evicted
    int64_t request_timeout_ns = 5'000'000'000;  // request read and answer written within this
    size_t max_request_bytes = 8192;             // request line and headers
};

// A parsed --metrics address. PORT alone means 127.0.0.1:PORT. Port 0: any
// free port (tests; MetricsHttp::port() says which).
struct ListenAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
    bool loopback = false;
    std::string text;  // as it will be printed: "127.0.0.1:9464", "[::1]:9464"
};
Result<ListenAddress> parse_listen_address(const std::string& s);

class MetricsHttp final {
public:
    // render: the page's body, called on the loop for each GET.
    static Result<std::unique_ptr<MetricsHttp>> create(MetricsHttpConfig cfg, EventLoop* loop,
                                                       std::function<std::string()> render);
    ~MetricsHttp();
    MetricsHttp(const MetricsHttp&) = delete;
    MetricsHttp& operator=(const MetricsHttp&) = delete;

    uint16_t port() const { return m_port; }
    const std::string& address() const { return m_address; }  // bound address, printed
    uint64_t refused() const { return m_refused; }  // over the limit: an idle peer evicted, or the new one closed
    uint64_t timed_out() const { return m_timed_out; }

private:
    struct Conn {
        UniqueFd fd;
        std::string in, out;
        size_t sent = 0;
        EventLoop::TimerId timer = 0;
        uint64_t seq = 0;  // accept order
    };
    MetricsHttp() = default;
    void on_accept();
    void on_readable(int fd);
    void on_writable(int fd);
    void answer(Conn& c, int status, const char* reason, const std::string& body, bool head);
    void close_conn(int fd);

    MetricsHttpConfig m_cfg;
    EventLoop* m_loop = nullptr;
    std::function<std::string()> m_render;
    UniqueFd m_listen;
    uint16_t m_port = 0;
    std::string m_address;
    std::map<int, std::unique_ptr<Conn>> m_conns;
    std::atomic<uint64_t> m_refused{0}, m_timed_out{0};  // read from other threads (tests)
    uint64_t m_accepted = 0;                             // loop thread only
};

}  // namespace moat::ipc
