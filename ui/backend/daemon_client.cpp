#include "backend/daemon_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::ui {

using nlohmann::json;

namespace {
constexpr int kMinBackoffMs = 250;
constexpr int kMaxBackoffMs = 5000;
// moatd answers every request; one that takes this long means the daemon is
// wedged or the connection is dead, and the console should say so.
constexpr int kAnswerTimeoutMs = 30000;
}  // namespace

DaemonClient::DaemonClient(QString socketPath, QObject* parent) : Backend(parent), m_path(std::move(socketPath)) {
    m_retry.setSingleShot(true);
    connect(&m_retry, &QTimer::timeout, this, &DaemonClient::tryConnect);
    m_answerTimeout.setSingleShot(true);
    connect(&m_answerTimeout, &QTimer::timeout, this,
            [this] { lose(QStringLiteral("no answer from moatd within %1 s").arg(kAnswerTimeoutMs / 1000)); });
}

DaemonClient::~DaemonClient() { closeSocket(); }

void DaemonClient::start() { tryConnect(); }

QString DaemonClient::describe() const {
    switch (m_state) {
        case State::Connected: return QStringLiteral("Connected to %1").arg(displayName(m_path));
        case State::Connecting: return QStringLiteral("Connecting to %1…").arg(displayName(m_path));
        default: return QStringLiteral("Not connected to %1: %2").arg(displayName(m_path), m_detail);
    }
}

void DaemonClient::setState(State s, const QString& detail) {
    if (s == m_state && detail == m_detail) return;
    m_state = s;
    m_detail = detail;
    emit stateChanged();
}

void DaemonClient::closeSocket() {
    m_readNotifier.reset();
    m_writeNotifier.reset();
    m_ep.close();
    m_fd = -1;
    m_out.clear();
    m_decoder = moat::ipc::FrameDecoder(moat::ipc::kMaxResponseBytes);
}

void DaemonClient::tryConnect() {
    closeSocket();
    setState(State::Connecting, {});
    QString why;
    if (!openEndpoint(m_path, &m_ep, &why)) {
        lose(why);
        return;
    }
    m_fd = m_ep.fd.get();
    m_readNotifier = std::make_unique<QSocketNotifier>(m_fd, QSocketNotifier::Read);
    connect(m_readNotifier.get(), &QSocketNotifier::activated, this, &DaemonClient::onReadable);
    m_writeNotifier = std::make_unique<QSocketNotifier>(m_fd, QSocketNotifier::Write);
    m_writeNotifier->setEnabled(false);
    connect(m_writeNotifier.get(), &QSocketNotifier::activated, this, &DaemonClient::onWritable);

    // The first request on every connection learns the role; the state turns
    // Connected only when it is answered, so a refused peer never looks connected.
    Pending hello;
    hello.req = {{"op", "hello"}};
    hello.done = [this](const json& a) {
        if (a.value("ok", false)) {
            m_role = QString::fromStdString(a.value("role", std::string()));
            if (auto it = a.find("database"); it != a.end() && it->is_string())
                m_database = QString::fromStdString(it->get<std::string>());
            m_backoffMs = kMinBackoffMs;
            setState(State::Connected, {});
        } else {
            m_role.clear();
            lose(errorText(a));
        }
    };
    m_queue.push_front(std::move(hello));
    sendNext();
}

void DaemonClient::request(json req, QObject* context, Reply done) {
    Pending p;
    p.req = std::move(req);
    p.context = context;
    p.hasContext = context != nullptr;
    p.done = std::move(done);
    if (m_state != State::Connected && m_state != State::Connecting) {
        // Answer later, never from inside request(): callers may hold state
        // they are about to update.
        auto shared = std::make_shared<Pending>(std::move(p));
        QString why = describe();
        QTimer::singleShot(0, this, [this, shared, why] {
            deliver(std::move(*shared), errorReply("disconnected", why.toStdString()));
        });
        return;
    }
    m_queue.push_back(std::move(p));
    sendNext();
}

void DaemonClient::sendNext() {
    if (m_inflight || m_queue.empty() || m_fd < 0) return;
    m_inflight = std::move(m_queue.front());
    m_queue.pop_front();
    m_out += moat::ipc::encode_frame(m_inflight->req.dump());
    m_answerTimeout.start(kAnswerTimeoutMs);
    onWritable();
}

void DaemonClient::onWritable() {
    while (!m_out.empty() && m_fd >= 0) {
        ssize_t n = ::send(m_fd, m_out.data(), m_out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            lose(QStringLiteral("send: %1").arg(QString::fromLocal8Bit(strerror(errno))));
            return;
        }
        m_out.erase(0, size_t(n));
    }
    if (m_writeNotifier) m_writeNotifier->setEnabled(!m_out.empty());
}

void DaemonClient::onReadable() {
    for (int rounds = 0; rounds < 64 && m_fd >= 0; ++rounds) {
        char buf[65536];
        ssize_t n = ::recv(m_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            lose(QStringLiteral("recv: %1").arg(QString::fromLocal8Bit(strerror(errno))));
            return;
        }
        if (n == 0) {
            lose(QStringLiteral("moatd closed the connection"));
            return;
        }
        if (auto r = m_decoder.feed(buf, size_t(n)); !r) {
            lose(QString::fromStdString(r.error().message));
            return;
        }
        while (auto frame = m_decoder.next()) {
            json answer = json::parse(*frame, nullptr, false);
            if (answer.is_discarded()) {
                lose(QStringLiteral("moatd sent a frame that is not JSON"));
                return;
            }
            if (!m_inflight) {
                // A refusal (no role) arrives before any request; anything else
                // unsolicited is a protocol error.
                if (const auto ok = answer.find("ok"); ok == answer.end() || !ok->is_boolean() || !ok->get<bool>()) {
                    lose(errorText(answer));
                    return;
                }
                continue;
            }
            Pending p = std::move(*m_inflight);
            m_inflight.reset();
            m_answerTimeout.stop();
            deliver(std::move(p), answer);
            if (m_fd < 0) return;  // the callback may have lost the connection
            sendNext();
        }
    }
}

void DaemonClient::deliver(Pending p, const json& answer) {
    if (p.hasContext && !p.context) return;
    if (!p.done) return;
    // An answer of an unexpected shape (a broken or hostile daemon, possibly
    // on another host) throws where it is read (cmake/json_assert.h): the
    // connection is dropped with that reason, the console keeps running.
    try {
        p.done(answer);
    } catch (const std::exception& e) {
        if (m_fd >= 0) lose(QStringLiteral("moatd sent a malformed answer (%1)").arg(QString::fromUtf8(e.what())));
    }
}

void DaemonClient::lose(const QString& reason) {
    QString why = reason;
    // Over ssh, its own complaint (host key, authentication, no moatctl on
    // the far host) is usually the real reason.
    if (const QString e = m_ep.sshErrors(); !e.isEmpty()) why += QStringLiteral(" (ssh: %1)").arg(e.section(u'\n', -1));
    closeSocket();
    m_answerTimeout.stop();
    m_role.clear();
    std::deque<Pending> failed;
    // The connection's own hello is not answered: its callback would call lose() again.
    auto isHello = [](const Pending& p) { return !p.hasContext && p.req.value("op", std::string()) == "hello"; };
    if (m_inflight && !isHello(*m_inflight)) failed.push_back(std::move(*m_inflight));
    m_inflight.reset();
    for (auto& p : m_queue)
        if (!isHello(p)) failed.push_back(std::move(p));
    m_queue.clear();
    setState(State::Disconnected, why);
    const json err = errorReply("disconnected", why.toStdString());
    for (auto& p : failed) deliver(std::move(p), err);
    m_retry.start(m_backoffMs);
    m_backoffMs = std::min(m_backoffMs * 2, kMaxBackoffMs);
}

}  // namespace moat::ui
