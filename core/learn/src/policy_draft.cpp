#include "moat/learn/policy_draft.h"

#include <charconv>
#include <sstream>

#include "moat/common/units.h"
#include "moat/policy/parser.h"

namespace moat::learn {

namespace {

// `key = [...]` on one line when it fits in kWidth columns; otherwise one
// item per line would make an 80-name allow list 80 lines long and one line
// would run off the editor, so the items are packed a few to a line under
// the key (a TOML 1.0 multi-line array, trailing comma allowed).
constexpr size_t kWidth = 80;

std::string keyList(const std::string& key, const std::vector<std::string>& v) {
    std::string one = key + " = [";
    for (size_t i = 0; i < v.size(); ++i) one += (i ? ", " : "") + tomlQuote(v[i]);
    one += "]";
    if (one.size() <= kWidth) return one;
    std::string out = key + " = [\n";
    std::string line;
    for (const auto& item : v) {
        const std::string q = tomlQuote(item) + ",";
        if (!line.empty() && 4 + line.size() + 1 + q.size() > kWidth) {
            out += "    " + line + "\n";
            line.clear();
        }
        line += (line.empty() ? "" : " ") + q;
    }
    if (!line.empty()) out += "    " + line + "\n";
    return out + "]";
}

bool isDecimal(const std::string& s) {
    if (s.empty() || s.size() > 18) return false;  // fits a TOML (signed 64-bit) integer
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

bool isHex(const std::string& s) {
    if (s.size() < 3 || s.size() > 17 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
    for (size_t i = 2; i < s.size(); ++i)
        if (!isxdigit(static_cast<unsigned char>(s[i]))) return false;
    return !(s.size() == 17 && s[2] > '7');  // keep it below 2^63
}

// Argument values: TOML integers where they are numbers, strings (symbolic
// constants such as AF_UNIX, or huge values) otherwise; the parser takes both.
std::string argValue(const std::string& v) {
    if (isDecimal(v)) return v;
    if (isHex(v)) return "0x" + v.substr(2);
    return tomlQuote(v);
}

std::string tomlKey(const std::string& k) {
    bool bare = !k.empty();
    for (char c : k) bare &= isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    return bare ? k : tomlQuote(k);
}

std::string hex(uint64_t v) {
    std::ostringstream os;
    os << "0x" << std::hex << v;
    return os.str();
}

}  // namespace

std::string tomlQuote(const std::string& s) { return moat::policy::toml_quote(s); }

PolicyDraft PolicyDraft::fromPolicy(const moat::policy::Policy& p) {
    PolicyDraft d;
    d.name = p.name;
    d.description = p.description;
    d.tier = moat::policy::tier_name(p.tier);
    d.wallTime = format_duration_ns(p.limits.wall_time_ns);
    d.cpuTime = format_duration_ns(p.limits.cpu_time_ns);
    d.memory = format_size(p.limits.memory_bytes);
    d.pids = std::to_string(p.limits.pids);
    d.fileSize = format_size(p.limits.file_size_bytes);
    d.openFiles = std::to_string(p.limits.open_files);
    d.stack = format_size(p.limits.stack_bytes);
    d.core = format_size(p.limits.core_bytes);
    d.readOnly = p.filesystem.read_only;
    d.readWrite = p.filesystem.read_write;
    d.tmpfs = p.filesystem.tmpfs;
    d.readOnlySet = d.readWriteSet = d.tmpfsSet = true;
    d.tmpfsSize = format_size(p.filesystem.tmpfs_size_bytes);
    d.landlock = moat::policy::landlock_mode_name(p.filesystem.landlock);
    d.network = moat::policy::network_mode_name(p.network);
    d.envPass = p.environment.pass;
    d.envPassSet = true;
    for (const auto& [k, v] : p.environment.set) d.envSet.emplace_back(k, v);
    d.envSetSet = true;
    d.defaultAction = p.seccomp.default_action.str();
    d.allow = p.seccomp.allow_entries;
    d.allowSet = true;
    for (const auto& r : p.seccomp.rules) {
        Rule rule;
        rule.syscall = r.syscall;
        rule.action = r.action.str();
        for (const auto& a : r.args) {
            Arg arg;
            arg.index = std::to_string(a.index);
            arg.op = moat::policy::op_name(a.op);
            arg.value = a.value_text.empty() ? std::to_string(a.value) : a.value_text;
            if (a.op == moat::policy::ArgCondition::Op::MaskedEq) arg.mask = hex(a.mask);
            rule.args.push_back(std::move(arg));
        }
        d.rules.push_back(std::move(rule));
    }
    d.sampleInterval = format_duration_ns(p.monitor.sample_interval_ns);
    return d;
}

std::string PolicyDraft::toToml() const {
    std::ostringstream o;
    auto str = [&](const char* key, const std::string& v) {
        if (!v.empty()) o << key << " = " << tomlQuote(v) << "\n";
    };
    // Counts are TOML integers; anything else the operator typed is written as a
    // string so that the parser, not the form, reports what is wrong with it.
    auto count = [&](const char* key, const std::string& v) {
        if (v.empty()) return;
        o << key << " = " << (isDecimal(v) ? v : tomlQuote(v)) << "\n";
    };
    auto list = [&](const char* key, const std::vector<std::string>& v, bool set) {
        if (set || !v.empty()) o << keyList(key, v) << "\n";
    };

    str("name", name);
    str("description", description);
    str("tier", tier);

    o << "\n[limits]\n";
    str("wall_time", wallTime);
    str("cpu_time", cpuTime);
    str("memory", memory);
    count("pids", pids);
    str("file_size", fileSize);
    count("open_files", openFiles);
    str("stack", stack);
    str("core", core);

    o << "\n[filesystem]\n";
    list("read_only", readOnly, readOnlySet);
    list("read_write", readWrite, readWriteSet);
    list("tmpfs", tmpfs, tmpfsSet);
    str("tmpfs_size", tmpfsSize);
    str("landlock", landlock);

    o << "\n[network]\n";
    str("mode", network);

    o << "\n[environment]\n";
    list("pass", envPass, envPassSet);
    if (envSetSet || !envSet.empty()) {
        o << "set = {";
        for (size_t i = 0; i < envSet.size(); ++i)
            o << (i ? ", " : " ") << tomlKey(envSet[i].first) << " = " << tomlQuote(envSet[i].second);
        o << (envSet.empty() ? "}" : " }") << "\n";
    }

    o << "\n[seccomp]\n";
    str("default_action", defaultAction);
    list("allow", allow, allowSet);
    for (const auto& r : rules) {
        o << "\n[[seccomp.rule]]\n";
        str("syscall", r.syscall);
        str("action", r.action);
        if (!r.args.empty()) {
            o << "args = [";
            for (size_t i = 0; i < r.args.size(); ++i) {
                const Arg& a = r.args[i];
                o << (i ? ", " : "") << "{ index = " << (isDecimal(a.index) ? a.index : tomlQuote(a.index));
                if (!a.op.empty()) o << ", op = " << tomlQuote(a.op);
                o << ", value = " << argValue(a.value);
                if (!a.mask.empty()) o << ", mask = " << argValue(a.mask);
                o << " }";
            }
            o << "]\n";
        }
    }

    if (!sampleInterval.empty()) {
        o << "\n[monitor]\n";
        str("sample_interval", sampleInterval);
    }
    return o.str();
}

}  // namespace moat::learn
