// libFuzzer entry point for the OCI seccomp profile importer: profiles are
// foreign input (downloaded, copied from other projects), so import_oci must
// never crash, hang or throw, and whatever it accepts must be a valid policy
// that survives export and a second import.
//
// Build (not wired into CMake; like policy_fuzz.cpp), e.g.:
//   clang++ -std=c++2b -fsanitize=fuzzer,address,undefined -Icore/policy/include -Icore/common/include
//     tests/fuzz/oci_import_fuzz.cpp -lmoat_policy -lmoat_common -lseccomp -lcrypto ...
//   ./oci_import_fuzz tests/fuzz/corpus/oci_import
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "moat/policy/diff.h"
#include "moat/policy/oci.h"
#include "moat/policy/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);  // bytes as chars: same object representation
    moat::policy::OciImportResult r = moat::policy::import_oci(text, "fuzz.json", "fuzz");
    for (const auto& d : r.diagnostics) (void)d.str();
    const bool failed = moat::policy::has_errors(r.diagnostics);
    if (failed != r.toml.empty()) std::abort();  // TOML exactly when there is no error
    if (failed) return 0;
    // What import writes must parse: a failure here is a real bug.
    moat::policy::ParseResult p = moat::policy::parse_policy(r.toml, "imported.toml");
    if (!p.policy) std::abort();
    // Export and import again: the seccomp section must come back the same.
    moat::policy::OciExportResult e = moat::policy::export_oci(*p.policy);
    if (moat::policy::has_errors(e.diagnostics)) std::abort();
    moat::policy::OciImportResult again = moat::policy::import_oci(e.json, "exported.json", "fuzz");
    if (moat::policy::has_errors(again.diagnostics)) std::abort();
    moat::policy::ParseResult q = moat::policy::parse_policy(again.toml, "again.toml");
    if (!q.policy) std::abort();
    moat::policy::PolicyDiff d = moat::policy::diff(*p.policy, *q.policy);
    // kill-thread is exported as SCMP_ACT_KILL_PROCESS (Moat kills the job for
    // both), so it comes back as kill-process; anything else must be equal.
    const bool thread_to_process = d.default_action && d.default_action->from == "kill-thread" &&
                                   d.default_action->to == "kill-process";
    if (!d.syscalls.empty() || (d.default_action && !thread_to_process)) std::abort();
    return 0;
}
