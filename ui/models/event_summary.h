#pragma once
// Readable text for the event kinds that are not denials: a resource sample
// ("CPU 12.5 %, memory 3.2 MiB of 256 MiB, 2 of 64 pids") and a limit event
// (which limit, its value with units, and what hit it). Used by the event
// table's Syscall/Action/Path columns and by the detail pane.
#include <QString>

#include <nlohmann/json.hpp>

namespace moat::ui {

struct EventSummary {
    QString what;    // "sample", "memory limit"
    QString action;  // what happened: "OOM kill", "job killed", "forks refused"
    QString target;  // the figures, with units
};

// For kinds resource and limit; empty for others.
EventSummary summarizeEvent(const nlohmann::json& e);

// One field's value with its unit, from the key's suffix (_ns: duration,
// _bytes: size, cpu_percent: %); other values as JSON text. Plain text.
QString fieldValueText(const std::string& key, const nlohmann::json& v);

// "30 s", "1.5 s", "250 ms", "2m 00s".
QString formatLimitDuration(int64_t ns);

}  // namespace moat::ui
