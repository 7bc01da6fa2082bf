#pragma once
// OCI / Docker seccomp profiles <-> Moat policies (contract section 5:
// `moatctl policy import --from oci`, `moatctl policy export --to oci`).
//
// The OCI format is the runtime-spec `linux.seccomp` object, which is also the
// format of Docker's default profile: defaultAction, defaultErrnoRet,
// architectures / archMap, and syscalls[{names, action, errnoRet, args,
// includes, excludes}]. Both directions are lossy in places; every loss is
// reported as a diagnostic, never made silently. docs/policy.md, "Importing and
// exporting OCI seccomp profiles", lists the mapping.
#include <string>
#include <string_view>
#include <vector>

#include "moat/policy/diagnostic.h"
#include "moat/policy/policy.h"

namespace moat::policy {

// Profiles above this size are refused before parsing (Docker's default
// profile is about 20 KiB).
inline constexpr size_t kMaxOciProfileBytes = 4u << 20;

struct OciImportResult {
    // Moat policy TOML; empty when there is an error diagnostic. When set, it
    // passes parse_policy() (checked before it is returned).
    std::string toml;
    // Errors (nothing imported) and warnings (what could not be represented
    // and was dropped or changed), one per finding.
    std::vector<Diagnostic> diagnostics;
};

// Converts an OCI seccomp profile (JSON text) into a policy named `name`
// (1-64 characters from A-Z a-z 0-9 . _ -). A runtime-spec config.json is also
// accepted: its linux.seccomp object is used. `source_name` names the input in
// diagnostics. Never throws.
OciImportResult import_oci(std::string_view json_text, std::string_view source_name, std::string name);

struct OciExportResult {
    std::string json;                     // the profile, pretty-printed; empty only on an error
    std::vector<Diagnostic> diagnostics;  // warnings: rules that OCI cannot express
};

// The policy's [seccomp] section as an OCI seccomp profile, mirroring what
// Moat's compiler enforces (clone3 -> ENOSYS, clone without namespace flags).
// Never throws.
OciExportResult export_oci(const Policy& p);

}  // namespace moat::policy
