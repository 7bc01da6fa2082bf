#pragma once
// The policy editor's form state: every policy key (docs/policy.md) as the
// operator edits it, sizes and durations with their units. An empty string or
// an unset optional means "key not written": the documented default applies.
//
//   TOML --parse_policy--> Policy --fromPolicy--> PolicyDraft --toToml--> TOML
//
// fromPolicy() writes out every effective value, so a round trip keeps every
// key's meaning (tests/ui checks this key by key), though not comments.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moat/policy/policy.h"

namespace moat::learn {

struct PolicyDraft {
    struct Arg {
        std::string index;  // "0".."5"
        std::string op;     // eq, ne, lt, le, gt, ge, masked_eq
        std::string value;  // as written: "AF_UNIX", "3", "0x80000"
        std::string mask;   // masked_eq only
        bool operator==(const Arg&) const = default;
    };
    struct Rule {
        std::string syscall;
        std::string action;
        std::vector<Arg> args;
        bool operator==(const Rule&) const = default;
    };

    std::string name;
    std::string description;
    std::string tier;
    // [limits]
    std::string wallTime, cpuTime, memory, pids, fileSize, openFiles, stack, core;
    // [filesystem]
    std::vector<std::string> readOnly, readWrite, tmpfs;
    bool readOnlySet = false, readWriteSet = false, tmpfsSet = false;  // write even when empty
    std::string tmpfsSize, landlock;
    // [network]
    std::string network;
    // [environment]
    std::vector<std::string> envPass;
    bool envPassSet = false;
    std::vector<std::pair<std::string, std::string>> envSet;
    bool envSetSet = false;
    // [seccomp]
    std::string defaultAction;
    std::vector<std::string> allow;
    bool allowSet = false;
    std::vector<Rule> rules;
    // [monitor]
    std::string sampleInterval;

    bool operator==(const PolicyDraft&) const = default;

    // Every effective value written out (units in canonical spelling).
    static PolicyDraft fromPolicy(const moat::policy::Policy& p);
    std::string toToml() const;
};

// A TOML basic string literal with escapes.
std::string tomlQuote(const std::string& s);

}  // namespace moat::learn
