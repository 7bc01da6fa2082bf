#pragma once
// The detail pane's text for one event: for a denial, the syscall with its
// arguments in hex, the decoded path or address, module+offset, the rule that
// denied it, the action taken (with the errno's meaning) and why lint considers
// the syscall risky; for other kinds, their fields.
#include <QString>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moat::ui {

// The event's job, where the console knows it (the Jobs model, or `show`).
struct EventJobContext {
    std::string policyName;
    int policyVersion = 0;
    std::vector<std::string> argv;
};

QString eventDetailHtml(const nlohmann::json& event, const EventJobContext* job = nullptr);

}  // namespace moat::ui
