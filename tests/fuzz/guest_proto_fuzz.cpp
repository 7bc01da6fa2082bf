// libFuzzer entry point for what a (possibly compromised) vm-tier guest can
// send moatd: arbitrary bytes on the control port, fed in uneven pieces
// through the host-side Decoder, every frame parsed by the strict parsers.
// Nothing may crash, hang, throw out or allocate beyond the frame limit; a
// message that parses must encode again and parse to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moat/guest/protocol.h"

using namespace moat::guest;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t selector = data[0];
    std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    const Direction dir = (selector & 0x80) ? Direction::HostToGuest : Direction::GuestToHost;
    Decoder d(dir);
    std::vector<Frame> frames;
    size_t off = 0, step = 1 + (selector & 0x7f) * 37;
    while (off < bytes.size()) {
        size_t n = std::min(step, bytes.size() - off);
        auto r = d.feed(bytes.substr(off, n), frames);
        if (d.buffered() > kHeaderBytes + d.max_payload()) __builtin_trap();
        off += n;
        for (const Frame& f : frames) {
            if (dir == Direction::GuestToHost) {
                auto m = parse_guest(f);
                if (!m) continue;
                auto again = encode(*m);
                // A parsed message re-encodes to exactly the frame it came from.
                if (!again || again->size() != kHeaderBytes + f.payload.size() ||
                    again->compare(kHeaderBytes, std::string::npos, f.payload) != 0)
                    __builtin_trap();
            } else {
                auto m = parse_host(f);
                if (!m) continue;
                auto again = encode(*m);
                if (!again || again->compare(kHeaderBytes, std::string::npos, f.payload) != 0) __builtin_trap();
            }
        }
        frames.clear();
        if (!r) break;  // refused: the stream is dropped
    }
    // The per-type parsers on the raw bytes, without framing.
    parse_hello(bytes);
    parse_setup_status(bytes);
    parse_notice(bytes);
    parse_output(bytes);
    parse_exit(bytes);
    parse_verdict(bytes);
    parse_input_file(bytes);
    parse_job(bytes);
    return 0;
}
