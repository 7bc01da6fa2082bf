#pragma once
// A non-blocking client for moatd's socket. The GUI thread never waits on it:
// the socket is O_NONBLOCK and driven by QSocketNotifiers.
//
// Answers carry no request id, and moatd answers some ops from a worker thread
// (docs/protocol.md: "keep one request outstanding per connection"), so this
// client sends one request at a time and matches answers in FIFO order.
// Lost connections are retried with exponential backoff (250 ms .. 5 s).
#include <QSocketNotifier>
#include <QTimer>

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "backend/backend.h"
#include "backend/endpoint.h"
#include "moat/ipc/frame.h"

namespace moat::ui {

class DaemonClient final : public Backend {
    Q_OBJECT
public:
    explicit DaemonClient(QString socketPath, QObject* parent = nullptr);
    ~DaemonClient() override;

    void start();
    void request(nlohmann::json req, QObject* context, Reply done) override;
    State state() const override { return m_state; }
    QString role() const override { return m_role; }
    QString describe() const override;
    const QString& socketPath() const { return m_path; }
    // The daemon's state database as its `hello` named it ("" from older daemons).
    const QString& databasePath() const { return m_database; }

private:
    struct Pending {
        nlohmann::json req;
        QPointer<QObject> context;
        bool hasContext = false;
        Reply done;
    };

    void tryConnect();
    void onReadable();
    void onWritable();
    void sendNext();
    void deliver(Pending p, const nlohmann::json& answer);
    void lose(const QString& why);
    void setState(State s, const QString& detail);
    void closeSocket();

    QString m_path;
    State m_state = State::Disconnected;
    QString m_role;
    QString m_database;
    QString m_detail;
    Endpoint m_ep;
    int m_fd = -1;  // m_ep.fd, while open
    std::unique_ptr<QSocketNotifier> m_readNotifier;
    std::unique_ptr<QSocketNotifier> m_writeNotifier;
    std::string m_out;
    moat::ipc::FrameDecoder m_decoder{moat::ipc::kMaxResponseBytes};
    std::deque<Pending> m_queue;
    std::optional<Pending> m_inflight;
    QTimer m_retry;
    QTimer m_answerTimeout;
    int m_backoffMs = 250;
};

}  // namespace moat::ui
