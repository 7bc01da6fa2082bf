#include "moat/learn/denial_allow.h"

#include <sstream>

#include "moat/learn/allow_list.h"
#include "moat/learn/syscall_args.h"

namespace moat::learn {

namespace {

// Calls whose danger is in one argument holding a small set of values, so a
// rule "arg N == the denied value" allows what the job did and nothing wider.
struct NarrowArg {
    const char* syscall;
    unsigned index;
};
constexpr NarrowArg kNarrow[] = {
    {"socket", 0}, {"socketpair", 0}, {"ioctl", 1}, {"prctl", 0}, {"personality", 0}, {"fcntl", 1}, {"arch_prctl", 0},
};

uint64_t argAt(const nlohmann::json& args, unsigned i) {
    if (!args.is_array() || i >= args.size()) return 0;
    const auto& a = args[i];
    return a.is_number_unsigned() ? a.get<uint64_t>() : a.is_number_integer() ? uint64_t(a.get<int64_t>()) : 0;
}

}  // namespace

DenialAllow proposeAllow(const nlohmann::json& e) {
    DenialAllow out;
    if (!e.is_object() || e.value("kind", std::string()) != "denial") return out;
    out.syscall = e.value("syscall", std::string());
    if (out.syscall.empty()) return out;
    out.rule.syscall = out.syscall;
    out.rule.action = "allow";
    const auto args = e.value("args", nlohmann::json());
    for (const auto& n : kNarrow) {
        if (out.syscall != n.syscall || !args.is_array() || n.index >= args.size()) continue;
        const uint64_t v = argAt(args, n.index);
        PolicyDraft::Arg a;
        a.index = std::to_string(n.index);
        a.op = "eq";
        if (auto sym = argSymbol(out.syscall, n.index, v)) {
            a.value = *sym;
        } else {
            std::ostringstream os;
            if (v > 9) os << "0x" << std::hex << v;
            else os << v;
            a.value = os.str();
        }
        out.rule.args.push_back(std::move(a));
        out.summary = "allow " + out.syscall + " when arg" + std::to_string(n.index) + " == " + out.rule.args[0].value;
        return out;
    }
    out.summary = "allow " + out.syscall;
    return out;
}

PolicyDraft applyAllow(PolicyDraft d, const DenialAllow& a) {
    if (a.syscall.empty()) return d;
    bool hasRules = false;
    for (const auto& r : d.rules) hasRules |= r.syscall == a.syscall;
    if (a.narrow() || hasRules) {
        for (auto& r : d.rules) {
            if (r == a.rule) return d;
            // A rule with these very conditions decided the denial (e.g. mkdir
            // -> errno:EACCES): a second one with another action is an error
            // (the parser refuses it), so allowing means changing that rule.
            if (r.syscall == a.rule.syscall && r.args == a.rule.args) {
                r.action = a.rule.action;
                return d;
            }
        }
        d.rules.push_back(a.rule);
    } else {
        d.allow = withSyscall(std::move(d.allow), a.syscall, true);
        d.allowSet = true;
    }
    return d;
}

}  // namespace moat::learn
