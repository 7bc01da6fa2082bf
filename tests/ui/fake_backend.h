#pragma once
// A Backend that answers from a function, asynchronously like the real ones.
#include <QCoreApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QTimer>

#include <functional>
#include <vector>

#include "backend/backend.h"

namespace moat::ui::test {

class FakeBackend final : public Backend {
public:
    using Handler = std::function<nlohmann::json(const nlohmann::json&)>;
    explicit FakeBackend(Handler h) : m_handler(std::move(h)) {}
    void request(nlohmann::json req, QObject* context, Reply done) override {
        requests.push_back(req);
        QPointer<QObject> ctx(context);
        QTimer::singleShot(0, this, [this, req, ctx, has = context != nullptr, done] {
            if (has && !ctx) return;
            done(m_handler(req));
        });
    }
    State state() const override { return m_state; }
    QString role() const override { return m_state == State::Offline ? QStringLiteral("offline") : QStringLiteral("admin"); }
    void setState(State s) {
        m_state = s;
        emit stateChanged();
    }
    QString describe() const override { return QStringLiteral("fake"); }
    std::vector<nlohmann::json> requests;

private:
    Handler m_handler;
    State m_state = State::Connected;
};

// Runs the event loop until pred() or timeout.
inline bool waitFor(const std::function<bool()>& pred, int timeoutMs = 5000) {
    QElapsedTimer t;
    t.start();
    while (!pred()) {
        if (t.elapsed() > timeoutMs) return false;
        QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
    }
    return true;
}

}  // namespace moat::ui::test
