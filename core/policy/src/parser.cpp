// Policy parsing and validation: TOML text -> Policy with every field holding
// its effective value. The file is untrusted input (a policy may come from a
// client over IPC), so every value is type- and range-checked, the input size
// is bounded, and no exception leaves this file.
#include <algorithm>
#include <cctype>
#include <limits>
#include <toml++/toml.h>

#include "internal.h"
#include "moat/common/sha256.h"
#include "moat/common/units.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

namespace {

using Severity = Diagnostic::Severity;

// After this many errors the rest are dropped (and "did you mean" is no longer
// computed), so a hostile 1 MiB file cannot make checking slow or noisy.
constexpr int kMaxErrors = 100;

constexpr uint64_t kMs = 1'000'000ULL;
constexpr uint64_t kSec = 1000 * kMs;
constexpr uint64_t kHour = 3600 * kSec;
constexpr uint64_t kKiB = 1ULL << 10;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kTiB = 1ULL << 40;

SourcePos pos_of(const toml::source_region& r) { return {int(r.begin.line), int(r.begin.column)}; }
SourcePos pos_of(const toml::node& n) { return pos_of(n.source()); }

const char* type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        default: return "nothing";
    }
}

std::string quoted(std::string_view s) { return "\"" + detail::toml_escape(s) + "\""; }

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (const std::string& s : v) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

bool valid_policy_name(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

bool valid_env_name(std::string_view s) {
    if (s.empty() || s.size() > 255) return false;
    if (s.front() >= '0' && s.front() <= '9') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

// Absolute, lexically normalised: duplicate slashes and "." removed, trailing
// slash dropped. ".." is rejected rather than resolved: the path is a promise
// about what the job may reach, and a lexical ".." would resolve differently
// from the kernel's once symlinks are involved.
std::optional<std::string> normalise_path(std::string_view s, std::string* why) {
    if (s.empty()) {
        *why = "empty path";
        return std::nullopt;
    }
    if (s.find('\0') != std::string_view::npos) {
        *why = "path contains a NUL byte";
        return std::nullopt;
    }
    // A newline or escape in a path is a trick, never a file anyone means.
    if (std::any_of(s.begin(), s.end(), [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; })) {
        *why = "path contains a control character";
        return std::nullopt;
    }
    if (s.front() != '/') {
        *why = "path " + quoted(s) + " is not absolute (paths are as seen inside the sandbox and start with /)";
        return std::nullopt;
    }
    if (s.size() > 4095) {
        *why = "path is longer than PATH_MAX (4095 bytes)";
        return std::nullopt;
    }
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == '/') ++i;
        size_t j = s.find('/', i);
        if (j == std::string_view::npos) j = s.size();
        std::string_view comp = s.substr(i, j - i);
        i = j;
        if (comp.empty() || comp == ".") continue;
        if (comp == "..") {
            *why = "path " + quoted(s) + " contains \"..\"; write the path it means without it";
            return std::nullopt;
        }
        out += '/';
        out += comp;
    }
    if (out.empty()) out = "/";
    return out;
}

class Parser final {
public:
    Parser(std::string_view text, std::string_view file) : m_text(text), m_file(file) {}

    ParseResult run();

private:
    // --- diagnostics -------------------------------------------------------
    void error(SourcePos at, std::string msg) {
        if (++m_errors > kMaxErrors) return;
        m_diags.push_back(Diagnostic{m_file, at.line, at.column, Severity::Error, std::move(msg)});
    }
    void warning(SourcePos at, std::string msg) {
        m_diags.push_back(Diagnostic{m_file, at.line, at.column, Severity::Warning, std::move(msg)});
    }
    std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates, std::string_view prefix = "") {
        if (m_errors >= kMaxErrors) return "";
        std::string near = closest(word, candidates);
        return near.empty() ? std::string() : " (did you mean \"" + std::string(prefix) + near + "\"?)";
    }
    void record(const std::string& path, SourcePos at) { m_policy.key_pos[path] = at; }

    // --- structure ---------------------------------------------------------
    // Reports keys of `t` that are not in `known` and records where the known
    // ones were written, as "section.key".
    void check_keys(const toml::table& t, std::string_view section, const std::vector<std::string>& known) {
        for (auto&& [k, v] : t) {
            std::string key(k.str());
            SourcePos at = pos_of(k.source());
            if (std::find(known.begin(), known.end(), key) == known.end()) {
                std::string where = section.empty() ? ""
                                    : section.find('[') != std::string_view::npos
                                        ? " in " + std::string(section)
                                        : " in [" + std::string(section) + "]";
                error(at, "unknown key " + quoted(key) + where + did_you_mean(key, known));
                continue;
            }
            record(section.empty() ? key : std::string(section) + "." + key, at);
        }
    }

    const toml::table* section(const toml::table& root, std::string_view name) {
        const toml::node* n = root.get(name);
        if (!n) return nullptr;
        if (!n->is_table()) {
            error(pos_of(*n), "[" + std::string(name) + "] must be a table, not " + type_name(*n));
            return nullptr;
        }
        return n->as_table();
    }

    // --- typed values (absent -> nullopt without a diagnostic) --------------
    std::optional<std::string> get_string(const toml::table& t, std::string_view key, std::string_view path) {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (const auto* s = n->as_string()) return s->get();
        error(pos_of(*n), std::string(path) + " must be a string, not " + type_name(*n));
        return std::nullopt;
    }

    std::optional<uint64_t> get_count(const toml::table& t, std::string_view key, std::string_view path) {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (const auto* i = n->as_integer()) {
            if (i->get() < 0) {
                error(pos_of(*n), std::string(path) + " must not be negative (got " + std::to_string(i->get()) + ")");
                return std::nullopt;
            }
            return uint64_t(i->get());
        }
        std::string hint;
        if (n->is_string()) hint = " (write it without quotes, e.g. " + std::string(key) + " = 64)";
        error(pos_of(*n), std::string(path) + " must be an integer, not " + type_name(*n) + hint);
        return std::nullopt;
    }

    // Sizes and durations are strings with a unit. A bare number is rejected:
    // "memory = 512" could mean bytes or MiB, and guessing wrong makes a limit
    // silently tiny or huge.
    std::optional<uint64_t> get_quantity(const toml::table& t, std::string_view key, std::string_view path,
                                         bool duration) {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        const char* example = duration ? "\"30s\"" : "\"512MiB\"";
        std::string units = duration ? "ms, s, m or h" : "B, KiB, MiB or GiB";
        if (n->is_integer() || n->is_floating_point()) {
            double v = n->is_integer() ? double(n->as_integer()->get()) : n->as_floating_point()->get();
            if (v < 0) {
                error(pos_of(*n), std::string(path) + " must not be negative");
                return std::nullopt;
            }
            error(pos_of(*n), std::string(path) + " has no unit: write it as a string with a unit (" + units +
                                  "), e.g. " + std::string(key) + " = " + example);
            return std::nullopt;
        }
        const auto* s = n->as_string();
        if (!s) {
            error(pos_of(*n), std::string(path) + " must be a string with a unit such as " + example + ", not " +
                                  type_name(*n));
            return std::nullopt;
        }
        Result<uint64_t> r = duration ? parse_duration_ns(s->get()) : parse_size(s->get());
        if (!r) {
            error(pos_of(*n), std::string(path) + ": " + r.error().message);
            return std::nullopt;
        }
        return *r;
    }

    // Range check for a value that was written (defaults are in range by design).
    void check_range(const toml::table& t, std::string_view key, std::string_view path, uint64_t v, uint64_t min,
                     uint64_t max, std::string_view why_min, std::string (*fmt)(uint64_t)) {
        const toml::node* n = t.get(key);
        if (!n) return;
        if (v < min) {
            std::string m = std::string(path) + " = " + fmt(v) + " is too small";
            if (min > 1 || v != 0) m += " (minimum " + fmt(min) + ")";
            error(pos_of(*n), m + ": " + std::string(why_min));
        } else if (v > max) {
            error(pos_of(*n), std::string(path) + " = " + fmt(v) + " is larger than the sanity bound " + fmt(max));
        }
    }

    // --- sections ----------------------------------------------------------
    void parse_top(const toml::table& root);
    void parse_limits(const toml::table& t);
    void parse_filesystem(const toml::table& t);
    std::vector<std::pair<std::string, SourcePos>> get_paths(const toml::table& t, std::string_view key,
                                                             std::string_view path);
    void parse_network(const toml::table& t);
    void parse_environment(const toml::table& t);
    void parse_seccomp(const toml::table& t);
    std::optional<SeccompRule> parse_rule(const toml::node& n, size_t index);
    std::optional<ArgCondition> parse_arg(const toml::node& n, const std::string& path);
    void parse_monitor(const toml::table& t);

    std::string_view m_text;
    std::string m_file;
    std::vector<Diagnostic> m_diags;
    int m_errors = 0;
    Policy m_policy;
};

std::string fmt_size(uint64_t v) { return quoted(format_size(v)); }
std::string fmt_duration(uint64_t v) { return quoted(format_duration_ns(v)); }
std::string fmt_count(uint64_t v) { return std::to_string(v); }

ParseResult Parser::run() {
    ParseResult result;
    if (m_text.size() > kMaxPolicyBytes) {
        error({}, "policy is " + std::to_string(m_text.size()) + " bytes; the limit is " +
                      std::to_string(kMaxPolicyBytes) + " bytes");
        result.diagnostics = std::move(m_diags);
        return result;
    }

    toml::table root;
    try {
        root = toml::parse(m_text, m_file);
    } catch (const toml::parse_error& e) {
        error(pos_of(e.source()), std::string(e.description()));
        result.diagnostics = std::move(m_diags);
        return result;
    }

    Policy& p = m_policy;
    p.source_name = m_file;
    p.source_text = std::string(m_text);
    p.sha256 = moat::sha256_hex(m_text);
    p.limits = default_limits();
    p.filesystem.read_only = {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"};
    p.filesystem.read_write = {};
    p.filesystem.tmpfs = {"/tmp"};
    p.filesystem.tmpfs_size_bytes = 64 * kMiB;
    p.filesystem.landlock = LandlockMode::Required;
    p.network = NetworkMode::None;
    p.environment.pass = {"LANG", "LC_ALL", "TZ"};
    p.environment.set = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}};
    p.seccomp.default_action = Action{Action::Kind::Errno};
    p.seccomp.default_action.errno_value = EPERM;
    p.seccomp.allow_entries = {"@default"};
    p.monitor.sample_interval_ns = kSec;
    p.monitor.max_events = 10000;
    p.monitor.max_event_bytes = 16 * kMiB;

    parse_top(root);
    if (const toml::table* t = section(root, "limits")) parse_limits(*t);
    if (const toml::table* t = section(root, "filesystem")) parse_filesystem(*t);
    if (const toml::table* t = section(root, "network")) parse_network(*t);
    if (const toml::table* t = section(root, "environment")) parse_environment(*t);
    // [seccomp] is parsed even when absent, to expand the default allow list.
    // (Not `sc ? *sc : toml::table{}`: that copies, and toml++ copies drop
    // source positions.)
    static const toml::table kEmpty;
    const toml::table* sc = section(root, "seccomp");
    parse_seccomp(sc ? *sc : kEmpty);
    if (const toml::table* t = section(root, "monitor")) parse_monitor(*t);

    if (m_errors > kMaxErrors)
        m_diags.push_back(Diagnostic{m_file, 0, 0, Severity::Note,
                                     "too many errors; " + std::to_string(m_errors - kMaxErrors) + " more not shown"});
    std::stable_sort(m_diags.begin(), m_diags.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    result.diagnostics = std::move(m_diags);
    if (m_errors == 0) result.policy = std::move(m_policy);
    return result;
}

void Parser::parse_top(const toml::table& root) {
    check_keys(root, "",
               {"name", "description", "tier", "hostname", "limits", "filesystem", "network", "environment", "seccomp",
                "monitor"});
    if (!root.contains("name")) {
        error({1, 1}, "missing required key \"name\" (e.g. name = \"my-job\" at the top of the file)");
    } else if (auto name = get_string(root, "name", "name")) {
        if (!valid_policy_name(*name))
            error(pos_of(*root.get("name")),
                  "name " + quoted(*name) + " is not valid: use 1 to 64 characters from A-Z a-z 0-9 . _ -");
        else
            m_policy.name = *name;
    }
    if (auto d = get_string(root, "description", "description")) m_policy.description = *d;
    if (auto h = get_string(root, "hostname", "hostname")) {
        // An RFC 1123 host name label: what sethostname() and every resolver accept.
        bool ok = !h->empty() && h->size() <= 63 && h->front() != '-' && h->back() != '-';
        for (char c : *h) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-');
        if (!ok)
            error(pos_of(*root.get("hostname")),
                  "hostname " + quoted(*h) + " is not valid: use 1 to 63 characters from A-Z a-z 0-9 and -, "
                  "not starting or ending with -");
        else
            m_policy.hostname = *h;
    }
    if (auto tier = get_string(root, "tier", "tier")) {
        if (auto t = tier_from_name(*tier))
            m_policy.tier = *t;
        else
            error(pos_of(*root.get("tier")), "tier must be \"seccomp\", \"container\" or \"vm\", not " + quoted(*tier) +
                                                 did_you_mean(*tier, {"seccomp", "container", "vm"}));
    }
}

void Parser::parse_limits(const toml::table& t) {
    check_keys(t, "limits",
               {"wall_time", "cpu_time", "memory", "pids", "file_size", "open_files", "stack", "core"});
    Limits& l = m_policy.limits;
    constexpr uint64_t kMaxTime = 720 * kHour;  // 30 days
    constexpr uint64_t kMaxSize = 16 * kTiB;
    if (auto v = get_quantity(t, "wall_time", "limits.wall_time", true)) {
        l.wall_time_ns = *v;
        check_range(t, "wall_time", "limits.wall_time", *v, 1, kMaxTime,
                    "a zero wall-time limit would kill the job before it starts", fmt_duration);
    }
    if (auto v = get_quantity(t, "cpu_time", "limits.cpu_time", true)) {
        l.cpu_time_ns = *v;
        check_range(t, "cpu_time", "limits.cpu_time", *v, 1, kMaxTime,
                    "a zero CPU-time limit would kill the job before it runs an instruction", fmt_duration);
    }
    if (auto v = get_quantity(t, "memory", "limits.memory", false)) {
        l.memory_bytes = *v;
        check_range(t, "memory", "limits.memory", *v, 1 * kMiB, kMaxSize,
                    "below 1MiB not even the dynamic loader fits, the job would be OOM-killed at start", fmt_size);
    }
    if (auto v = get_count(t, "pids", "limits.pids")) {
        l.pids = *v;
        // PID_MAX_LIMIT on 64-bit kernels.
        check_range(t, "pids", "limits.pids", *v, 1, 4194304,
                    "the job's first process counts against the pids limit, so 0 means it can never start",
                    fmt_count);
    }
    if (auto v = get_quantity(t, "file_size", "limits.file_size", false)) {
        l.file_size_bytes = *v;
        check_range(t, "file_size", "limits.file_size", *v, 0, kMaxSize, "", fmt_size);
    }
    if (auto v = get_count(t, "open_files", "limits.open_files")) {
        l.open_files = *v;
        // fs.nr_open default: the kernel refuses a larger RLIMIT_NOFILE anyway.
        check_range(t, "open_files", "limits.open_files", *v, 1, 1048576,
                    "with RLIMIT_NOFILE 0 the job cannot open anything, not even its shared libraries", fmt_count);
    }
    if (auto v = get_quantity(t, "stack", "limits.stack", false)) {
        l.stack_bytes = *v;
        check_range(t, "stack", "limits.stack", *v, 64 * kKiB, 4096 * kMiB,
                    "the kernel needs room for arguments and environment, and the program for its first frames",
                    fmt_size);
    }
    if (auto v = get_quantity(t, "core", "limits.core", false)) {
        l.core_bytes = *v;
        check_range(t, "core", "limits.core", *v, 0, kMaxSize, "", fmt_size);
    }
}

std::vector<std::pair<std::string, SourcePos>> Parser::get_paths(const toml::table& t, std::string_view key,
                                                                 std::string_view path) {
    std::vector<std::pair<std::string, SourcePos>> out;
    const toml::node* n = t.get(key);
    if (!n) return out;
    const toml::array* a = n->as_array();
    if (!a) {
        error(pos_of(*n), std::string(path) + " must be an array of absolute paths, not " + type_name(*n));
        return out;
    }
    for (const toml::node& e : *a) {
        const auto* s = e.as_string();
        if (!s) {
            error(pos_of(e), std::string(path) + " entries must be strings, not " + type_name(e));
            continue;
        }
        std::string why;
        std::optional<std::string> norm = normalise_path(s->get(), &why);
        if (!norm) {
            error(pos_of(e), std::string(path) + ": " + why);
            continue;
        }
        auto dup = std::find_if(out.begin(), out.end(), [&](const auto& x) { return x.first == *norm; });
        if (dup != out.end()) {
            warning(pos_of(e), quoted(*norm) + " is listed twice in " + std::string(path));
            continue;
        }
        // Each entry's position, for lint findings about one entry.
        record(std::string(path) + "[" + std::to_string(out.size()) + "]", pos_of(e));
        out.emplace_back(std::move(*norm), pos_of(e));
    }
    return out;
}

void Parser::parse_filesystem(const toml::table& t) {
    check_keys(t, "filesystem", {"read_only", "read_write", "tmpfs", "tmpfs_size", "landlock"});
    Filesystem& fs = m_policy.filesystem;
    auto names = [](const std::vector<std::pair<std::string, SourcePos>>& v) {
        std::vector<std::string> out;
        for (const auto& [s, _] : v) out.push_back(s);
        return out;
    };
    auto ro = get_paths(t, "read_only", "filesystem.read_only");
    auto rw = get_paths(t, "read_write", "filesystem.read_write");
    auto tmp = get_paths(t, "tmpfs", "filesystem.tmpfs");
    if (t.contains("read_only")) fs.read_only = names(ro);
    if (t.contains("read_write")) fs.read_write = names(rw);
    if (t.contains("tmpfs")) fs.tmpfs = names(tmp);
    // Both read-only and read-write: which one wins would depend on mount order,
    // so the file must say what it means.
    for (const auto& [path, at] : rw)
        if (std::find(fs.read_only.begin(), fs.read_only.end(), path) != fs.read_only.end())
            error(at, quoted(path) + " is in both filesystem.read_only and filesystem.read_write; keep one");
    // One mount per path. An explicit bind at a path replaces the default
    // tmpfs there (read_write = ["/tmp"] means "the host's /tmp", not a second
    // mount on top of a fresh tmpfs); a tmpfs the file names itself at a bound
    // path is a conflict the file must resolve.
    auto bound = [&](const std::string& path) {
        return std::find(fs.read_only.begin(), fs.read_only.end(), path) != fs.read_only.end() ||
               std::find(fs.read_write.begin(), fs.read_write.end(), path) != fs.read_write.end();
    };
    if (!t.contains("tmpfs")) {
        std::erase_if(fs.tmpfs, bound);
    } else {
        for (const auto& [path, at] : tmp)
            if (bound(path))
                error(at, quoted(path) + " is in filesystem.tmpfs and also bound from the host (read_only or "
                              "read_write); a path gets one mount, keep one");
    }

    if (auto v = get_quantity(t, "tmpfs_size", "filesystem.tmpfs_size", false)) {
        fs.tmpfs_size_bytes = *v;
        // tmpfs treats size=0 as "no limit": never let 0 mean unlimited by accident.
        check_range(t, "tmpfs_size", "filesystem.tmpfs_size", *v, 4 * kKiB, 16 * kTiB,
                    "the kernel treats a tmpfs size of 0 as unlimited, and less than a page is useless", fmt_size);
    }
    if (auto v = get_string(t, "landlock", "filesystem.landlock")) {
        if (*v == "required") fs.landlock = LandlockMode::Required;
        else if (*v == "best-effort") fs.landlock = LandlockMode::BestEffort;
        else if (*v == "off") fs.landlock = LandlockMode::Off;
        else
            error(pos_of(*t.get("landlock")), "filesystem.landlock must be \"required\", \"best-effort\" or \"off\", not " +
                                                  quoted(*v) + did_you_mean(*v, {"required", "best-effort", "off"}));
    }
}

void Parser::parse_network(const toml::table& t) {
    check_keys(t, "network", {"mode"});
    if (auto v = get_string(t, "mode", "network.mode")) {
        if (*v == "none") m_policy.network = NetworkMode::None;
        else if (*v == "loopback") m_policy.network = NetworkMode::Loopback;
        else if (*v == "host") m_policy.network = NetworkMode::Host;
        else if (*v == "engine") m_policy.network = NetworkMode::Engine;
        else
            error(pos_of(*t.get("mode")),
                  "network.mode must be \"none\", \"loopback\", \"host\" or \"engine\", not " + quoted(*v) +
                      did_you_mean(*v, {"none", "loopback", "host", "engine"}));
    }
}

void Parser::parse_environment(const toml::table& t) {
    check_keys(t, "environment", {"pass", "set"});
    Environment& env = m_policy.environment;
    if (const toml::node* n = t.get("pass")) {
        env.pass.clear();
        if (const toml::array* a = n->as_array()) {
            for (const toml::node& e : *a) {
                const auto* s = e.as_string();
                if (!s) {
                    error(pos_of(e), "environment.pass entries must be strings, not " + std::string(type_name(e)));
                } else if (!valid_env_name(s->get())) {
                    error(pos_of(e), "environment.pass: " + quoted(s->get()) +
                                         " is not a variable name (letters, digits and _, not starting with a digit)");
                } else if (std::find(env.pass.begin(), env.pass.end(), s->get()) != env.pass.end()) {
                    warning(pos_of(e), quoted(s->get()) + " is listed twice in environment.pass");
                } else {
                    env.pass.push_back(s->get());
                }
            }
        } else {
            error(pos_of(*n), "environment.pass must be an array of variable names, not " + std::string(type_name(*n)));
        }
    }
    if (const toml::node* n = t.get("set")) {
        env.set.clear();
        if (const toml::table* st = n->as_table()) {
            for (auto&& [k, v] : *st) {
                std::string key(k.str());
                if (!valid_env_name(key)) {
                    error(pos_of(k.source()), "environment.set: " + quoted(key) +
                                                  " is not a variable name (letters, digits and _, not starting with a digit)");
                    continue;
                }
                const auto* s = v.as_string();
                if (!s) {
                    error(pos_of(v), "environment.set." + key + " must be a string, not " + type_name(v));
                    continue;
                }
                if (s->get().find('\0') != std::string::npos) {
                    error(pos_of(v), "environment.set." + key + " contains a NUL byte");
                    continue;
                }
                env.set[key] = s->get();
            }
        } else {
            error(pos_of(*n), "environment.set must be a table of NAME = \"value\", not " + std::string(type_name(*n)));
        }
    }
}

void Parser::parse_seccomp(const toml::table& t) {
    check_keys(t, "seccomp", {"default_action", "allow", "rule"});
    Seccomp& sc = m_policy.seccomp;

    if (auto v = get_string(t, "default_action", "seccomp.default_action")) {
        std::string why;
        std::optional<Action> a = parse_action(*v, &why);
        SourcePos at = pos_of(*t.get("default_action"));
        if (!a) {
            error(at, "seccomp.default_action: " + why);
        } else if (a->kind == Action::Kind::Allow) {
            error(at, "seccomp.default_action cannot be \"allow\": every syscall the policy does not name would be "
                      "allowed, making the filter an allow-all; list what the job needs in seccomp.allow and keep a "
                      "denying default such as \"errno:EPERM\"");
        } else {
            sc.default_action = *a;
        }
    }

    std::vector<std::string> group_names;
    for (const auto& [name, _] : syscall_groups()) group_names.push_back(name);
    std::map<std::string, std::vector<std::string>> expansions;  // one expansion per group

    auto add_entry = [&](std::string_view entry) {
        if (entry.starts_with('@')) {
            auto [it, fresh] = expansions.try_emplace(std::string(entry));
            if (fresh) it->second = expand_group(entry);
            for (const std::string& m : it->second)
                if (auto nr = syscall_nr(m)) sc.allowed.insert(syscall_name(*nr));
        } else if (auto nr = syscall_nr(entry)) {
            sc.allowed.insert(syscall_name(*nr));
        }
    };

    if (const toml::node* n = t.get("allow")) {
        sc.allow_entries.clear();
        if (const toml::array* a = n->as_array()) {
            size_t i = 0;
            for (const toml::node& e : *a) {
                const auto* s = e.as_string();
                if (!s) {
                    error(pos_of(e), "seccomp.allow entries must be strings (syscall names or @groups), not " +
                                         std::string(type_name(e)));
                    continue;
                }
                const std::string& name = s->get();
                if (name.starts_with('@')) {
                    if (!syscall_groups().contains(name)) {
                        error(pos_of(e), "unknown syscall group " + quoted(name) + did_you_mean(name, group_names) +
                                             "; groups: " + join(group_names, ", "));
                        continue;
                    }
                } else if (!syscall_nr(name)) {
                    error(pos_of(e), "unknown syscall " + quoted(name) + did_you_mean(name, all_syscalls()));
                    continue;
                }
                record("seccomp.allow[" + std::to_string(i++) + "]", pos_of(e));
                sc.allow_entries.push_back(name);
            }
        } else {
            error(pos_of(*n), "seccomp.allow must be an array of syscall names and @groups, not " +
                                  std::string(type_name(*n)));
        }
    }
    for (const std::string& e : sc.allow_entries) add_entry(e);

    if (const toml::node* n = t.get("rule")) {
        if (const toml::array* a = n->as_array()) {
            size_t i = 0;
            for (const toml::node& e : *a) {
                std::optional<SeccompRule> r = parse_rule(e, i++);
                if (!r) continue;
                // Same syscall and same conditions twice: with different actions
                // the filter could not honour both, so the file must choose.
                auto same = std::find_if(sc.rules.begin(), sc.rules.end(), [&](const SeccompRule& o) {
                    return o.syscall == r->syscall && o.args == r->args;
                });
                if (same != sc.rules.end()) {
                    std::string where = " (first at line " + std::to_string(same->pos.line) + ")";
                    if (same->action == r->action) {
                        warning(r->pos, "duplicate rule for " + r->syscall + where);
                        continue;
                    }
                    error(r->pos, "rule for " + r->syscall + " repeats the conditions of an earlier rule with a different action" +
                                      where + "; keep one");
                    continue;
                }
                sc.rules.push_back(std::move(*r));
            }
        } else {
            error(pos_of(*n), "seccomp.rule must be an array of tables ([[seccomp.rule]]), not " +
                                  std::string(type_name(*n)));
        }
    }
    // A syscall with rules is decided by its rules, not by the allow list: this
    // is how a group is allowed and one of its members narrowed by arguments.
    for (const SeccompRule& r : sc.rules) sc.allowed.erase(r.syscall);
}

std::optional<SeccompRule> Parser::parse_rule(const toml::node& n, size_t index) {
    const std::string path = "seccomp.rule[" + std::to_string(index) + "]";
    const toml::table* t = n.as_table();
    if (!t) {
        error(pos_of(n), "each seccomp.rule must be a table with syscall, action and args, not " +
                             std::string(type_name(n)));
        return std::nullopt;
    }
    SeccompRule rule;
    rule.pos = pos_of(n);
    const int errors_before = m_errors;
    check_keys(*t, path, {"syscall", "action", "args"});

    const toml::node* sn = t->get("syscall");
    if (!sn) {
        error(rule.pos, path + " has no syscall key (e.g. syscall = \"socket\")");
    } else if (auto name = get_string(*t, "syscall", path + ".syscall")) {
        if (name->starts_with('@')) {
            error(pos_of(*sn), path + ".syscall names one syscall, not a group (" + quoted(*name) + ")");
        } else if (auto nr = syscall_nr(*name)) {
            rule.nr = *nr;
            rule.syscall = syscall_name(*nr);
        } else {
            error(pos_of(*sn), "unknown syscall " + quoted(*name) + did_you_mean(*name, all_syscalls()));
        }
    }
    if (rule.pos.line == 0 && sn) rule.pos = pos_of(*sn);

    if (auto v = get_string(*t, "action", path + ".action")) {
        std::string why;
        if (auto a = parse_action(*v, &why)) rule.action = *a;
        else error(pos_of(*t->get("action")), path + ".action: " + why);
    }

    if (const toml::node* an = t->get("args")) {
        if (const toml::array* a = an->as_array()) {
            if (a->size() > 6)
                error(pos_of(*an), path + ".args has " + std::to_string(a->size()) +
                                       " conditions; a syscall has at most 6 arguments to compare");
            for (const toml::node& e : *a)
                if (auto c = parse_arg(e, path + ".args")) rule.args.push_back(std::move(*c));
        } else {
            error(pos_of(*an), path + ".args must be an array of inline tables like { index = 0, op = \"eq\", value = 1 }, not " +
                                   std::string(type_name(*an)));
        }
        // execve's arguments are pointers into the job's memory. A BPF filter only
        // sees the pointer values, and a supervisor that reads the strings races
        // with the job's other threads rewriting them after the check.
        const toml::array* arr = an->as_array();
        if (arr && !arr->empty() && (rule.syscall == "execve" || rule.syscall == "execveat"))
            error(pos_of(*an), rule.syscall + " cannot have argument rules: its arguments are pointers, and the "
                                              "supervisor cannot check pointed-to memory race-free; allow or deny it whole");
    }
    if (m_errors != errors_before) return std::nullopt;
    return rule;
}

std::optional<ArgCondition> Parser::parse_arg(const toml::node& n, const std::string& path) {
    const toml::table* t = n.as_table();
    if (!t) {
        error(pos_of(n), path + " entries must be inline tables like { index = 0, op = \"eq\", value = 1 }, not " +
                             std::string(type_name(n)));
        return std::nullopt;
    }
    const int errors_before = m_errors;
    ArgCondition c;
    for (auto&& [k, v] : *t) {
        static const std::vector<std::string> kKeys = {"index", "op", "value", "mask"};
        std::string key(k.str());
        if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end())
            error(pos_of(k.source()), "unknown key " + quoted(key) + " in " + path + did_you_mean(key, kKeys));
    }
    if (!t->contains("index")) {
        error(pos_of(n), path + ": condition has no index (the argument number, 0 to 5)");
    } else if (auto i = get_count(*t, "index", path + ".index")) {
        if (*i > 5) error(pos_of(*t->get("index")), path + ".index must be 0 to 5 (got " + std::to_string(*i) + ")");
        else c.index = unsigned(*i);
    }
    if (auto op = get_string(*t, "op", path + ".op")) {
        static const std::vector<std::string> kOps = {"eq", "ne", "lt", "le", "gt", "ge", "masked_eq"};
        auto it = std::find(kOps.begin(), kOps.end(), *op);
        if (it == kOps.end())
            error(pos_of(*t->get("op")), path + ".op must be one of " + join(kOps, ", ") + ", not " + quoted(*op) +
                                             did_you_mean(*op, kOps));
        else
            c.op = ArgCondition::Op(it - kOps.begin());
    }
    // value and mask: an integer, or a string holding a number or symbolic
    // constants ("AF_UNIX", "O_WRONLY|O_CREAT").
    auto number = [&](const toml::node& v, std::string_view what, std::string* text) -> std::optional<uint64_t> {
        if (const auto* i = v.as_integer()) {
            // Negative numbers are compared as the 64-bit two's complement the
            // kernel sees in the register.
            if (text) *text = std::to_string(i->get());
            return uint64_t(i->get());
        }
        if (const auto* s = v.as_string()) {
            std::string why;
            auto r = detail::resolve_arg_value(s->get(), &why);
            if (!r) {
                error(pos_of(v), path + "." + std::string(what) + ": " + why);
                return std::nullopt;
            }
            if (text) *text = s->get();
            return r;
        }
        error(pos_of(v), path + "." + std::string(what) + " must be an integer or a string naming a constant, not " +
                             type_name(v));
        return std::nullopt;
    };
    if (const toml::node* v = t->get("value")) {
        if (auto r = number(*v, "value", &c.value_text)) c.value = *r;
    } else {
        error(pos_of(n), path + ": condition has no value");
    }
    if (const toml::node* m = t->get("mask")) {
        if (c.op != ArgCondition::Op::MaskedEq)
            error(pos_of(*m), path + ".mask is only meaningful with op = \"masked_eq\"");
        else if (auto r = number(*m, "mask", nullptr))
            c.mask = *r;
    } else if (c.op == ArgCondition::Op::MaskedEq) {
        error(pos_of(n), path + ": op = \"masked_eq\" needs a mask (the condition is (arg & mask) == value)");
    }
    if (m_errors != errors_before) return std::nullopt;
    return c;
}

void Parser::parse_monitor(const toml::table& t) {
    check_keys(t, "monitor", {"sample_interval", "max_events", "max_event_bytes"});
    if (auto v = get_quantity(t, "sample_interval", "monitor.sample_interval", true)) {
        m_policy.monitor.sample_interval_ns = *v;
        check_range(t, "sample_interval", "monitor.sample_interval", *v, 50 * kMs, kHour,
                    "sampling more often than every 50ms costs more than it tells", fmt_duration);
    }
    if (auto v = get_count(t, "max_events", "monitor.max_events")) {
        m_policy.monitor.max_events = *v;
        check_range(t, "max_events", "monitor.max_events", *v, 100, 10'000'000,
                    "fewer rows would hide the first denials an operator needs to see", fmt_count);
    }
    if (auto v = get_quantity(t, "max_event_bytes", "monitor.max_event_bytes", false)) {
        m_policy.monitor.max_event_bytes = *v;
        check_range(t, "max_event_bytes", "monitor.max_event_bytes", *v, 64 * kKiB, 4096 * kMiB,
                    "less would not hold the first denials an operator needs to see", fmt_size);
    }
}

}  // namespace

ParseResult parse_policy(std::string_view text, std::string_view source_name) {
    // Nothing may throw past this point (module boundary): toml++ parse errors
    // are handled inside; anything else (e.g. bad_alloc) becomes a diagnostic.
    try {
        return Parser(text, source_name).run();
    } catch (const std::exception& e) {
        ParseResult r;
        r.diagnostics.push_back(Diagnostic{std::string(source_name), 0, 0, Diagnostic::Severity::Error,
                                           std::string("internal error while checking the policy: ") + e.what()});
        return r;
    } catch (...) {
        ParseResult r;
        r.diagnostics.push_back(Diagnostic{std::string(source_name), 0, 0, Diagnostic::Severity::Error,
                                           "internal error while checking the policy"});
        return r;
    }
}

}  // namespace moat::policy
