#pragma once
// A `watch` subscription (docs/protocol.md "watch") on a connection of its
// own: moatd pushes the job list, the policy list or one job's events as they
// are stored, so nothing here polls. The connection is only read from after
// the request; a lost connection is retried with backoff (250 ms .. 5 s) and
// the watch sent again: moatd's first push is a snapshot, so nothing that
// changed meanwhile is missed. Non-blocking, driven by QSocketNotifiers.
#include <QObject>
#include <QSocketNotifier>
#include <QString>
#include <QTimer>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/endpoint.h"
#include "moat/ipc/frame.h"

namespace moat::ui {

class Watcher final : public QObject {
    Q_OBJECT
public:
    explicit Watcher(QObject* parent = nullptr);
    ~Watcher() override;

    // `req` is the watch request ({"op":"watch",...}). Replaces any earlier one.
    void start(const QString& socketPath, const nlohmann::json& req);
    void stop();
    bool watching() const { return m_fd >= 0 && m_acked; }

signals:
    // One pushed frame ({"push":"jobs"|"policies"|"events"|"end"|"error",...}).
    void pushed(const nlohmann::json& frame);
    // moatd refused the watch (a bad request: not retried) or the connection
    // was lost (retried).
    void problem(const QString& why);

private:
    void connectNow();
    void onReadable();
    void onWritable();
    void lose(const QString& why, bool retry);

    QString m_path;
    nlohmann::json m_req;
    Endpoint m_ep;
    int m_fd = -1;  // m_ep.fd, while open
    bool m_acked = false;
    std::unique_ptr<QSocketNotifier> m_readN, m_writeN;
    std::string m_out;
    moat::ipc::FrameDecoder m_decoder{moat::ipc::kMaxResponseBytes};
    QTimer m_retry;
    int m_backoffMs = 250;
};

}  // namespace moat::ui
