#include <optional>
#include <string_view>

#include "event_codec.h"
#include "moat/common/timeutil.h"
#include "moat/store/store.h"

namespace moat::store {

const char* kind_name(EventKind k) {
    switch (k) {
        case EventKind::Lifecycle: return "lifecycle";
        case EventKind::Resource: return "resource";
        case EventKind::Denial: return "denial";
        case EventKind::Limit: return "limit";
    }
    return "lifecycle";
}

std::optional<EventKind> kind_from_name(std::string_view name) {
    if (name == "lifecycle") return EventKind::Lifecycle;
    if (name == "resource") return EventKind::Resource;
    if (name == "denial") return EventKind::Denial;
    if (name == "limit") return EventKind::Limit;
    return std::nullopt;
}

bool is_envelope_key(std::string_view key) {
    return key == "id" || key == "time" || key == "job" || key == "kind" || key == "count";
}

namespace {
// Strings and keys by their length, everything else (numbers, null, bools,
// the containers themselves) by a fixed 16 bytes: close enough to both the
// heap the JSON value takes and the text stored, without serialising it.
// Depth is bounded by what the supervisor builds (at most 3), but recursion is
// capped anyway.
uint64_t approx_json_bytes(const nlohmann::json& j, int depth) {
    if (j.is_string()) return 16 + j.get_ref<const std::string&>().size();
    if (depth > 16 || (!j.is_object() && !j.is_array())) return 16;
    uint64_t n = 16;
    if (j.is_object())
        for (auto it = j.begin(); it != j.end(); ++it) n += it.key().size() + approx_json_bytes(it.value(), depth + 1);
    else
        for (const auto& e : j) n += approx_json_bytes(e, depth + 1);
    return n;
}
}  // namespace

uint64_t approx_event_bytes(const Event& ev) { return 64 + approx_json_bytes(ev.fields, 0); }

nlohmann::json Event::to_json() const {
    nlohmann::json j = nlohmann::json::object();
    if (fields.is_object()) {
        for (auto it = fields.begin(); it != fields.end(); ++it)
            if (!is_envelope_key(it.key())) j[it.key()] = it.value();
    } else if (!fields.is_null()) {
        j["fields"] = fields;  // never produced by the store; kept rather than lost
    }
    if (kind == EventKind::Denial) {
        // The contract lists these as "string or null": present either way.
        if (!j.contains("module")) j["module"] = nullptr;
        if (!j.contains("decoded")) j["decoded"] = nullptr;
    }
    j["id"] = id;
    j["time"] = rfc3339_utc(time_ns);
    j["job"] = job;
    j["kind"] = kind_name(kind);
    j["count"] = count;
    return j;
}

}  // namespace moat::store
