// libFuzzer entry point for moat-runtime's config.json conversion
// (app/moat-runtime/bundle.h): a bundle's config.json comes from a container
// engine and, through it, from an image and its user. convert_bundle must
// never crash, hang or throw; what it accepts must be a valid policy, and no
// note (which quotes config.json on a comment line of that policy) may span
// lines.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "bundle.h"
#include "moat/policy/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);  // bytes as chars: same object representation
    auto job = moat::runtime::convert_bundle(text, "/bundle", "fuzz-0123456789ab");
    if (!job) {
        if (job.error().message.empty()) std::abort();  // a refusal always says why
        return 0;
    }
    moat::policy::ParseResult p = moat::policy::parse_policy(job->policy_toml, "bundle.toml");
    if (!p.policy) std::abort();
    for (const auto& n : job->notes)
        for (char c : n)
            if (static_cast<unsigned char>(c) < 0x20) std::abort();
    if (job->argv.empty() || job->cwd.empty() || job->cwd[0] != '/') std::abort();
    for (const auto& b : job->binds)
        if (b.target.empty() || b.target[0] != '/' || b.target.find("/../") != std::string::npos) std::abort();
    return 0;
}
