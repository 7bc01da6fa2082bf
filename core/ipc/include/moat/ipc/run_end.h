#pragma once
// What the end of a `run` means for its client: moatctl's exit status and what
// it says on stderr (../shared/contract.md §2). One function for both ends of
// a run: moatctl renders the `finished` record it received, and moatd renders
// it for a client that asked for brief answers (docs/protocol.md, "Brief
// runs": the static front of moatctl, which links no JSON library).
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "moat/common/wire.h"

namespace moat::ipc {

inline constexpr int kRunSetupFailed = MOAT_RUN_SETUP_FAILED;  // the contract's "could not be set up"

struct RunEnd {
    int status = kRunSetupFailed;
    std::string text;  // for stderr: whole lines, each ending in '\n' ("" when nothing is said)
};

// The job's record (`finished`) as moatctl reports it. `job` is the id the
// job's first answer gave (0 if none came).
RunEnd describe_run_end(int64_t job, const nlohmann::json& finished);
// A `run` moatd refused or could not start.
RunEnd describe_run_error(std::string_view error);

// Text for a human's terminal. Every string moatctl formats for a person may
// hold bytes chosen by a job or a client (paths, argv, names, moatd's error
// messages that echo them): control characters, C1 (CSI), bidi overrides and
// invalid UTF-8 are shown escaped, never written raw (moat::for_terminal).
// Line by line for multi-line messages (moatd joins policy diagnostics with
// newlines); a single field escapes its newlines too (field_for_terminal).
std::string lines_for_terminal(std::string_view text);
// j[key] for a terminal: a string as it is (escaped), anything else as JSON,
// `dflt` when missing or null.
std::string field_for_terminal(const nlohmann::json& j, const char* key, const char* dflt = "-");

}  // namespace moat::ipc
