#pragma once
// One row of the event log as the console keeps it: the fields the tables and
// filters use, parsed once, plus the event's JSON text for the detail pane.
// Display strings are built from these in data(), never stored.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace moat::ui {

struct EventRow {
    int64_t id = 0;
    int64_t timeNs = 0;
    int64_t job = 0;
    std::string kind;      // lifecycle | resource | denial | limit
    uint64_t count = 1;
    std::string syscall;   // denial
    std::string action;    // denial
    std::string decoded;   // denial: path or address; lifecycle exec: the path
    std::string module;    // denial
    std::string rule;      // denial
    std::string arch;      // denial
    std::string event;     // lifecycle: created/exec/...; limit: "memory limit"; resource: "sample"
    std::string detail;    // lifecycle: detail or cause text; resource/limit: the figures with units
    std::string outcome;   // limit: what happened ("OOM kill", "job killed"), for the Action column
    int64_t pid = -1;
    std::string raw;       // the event's JSON

    static EventRow fromJson(const nlohmann::json& j);
    nlohmann::json toJson() const { return nlohmann::json::parse(raw, nullptr, false); }
};

}  // namespace moat::ui
