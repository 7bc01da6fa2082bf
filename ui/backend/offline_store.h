#pragma once
// A copied moatd database opened read-only (moat-console --open-db FILE), for
// post-incident work without a daemon. SQLite runs on one worker thread, never
// on the GUI thread; answers have the same JSON shapes moatd sends.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "backend/backend.h"
#include "moat/store/store.h"

namespace moat::ui {

class OfflineStore final : public Backend {
    Q_OBJECT
public:
    explicit OfflineStore(QString dbPath, QObject* parent = nullptr);
    ~OfflineStore() override;

    void request(nlohmann::json req, QObject* context, Reply done) override;
    State state() const override { return m_state; }
    QString role() const override { return QStringLiteral("offline"); }
    QString describe() const override;
    const QString& path() const { return m_path; }
    // Why the open failed (with what to do), "" while it has not failed.
    const QString& failure() const { return m_detail; }

private:
    void post(std::function<void()> work);
    nlohmann::json answer(const nlohmann::json& req);  // worker thread only

    QString m_path;
    State m_state = State::Connecting;
    QString m_detail;
    std::unique_ptr<moat::store::Store> m_store;  // worker thread only
    std::thread m_worker;
    std::mutex m_mu;
    std::condition_variable m_cv;
    std::deque<std::function<void()>> m_work;
    bool m_quit = false;
};

}  // namespace moat::ui
