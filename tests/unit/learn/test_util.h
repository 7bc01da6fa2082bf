#pragma once
// Shared by the learn unit tests.
#include <gtest/gtest.h>

#include <string>

#include "moat/policy/parser.h"

namespace moat::learn::test {

// A policy that must parse (the test fails with the first diagnostic if not).
inline moat::policy::Policy parse(const std::string& text) {
    auto r = moat::policy::parse_policy(text, "test.toml");
    EXPECT_TRUE(r.policy) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
    return r.policy ? *r.policy : moat::policy::Policy{};
}

}  // namespace moat::learn::test
