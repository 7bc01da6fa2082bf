#include "backend/offline_store.h"

#include <algorithm>

#include "moat/common/base64.h"
#include "moat/common/timeutil.h"
#include "moat/ipc/json.h"

namespace moat::ui {

using nlohmann::json;

namespace {
std::optional<int64_t> intField(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}
}  // namespace

OfflineStore::OfflineStore(QString dbPath, QObject* parent) : Backend(parent), m_path(std::move(dbPath)) {
    m_worker = std::thread([this] {
        for (;;) {
            std::function<void()> fn;
            {
                std::unique_lock lk(m_mu);
                m_cv.wait(lk, [this] { return m_quit || !m_work.empty(); });
                if (m_quit) return;
                fn = std::move(m_work.front());
                m_work.pop_front();
            }
            fn();
        }
    });
    post([this] {
        auto s = moat::store::Store::open_read_only(m_path.toStdString());
        QString err = s ? QString() : QString::fromStdString(s.error().message);
        if (s) m_store = std::move(*s);
        QMetaObject::invokeMethod(
            this,
            [this, err] {
                m_state = err.isEmpty() ? State::Offline : State::Failed;
                m_detail = err;
                emit stateChanged();
            },
            Qt::QueuedConnection);
    });
}

OfflineStore::~OfflineStore() {
    {
        std::lock_guard lk(m_mu);
        m_quit = true;
    }
    m_cv.notify_all();
    if (m_worker.joinable()) m_worker.join();
}

QString OfflineStore::describe() const {
    switch (m_state) {
        case State::Offline: return QStringLiteral("Offline: %1 (read-only)").arg(m_path);
        case State::Failed: return QStringLiteral("Cannot open %1: %2").arg(m_path, m_detail);
        default: return QStringLiteral("Opening %1…").arg(m_path);
    }
}

void OfflineStore::post(std::function<void()> work) {
    {
        std::lock_guard lk(m_mu);
        m_work.push_back(std::move(work));
    }
    m_cv.notify_one();
}

void OfflineStore::request(json req, QObject* context, Reply done) {
    QPointer<QObject> ctx(context);
    const bool hasContext = context != nullptr;
    post([this, req = std::move(req), ctx, hasContext, done = std::move(done)] {
        json a;
        try {
            a = answer(req);
        } catch (const std::exception& e) {  // exceptions never cross into Qt
            a = errorReply("internal", e.what());
        }
        QMetaObject::invokeMethod(
            this,
            [ctx, hasContext, done, a = std::move(a)] {
                if (hasContext && !ctx) return;
                if (done) done(a);
            },
            Qt::QueuedConnection);
    });
}

json OfflineStore::answer(const json& req) {
    if (!m_store) return errorReply("store", "database is not open");
    const std::string op = req.value("op", std::string());
    if (op == "hello") return {{"ok", true}, {"role", "offline"}, {"running", 0}};
    if (op == "jobs") {
        int limit = int(std::clamp<int64_t>(intField(req, "limit").value_or(100), 1, 10000));
        auto r = m_store->list_jobs(limit, std::max<int64_t>(0, intField(req, "before").value_or(0)));
        if (!r) return errorReply("store", r.error().message);
        json arr = json::array();
        for (const auto& j : *r) arr.push_back(moat::ipc::job_to_json(j));
        return {{"ok", true}, {"jobs", arr}};
    }
    if (op == "show") {
        auto id = intField(req, "job");
        if (!id) return errorReply("bad-request", "show needs an integer \"job\"");
        auto r = m_store->get_job(*id);
        if (!r) return errorReply("not-found", "no job " + std::to_string(*id));
        return {{"ok", true}, {"job", moat::ipc::job_to_json(*r)}};
    }
    if (op == "events") {
        moat::store::EventQuery q;
        q.job = intField(req, "job");
        q.after_id = std::max<int64_t>(0, intField(req, "after").value_or(0));
        q.limit = int(std::clamp<int64_t>(intField(req, "limit").value_or(1000), 1, 10000));
        if (req.contains("kind") && req["kind"].is_string()) {
            const std::string k = req["kind"].get<std::string>();
            if (k == "lifecycle") q.kind = moat::store::EventKind::Lifecycle;
            else if (k == "resource") q.kind = moat::store::EventKind::Resource;
            else if (k == "denial") q.kind = moat::store::EventKind::Denial;
            else if (k == "limit") q.kind = moat::store::EventKind::Limit;
            else return errorReply("bad-request", "unknown event kind \"" + k + "\"");
        }
        if (req.contains("syscall") && req["syscall"].is_string()) q.syscall = req["syscall"].get<std::string>();
        q.since_ns = intField(req, "since_ns");
        q.until_ns = intField(req, "until_ns");
        auto r = m_store->query_events(q);
        if (!r) return errorReply("store", r.error().message);
        json arr = json::array();
        for (const auto& e : *r) arr.push_back(e.to_json());
        json next = r->size() == size_t(q.limit) && !r->empty() ? json(r->back().id) : json(nullptr);
        return {{"ok", true}, {"events", arr}, {"next", next}};
    }
    if (op == "policies") {
        auto r = m_store->list_policies();
        if (!r) return errorReply("store", r.error().message);
        json arr = json::array();
        for (const auto& p : *r)
            arr.push_back({{"id", p.id}, {"name", p.name}, {"version", p.version}, {"sha256", p.sha256},
                           {"created_at", rfc3339_utc(p.created_ns)}});
        return {{"ok", true}, {"policies", arr}};
    }
    if (op == "policy") {
        auto id = intField(req, "id");
        if (!id) return errorReply("bad-request", "policy needs an integer \"id\"");
        auto r = m_store->get_policy(*id);
        if (!r) return errorReply("not-found", "no policy " + std::to_string(*id));
        return {{"ok", true}, {"id", r->id}, {"name", r->name}, {"version", r->version}, {"sha256", r->sha256},
                {"created_at", rfc3339_utc(r->created_ns)}, {"toml", r->toml}};
    }
    if (op == "output") {
        // The recorded tail, as moatd answers it (core/ipc/src/server.cpp).
        auto id = intField(req, "job");
        const std::string stream = req.value("stream", std::string("stdout"));
        if (!id) return errorReply("bad-request", "output needs an integer \"job\"");
        if (stream != "stdout" && stream != "stderr") return errorReply("bad-request", "\"stream\" must be \"stdout\" or \"stderr\"");
        auto r = m_store->get_output(*id, stream);
        if (!r) return errorReply("store", r.error().message);
        if (!*r) return errorReply("not-found", "no recorded " + stream + " for job " + std::to_string(*id));
        const auto& o = **r;
        return {{"ok", true}, {"stream", stream}, {"total_bytes", o.total_bytes}, {"tail_bytes", o.data.size()},
                {"truncated", o.total_bytes > o.data.size()}, {"data_b64", moat::base64_encode(o.data)}};
    }
    return errorReply("read-only", "\"" + op + "\" needs a running moatd; this is a read-only database copy");
}

}  // namespace moat::ui
