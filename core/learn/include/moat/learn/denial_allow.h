#pragma once
// "Allow in a new policy version…" from a denial: the change to propose. Where
// the denial's arguments fit a narrow rule (socket's address family, ioctl's
// request, prctl's option...), an argument rule allowing just that value;
// otherwise a plain allow of the syscall. The operator reviews it in the
// editor and saves (op policy_put).
#include <string>

#include <nlohmann/json.hpp>

#include "moat/learn/policy_draft.h"

namespace moat::learn {

struct DenialAllow {
    std::string syscall;          // "" when the event is not a denial
    PolicyDraft::Rule rule;       // args empty: plain allow
    std::string summary;          // "allow socket when arg0 == AF_UNIX"
    bool narrow() const { return !rule.args.empty(); }
};

DenialAllow proposeAllow(const nlohmann::json& denial);

// The draft with the proposal applied. A plain allow goes to the allow list,
// unless the syscall already has rules (rules decide then): it becomes a rule.
PolicyDraft applyAllow(PolicyDraft d, const DenialAllow& a);

}  // namespace moat::learn
