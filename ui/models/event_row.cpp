#include "models/event_row.h"

#include "models/event_summary.h"
#include "models/format.h"

namespace moat::ui {

namespace {
std::string str(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t num(const nlohmann::json& j, const char* key, int64_t def) {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}
}  // namespace

EventRow EventRow::fromJson(const nlohmann::json& j) {
    EventRow e;
    e.id = num(j, "id", 0);
    e.timeNs = parseRfc3339Ns(str(j, "time")).value_or(0);
    e.job = num(j, "job", 0);
    e.kind = str(j, "kind");
    e.count = uint64_t(std::max<int64_t>(1, num(j, "count", 1)));
    e.pid = num(j, "pid", -1);
    if (e.kind == "denial") {
        e.syscall = str(j, "syscall");
        e.action = str(j, "action");
        e.decoded = str(j, "decoded");
        e.module = str(j, "module");
        e.rule = str(j, "rule");
        e.arch = str(j, "arch");
    } else if (e.kind == "lifecycle") {
        e.event = str(j, "event");
        e.decoded = str(j, "path");
        e.detail = str(j, "detail");
        if (e.event == "finished") e.detail = str(j, "cause") + (e.detail.empty() ? "" : ": " + e.detail);
    } else if (e.kind == "limit" || e.kind == "resource") {
        // Built once per row rather than in data(): unlike a denial's fields,
        // these figures need units and wording, and the row keeps no JSON object.
        const EventSummary s = summarizeEvent(j);
        e.event = s.what.toStdString();
        e.outcome = s.action.toStdString();
        e.detail = s.target.toStdString();
    }
    e.raw = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return e;
}

}  // namespace moat::ui
