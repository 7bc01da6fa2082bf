#pragma once
// The detail pane's text for one event: for a denial, the syscall with its
// arguments in hex, the decoded path or address, module+offset, the rule that
// denied it, the action taken (with the errno's meaning) and why lint considers
// the syscall risky; for other kinds, their fields.
#include <QString>

#include <nlohmann/json.hpp>

namespace moat::ui {

QString eventDetailHtml(const nlohmann::json& event);

}  // namespace moat::ui
