// printable() / for_terminal(): nothing a terminal acts on survives, and
// ordinary text (ASCII, accented letters, CJK, emoji) is left alone.
#include "moat/common/text.h"
#include "moat/common/paths.h"
#include "moat/common/signals.h"

#include <gtest/gtest.h>

namespace {

using moat::for_terminal;
using moat::printable;

// True when `s` contains a byte a terminal could act on or a bidi control.
bool has_raw_controls(const std::string& s) {
    for (size_t i = 0; i < s.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) return true;
        if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f) return true;  // C1
        if (s.compare(i, 3, "\u202e") == 0 || s.compare(i, 3, "\u2066") == 0) return true;
    }
    return false;
}

TEST(Text, OrdinaryTextIsKept) {
    for (const char* s : {"/tmp/ok", "/tmp/\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80",
                          "a b ~ \"quoted\""}) {
        EXPECT_EQ(printable(s), s);
        EXPECT_EQ(for_terminal(s), s);
    }
}

TEST(Text, C0ControlsAndDelAreEscaped) {
    EXPECT_EQ(printable("a\nb"), "a\\x0ab");
    EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
    EXPECT_EQ(printable(std::string("nul\0x", 5)), "nul\\x00x");
    EXPECT_EQ(printable("del\x7f"), "del\\x7f");
    EXPECT_EQ(for_terminal("\r\t"), "\\x0d\\x09");
}

TEST(Text, C1ControlsAreEscapedAsCodePointsAndAsRawBytes) {
    EXPECT_EQ(printable("\xc2\x9b" "31m"), "\\u009b31m");  // U+009B CSI, well-formed UTF-8
    EXPECT_EQ(printable("\xc2\x80\xc2\x9f"), "\\u0080\\u009f");
    EXPECT_EQ(printable("\x9b" "31m"), "\\x9b31m");  // a raw CSI byte is not UTF-8
    EXPECT_EQ(printable("\xc2\xa0"), "\xc2\xa0");    // U+00A0 is printable
}

TEST(Text, BidiControlsAreEscaped) {
    EXPECT_EQ(printable("evil\u202etxt.exe"), "evil\\u202etxt.exe");
    for (char32_t c : {0x061cU, 0x200eU, 0x200fU, 0x202aU, 0x202bU, 0x202cU, 0x202dU, 0x202eU, 0x2066U, 0x2067U,
                       0x2068U, 0x2069U}) {
        std::string utf8;
        if (c < 0x800) {
            utf8 = {char(0xc0 | (c >> 6)), char(0x80 | (c & 0x3f))};
        } else {
            utf8 = {char(0xe0 | (c >> 12)), char(0x80 | ((c >> 6) & 0x3f)), char(0x80 | (c & 0x3f))};
        }
        char want[8];
        snprintf(want, sizeof want, "\\u%04x", unsigned(c));
        EXPECT_EQ(printable(utf8), want) << std::hex << unsigned(c);
    }
    EXPECT_EQ(printable("\u2065"), "\u2065");  // neighbours stay
    EXPECT_EQ(printable("\u2029"), "\u2029");
}

TEST(Text, MalformedUtf8IsEscapedByteByByte) {
    EXPECT_EQ(printable("/tmp/\xff"), "/tmp/\\xff");
    EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");            // overlong "/"
    EXPECT_EQ(printable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");    // overlong, 3 bytes
    EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");    // surrogate U+D800
    EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
    EXPECT_EQ(printable("\xe2\x80"), "\\xe2\\x80");             // truncated
    EXPECT_EQ(printable("\xe2\x80" "a"), "\\xe2\\x80a");
    // An overlong encoding of a C1 control must not pass as text either.
    EXPECT_EQ(printable("\xe0\x82\x9b"), "\\xe0\\x82\\x9b");
}

TEST(Text, BackslashIsDoubledOnlyByPrintable) {
    EXPECT_EQ(printable("a\\x1b"), "a\\\\x1b");
    EXPECT_EQ(for_terminal("a\\x1b"), "a\\x1b");
}

TEST(Text, ForTerminalIsIdempotentAndNeverLeavesControls) {
    // Every byte value, alone and after a lead byte, plus mixed sequences.
    std::string all;
    for (int c = 0; c < 256; ++c) all += char(c);
    for (int lead : {0xc2, 0xe2, 0xf0}) {
        for (int c = 0x80; c < 0xc0; ++c) {
            all += char(lead);
            all += char(c);
            if (lead != 0xc2) all += char(0x80);
        }
    }
    all += "\u202e\u2066\xc2\x9b\x1b]0;title\x07";
    for (const std::string& s : {all, printable(all)}) {
        std::string once = for_terminal(s);
        EXPECT_FALSE(has_raw_controls(once));
        EXPECT_EQ(for_terminal(once), once);
    }
    EXPECT_EQ(for_terminal(printable(all)), printable(all));
}

}  // namespace

namespace {
// valid_utf8: what JSON text can carry unchanged (the same decoder as printable).
TEST(Text, ValidUtf8AcceptsWellFormedTextOnly) {
    EXPECT_TRUE(moat::valid_utf8(""));
    EXPECT_TRUE(moat::valid_utf8("plain /usr/bin/awk"));
    EXPECT_TRUE(moat::valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    EXPECT_FALSE(moat::valid_utf8("\xc3"));              // truncated
    EXPECT_FALSE(moat::valid_utf8("\xc0\xaf"));          // overlong
    EXPECT_FALSE(moat::valid_utf8("\xed\xa0\x80"));      // surrogate
    EXPECT_FALSE(moat::valid_utf8("\x9b[31m"));          // a raw C1 byte
    EXPECT_FALSE(moat::valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}
}  // namespace


TEST(Signals, NamesNumbersAndWhatAJobMayBeSent) {
    EXPECT_EQ(moat::parse_signal("TERM"), 15);
    EXPECT_EQ(moat::parse_signal("SIGTERM"), 15);
    EXPECT_EQ(moat::parse_signal("9"), 9);
    EXPECT_EQ(moat::parse_signal("WINCH"), 28);
    for (const char* bad : {"", "SIG", "TERMX", "0", "65", "999", "-1", "sigterm"}) EXPECT_EQ(moat::parse_signal(bad), 0) << bad;
    EXPECT_TRUE(moat::job_signal(15));
    EXPECT_TRUE(moat::job_signal(9));
    EXPECT_FALSE(moat::job_signal(19));  // SIGSTOP
    EXPECT_FALSE(moat::job_signal(11));  // SIGSEGV
}

TEST(Paths, NormalisedAbsolute) {
    for (const char* ok : {"/", "/a", "/a/b.c", "/a/..b"}) EXPECT_TRUE(moat::normalised_abs(ok)) << ok;
    for (const char* bad : {"", "a", "/a/", "//a", "/a/./b", "/a/../b", "/.."}) EXPECT_FALSE(moat::normalised_abs(bad)) << bad;
    EXPECT_FALSE(moat::normalised_abs(std::string(4097, 'a').insert(0, "/")));
}
