#include "moat/common/units.h"

#include <charconv>
#include <cmath>
#include <utility>

namespace moat {

namespace {

struct Unit { std::string_view name; long double factor; };

Result<uint64_t> parse_with_units(std::string_view text, std::initializer_list<Unit> units,
                                  std::string_view what, std::string_view example) {
    std::string_view s = text;
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty()) return fail(std::string("empty ") + std::string(what));
    if (s.front() == '-') return fail(std::string(what) + " must not be negative: \"" + std::string(text) + "\"");
    size_t i = 0;
    bool dot = false;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !dot))) {
        if (s[i] == '.') dot = true;
        ++i;
    }
    if (i == 0) return fail("not a " + std::string(what) + ": \"" + std::string(text) + "\" (example: " + std::string(example) + ")");
    std::string_view num = s.substr(0, i);
    std::string_view unit = s.substr(i);
    while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    if (unit.empty())
        return fail(std::string(what) + " \"" + std::string(text) + "\" has no unit (example: " + std::string(example) + ")");
    const Unit* found = nullptr;
    for (const Unit& u : units)
        if (u.name == unit) found = &u;
    if (!found) {
        std::string list;
        for (const Unit& u : units) { if (!list.empty()) list += ", "; list += u.name; }
        return fail("unknown unit \"" + std::string(unit) + "\" in " + std::string(what) + " \"" + std::string(text) +
                    "\" (use one of " + list + ")");
    }
    long double value = 0;
    {
        std::string tmp(num);
        char* end = nullptr;
        value = std::strtold(tmp.c_str(), &end);
        if (end != tmp.c_str() + tmp.size()) return fail("not a number: \"" + tmp + "\"");
    }
    long double total = value * found->factor;
    if (!std::isfinite(total) || total >= 18446744073709551615.0L)
        return fail(std::string(what) + " \"" + std::string(text) + "\" is too large");
    return uint64_t(std::llround(total));
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
    return parse_with_units(text,
                            {{"B", 1.0L}, {"KiB", 1024.0L}, {"MiB", 1048576.0L}, {"GiB", 1073741824.0L},
                             {"TiB", 1099511627776.0L}, {"KB", 1e3L}, {"MB", 1e6L}, {"GB", 1e9L}},
                            "size", "\"64MiB\"");
}

Result<uint64_t> parse_duration_ns(std::string_view text) {
    return parse_with_units(text,
                            {{"ns", 1.0L}, {"us", 1e3L}, {"ms", 1e6L}, {"s", 1e9L}, {"m", 60e9L}, {"h", 3600e9L}},
                            "duration", "\"30s\"");
}

std::string format_size(uint64_t b) {
    static const std::pair<uint64_t, const char*> units[] = {
        {1ULL << 40, "TiB"}, {1ULL << 30, "GiB"}, {1ULL << 20, "MiB"}, {1ULL << 10, "KiB"}};
    for (auto [f, n] : units)
        if (b >= f && b % f == 0) return std::to_string(b / f) + n;
    return std::to_string(b) + "B";
}

std::string format_duration_ns(uint64_t ns) {
    static const std::pair<uint64_t, const char*> units[] = {
        {3600'000'000'000ULL, "h"}, {60'000'000'000ULL, "m"}, {1'000'000'000ULL, "s"}, {1'000'000ULL, "ms"}, {1'000ULL, "us"}};
    for (auto [f, n] : units)
        if (ns >= f && ns % f == 0) return std::to_string(ns / f) + n;
    return std::to_string(ns) + "ns";
}

}  // namespace moat
