#include "moat/common/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace moat {

namespace {
std::atomic<int> g_min{int(LogLevel::Info)};
std::atomic<bool> g_journal{false};
char g_program[32] = "moatd";

// JOURNAL_STREAM is "DEV:INO" of the stream systemd connected to stdout and
// stderr; it counts only while fd 2 is still that stream.
bool stderr_is_journal() {
    const char* js = getenv("JOURNAL_STREAM");
    if (!js || !*js) return false;
    unsigned long long dev = 0, ino = 0;
    if (sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st{};
    return fstat(2, &st) == 0 && (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
}  // namespace

void log_init(const char* program, LogLevel min) {
    snprintf(g_program, sizeof g_program, "%s", program);
    g_min = int(min);
    g_journal = stderr_is_journal();
}

std::optional<LogLevel> log_level_from_name(std::string_view n) {
    if (n == "error") return LogLevel::Error;
    if (n == "warning") return LogLevel::Warning;
    if (n == "notice") return LogLevel::Notice;
    if (n == "info") return LogLevel::Info;
    if (n == "debug") return LogLevel::Debug;
    return std::nullopt;
}

bool log_enabled(LogLevel level) { return int(level) <= g_min.load(std::memory_order_relaxed); }

void logf(LogLevel level, const char* fmt, ...) {
    if (!log_enabled(level)) return;
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = strnlen(body, sizeof body);
    if (len > 0 && body[len - 1] == '\n') body[--len] = 0;
    const char* word = "";
    if (!g_journal) word = level == LogLevel::Error ? "error: " : level == LogLevel::Warning ? "warning: " : "";
    // One write per line: lines from the loop thread and the store's writer
    // never interleave mid-line.
    std::string line;
    if (g_journal) line = "<" + std::to_string(int(level)) + ">";
    line += g_program;
    line += ": ";
    line += word;
    line.append(body, len);
    line += '\n';
    (void)!write(2, line.data(), line.size());
}

}  // namespace moat
