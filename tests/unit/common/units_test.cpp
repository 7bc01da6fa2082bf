#include <gtest/gtest.h>

#include "moat/common/error.h"
#include "moat/common/sha256.h"
#include "moat/common/timeutil.h"
#include "moat/common/units.h"

using namespace moat;

TEST(Units, SizesNeedAUnit) {
    EXPECT_EQ(parse_size("64MiB").value(), 64ULL << 20);
    EXPECT_EQ(parse_size("1.5GiB").value(), 3ULL << 29);
    EXPECT_EQ(parse_size("10B").value(), 10u);
    auto no_unit = parse_size("1024");
    ASSERT_FALSE(no_unit);
    EXPECT_NE(no_unit.error().message.find("no unit"), std::string::npos);
    auto neg = parse_size("-5MiB");
    ASSERT_FALSE(neg);
    EXPECT_NE(neg.error().message.find("negative"), std::string::npos);
    EXPECT_FALSE(parse_size("5 parsecs"));
    EXPECT_FALSE(parse_size("99999999999TiB"));
}

TEST(Units, Durations) {
    EXPECT_EQ(parse_duration_ns("30s").value(), 30'000'000'000ULL);
    EXPECT_EQ(parse_duration_ns("250ms").value(), 250'000'000ULL);
    EXPECT_EQ(parse_duration_ns("2m").value(), 120'000'000'000ULL);
    EXPECT_FALSE(parse_duration_ns("30"));
    EXPECT_EQ(format_duration_ns(1'500'000'000ULL), "1500ms");
    EXPECT_EQ(format_size(256ULL << 20), "256MiB");
}

TEST(Errors, NameTheOperationAndErrno) {
    Error e = Error::sys("open(\"/x\")", EACCES);
    EXPECT_EQ(e.message, "open(\"/x\"): EACCES (Permission denied)");
    EXPECT_EQ(errno_from_name("ENOSYS"), ENOSYS);
    EXPECT_EQ(errno_from_name("EBOGUS"), -1);
}

TEST(Time, Rfc3339) {
    EXPECT_EQ(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    EXPECT_EQ(rfc3339_utc(1'500'000'001), "1970-01-01T00:00:01.500000001Z");
}

TEST(Sha256, KnownVector) {
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
