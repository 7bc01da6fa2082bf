#pragma once
// Sizes ("64MiB", "512KiB", "10B") and durations ("30s", "250ms", "5m", "1h").
#include <cstdint>
#include <string>
#include <string_view>

#include "moat/common/error.h"

namespace moat {

// Accepts B, KiB, MiB, GiB, TiB (binary) and KB, MB, GB (decimal); a unit is required.
// Rejects negative numbers, overflow and trailing garbage. Fractions allowed ("1.5GiB").
Result<uint64_t> parse_size(std::string_view text);
// Accepts ns, us, ms, s, m, h; a unit is required. Returns nanoseconds.
Result<uint64_t> parse_duration_ns(std::string_view text);

// Canonical spellings for output ("256MiB", "1500ms", "30s").
std::string format_size(uint64_t bytes);
std::string format_duration_ns(uint64_t ns);

}  // namespace moat
