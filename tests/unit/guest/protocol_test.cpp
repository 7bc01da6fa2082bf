// The vm tier's host <-> guest protocol: round trips of every message and
// every way a frame or a payload is refused (docs/vm-protocol.md).
#include "moat/guest/protocol.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace moat::guest;
using moat::Result;

namespace {

std::string le32(uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = char((v >> (8 * i)) & 0xff);
    return s;
}
std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
    return s;
}
std::string str(std::string_view s) { return le32(uint32_t(s.size())) + std::string(s); }
std::string raw_frame(Type t, const std::string& payload) { return le32(uint32_t(payload.size())) + char(t) + payload; }

// Encodes, decodes through a Decoder fed one byte at a time, parses.
template <class T>
T round_trip_guest(const T& m) {
    auto bytes = encode(m);
    EXPECT_TRUE(bytes) << (bytes ? "" : bytes.error().message);
    Decoder d(Direction::GuestToHost);
    std::vector<Frame> frames;
    for (char c : *bytes) EXPECT_TRUE(d.feed(std::string_view(&c, 1), frames));
    EXPECT_EQ(frames.size(), 1u);
    EXPECT_EQ(d.buffered(), 0u);
    auto msg = parse_guest(frames.at(0));
    EXPECT_TRUE(msg) << (msg ? "" : msg.error().message);
    return std::get<T>(*msg);
}

template <class T>
T round_trip_host(const T& m) {
    auto bytes = encode(m);
    EXPECT_TRUE(bytes) << (bytes ? "" : bytes.error().message);
    Decoder d(Direction::HostToGuest);
    std::vector<Frame> frames;
    EXPECT_TRUE(d.feed(*bytes, frames));
    EXPECT_EQ(frames.size(), 1u);
    auto msg = parse_host(frames.at(0));
    EXPECT_TRUE(msg) << (msg ? "" : msg.error().message);
    return std::get<T>(*msg);
}

}  // namespace

TEST(GuestProtocol, RoundTripGuestMessages) {
    Hello h{kProtocolVersion, "6.1.0-moat", 123456789, 4};
    auto h2 = round_trip_guest(h);
    EXPECT_EQ(h2.version, kProtocolVersion);
    EXPECT_EQ(h2.kernel_release, "6.1.0-moat");
    EXPECT_EQ(h2.boot_time_ns, 123456789u);
    EXPECT_EQ(h2.landlock_abi, 4);

    SetupStatus s{"chdir", 2, "/nonexistent", false};
    auto s2 = round_trip_guest(s);
    EXPECT_EQ(s2.step, "chdir");
    EXPECT_EQ(s2.err, 2);
    EXPECT_EQ(s2.detail, "/nonexistent");
    EXPECT_FALSE(s2.fatal);

    EXPECT_EQ(round_trip_guest(Started{42}).pid, 42);

    Notice n;
    n.id = 0xfedcba9876543210ull;
    n.pid = 7;
    n.nr = 83;
    n.arch = 0xc000003e;
    n.args = {1, 2, 3, 4, 5, ~0ull};
    n.ip = 0x7fff00001234;
    n.decoded = std::string("/tmp/\0x", 7);
    auto n2 = round_trip_guest(n);
    EXPECT_EQ(n2.id, n.id);
    EXPECT_EQ(n2.pid, 7);
    EXPECT_EQ(n2.nr, 83);
    EXPECT_EQ(n2.arch, 0xc000003eu);
    EXPECT_EQ(n2.args, n.args);
    EXPECT_EQ(n2.ip, n.ip);
    EXPECT_EQ(n2.decoded, n.decoded);
    EXPECT_FALSE(n2.module);
    n.module = "libc.so.6+0x11f0a";
    n.decoded.reset();
    auto n3 = round_trip_guest(n);
    EXPECT_FALSE(n3.decoded);
    EXPECT_EQ(n3.module, "libc.so.6+0x11f0a");

    auto e = round_trip_guest(Exec{9, "/usr/bin/env"});
    EXPECT_EQ(e.pid, 9);
    EXPECT_EQ(e.path, "/usr/bin/env");

    std::string big(kMaxChunk, '\xff');
    auto o = round_trip_guest(Output{2, big});
    EXPECT_EQ(o.stream, 2);
    EXPECT_EQ(o.bytes, big);
    EXPECT_EQ(round_trip_guest(OutputEof{1}).stream, 1);

    Sample sm{1, 2, 3, 4, 5, 6};
    auto sm2 = round_trip_guest(sm);
    EXPECT_EQ(sm2.cpu_ns, 1u);
    EXPECT_EQ(sm2.memory_bytes, 2u);
    EXPECT_EQ(sm2.memory_peak_bytes, 3u);
    EXPECT_EQ(sm2.pids, 4u);
    EXPECT_EQ(sm2.oom_kills, 5u);
    EXPECT_EQ(sm2.pids_max_hits, 6u);

    auto x = round_trip_guest(Exit{1 << 8, false});
    EXPECT_EQ(x.wait_status, 256);
    auto x2 = round_trip_guest(Exit{9 | 0x80, true});
    EXPECT_EQ(x2.wait_status, 0x89);
    EXPECT_TRUE(x2.killed_by_agent);

    EXPECT_EQ(round_trip_guest(Log{"hello"}).text, "hello");
    EXPECT_EQ(round_trip_guest(StdinConsumed{1ull << 40}).total, 1ull << 40);
}

TEST(GuestProtocol, RoundTripHostMessages) {
    Job j{R"({"argv":["/usr/bin/env"]})", 100'000'000, 64 << 20, 32};
    auto j2 = round_trip_host(j);
    EXPECT_EQ(j2.plan_json, j.plan_json);
    EXPECT_EQ(j2.sample_interval_ns, 100'000'000u);
    EXPECT_EQ(j2.memory_max, uint64_t(64 << 20));
    EXPECT_EQ(j2.pids_max, 32u);

    // A Job may exceed the guest's frame limit (the plan carries the filter).
    Job bigjob{std::string(kMaxGuestPayload * 4, 'x'), 0, 0, 0};
    EXPECT_EQ(round_trip_host(bigjob).plan_json.size(), size_t(kMaxGuestPayload) * 4);

    auto f = round_trip_host(InputFile{"/input/data.csv", 0640, 12345});
    EXPECT_EQ(f.path, "/input/data.csv");
    EXPECT_EQ(f.mode, 0640u);
    EXPECT_EQ(f.size, 12345u);
    EXPECT_EQ(round_trip_host(InputData{"abc"}).bytes, "abc");
    (void)round_trip_host(InputEnd{});
    EXPECT_EQ(round_trip_host(Stdin{"line\n"}).bytes, "line\n");
    (void)round_trip_host(StdinEof{});
    auto v = round_trip_host(Verdict{77, 1, 0});
    EXPECT_EQ(v.id, 77u);
    EXPECT_EQ(v.error, 1);
    EXPECT_EQ(round_trip_host(Verdict{78, 0, Verdict::kContinue}).flags, Verdict::kContinue);
    EXPECT_EQ(round_trip_host(Verdict{79, 0, Verdict::kKill}).flags, Verdict::kKill);
    EXPECT_EQ(round_trip_host(Verdict{80, 38, Verdict::kTrap}).flags, Verdict::kTrap);
    (void)round_trip_host(Kill{});
    // A Rehearse carries a Job, and is told apart from one by its type only.
    auto r = round_trip_host(Rehearse{Job{R"({"exe":"/.moat-rehearsal"})", 0, 1 << 20, 8}});
    EXPECT_EQ(r.job.plan_json, R"({"exe":"/.moat-rehearsal"})");
    EXPECT_EQ(r.job.pids_max, 8u);
    auto rf = encode(Rehearse{Job{"{}", 0, 0, 0}});
    ASSERT_TRUE(rf);
    EXPECT_EQ(uint8_t((*rf)[4]), uint8_t(Type::Rehearse));
    EXPECT_FALSE(encode(Rehearse{Job{"", 0, 0, 0}})) << "an empty plan is refused as in a Job";
    // The program to prefetch travels with it: absolute, no NUL, bounded.
    EXPECT_EQ(round_trip_host(Rehearse{Job{"{}", 0, 0, 0}, "/usr/bin/env"}).prefetch, "/usr/bin/env");
    EXPECT_EQ(round_trip_host(Rehearse{Job{"{}", 0, 0, 0}, ""}).prefetch, "");
    EXPECT_FALSE(encode(Rehearse{Job{"{}", 0, 0, 0}, "usr/bin/env"}));
    EXPECT_FALSE(encode(Rehearse{Job{"{}", 0, 0, 0}, std::string("/a\0b", 4)}));
    EXPECT_FALSE(encode(Rehearse{Job{"{}", 0, 0, 0}, "/" + std::string(kMaxPath, 'a')}));
    // The parser refuses what the encoder would not write.
    const std::string job = le64(0) + le64(0) + le64(0) + str("{}");
    EXPECT_TRUE(parse_rehearse(job + str("/bin/true")));
    EXPECT_FALSE(parse_rehearse(job + str("bin/true"))) << "relative";
    EXPECT_FALSE(parse_rehearse(job + str(std::string("/a\0b", 4)))) << "NUL";
    EXPECT_FALSE(parse_rehearse(job + str("/" + std::string(kMaxPath, 'a')))) << "over kMaxPath";
    EXPECT_FALSE(parse_rehearse(job)) << "truncated: no prefetch field";
    EXPECT_FALSE(parse_rehearse(job + str("/x") + "z")) << "trailing byte";
}

TEST(GuestProtocol, DecoderSplitsAndJoinsFrames) {
    std::string stream = *encode(Log{"a"}) + *encode(Started{3}) + *encode(Output{1, "xyz"});
    Decoder d(Direction::GuestToHost);
    std::vector<Frame> frames;
    ASSERT_TRUE(d.feed(stream.substr(0, 7), frames));
    EXPECT_EQ(frames.size(), 0u);
    ASSERT_TRUE(d.feed(stream.substr(7), frames));
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(frames[0].type, Type::Log);
    EXPECT_EQ(frames[1].type, Type::Started);
    EXPECT_EQ(frames[2].type, Type::Output);
    EXPECT_EQ(d.buffered(), 0u);
    // A zero-length payload is a whole frame.
    ASSERT_TRUE(d.feed(raw_frame(Type::Hello, ""), frames));
    ASSERT_EQ(frames.size(), 4u);
    EXPECT_FALSE(parse_guest(frames[3]));  // ... that Hello refuses (truncated)
}

TEST(GuestProtocol, DecoderRefusesOversizedLengthBeforeBuffering) {
    Decoder d(Direction::GuestToHost);
    std::vector<Frame> frames;
    // Exactly the limit is fine (the header alone is accepted) ...
    ASSERT_TRUE(d.feed(le32(kMaxGuestPayload) + char(Type::Output), frames));
    EXPECT_EQ(d.buffered(), kHeaderBytes);
    // ... one more is refused at the header, with nothing of the payload buffered.
    Decoder d2(Direction::GuestToHost);
    auto r = d2.feed(le32(kMaxGuestPayload + 1) + char(Type::Output), frames);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("limit"), std::string::npos) << r.error().message;
    EXPECT_TRUE(d2.failed());
    EXPECT_FALSE(d2.feed("x", frames));  // poisoned
    Decoder d3(Direction::GuestToHost);
    EXPECT_FALSE(d3.feed(le32(0xffffffffu) + char(Type::Log), frames));
    // The host direction's limit is larger but still enforced.
    Decoder h(Direction::HostToGuest);
    EXPECT_FALSE(h.feed(le32(kMaxHostPayload + 1) + char(Type::Job), frames));
    EXPECT_TRUE(frames.empty());
}

TEST(GuestProtocol, DecoderBufferStaysBounded) {
    Decoder d(Direction::GuestToHost);
    std::vector<Frame> frames;
    std::string payload = str(std::string(kMaxChunk, 'a'));
    std::string f = le32(uint32_t(payload.size() + 1)) + char(Type::Output) + char(1) + payload;
    for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(d.feed(f.substr(0, f.size() - 1), frames));
        EXPECT_LE(d.buffered(), kHeaderBytes + kMaxGuestPayload);
        ASSERT_TRUE(d.feed(f.substr(f.size() - 1), frames));
        EXPECT_EQ(d.buffered(), 0u);
    }
    EXPECT_EQ(frames.size(), 50u);
}

TEST(GuestProtocol, DecoderRefusesUnknownAndWrongDirectionTypes) {
    std::vector<Frame> frames;
    for (uint8_t t : {0, 12, 63, 73, 200, 255}) {
        Decoder d(Direction::GuestToHost);
        EXPECT_FALSE(d.feed(le32(0) + char(t), frames)) << int(t);
        Decoder h(Direction::HostToGuest);
        EXPECT_FALSE(h.feed(le32(0) + char(t), frames)) << int(t);
    }
    Decoder d(Direction::GuestToHost);
    EXPECT_FALSE(d.feed(raw_frame(Type::Verdict, le64(1) + le32(1) + char(0)), frames));  // a host message from the guest
    Decoder h(Direction::HostToGuest);
    EXPECT_FALSE(h.feed(raw_frame(Type::Notice, ""), frames));
    EXPECT_TRUE(frames.empty());
    // parse_guest/parse_host refuse the other direction's types too.
    EXPECT_FALSE(parse_guest(Frame{Type::Kill, ""}));
    EXPECT_FALSE(parse_host(Frame{Type::Log, str("x")}));
}

TEST(GuestProtocol, TruncatedFieldsAreRefused) {
    Notice n;
    n.pid = 1;
    n.decoded = "/tmp/x";
    n.module = "libc.so.6+0x1";
    std::string full = encode(n)->substr(kHeaderBytes);
    ASSERT_TRUE(parse_notice(full));
    for (size_t len = 0; len < full.size(); ++len) {
        auto r = parse_notice(std::string_view(full).substr(0, len));
        EXPECT_FALSE(r) << len;
    }
    EXPECT_NE(parse_notice(full.substr(0, 10)).error().message.find("truncated"), std::string::npos);
    std::string hello = encode(Hello{1, "6.1", 1, 0})->substr(kHeaderBytes);
    for (size_t len = 0; len < hello.size(); ++len) EXPECT_FALSE(parse_hello(hello.substr(0, len))) << len;
    std::string ss = encode(SetupStatus{"x", 1, "d", true})->substr(kHeaderBytes);
    for (size_t len = 0; len < ss.size(); ++len) EXPECT_FALSE(parse_setup_status(ss.substr(0, len))) << len;
    EXPECT_FALSE(parse_sample(std::string(47, '\0')));
    EXPECT_FALSE(parse_exit(std::string(4, '\0')));
    EXPECT_FALSE(parse_verdict(std::string(12, '\0')));
}

TEST(GuestProtocol, TrailingBytesAreRefused) {
    auto check = [](const Result<std::string>& enc, auto parse) {
        ASSERT_TRUE(enc);
        std::string p = enc->substr(kHeaderBytes);
        EXPECT_TRUE(parse(p));
        auto r = parse(p + "x");
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find("trailing"), std::string::npos) << r.error().message;
    };
    check(encode(Hello{1, "r", 2, 3}), parse_hello);
    check(encode(SetupStatus{"s", 0, "", false}), parse_setup_status);
    check(encode(Started{1}), parse_started);
    check(encode(Notice{1, 1, 1, 1, {}, 0, std::nullopt, std::nullopt}), parse_notice);
    check(encode(Exec{1, "/x"}), parse_exec);
    check(encode(Output{1, "x"}), parse_output);
    check(encode(OutputEof{2}), parse_output_eof);
    check(encode(Sample{}), parse_sample);
    check(encode(Exit{0, false}), parse_exit);
    check(encode(Log{"x"}), parse_log);
    check(encode(StdinConsumed{1}), parse_stdin_consumed);
    check(encode(Job{"{}", 0, 0, 0}), parse_job);
    check(encode(InputFile{"/a", 0644, 1}), parse_input_file);
    check(encode(InputData{"x"}), parse_input_data);
    check(encode(InputEnd{}), parse_input_end);
    check(encode(Stdin{"x"}), parse_stdin);
    check(encode(StdinEof{}), parse_stdin_eof);
    check(encode(Verdict{1, 1, 0}), parse_verdict);
    check(encode(Kill{}), parse_kill);
    check(encode(Rehearse{Job{"{}", 0, 0, 0}}), parse_rehearse);
}

TEST(GuestProtocol, StringsOverTheirLimitAreRefused) {
    // Built by hand: the encoder refuses these too.
    const std::string over(kMaxText + 1, 'a');
    EXPECT_FALSE(encode(Log{over}));
    EXPECT_FALSE(parse_log(str(over)));
    EXPECT_TRUE(parse_log(str(std::string(kMaxText, 'a'))));
    std::string notice_head = le64(1) + le32(1) + le32(2) + le32(3) + std::string(48, '\0') + le64(0);
    EXPECT_FALSE(parse_notice(notice_head + char(1) + str(over) + char(0)));
    EXPECT_FALSE(parse_notice(notice_head + char(0) + char(1) + str(over)));
    EXPECT_TRUE(parse_notice(notice_head + char(0) + char(0)));
    Notice n{1, 1, 0, 0, {}, 0, over, std::nullopt};
    EXPECT_FALSE(encode(n));
    // A huge length prefix with little data behind it: refused on the limit, nothing allocated.
    auto r = parse_log(le32(0xfffffff0u) + "abc");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("limit"), std::string::npos) << r.error().message;
    EXPECT_FALSE(parse_setup_status(str(std::string(kMaxStep + 1, 's')) + le32(0) + str("") + char(0)));
    EXPECT_FALSE(parse_setup_status(str("") + le32(0) + str("") + char(0)));  // empty step
    EXPECT_FALSE(parse_hello(le32(1) + str(std::string(kMaxRelease + 1, 'r')) + le64(0) + le32(0)));
    EXPECT_FALSE(parse_output(char(1) + str(std::string(kMaxChunk + 1, 'o'))));
    EXPECT_FALSE(parse_output(char(1) + str("")));  // empty chunk
    EXPECT_FALSE(parse_exec(le32(1) + str(over)));
    EXPECT_FALSE(parse_stdin(str(std::string(kMaxChunk + 1, 'i'))));
    EXPECT_FALSE(parse_input_data(str("")));
    // A length that lies (claims more than the payload holds) is truncation.
    EXPECT_FALSE(parse_log(le32(100) + "short"));
}

TEST(GuestProtocol, FieldValuesAreChecked) {
    // enum and flag bytes
    EXPECT_FALSE(parse_output(char(0) + str("x")));
    EXPECT_FALSE(parse_output(char(3) + str("x")));
    EXPECT_FALSE(parse_output_eof(std::string(1, char(0))));
    EXPECT_FALSE(parse_exit(le32(0) + char(2)));
    EXPECT_FALSE(parse_setup_status(str("s") + le32(0) + str("") + char(7)));
    std::string notice_head = le64(1) + le32(1) + le32(2) + le32(3) + std::string(48, '\0') + le64(0);
    EXPECT_FALSE(parse_notice(notice_head + char(2) + char(0)));  // optional flag not 0/1
    // pids
    EXPECT_FALSE(parse_started(le32(0)));
    EXPECT_FALSE(parse_started(le32(uint32_t(-5))));
    EXPECT_FALSE(parse_notice(le64(1) + le32(0) + le32(2) + le32(3) + std::string(48, '\0') + le64(0) + char(0) + char(0)));
    // errno and abi ranges
    EXPECT_FALSE(parse_setup_status(str("s") + le32(uint32_t(-1)) + str("") + char(0)));
    EXPECT_FALSE(parse_setup_status(str("s") + le32(4096) + str("") + char(0)));
    EXPECT_FALSE(parse_hello(le32(1) + str("r") + le64(0) + le32(256)));
    // wait statuses: exited and signaled forms only
    EXPECT_TRUE(parse_exit(le32(0) + char(0)));
    EXPECT_TRUE(parse_exit(le32(255 << 8) + char(0)));
    EXPECT_TRUE(parse_exit(le32(9) + char(1)));
    EXPECT_FALSE(parse_exit(le32(0x137f) + char(0)));        // stopped
    EXPECT_FALSE(parse_exit(le32(0xffff) + char(0)));        // continued
    EXPECT_FALSE(parse_exit(le32(0x10000) + char(0)));       // bits beyond
    EXPECT_FALSE(parse_exit(le32(0x0101) + char(0)));        // exit code and signal together
    EXPECT_FALSE(parse_exit(le32(uint32_t(-1)) + char(0)));
    EXPECT_FALSE(parse_exit(le32(65) + char(0)));            // no signal 65
    // verdicts
    EXPECT_FALSE(parse_verdict(le64(1) + le32(0) + char(0)));                 // nothing to do
    EXPECT_FALSE(parse_verdict(le64(1) + le32(1) + char(Verdict::kContinue)));  // continue + error
    EXPECT_FALSE(parse_verdict(le64(1) + le32(0) + char(8)));                 // unknown bit
    EXPECT_FALSE(parse_verdict(le64(1) + le32(uint32_t(-1)) + char(0)));
    EXPECT_FALSE(parse_verdict(le64(1) + le32(5000) + char(0)));
    EXPECT_FALSE(parse_verdict(le64(1) + le32(0) + char(Verdict::kKill | Verdict::kTrap)));
    // input paths and modes
    EXPECT_FALSE(parse_input_file(str("relative") + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str("/a/../b") + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str("/a//b") + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str("/a/") + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str(std::string("/a\0b", 4)) + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str("/") + le32(0644) + le64(0)));
    EXPECT_FALSE(parse_input_file(str("/a") + le32(010000) + le64(0)));
    EXPECT_TRUE(parse_input_file(str("/a/b") + le32(04755) + le64(0)));
    // jobs
    EXPECT_FALSE(parse_job(le64(999) + le64(0) + le64(0) + str("{}")));  // interval under 1 ms
    EXPECT_FALSE(parse_job(le64(0) + le64(0) + le64(0) + str("")));
}

TEST(GuestProtocol, HugeCountsCostNothing) {
    // Every count in the protocol is a length prefix: a frame full of 0xff
    // bytes announces ~4 GiB strings; each parser refuses it without allocating.
    const std::string ff(64, '\xff');
    Frame f{Type::Hello, ff};
    for (uint8_t t = 1; t <= 11; ++t) {
        f.type = Type(t);
        auto r = parse_guest(f);
        if (Type(t) == Type::Sample) continue;  // six u64s: any 48 bytes... but 64 is trailing
        EXPECT_FALSE(r) << type_name(Type(t));
    }
    f.type = Type::Sample;
    EXPECT_FALSE(parse_guest(f));  // 16 trailing bytes
    for (uint8_t t = 64; t <= 71; ++t) {
        f.type = Type(t);
        EXPECT_FALSE(parse_host(f)) << type_name(Type(t));
    }
}

TEST(GuestProtocol, EncodersRefuseWhatParsersRefuse) {
    EXPECT_FALSE(encode(Output{3, "x"}));
    EXPECT_FALSE(encode(Output{1, ""}));
    EXPECT_FALSE(encode(Output{1, std::string(kMaxChunk + 1, 'x')}));
    EXPECT_FALSE(encode(Started{0}));
    EXPECT_FALSE(encode(Exit{0x137f, false}));
    EXPECT_FALSE(encode(Verdict{1, 0, 0}));
    EXPECT_FALSE(encode(InputFile{"x", 0644, 0}));
    EXPECT_FALSE(encode(SetupStatus{"", 0, "", false}));
    EXPECT_FALSE(encode(Hello{1, "", 0, -1}));
    EXPECT_FALSE(encode(Job{"", 0, 0, 0}));
}
