#include "models/event_summary.h"

#include <QStringList>

#include "models/format.h"

namespace moat::ui {

using nlohmann::json;

namespace {

uint64_t u64(const json& e, const char* key) {
    auto it = e.find(key);
    if (it == e.end() || !it->is_number()) return 0;
    if (it->is_number_unsigned()) return it->get<uint64_t>();
    if (it->is_number_integer()) return uint64_t(std::max<int64_t>(0, it->get<int64_t>()));
    return uint64_t(std::max(0.0, it->get<double>()));
}
bool has(const json& e, const char* key) { return e.contains(key) && e[key].is_number(); }
QString str(const json& e, const char* key) {
    auto it = e.find(key);
    return it != e.end() && it->is_string() ? QString::fromStdString(it->get<std::string>()) : QString();
}
QString plural(uint64_t n, const QString& one, const QString& many) {
    return QStringLiteral("%1 %2").arg(n).arg(n == 1 ? one : many);
}

}  // namespace

QString formatLimitDuration(int64_t ns) {
    if (ns > 0 && ns % 1'000'000'000 == 0 && ns < 60'000'000'000) return QStringLiteral("%1 s").arg(ns / 1'000'000'000);
    return formatDurationNs(ns);
}

QString fieldValueText(const std::string& key, const json& v) {
    auto ends = [&](const char* suffix) {
        const size_t n = std::char_traits<char>::length(suffix);
        return key.size() >= n && key.compare(key.size() - n, n, suffix) == 0;
    };
    if (v.is_number()) {
        const uint64_t n = v.is_number_unsigned() ? v.get<uint64_t>()
                           : v.is_number_integer() ? uint64_t(std::max<int64_t>(0, v.get<int64_t>()))
                                                   : uint64_t(std::max(0.0, v.get<double>()));
        if (ends("_ns")) return formatLimitDuration(int64_t(std::min<uint64_t>(n, INT64_MAX)));
        if (ends("_bytes")) return formatBytes(n);
        if (key == "cpu_percent") return QStringLiteral("%1 %").arg(v.get<double>(), 0, 'f', 1);
    }
    if (v.is_string()) return QString::fromStdString(v.get<std::string>());
    return QString::fromStdString(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

EventSummary summarizeEvent(const json& e) {
    EventSummary s;
    if (!e.is_object()) return s;
    const std::string kind = e.value("kind", std::string());
    if (kind == "resource") {
        s.what = QStringLiteral("sample");
        QStringList parts;
        if (has(e, "cpu_percent")) parts << QStringLiteral("CPU %1 %").arg(e["cpu_percent"].get<double>(), 0, 'f', 1);
        if (has(e, "memory_bytes")) {
            QString m = QStringLiteral("memory %1").arg(formatBytes(u64(e, "memory_bytes")));
            if (u64(e, "memory_limit_bytes")) m += QStringLiteral(" of %1").arg(formatBytes(u64(e, "memory_limit_bytes")));
            parts << m;
        }
        if (has(e, "pids")) {
            QString p = plural(u64(e, "pids"), QStringLiteral("pid"), QStringLiteral("pids"));
            if (u64(e, "pids_limit")) p = QStringLiteral("%1 of %2 pids").arg(u64(e, "pids")).arg(u64(e, "pids_limit"));
            parts << p;
        }
        if (has(e, "cpu_time_ns")) parts << QStringLiteral("CPU time %1").arg(formatDurationNs(int64_t(u64(e, "cpu_time_ns"))));
        s.target = parts.join(QStringLiteral(", "));
        return s;
    }
    if (kind != "limit") return s;
    const QString limit = str(e, "limit");
    if (limit.isEmpty() && e.contains("reason")) {
        // The store's own report of events it could not keep.
        s.what = QStringLiteral("events dropped");
        s.action = plural(u64(e, "dropped"), QStringLiteral("event lost"), QStringLiteral("events lost"));
        s.target = QStringLiteral("%1 (%2 of them denials): %3")
                       .arg(s.action)
                       .arg(u64(e, "dropped_denials"))
                       .arg(str(e, "reason"));
        return s;
    }
    s.what = QStringLiteral("%1 limit").arg(limit);
    if (limit == "memory") {
        const uint64_t kills = u64(e, "oom_kills");
        s.action = plural(kills, QStringLiteral("OOM kill"), QStringLiteral("OOM kills"));
        s.target = QStringLiteral("limits.memory = %1 reached: the kernel's OOM killer ended %2 in the job")
                       .arg(formatBytes(u64(e, "value")))
                       .arg(plural(kills, QStringLiteral("process"), QStringLiteral("processes")));
    } else if (limit == "pids") {
        const uint64_t refused = u64(e, "refused_forks");
        s.action = plural(refused, QStringLiteral("fork refused"), QStringLiteral("forks refused"));
        s.target = QStringLiteral("limits.pids = %1 reached: %2").arg(u64(e, "value")).arg(s.action);
    } else if (limit == "cpu-time") {
        s.action = QStringLiteral("job killed");
        s.target = QStringLiteral("limits.cpu_time = %1 reached (the job used %2 of CPU); moatd killed it")
                       .arg(formatLimitDuration(int64_t(u64(e, "value_ns"))), formatDurationNs(int64_t(u64(e, "used_ns"))));
    } else if (limit == "wall-time") {
        s.action = QStringLiteral("job killed");
        s.target = QStringLiteral("limits.wall_time = %1 reached; moatd killed the job")
                       .arg(formatLimitDuration(int64_t(u64(e, "value_ns"))));
    } else if (limit == "events") {
        s.action = QStringLiteral("denials aggregated");
        s.target = QStringLiteral("monitor.max_events = %1 (max_event_bytes %2) reached after %3 rows (%4): further "
                                  "denials are counted in aggregate rows")
                       .arg(u64(e, "value"))
                       .arg(formatBytes(u64(e, "value_bytes")))
                       .arg(u64(e, "stored_rows"))
                       .arg(formatBytes(u64(e, "stored_bytes")));
    } else if (limit == "supervisor-time") {
        s.action = QStringLiteral("module names paused");
        s.target = QStringLiteral("decoding this job's denials took %1 of moatd's time in %2 (budget %3)")
                       .arg(formatDurationNs(int64_t(u64(e, "used_ns"))),
                            formatLimitDuration(int64_t(u64(e, "window_ns"))),
                            formatLimitDuration(int64_t(u64(e, "value_ns"))));
    } else {
        s.action = QString();
        s.target = str(e, "detail");
    }
    if (s.target.isEmpty()) s.target = str(e, "detail");
    return s;
}

}  // namespace moat::ui
