// libFuzzer entry point for the policy parser: policies are untrusted input
// (they arrive from clients over IPC), so parse_policy must never crash, hang
// or throw, and whatever it accepts must survive explain() and lint().
//
// Build (wired into CMake by the lead), e.g.:
//   clang++ -fsanitize=fuzzer,address,undefined ... policy_fuzz.cpp -lmoat_policy ...
//   ./policy_fuzz tests/fuzz/corpus/policy
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "moat/policy/lint.h"
#include "moat/policy/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);  // bytes as chars: same object representation
    moat::policy::ParseResult r = moat::policy::parse_policy(text, "fuzz.toml");
    for (const auto& d : r.diagnostics) (void)d.str();
    if (!r.policy) return 0;
    (void)moat::policy::lint(*r.policy);
    // What explain() writes must parse back: a failure here is a real bug.
    std::string explained = moat::policy::explain(*r.policy);
    moat::policy::ParseResult again = moat::policy::parse_policy(explained, "explained.toml");
    if (!again.policy) std::abort();
    return 0;
}
