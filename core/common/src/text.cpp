#include "moat/common/text.h"

#include <cstdint>
#include <cstdio>

namespace moat {

namespace {

// Length and code point of the well-formed UTF-8 sequence at s[i] (RFC 3629:
// shortest form only, no surrogates, at most U+10FFFF); 0 when it is not one.
size_t utf8_at(std::string_view s, size_t i, char32_t* cp) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    size_t len;
    char32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;  // continuation byte, 0xc0/0xc1 (always overlong) or 0xf5..0xff
    }
    if (i + len > s.size()) return 0;
    for (size_t k = 1; k < len; ++k) {
        if ((b(k) & 0xc0) != 0x80) return 0;
        v = (v << 6) | (b(k) & 0x3f);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000)) return 0;  // overlong
    if (v >= 0xd800 && v <= 0xdfff) return 0;                            // UTF-16 surrogate
    if (v > 0x10ffff) return 0;
    *cp = v;
    return len;
}

bool is_bidi_control(char32_t c) {
    return c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069);
}

std::string escape(std::string_view s, bool double_backslash) {
    std::string out;
    out.reserve(s.size());
    char buf[16];  // "\\uXXXX" needs 7; room for what -Wformat-truncation assumes a char32_t may print
    size_t i = 0;
    while (i < s.size()) {
        char32_t cp = 0;
        size_t len = utf8_at(s, i, &cp);
        if (len == 0 || cp < 0x20 || cp == 0x7f) {
            // One byte at a time: an invalid sequence may hide a valid one after it.
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i]));
            out += buf;
            ++i;
            continue;
        }
        if ((cp >= 0x80 && cp <= 0x9f) || is_bidi_control(cp)) {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
            out += buf;
        } else if (cp == '\\' && double_backslash) {
            out += "\\\\";
        } else {
            out.append(s, i, len);
        }
        i += len;
    }
    return out;
}

}  // namespace

bool valid_utf8(std::string_view s) {
    char32_t cp;
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_at(s, i, &cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::string printable(std::string_view s) { return escape(s, true); }
std::string for_terminal(std::string_view s) { return escape(s, false); }

}  // namespace moat
