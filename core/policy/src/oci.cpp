// OCI / Docker seccomp profiles <-> Moat policies.
//
// What an OCI profile cannot express about a Moat policy (export is lossy here,
// and docs/policy.md says so):
//  - Moat records every denial: its filter sends each syscall it does not allow
//    outright to the supervisor (SECCOMP_RET_USER_NOTIF), which decodes and
//    stores it, then answers with the policy's action. In OCI the kernel applies
//    the action directly (SECCOMP_RET_ERRNO, _KILL_PROCESS, ...); nothing is
//    recorded except what SCMP_ACT_LOG sends to the audit log.
//  - kill-thread: Moat kills the whole job (the supervisor cannot end one
//    thread), so it is exported as SCMP_ACT_KILL_PROCESS.
//  - trap: Moat answers ENOSYS and sends SIGSYS with tgkill (si_code SI_TKILL);
//    SCMP_ACT_TRAP makes the kernel send SIGSYS with si_code SYS_SECCOMP.
//  - The foreign-ABI rule: Moat denies every i386 (int $0x80) and x32 syscall,
//    whatever the policy says. The exported profile lists SCMP_ARCH_X86 and
//    SCMP_ARCH_X32 like Docker's does, so a runtime resolves the same names on
//    those ABIs and allows them there too.
//  - execve/execveat are always notified in Moat, so every exec is recorded
//    even when allowed; in OCI an allowed exec is invisible.
//  - Rule order: Moat applies allow rules in the filter and the first matching
//    non-allow rule in file order; libseccomp promises no order between
//    overlapping conditions with different actions.
// What Moat enforces whatever the policy says, and the export mirrors:
//  - clone3 fails with ENOSYS (its flags are in memory a filter cannot read;
//    glibc then falls back to clone);
//  - clone is allowed only without namespace flags (arg0 & 0x7E020080 == 0).
//
// Import runs the other way; what it drops is reported as warnings. The result
// is checked with parse_policy() before it is returned.
#include "moat/policy/oci.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <map>
#include <set>

#include "internal.h"
#include "moat/common/error.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

namespace {

using nlohmann::json;
// Export keeps keys in the order runtime-spec documents them.
using ojson = nlohmann::ordered_json;
using Kind = Action::Kind;
using Op = ArgCondition::Op;

// Namespace-creating clone() flags Moat's filter refuses even when clone is
// allowed. Must equal moat::compiler::kCloneNamespaceFlags (the policy module
// cannot depend on the compiler; oci_test checks the value).
constexpr uint64_t kCloneNamespaceFlags = 0x7E020080ULL;

// Names the OCI / Docker formats use for x86_64.
bool is_x86_64(std::string_view arch) {
    return arch == "amd64" || arch == "x86_64" || arch == "SCMP_ARCH_X86_64";
}

// Text from the profile goes into diagnostics and TOML comments: keep it to
// printable ASCII and bounded, so a hostile profile cannot inject lines or
// terminal escapes.
std::string printable(std::string_view s, size_t max = 64) {
    std::string out;
    for (unsigned char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? char(c) : '?';
    if (s.size() > max) out += "...";
    return out;
}

std::string toml_quoted(std::string_view s) { return "\"" + detail::toml_escape(s) + "\""; }

bool valid_name(std::string_view n) {
    if (n.empty() || n.size() > 64) return false;
    for (char c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    return true;
}

std::optional<uint64_t> get_u64(const json& j) {
    if (j.is_number_unsigned()) return j.get<uint64_t>();
    if (j.is_number_integer() && j.get<int64_t>() >= 0) return uint64_t(j.get<int64_t>());
    return std::nullopt;
}

// An argument value as TOML: small numbers in decimal, flags and masks in hex.
// TOML integers are signed 64-bit, so values above INT64_MAX are written as a
// "0x..." string, which the parser resolves to the same number.
std::string toml_number(uint64_t v) {
    if (v < 0x1000) return std::to_string(v);
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return v <= uint64_t(INT64_MAX) ? std::string(buf) : toml_quoted(buf);
}

const char* scmp_op(Op op) {
    switch (op) {
        case Op::Eq: return "SCMP_CMP_EQ";
        case Op::Ne: return "SCMP_CMP_NE";
        case Op::Lt: return "SCMP_CMP_LT";
        case Op::Le: return "SCMP_CMP_LE";
        case Op::Gt: return "SCMP_CMP_GT";
        case Op::Ge: return "SCMP_CMP_GE";
        case Op::MaskedEq: return "SCMP_CMP_MASKED_EQ";
    }
    return "?";
}

std::optional<Op> op_from_scmp(std::string_view s) {
    for (Op op : {Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::MaskedEq})
        if (s == scmp_op(op)) return op;
    return std::nullopt;
}

// One OCI action (with its errnoRet) as a Moat action.
struct MappedAction {
    std::optional<Action> action;  // nullopt: cannot be represented (see why)
    bool notify_or_trace = false;  // SCMP_ACT_NOTIFY / SCMP_ACT_TRACE
    std::string why;
};

MappedAction map_action(const json& action, const json* errno_ret) {
    MappedAction m;
    if (!action.is_string()) {
        m.why = "action must be a string like \"SCMP_ACT_ERRNO\"";
        return m;
    }
    const std::string& a = action.get_ref<const std::string&>();
    if (a == "SCMP_ACT_ALLOW") m.action = Action{Kind::Allow};
    // libseccomp's SCMP_ACT_KILL is KILL_THREAD, but Moat handles both kills
    // the same way (the whole job dies), and kill-process says so honestly.
    else if (a == "SCMP_ACT_KILL" || a == "SCMP_ACT_KILL_PROCESS") m.action = Action{Kind::KillProcess};
    else if (a == "SCMP_ACT_KILL_THREAD") m.action = Action{Kind::KillThread};
    else if (a == "SCMP_ACT_TRAP") m.action = Action{Kind::Trap};
    else if (a == "SCMP_ACT_LOG") m.action = Action{Kind::Log};
    else if (a == "SCMP_ACT_NOTIFY" || a == "SCMP_ACT_TRACE") {
        m.notify_or_trace = true;
        m.why = a + " hands the syscall to another process (a notify listener or a tracer), which Moat does not "
                    "support";
    } else if (a == "SCMP_ACT_ERRNO") {
        uint64_t e = EPERM;  // runtime-spec: errnoRet defaults to EPERM
        if (errno_ret && !errno_ret->is_null()) {
            auto v = get_u64(*errno_ret);
            if (!v) {
                m.why = "errnoRet must be a non-negative integer";
                return m;
            }
            e = *v;
        }
        if (e == 0 || e >= 4096) {
            // errnoRet 0 makes the call "succeed" without running; a Moat
            // action cannot fake success.
            m.why = "SCMP_ACT_ERRNO with errnoRet " + std::to_string(e) +
                    " cannot be represented (Moat errno actions take 1 to 4095)";
            return m;
        }
        Action act{Kind::Errno};
        act.errno_value = int(e);
        m.action = act;
    } else {
        m.why = "unknown action \"" + printable(a) + "\"";
    }
    return m;
}

// One (syscall, action, conditions) triple after an OCI entry was filtered and
// split by name.
struct Item {
    std::string syscall;
    Action action;
    std::vector<ArgCondition> args;
    size_t entry = 0;  // index in syscalls[]
};

bool same_args(const std::vector<ArgCondition>& a, const std::vector<ArgCondition>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].index != b[i].index || a[i].op != b[i].op || a[i].value != b[i].value || a[i].mask != b[i].mask)
            return false;
    return true;
}

class Importer final {
public:
    Importer(std::string_view source, std::string name) : m_source(source), m_name(std::move(name)) {}

    OciImportResult run(std::string_view text) {
        if (!valid_name(m_name)) {
            error("policy name \"" + printable(m_name) +
                  "\" is not valid: use 1 to 64 characters from A-Z a-z 0-9 . _ - (--name NAME)");
            return take();
        }
        if (text.size() > kMaxOciProfileBytes) {
            error("profile is " + std::to_string(text.size()) + " bytes; the limit is " +
                  std::to_string(kMaxOciProfileBytes) + " (4 MiB)");
            return take();
        }
        json root;
        try {
            root = json::parse(text.begin(), text.end());
        } catch (const json::parse_error& e) {
            syntax_error(text, e);
            return take();
        }
        const json* prof = &root;
        if (root.is_object() && root.contains("linux") && !root.contains("defaultAction")) {
            // A runtime-spec config.json: the profile is linux.seccomp.
            const json& lx = root["linux"];
            if (!lx.is_object() || !lx.contains("seccomp") || !lx["seccomp"].is_object()) {
                error("this looks like a runtime-spec config.json, but it has no linux.seccomp object");
                return take();
            }
            prof = &lx["seccomp"];
        }
        if (!prof->is_object()) {
            error(std::string("an OCI seccomp profile is a JSON object with defaultAction and syscalls, not ") +
                  prof->type_name());
            return take();
        }
        convert(*prof);
        return take();
    }

private:
    void diag(Diagnostic::Severity s, std::string msg, int line = 0, int col = 0) {
        m_diags.push_back(Diagnostic{m_source, line, col, s, std::move(msg)});
    }
    void error(std::string msg) { diag(Diagnostic::Severity::Error, std::move(msg)); }
    void warning(std::string msg) { diag(Diagnostic::Severity::Warning, std::move(msg)); }

    OciImportResult take() {
        OciImportResult r;
        r.diagnostics = std::move(m_diags);
        if (!has_errors(r.diagnostics)) r.toml = std::move(m_toml);
        return r;
    }

    void syntax_error(std::string_view text, const json::parse_error& e) {
        // nlohmann reports the byte offset (1-based) of the last byte read; turn
        // it into a line and column for editors, and keep the offset too.
        size_t end = std::min<size_t>(e.byte, text.size());
        int line = 1, col = 1;
        for (size_t i = 0; i + 1 < end; ++i) {
            if (text[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        std::string what = e.what();
        // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> the reason.
        if (auto p = what.find(": "); p != std::string::npos) what = what.substr(p + 2);
        diag(Diagnostic::Severity::Error, "invalid JSON at byte " + std::to_string(e.byte) + ": " + what, line, col);
    }

    static std::string entry_label(size_t i, const std::vector<std::string>& names) {
        std::string s = "syscalls[" + std::to_string(i) + "]";
        if (!names.empty()) {
            s += " (" + printable(names.front());
            if (names.size() > 1) s += " and " + std::to_string(names.size() - 1) + " more";
            s += ")";
        }
        return s;
    }

    void convert(const json& p) {
        for (const char* k : {"listenerPath", "listenerMetadata"})
            if (p.contains(k))
                warning(std::string(k) + " ignored: Moat's own supervisor receives the notifications, not an "
                                         "external listener");
        if (auto it = p.find("flags"); it != p.end() && !(it->is_array() && it->empty()) && !it->is_null())
            warning("flags ignored: Moat chooses the seccomp filter flags itself");

        check_architectures(p);

        auto da = p.find("defaultAction");
        if (da == p.end()) {
            error("defaultAction is missing (runtime-spec requires it, e.g. \"SCMP_ACT_ERRNO\")");
            return;
        }
        auto der = p.find("defaultErrnoRet");
        MappedAction dm = map_action(*da, der == p.end() ? nullptr : &*der);
        if (dm.notify_or_trace) {
            warning("defaultAction: " + dm.why + "; using errno:EPERM");
            dm.action = Action{Kind::Errno};
        }
        if (!dm.action) {
            error("defaultAction: " + dm.why);
            return;
        }
        if (dm.action->kind == Kind::Allow) {
            error("defaultAction SCMP_ACT_ALLOW cannot be imported: this profile is a deny-list (everything not "
                  "named is allowed), and Moat refuses allow-all defaults because every syscall the policy does "
                  "not name, including ones added by future kernels, would be allowed; write a Moat policy that "
                  "lists what the job needs in seccomp.allow");
            return;
        }
        m_default = *dm.action;

        if (auto it = p.find("syscalls"); it != p.end() && !it->is_null()) {
            if (!it->is_array()) {
                error(std::string("syscalls must be an array of entries, not ") + it->type_name());
                return;
            }
            for (size_t i = 0; i < it->size(); ++i) read_entry(i, (*it)[i]);
        }
        resolve();
        write();
        self_check();
    }

    void check_architectures(const json& p) {
        std::vector<std::string> arches;
        if (auto it = p.find("architectures"); it != p.end() && it->is_array())
            for (const json& a : *it)
                if (a.is_string()) arches.push_back(a.get<std::string>());
        if (auto it = p.find("archMap"); it != p.end() && it->is_array())
            for (const json& m : *it) {
                if (!m.is_object()) continue;
                if (auto a = m.find("architecture"); a != m.end() && a->is_string()) arches.push_back(a->get<std::string>());
                if (auto s = m.find("subArchitectures"); s != m.end() && s->is_array())
                    for (const json& a : *s)
                        if (a.is_string()) arches.push_back(a.get<std::string>());
            }
        if (arches.empty()) return;
        std::string others;
        bool native = false;
        for (const std::string& a : arches) {
            if (is_x86_64(a)) native = true;
            else others += (others.empty() ? "" : ", ") + printable(a);
        }
        if (!native)
            warning("the profile does not list SCMP_ARCH_X86_64; Moat policies are for x86_64 and the names are "
                    "resolved there");
        if (!others.empty())
            warning("architectures " + others +
                    " dropped: Moat runs x86_64 syscalls only and denies every other ABI (i386 int $0x80, x32)");
    }

    // Whether an includes/excludes condition keeps the entry on x86_64 for a job
    // without capabilities; a warning says why when it does not.
    bool applies(const json& e, const std::string& label) {
        auto caps_of = [](const json& filter) {
            std::vector<std::string> caps;
            if (auto c = filter.find("caps"); c != filter.end() && c->is_array())
                for (const json& x : *c)
                    if (x.is_string()) caps.push_back(printable(x.get<std::string>()));
            return caps;
        };
        auto arches_of = [](const json& filter) {
            std::vector<std::string> v;
            if (auto a = filter.find("arches"); a != filter.end() && a->is_array())
                for (const json& x : *a)
                    if (x.is_string()) v.push_back(x.get<std::string>());
            return v;
        };
        if (auto inc = e.find("includes"); inc != e.end() && inc->is_object()) {
            std::vector<std::string> arches = arches_of(*inc);
            // Entries for other architectures are irrelevant on x86_64: dropped silently.
            if (!arches.empty() && std::none_of(arches.begin(), arches.end(), is_x86_64)) return false;
            std::vector<std::string> caps = caps_of(*inc);
            if (!caps.empty()) {
                std::string list;
                for (const auto& c : caps) list += (list.empty() ? "" : ", ") + c;
                warning(label + " dropped: it applies only to containers with " + list +
                        ", and Moat jobs run without capabilities");
                return false;
            }
        }
        if (auto exc = e.find("excludes"); exc != e.end() && exc->is_object()) {
            std::vector<std::string> arches = arches_of(*exc);
            if (std::any_of(arches.begin(), arches.end(), is_x86_64)) return false;
            // excludes.caps: the entry applies when the container lacks the
            // capability, which a Moat job always does: kept.
            if (auto mk = exc->find("minKernel"); mk != exc->end() && !mk->is_null()) {
                warning(label + " dropped: it applies only to kernels older than " +
                        (mk->is_string() ? printable(mk->get<std::string>()) : std::string("the given version")) +
                        ", and Moat cannot know the kernel the policy will run on");
                return false;
            }
        }
        return true;
    }

    void read_entry(size_t i, const json& e) {
        std::string label = entry_label(i, {});
        if (!e.is_object()) {
            warning(label + " dropped: an entry must be an object with names and action");
            return;
        }
        std::vector<std::string> names;
        bool names_ok = true;
        if (auto n = e.find("names"); n != e.end() && !n->is_null()) {
            if (!n->is_array()) names_ok = false;
            else
                for (const json& x : *n) {
                    if (x.is_string()) names.push_back(x.get<std::string>());
                    else names_ok = false;
                }
        }
        if (auto n = e.find("name"); n != e.end() && !n->is_null()) {  // the older single-name form
            if (n->is_string()) names.push_back(n->get<std::string>());
            else names_ok = false;
        }
        label = entry_label(i, names);
        if (!names_ok || names.empty()) {
            warning(label + " dropped: names must be a non-empty array of syscall names");
            return;
        }
        if (!applies(e, label)) return;

        auto act = e.find("action");
        if (act == e.end()) {
            warning(label + " dropped: it has no action");
            return;
        }
        auto er = e.find("errnoRet");
        MappedAction m = map_action(*act, er == e.end() ? nullptr : &*er);
        if (m.notify_or_trace) {
            warning(label + ": " + m.why + "; these syscalls get the default action " + m_default.str());
            m.action = m_default;
        }
        if (!m.action) {
            warning(label + " dropped: " + m.why);
            return;
        }

        std::vector<ArgCondition> args;
        if (auto a = e.find("args"); a != e.end() && !a->is_null()) {
            if (!a->is_array()) {
                warning(label + " dropped: args must be an array");
                return;
            }
            for (size_t k = 0; k < a->size(); ++k) {
                std::string why;
                auto c = read_arg((*a)[k], &why);
                if (!c) {
                    warning(label + " dropped: args[" + std::to_string(k) + "]: " + why);
                    return;
                }
                args.push_back(*c);
            }
        }

        std::vector<std::string> unknown;
        std::vector<std::string> canonical;
        for (const std::string& n : names) {
            if (auto nr = syscall_nr(n)) canonical.push_back(syscall_name(*nr));
            else unknown.push_back(printable(n));
        }
        if (!unknown.empty()) {
            std::string list;
            const size_t shown = std::min<size_t>(unknown.size(), 12);
            for (size_t k = 0; k < shown; ++k) list += (k ? ", " : "") + unknown[k];
            if (unknown.size() > shown) list += ", ...";
            warning(label + ": " + std::to_string(unknown.size()) + " syscall name" +
                    (unknown.size() == 1 ? " is" : "s are") + " unknown to libseccomp on x86_64 and dropped: " + list);
        }

        // Two conditions on the same argument: runc cannot give them to
        // libseccomp as one rule and adds one rule per condition instead (OR).
        // Mirror that, so the import means what the runtime enforced.
        std::set<unsigned> seen;
        bool repeated = false;
        for (const ArgCondition& c : args) repeated |= !seen.insert(c.index).second;
        std::vector<std::vector<ArgCondition>> alternatives;
        if (repeated) {
            warning(label + ": several conditions on the same argument; as runc does, each becomes its own rule "
                            "(any one of them matching is enough)");
            for (const ArgCondition& c : args) alternatives.push_back({c});
        } else {
            alternatives.push_back(args);
        }
        for (const std::string& s : canonical)
            for (const auto& alt : alternatives) m_items.push_back(Item{s, *m.action, alt, i});
    }

    static std::optional<ArgCondition> read_arg(const json& a, std::string* why) {
        if (!a.is_object()) {
            *why = "a condition must be an object with index, value and op";
            return std::nullopt;
        }
        ArgCondition c;
        auto idx = a.find("index");
        std::optional<uint64_t> i = idx == a.end() ? std::nullopt : get_u64(*idx);
        if (!i || *i > 5) {
            *why = "index must be 0 to 5";
            return std::nullopt;
        }
        c.index = unsigned(*i);
        auto v = a.find("value");
        std::optional<uint64_t> value = v == a.end() ? std::nullopt : get_u64(*v);
        if (!value) {
            *why = "value must be an unsigned 64-bit integer";
            return std::nullopt;
        }
        uint64_t two = 0;
        if (auto v2 = a.find("valueTwo"); v2 != a.end() && !v2->is_null()) {
            auto t = get_u64(*v2);
            if (!t) {
                *why = "valueTwo must be an unsigned 64-bit integer";
                return std::nullopt;
            }
            two = *t;
        }
        auto op = a.find("op");
        std::optional<Op> o = (op != a.end() && op->is_string()) ? op_from_scmp(op->get<std::string>()) : std::nullopt;
        if (!o) {
            *why = "op must be one of SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE, _MASKED_EQ";
            return std::nullopt;
        }
        c.op = *o;
        if (c.op == Op::MaskedEq) {
            // OCI: (arg & value) == valueTwo; Moat: (arg & mask) == value.
            c.mask = *value;
            c.value = two;
        } else {
            c.value = *value;
        }
        return c;
    }

    // Applies Moat's fixed rules and libseccomp's precedence, and removes what
    // the policy could not hold (duplicates, conflicts).
    void resolve() {
        std::vector<Item> items;
        for (Item& it : m_items) {
            const std::string label = "syscalls[" + std::to_string(it.entry) + "]";
            if (it.syscall == "clone3") {
                // Moat answers clone3 with ENOSYS whatever the policy says.
                if (!(it.action.kind == Kind::Errno && it.action.errno_value == ENOSYS) && m_clone3_warned.insert(it.entry).second)
                    warning(label + ": clone3 gets " + it.action.str() +
                            " in the profile; Moat always answers clone3 with ENOSYS (its flags are in memory a "
                            "filter cannot check), and glibc falls back to clone");
                continue;
            }
            if ((it.syscall == "execve" || it.syscall == "execveat") && !it.args.empty()) {
                warning(label + ": " + it.syscall + " has argument conditions, which Moat does not allow (its "
                                "arguments are pointers); the conditional rule is dropped");
                continue;
            }
            if (it.syscall == "clone" && it.action.kind == Kind::Allow && it.args.size() == 1 &&
                it.args[0].index == 0 && it.args[0].op == Op::MaskedEq && it.args[0].value == 0 &&
                (it.args[0].mask & ~kCloneNamespaceFlags) == 0) {
                // "clone without (some) namespace flags": Moat adds its own,
                // stricter condition to every allowed clone, so this is plain allow.
                it.args.clear();
            }
            items.push_back(std::move(it));
        }

        // libseccomp: an unconditional rule for a syscall decides it; conditional
        // rules for the same syscall are shadowed.
        std::map<std::string, const Item*> uncond;
        for (const Item& it : items) {
            if (!it.args.empty()) continue;
            auto [pos, fresh] = uncond.try_emplace(it.syscall, &it);
            if (!fresh && !(pos->second->action == it.action))
                warning("syscalls[" + std::to_string(it.entry) + "]: " + it.syscall + " already gets " +
                        pos->second->action.str() + " from syscalls[" + std::to_string(pos->second->entry) +
                        "]; " + it.action.str() + " dropped");
        }
        for (const Item& it : items) {
            if (it.args.empty()) {
                if (uncond.at(it.syscall) != &it) continue;
                if (it.action.kind == Kind::Allow) m_allow.insert(it.syscall);
                else if (!(it.action == m_default)) m_rules.push_back(it);
                continue;
            }
            if (auto u = uncond.find(it.syscall); u != uncond.end()) {
                if (!(u->second->action == it.action))
                    warning("syscalls[" + std::to_string(it.entry) + "]: conditional rule for " + it.syscall +
                            " dropped: syscalls[" + std::to_string(u->second->entry) + "] gives it " +
                            u->second->action.str() + " unconditionally, which takes precedence");
                continue;
            }
            auto same = std::find_if(m_rules.begin(), m_rules.end(), [&](const Item& o) {
                return o.syscall == it.syscall && same_args(o.args, it.args);
            });
            if (same != m_rules.end()) {
                if (!(same->action == it.action))
                    warning("syscalls[" + std::to_string(it.entry) + "]: rule for " + it.syscall +
                            " repeats the conditions of syscalls[" + std::to_string(same->entry) +
                            "] with a different action; the first (" + same->action.str() + ") is kept");
                continue;
            }
            m_rules.push_back(it);
        }
    }

    void write() {
        std::string& o = m_toml;
        o += "# Imported from the OCI seccomp profile " + printable(m_source, 200) + " (moatctl policy import).\n";
        o += "# Only [seccomp] comes from the profile; limits, filesystem, network and\n";
        o += "# environment are Moat's defaults: review them with moatctl policy check --explain.\n";
        size_t warnings = 0;
        for (const Diagnostic& d : m_diags) warnings += d.severity == Diagnostic::Severity::Warning;
        if (warnings) {
            o += "# Not imported or changed (" + std::to_string(warnings) + "):\n";
            for (const Diagnostic& d : m_diags)
                if (d.severity == Diagnostic::Severity::Warning) o += "#   " + printable(d.message, 400) + "\n";
        }
        o += "\nname = " + toml_quoted(m_name) + "\n";
        o += "description = " + toml_quoted("Imported from OCI seccomp profile " + printable(m_source, 200)) + "\n";
        o += "\n[seccomp]\n";
        o += "default_action = " + toml_quoted(m_default.str()) + "\n";
        o += "allow = [";
        std::string row;
        for (const std::string& n : m_allow) {
            std::string item = toml_quoted(n) + ",";
            if (row.size() + item.size() + 1 > 78) {
                o += "\n " + row;
                row.clear();
            }
            row += " " + item;
        }
        if (!row.empty()) o += "\n " + row + "\n";
        o += "]\n";
        for (const Item& r : m_rules) {
            o += "\n[[seccomp.rule]]\n";
            o += "syscall = " + toml_quoted(r.syscall) + "\n";
            o += "action = " + toml_quoted(r.action.str()) + "\n";
            o += "args = [";
            for (size_t k = 0; k < r.args.size(); ++k) {
                const ArgCondition& c = r.args[k];
                o += k ? ", " : "";
                o += "{ index = " + std::to_string(c.index) + ", op = " + toml_quoted(op_name(c.op)) +
                     ", value = " + toml_number(c.value);
                if (c.op == Op::MaskedEq) o += ", mask = " + toml_number(c.mask);
                o += " }";
            }
            o += "]\n";
        }
    }

    // The output must be a valid policy; if it is not, that is a bug here, and
    // the operator gets an error rather than a file that will not load.
    void self_check() {
        ParseResult r = parse_policy(m_toml, m_source + " (imported)");
        if (r.policy) return;
        for (const Diagnostic& d : r.diagnostics)
            if (d.severity == Diagnostic::Severity::Error)
                error("internal error: the imported policy does not parse: " + d.str());
        if (!has_errors(m_diags)) error("internal error: the imported policy does not parse");
    }

    std::string m_source;
    std::string m_name;
    std::vector<Diagnostic> m_diags;
    Action m_default{Kind::Errno};
    std::vector<Item> m_items;
    std::set<std::string> m_allow;
    std::vector<Item> m_rules;
    std::set<size_t> m_clone3_warned;
    std::string m_toml;
};

ojson scmp_action(const Action& a) {
    switch (a.kind) {
        case Kind::Allow: return "SCMP_ACT_ALLOW";
        // Moat kills the whole job for kill-thread too (see docs/policy.md).
        case Kind::KillProcess:
        case Kind::KillThread: return "SCMP_ACT_KILL_PROCESS";
        case Kind::Trap: return "SCMP_ACT_TRAP";
        case Kind::Log: return "SCMP_ACT_LOG";
        case Kind::Errno: return "SCMP_ACT_ERRNO";
    }
    return "SCMP_ACT_ERRNO";
}

ojson entry(std::vector<std::string> names, const Action& a, const std::vector<ArgCondition>& args) {
    ojson e = {{"names", std::move(names)}, {"action", scmp_action(a)}};
    if (a.kind == Kind::Errno) e["errnoRet"] = a.errno_value;
    if (!args.empty()) {
        ojson arr = ojson::array();
        for (const ArgCondition& c : args) {
            // OCI's MASKED_EQ is (arg & value) == valueTwo.
            const bool masked = c.op == Op::MaskedEq;
            arr.push_back({{"index", c.index},
                           {"value", masked ? c.mask : c.value},
                           {"valueTwo", masked ? c.value : 0},
                           {"op", scmp_op(c.op)}});
        }
        e["args"] = std::move(arr);
    }
    return e;
}

}  // namespace

OciImportResult import_oci(std::string_view json_text, std::string_view source_name, std::string name) {
    // No exception leaves the module; nlohmann's are handled inside, anything
    // else (bad_alloc) becomes an error diagnostic.
    try {
        return Importer(source_name, std::move(name)).run(json_text);
    } catch (const std::exception& e) {
        OciImportResult r;
        r.diagnostics.push_back(Diagnostic{std::string(source_name), 0, 0, Diagnostic::Severity::Error,
                                           std::string("internal error while importing: ") + e.what()});
        return r;
    } catch (...) {
        OciImportResult r;
        r.diagnostics.push_back(
            Diagnostic{std::string(source_name), 0, 0, Diagnostic::Severity::Error, "internal error while importing"});
        return r;
    }
}

OciExportResult export_oci(const Policy& p) {
    OciExportResult out;
    auto warn = [&](std::string msg) {
        out.diagnostics.push_back(Diagnostic{p.source_name, 0, 0, Diagnostic::Severity::Warning, std::move(msg)});
    };
    try {
        const Seccomp& sc = p.seccomp;
        ojson prof;
        prof["defaultAction"] = scmp_action(sc.default_action);
        if (sc.default_action.kind == Kind::Errno) prof["defaultErrnoRet"] = sc.default_action.errno_value;
        prof["architectures"] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
        ojson calls = ojson::array();

        std::vector<std::string> names;
        for (const std::string& n : sc.allowed)
            if (n != "clone" && n != "clone3") names.push_back(n);  // both handled below, as the compiler does
        if (!names.empty()) calls.push_back(entry(names, Action{Kind::Allow}, {}));
        const ArgCondition no_namespaces{.index = 0, .op = Op::MaskedEq, .value = 0, .mask = kCloneNamespaceFlags};
        if (sc.allowed.contains("clone")) calls.push_back(entry({"clone"}, Action{Kind::Allow}, {no_namespaces}));
        Action enosys{Kind::Errno};
        enosys.errno_value = ENOSYS;
        calls.push_back(entry({"clone3"}, enosys, {}));

        std::map<std::string, std::set<std::string>> actions_of;  // for the overlap warning
        for (size_t i = 0; i < sc.rules.size(); ++i) {
            const SeccompRule& r = sc.rules[i];
            const std::string label = "seccomp.rule[" + std::to_string(i) + "] (" + r.syscall + ")";
            if (r.syscall == "clone3") {
                warn(label + " not exported: Moat answers clone3 with ENOSYS whatever the rules say");
                continue;
            }
            std::set<unsigned> seen;
            bool repeated = false;
            for (const ArgCondition& c : r.args) repeated |= !seen.insert(c.index).second;
            if (repeated) {
                // runc turns same-argument conditions into separate rules (OR);
                // Moat requires all of them (AND).
                warn(label + " not exported: it has several conditions on one argument, which OCI runtimes "
                             "treat as alternatives rather than requiring all of them");
                continue;
            }
            std::vector<ArgCondition> args = r.args;
            if (r.syscall == "clone" && r.action.kind == Kind::Allow) {
                // The compiler ANDs "no namespace flags" into every allowing clone
                // rule; fold it into the rule's own arg0 condition if it has one.
                auto a0 = std::find_if(args.begin(), args.end(), [](const ArgCondition& c) { return c.index == 0; });
                if (a0 == args.end()) {
                    args.push_back(no_namespaces);
                } else if (a0->op == Op::MaskedEq && (a0->value & kCloneNamespaceFlags) == 0) {
                    a0->mask |= kCloneNamespaceFlags;
                } else if (a0->op == Op::Eq && (a0->value & kCloneNamespaceFlags) == 0) {
                    // arg0 == value already excludes the namespace flags.
                } else {
                    warn(label + " not exported: its condition on the flags cannot be combined with Moat's "
                                 "\"no namespace flags\" condition in one OCI rule");
                    continue;
                }
            }
            actions_of[r.syscall].insert(r.action.str());
            calls.push_back(entry({r.syscall}, r.action, args));
        }
        for (const auto& [name, acts] : actions_of)
            if (acts.size() > 1)
                warn("rules for " + name + " have different actions; where their conditions overlap Moat takes "
                                           "allow first and then the first matching rule, libseccomp has no such order");
        if (sc.default_action.kind == Kind::KillThread)
            warn("default_action kill-thread exported as SCMP_ACT_KILL_PROCESS: Moat kills the whole job");
        for (const SeccompRule& r : sc.rules)
            if (r.action.kind == Kind::KillThread) {
                warn("kill-thread rules exported as SCMP_ACT_KILL_PROCESS: Moat kills the whole job");
                break;
            }
        prof["syscalls"] = std::move(calls);
        out.json = prof.dump(2) + "\n";
    } catch (const std::exception& e) {
        out.json.clear();
        out.diagnostics.push_back(Diagnostic{p.source_name, 0, 0, Diagnostic::Severity::Error,
                                             std::string("internal error while exporting: ") + e.what()});
    }
    return out;
}

}  // namespace moat::policy
