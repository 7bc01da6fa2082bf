#include "backend/watcher.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::ui {

using nlohmann::json;

Watcher::Watcher(QObject* parent) : QObject(parent) {
    m_retry.setSingleShot(true);
    connect(&m_retry, &QTimer::timeout, this, &Watcher::connectNow);
}

Watcher::~Watcher() { stop(); }

void Watcher::start(const QString& socketPath, const json& req) {
    stop();
    m_path = socketPath;
    m_req = req;
    m_backoffMs = 250;
    connectNow();
}

void Watcher::stop() {
    m_retry.stop();
    m_readN.reset();
    m_writeN.reset();
    m_ep.close();
    m_fd = -1;
    m_acked = false;
}

void Watcher::lose(const QString& why, bool retry) {
    stop();
    emit problem(why);
    if (!retry) return;
    m_retry.start(m_backoffMs);
    m_backoffMs = std::min(m_backoffMs * 2, 5000);
}

void Watcher::connectNow() {
    QString why;
    if (!openEndpoint(m_path, &m_ep, &why)) return lose(why, !m_path.isEmpty());
    m_fd = m_ep.fd.get();
    m_decoder = moat::ipc::FrameDecoder(moat::ipc::kMaxResponseBytes);
    m_out = moat::ipc::encode_frame(m_req.dump());
    m_readN = std::make_unique<QSocketNotifier>(m_fd, QSocketNotifier::Read);
    connect(m_readN.get(), &QSocketNotifier::activated, this, &Watcher::onReadable);
    m_writeN = std::make_unique<QSocketNotifier>(m_fd, QSocketNotifier::Write);
    connect(m_writeN.get(), &QSocketNotifier::activated, this, &Watcher::onWritable);
    onWritable();
}

void Watcher::onWritable() {
    while (!m_out.empty()) {
        const ssize_t n = ::send(m_fd, m_out.data(), m_out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return lose(tr("send to moatd: %1").arg(QString::fromLocal8Bit(strerror(errno))), true);
        }
        m_out.erase(0, size_t(n));
    }
    if (m_writeN) m_writeN->setEnabled(false);
}

void Watcher::onReadable() {
    char buf[65536];
    // Bounded work per wake-up: the GUI thread stays responsive under a flood
    // (the rest is read on the next activation; moatd waits for us meanwhile).
    for (int round = 0; round < 16; ++round) {
        const ssize_t n = ::recv(m_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0)
            return lose(n == 0 ? tr("moatd closed the connection") : QString::fromLocal8Bit(strerror(errno)), true);
        if (auto r = m_decoder.feed(buf, size_t(n)); !r) return lose(QString::fromStdString(r.error().message), true);
    }
    while (m_fd >= 0) {
        auto frame = m_decoder.next();
        if (!frame) break;
        json f = json::parse(*frame, nullptr, false);
        if (!f.is_object()) return lose(tr("moatd sent something that is not JSON"), true);
        try {
            if (f.contains("push")) {
                m_backoffMs = 250;
                emit pushed(f);
                continue;
            }
            if (!f.value("ok", false)) {
                // The watch itself was refused (or moatd closes as idle/busy):
                // a bad request is not retried, anything else is.
                const bool bad =
                    f.value("code", std::string()) == "bad-request" || f.value("code", std::string()) == "forbidden";
                return lose(QString::fromStdString(f.value("error", std::string("refused"))), !bad);
            }
        } catch (const std::exception& e) {  // a frame of an unexpected shape (cmake/json_assert.h)
            return lose(tr("moatd sent a malformed frame (%1)").arg(QString::fromUtf8(e.what())), true);
        }
        m_acked = true;
    }
}

}  // namespace moat::ui
