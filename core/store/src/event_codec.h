#pragma once
// How an Event maps onto an `events` row (docs/store.md, "events").
#include <optional>
#include <string_view>

#include "moat/store/store.h"

namespace moat::store {

std::optional<EventKind> kind_from_name(std::string_view name);

// Keys of the JSON envelope (id, time, job, kind, count): these live in their
// own columns, so a field of the same name is not stored in `data`.
bool is_envelope_key(std::string_view key);

}  // namespace moat::store
