#pragma once
// Moved to core/learn (shared with moatctl); the console's spelling stays.
#include "moat/learn/denial_allow.h"

namespace moat::ui {
using moat::learn::DenialAllow;
using moat::learn::applyAllow;
using moat::learn::proposeAllow;
}  // namespace moat::ui
