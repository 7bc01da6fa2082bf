#pragma once
// Display helpers shared by the models and views: times, sizes, durations.
#include <QString>

#include <cstdint>
#include <optional>
#include <string_view>

namespace moat::ui {

// "2026-11-29T16:38:33.246518056Z" -> ns since the epoch; nullopt when malformed.
std::optional<int64_t> parseRfc3339Ns(std::string_view text);
// Local time "2026-11-29 17:38:33" (withMillis: ".246").
QString formatTimeNs(int64_t ns, bool withMillis = false);
// "1.5 GiB", "256 MiB", "12 KiB", "512 B".
QString formatBytes(uint64_t bytes);
// "850 ms", "12.3 s", "4m 05s", "2h 03m".
QString formatDurationNs(int64_t ns);
// Text from a job, a guest or the daemon for a tooltip: Qt renders a tooltip
// that looks like HTML as rich text, so such text is escaped (and its line
// breaks kept) instead of rendered.
QString plainToolTip(const QString& text);

}  // namespace moat::ui
