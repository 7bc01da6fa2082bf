#pragma once
// Moved to core/learn (shared with moatctl); the console's spelling stays.
#include "moat/learn/syscall_args.h"

namespace moat::ui {
using moat::learn::argMeaning;
using moat::learn::argNames;
using moat::learn::argSymbol;
using moat::learn::errnoText;
}  // namespace moat::ui
