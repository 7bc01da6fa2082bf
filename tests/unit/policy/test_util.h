#pragma once
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "moat/policy/parser.h"

namespace moat::policy::test {

// Every diagnostic, one per line, for failure messages.
inline std::string dump(const std::vector<Diagnostic>& d) {
    std::string s;
    for (const Diagnostic& x : d) s += x.str() + "\n";
    return s;
}

inline Policy parse_ok(std::string_view text, std::string_view file = "test.toml") {
    ParseResult r = parse_policy(text, file);
    EXPECT_TRUE(r.policy.has_value()) << dump(r.diagnostics);
    EXPECT_FALSE(has_errors(r.diagnostics)) << dump(r.diagnostics);
    return r.policy.value_or(Policy{});
}

// The errors of a policy that must be rejected.
inline std::vector<Diagnostic> errors_of(std::string_view text, std::string_view file = "test.toml") {
    ParseResult r = parse_policy(text, file);
    EXPECT_FALSE(r.policy.has_value()) << "policy was accepted:\n" << text;
    std::vector<Diagnostic> out;
    for (const Diagnostic& d : r.diagnostics)
        if (d.severity == Diagnostic::Severity::Error) out.push_back(d);
    EXPECT_FALSE(out.empty());
    return out;
}

// Exactly one error; returns its str().
inline std::string one_error(std::string_view text, std::string_view file = "test.toml") {
    std::vector<Diagnostic> e = errors_of(text, file);
    EXPECT_EQ(e.size(), 1u) << dump(e);
    return e.empty() ? std::string() : e.front().str();
}

}  // namespace moat::policy::test
