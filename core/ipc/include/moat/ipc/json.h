#pragma once
#include <nlohmann/json.hpp>

#include "moat/store/store.h"

namespace moat::ipc {
// The contract's `moatctl show --json` object (section 3), plus Moat's extras.
nlohmann::json job_to_json(const store::JobRecord& j);
}
