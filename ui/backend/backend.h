#pragma once
// Where the console's data comes from: a live moatd (DaemonClient) or a copied
// database opened read-only (OfflineStore). Both speak the socket protocol's
// request/answer JSON (docs/protocol.md), so models and views do not care which
// one they have. Every request is answered exactly once, on the GUI thread,
// never synchronously from inside request(); failures are {"ok":false,...}.
#include <QObject>
#include <QPointer>
#include <QString>

#include <functional>

#include <nlohmann/json.hpp>

namespace moat::ui {

class Backend : public QObject {
    Q_OBJECT
public:
    enum class State { Disconnected, Connecting, Connected, Offline, Failed };
    using Reply = std::function<void(const nlohmann::json&)>;

    explicit Backend(QObject* parent = nullptr) : QObject(parent) {}
    ~Backend() override = default;

    // `done` runs on the GUI thread unless `context` was destroyed meanwhile.
    virtual void request(nlohmann::json req, QObject* context, Reply done) = 0;
    virtual State state() const = 0;
    // "admin", "viewer", "offline" or "" when unknown.
    virtual QString role() const = 0;
    // One line for the status bar: where the data comes from and how that is going.
    virtual QString describe() const = 0;
    bool canWrite() const { return state() == State::Connected && role() == QLatin1String("admin"); }

    static nlohmann::json errorReply(const std::string& code, const std::string& msg) {
        return {{"ok", false}, {"code", code}, {"error", msg}};
    }
    static QString errorText(const nlohmann::json& reply);

signals:
    void stateChanged();
};

}  // namespace moat::ui
