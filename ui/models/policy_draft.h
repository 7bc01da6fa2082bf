#pragma once
// Moved to core/learn (shared with moatctl); the console's spelling stays.
#include "moat/learn/policy_draft.h"

namespace moat::ui {
using moat::learn::PolicyDraft;
using moat::learn::tomlQuote;
}  // namespace moat::ui
