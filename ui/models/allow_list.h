#pragma once
// Moved to core/learn (shared with moatctl); the console's spelling stays.
#include "moat/learn/allow_list.h"

namespace moat::ui {
using moat::learn::expandAllowList;
using moat::learn::syscallDescription;
using moat::learn::withGroup;
using moat::learn::withSyscall;
}  // namespace moat::ui
