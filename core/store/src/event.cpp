#include <algorithm>
#include <bit>
#include <charconv>
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

// approx_json_bytes(d.to_json()) without building the tree: a typed denial
// takes the same share of the queue as the same denial in JSON.
uint64_t approx_denial_bytes(const DenialFields& d) {
    auto str = [](std::string_view key, size_t len) { return key.size() + 16 + len; };
    auto other = [](std::string_view key) { return key.size() + 16; };
    const size_t ip_len = 2 + size_t(std::max(1, (64 - std::countl_zero(d.ip) + 3) / 4));
    uint64_t n = 16;
    n += other("pid") + str("syscall", d.syscall.size()) + other("nr") + str("arch", d.arch.size());
    n += std::string_view("args").size() + 16 + 6 * 16;
    n += str("action", d.action.size()) + str("rule", d.rule.size()) + str("ip", ip_len);
    n += d.module ? str("module", d.module->size()) : other("module");
    n += d.decoded ? str("decoded", d.decoded->size()) : other("decoded");
    if (d.reason) n += str("reason", d.reason->size());
    if (d.enforced) n += other("enforced");
    if (d.module_note) n += str("module_note", d.module_note->size());
    return n;
}

// "0x" and lower-case hex, as snprintf("0x%llx") writes it.
std::string hex_ip(uint64_t ip) {
    char b[2 + 16];
    b[0] = '0';
    b[1] = 'x';
    auto r = std::to_chars(b + 2, b + sizeof b, ip, 16);
    return std::string(b, r.ptr);
}
}  // namespace

nlohmann::json DenialFields::to_json() const {
    using nlohmann::json;
    json j = {{"pid", pid},
              {"syscall", syscall},
              {"nr", nr},
              {"arch", arch},
              {"args", {args[0], args[1], args[2], args[3], args[4], args[5]}},
              {"action", action},
              {"rule", rule},
              {"ip", hex_ip(ip)},
              {"module", module ? json(*module) : json(nullptr)},
              {"decoded", decoded ? json(*decoded) : json(nullptr)}};
    if (reason) j["reason"] = *reason;
    if (enforced) j["enforced"] = *enforced;
    if (module_note) j["module_note"] = *module_note;
    return j;
}

uint64_t approx_event_bytes(const Event& ev) {
    if (ev.denial && ev.kind == EventKind::Denial) return 64 + approx_denial_bytes(*ev.denial);
    return 64 + approx_json_bytes(ev.fields, 0);
}

nlohmann::json Event::to_json() const {
    if (denial && kind == EventKind::Denial) {
        Event copy;
        copy.id = id;
        copy.job = job;
        copy.time_ns = time_ns;
        copy.kind = kind;
        copy.count = count;
        copy.fields = denial->to_json();
        return copy.to_json();
    }
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
