#include "moat/common/timeutil.h"

#include <ctime>
#include <cstdio>

namespace moat {

int64_t now_realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t now_monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string rfc3339_utc(int64_t ns) {
    time_t secs = time_t(ns / 1'000'000'000);
    long frac = long(ns % 1'000'000'000);
    if (frac < 0) { frac += 1'000'000'000; --secs; }
    tm t{};
    gmtime_r(&secs, &t);
    char buf[64];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
    if (frac) n += size_t(snprintf(buf + n, sizeof buf - n, ".%09ld", frac));
    snprintf(buf + n, sizeof buf - n, "Z");
    return buf;
}

}  // namespace moat
