// libFuzzer entry point for what reaches moatd from the outside and from a
// job: the request framing and JSON (clients), the container plan parser
// (moat-init's only input), and the decoders of job memory (/proc/PID/maps
// text, sockaddr bytes, job-controlled strings). None may crash, hang, throw
// out or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "moat/ipc/frame.h"
#include "moat/sandbox/container_plan.h"
#include "moat/supervisor/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t selector = data[0];
    std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (selector % 4) {
        case 0: {
            // A client byte stream, fed in uneven pieces, as the server does.
            moat::ipc::FrameDecoder d(1 << 16);
            size_t off = 0, step = 1 + (selector >> 2);
            while (off < bytes.size()) {
                size_t n = std::min(step, bytes.size() - off);
                if (!d.feed(bytes.data() + off, n)) return 0;  // oversized header: refused
                off += n;
                while (auto f = d.next()) {
                    auto j = nlohmann::json::parse(*f, nullptr, false);
                    if (!j.is_discarded()) (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
                }
            }
            break;
        }
        case 1: {
            auto j = nlohmann::json::parse(bytes, nullptr, false);
            if (!j.is_discarded()) {
                auto plan = moat::sandbox::ContainerPlan::from_json(j);
                if (plan) (void)plan->to_json().dump();
            }
            break;
        }
        case 2: {
            auto maps = moat::supervisor::ModuleResolver::parse_maps(bytes);
            for (const auto& m : maps) (void)moat::supervisor::printable(m.name);
            break;
        }
        case 3:
            (void)moat::supervisor::format_sockaddr(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
            (void)moat::supervisor::printable(bytes);
            break;
    }
    return 0;
}
