#pragma once
#include <cstdint>
#include <string>

namespace moat {

int64_t now_realtime_ns();
int64_t now_monotonic_ns();
// RFC 3339, UTC, with nanoseconds when non-zero: 2026-11-29T16:07:26.123456789Z
std::string rfc3339_utc(int64_t realtime_ns);

}  // namespace moat
