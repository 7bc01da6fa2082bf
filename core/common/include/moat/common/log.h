#pragma once
// moatd's log: lines on stderr, each with a level (docs/cli.md, "Logging").
// Under systemd, when stderr is the journal (JOURNAL_STREAM names it), each
// line starts with the syslog prefix "<N>" that journald turns into the
// entry's PRIORITY; elsewhere warnings and errors say "warning: " and
// "error: " after the program name. Lines below the configured level are
// dropped.
#include <optional>
#include <string_view>

namespace moat {

enum class LogLevel : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

// Once at start (and in a forked helper, to rename it): the name each line
// starts with, and the least important level still written.
void log_init(const char* program, LogLevel min = LogLevel::Info);
// "error", "warning", "notice", "info", "debug".
std::optional<LogLevel> log_level_from_name(std::string_view name);
bool log_enabled(LogLevel level);
// One line (a trailing newline is added when missing). Async-signal-unsafe.
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace moat
