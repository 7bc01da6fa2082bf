#pragma once
#include <string>
#include <vector>

#include "moat/policy/diagnostic.h"
#include "moat/policy/policy.h"

namespace moat::policy {

// Why a syscall is risky to allow ("" if it is not on the list). One line, for
// operators: what it would let an attacker do.
std::string risk_of(std::string_view syscall);

// Why clone3 never runs, in the words lint, `--explain`'s readers and learn's
// note share (docs/policy.md, "clone3"): one sentence, no final period.
std::string clone3_design();

// Warnings for dangerous allows (with the reason), errors for policies that
// cannot work (e.g. execve not allowed: the job could not even start).
std::vector<Diagnostic> lint(const Policy& p);

}  // namespace moat::policy
