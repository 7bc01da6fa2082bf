#include "moat/policy/policy.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "internal.h"
#include "moat/policy/parser.h"
#include "moat/common/error.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

const char* tier_name(Tier t) {
    switch (t) {
        case Tier::Seccomp: return "seccomp";
        case Tier::Container: return "container";
        case Tier::Vm: return "vm";
    }
    return "?";
}

std::optional<Tier> tier_from_name(std::string_view s) {
    if (s == "seccomp") return Tier::Seccomp;
    if (s == "container") return Tier::Container;
    if (s == "vm") return Tier::Vm;
    return std::nullopt;
}

std::string Action::str() const {
    switch (kind) {
        case Kind::Allow: return "allow";
        case Kind::KillProcess: return "kill-process";
        case Kind::KillThread: return "kill-thread";
        case Kind::Trap: return "trap";
        case Kind::Log: return "log";
        case Kind::Errno: {
            const char* n = moat::errno_name(errno_value);
            return std::string("errno:") + (*n ? std::string(n) : std::to_string(errno_value));
        }
    }
    return "?";
}

std::optional<Action> parse_action(std::string_view s, std::string* why) {
    auto fail = [&](std::string m) -> std::optional<Action> {
        if (why) *why = std::move(m);
        return std::nullopt;
    };
    if (s == "allow") return Action{Action::Kind::Allow};
    if (s == "kill-process") return Action{Action::Kind::KillProcess};
    if (s == "kill-thread") return Action{Action::Kind::KillThread};
    if (s == "trap") return Action{Action::Kind::Trap};
    if (s == "log") return Action{Action::Kind::Log};
    if (s.starts_with("errno:")) {
        std::string_view name = s.substr(6);
        if (name.empty()) return fail("\"errno:\" needs an errno name, e.g. \"errno:EPERM\"");
        int e = moat::errno_from_name(name);
        if (e < 0 && name.front() >= '0' && name.front() <= '9') {
            // Numeric form, as Action::str() writes for numbers glibc has no name for.
            int v = 0;
            auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), v);
            if (ec == std::errc() && p == name.data() + name.size() && v > 0 && v < 4096) e = v;
        }
        if (e <= 0) {
            std::string m = "unknown errno name \"" + std::string(name) + "\"";
            std::string near = closest(name, detail::errno_names());
            if (!near.empty()) m += " (did you mean \"errno:" + near + "\"?)";
            return fail(std::move(m));
        }
        Action a{Action::Kind::Errno};
        a.errno_value = e;
        return a;
    }
    std::string m = "unknown action \"" + std::string(s) +
                    "\" (expected allow, kill-process, kill-thread, errno:NAME, trap or log)";
    static const std::vector<std::string> kActions = {"allow", "kill-process", "kill-thread", "trap", "log"};
    std::string near = closest(s, kActions);
    if (!near.empty()) m = "unknown action \"" + std::string(s) + "\" (did you mean \"" + near + "\"?)";
    return fail(std::move(m));
}

const char* op_name(ArgCondition::Op op) {
    switch (op) {
        case ArgCondition::Op::Eq: return "eq";
        case ArgCondition::Op::Ne: return "ne";
        case ArgCondition::Op::Lt: return "lt";
        case ArgCondition::Op::Le: return "le";
        case ArgCondition::Op::Gt: return "gt";
        case ArgCondition::Op::Ge: return "ge";
        case ArgCondition::Op::MaskedEq: return "masked_eq";
    }
    return "?";
}

Limits default_limits() {
    constexpr uint64_t kSec = 1'000'000'000ULL;
    constexpr uint64_t kMiB = 1ULL << 20;
    return Limits{
        .wall_time_ns = 60 * kSec,
        .cpu_time_ns = 30 * kSec,
        .memory_bytes = 512 * kMiB,
        .pids = 128,
        .file_size_bytes = 1024 * kMiB,
        .open_files = 1024,
        .stack_bytes = 8 * kMiB,
        .core_bytes = 0,
    };
}

const char* landlock_mode_name(LandlockMode m) {
    switch (m) {
        case LandlockMode::Required: return "required";
        case LandlockMode::BestEffort: return "best-effort";
        case LandlockMode::Off: return "off";
    }
    return "?";
}

const char* network_mode_name(NetworkMode m) {
    switch (m) {
        case NetworkMode::None: return "none";
        case NetworkMode::Loopback: return "loopback";
        case NetworkMode::Host: return "host";
        case NetworkMode::Engine: return "engine";
    }
    return "?";
}

namespace detail {

const std::vector<std::string>& errno_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (int e = 1; e < 4096; ++e)
            if (const char* n = strerrorname_np(e)) v.emplace_back(n);
        return v;
    }();
    return names;
}

std::string toml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04X", c);
                    out += buf;
                } else {
                    out += char(c);  // UTF-8 passes through; toml++ validated it
                }
        }
    }
    return out;
}


}  // namespace detail

std::string toml_quote(std::string_view s) { return "\"" + detail::toml_escape(s) + "\""; }

namespace {

// Lexical form for comparison only: "//" and "." components collapsed, no
// trailing "/". ".." is left as a component (the parser rejects it).
std::string lexical(std::string_view p) {
    std::string out;
    size_t i = 0;
    while (i < p.size()) {
        while (i < p.size() && p[i] == '/') ++i;
        size_t j = p.find('/', i);
        if (j == std::string_view::npos) j = p.size();
        std::string_view comp = p.substr(i, j - i);
        i = j;
        if (comp.empty() || comp == ".") continue;
        out += '/';
        out += comp;
    }
    return out.empty() ? "/" : out;
}

// `path` is `dir` or below it, component-wise ("/srv/database" is not below "/srv/data").
bool within(const std::string& path, const std::string& dir) {
    if (dir == "/") return true;
    return path.starts_with(dir) && (path.size() == dir.size() || path[dir.size()] == '/');
}

}  // namespace

std::vector<NestedReadOnly> read_only_inside_read_write(const std::vector<std::string>& read_only,
                                                        const std::vector<std::string>& read_write) {
    std::vector<NestedReadOnly> out;
    std::vector<std::string> rw;
    for (const auto& w : read_write) rw.push_back(lexical(w));
    for (size_t i = 0; i < read_only.size(); ++i) {
        const std::string ro = lexical(read_only[i]);
        for (size_t k = 0; k < rw.size(); ++k)
            if (within(ro, rw[k])) {
                out.push_back({i, k, read_only[i], read_write[k]});
                break;  // one reason per read_only entry is enough
            }
    }
    return out;
}

std::string nested_read_only_message(const NestedReadOnly& n) {
    return "\"" + detail::toml_escape(n.read_only) + "\" in filesystem.read_only is inside \"" +
           detail::toml_escape(n.read_write) +
           "\" in filesystem.read_write: Landlock, the seccomp tier's file confinement, grants the union of the "
           "rules along a path, so the job could write it. Move it out of the read_write path (or narrow read_write "
           "to the directories that must be writable), or use tier = \"container\", whose bind mounts keep it "
           "read-only";
}

}  // namespace moat::policy
