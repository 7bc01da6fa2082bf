// explain(): the effective policy as TOML. Every key is written out; values
// the file did not set are marked "# default". The output parses back to a
// policy with the same effective values (tested).
#include <climits>

#include "internal.h"
#include "moat/common/units.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

namespace {

std::string q(std::string_view s) { return "\"" + detail::toml_escape(s) + "\""; }

std::string str_array(const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + q(v[i]);
    return out + "]";
}

bool is_decimal_integer(std::string_view s) {
    if (s.starts_with('-')) s.remove_prefix(1);
    if (s.empty() || s.size() > 19) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

class Writer final {
public:
    explicit Writer(const Policy& p) : m_p(p) {}

    void key(std::string_view section, std::string_view key, const std::string& value, std::string comment = "") {
        std::string path = section.empty() ? std::string(key) : std::string(section) + "." + std::string(key);
        bool written = m_p.key_pos.contains(path);
        m_out += std::string(key) + " = " + value;
        if (!written) comment = comment.empty() ? "default" : "default; " + comment;
        if (!comment.empty()) m_out += "  # " + comment;
        m_out += "\n";
    }
    void line(const std::string& s) { m_out += s + "\n"; }
    std::string take() { return std::move(m_out); }

private:
    const Policy& m_p;
    std::string m_out;
};

}  // namespace

std::string explain(const Policy& p) {
    Writer w(p);
    w.line("# Effective policy: every key with the value Moat enforces.");
    w.line("# Source: " + p.source_name + (p.sha256.empty() ? "" : " (sha256 " + p.sha256 + ")"));
    w.line("# Keys with a \"default\" comment were not written in the source.");
    w.line("");
    w.key("", "name", q(p.name));
    w.key("", "description", q(p.description));
    w.key("", "tier", q(tier_name(p.tier)));
    if (!p.hostname.empty()) w.key("", "hostname", q(p.hostname));
    else w.line("# hostname: not set; container and vm jobs are named job-<id>");

    const Limits& l = p.limits;
    w.line("");
    w.line("[limits]");
    w.key("limits", "wall_time", q(format_duration_ns(l.wall_time_ns)), "whole job, enforced by the supervisor");
    w.key("limits", "cpu_time", q(format_duration_ns(l.cpu_time_ns)), "CPU time of the whole job (cgroup)");
    w.key("limits", "memory", q(format_size(l.memory_bytes)), "cgroup memory limit");
    w.key("limits", "pids", std::to_string(l.pids), "processes and threads (cgroup)");
    w.key("limits", "file_size", q(format_size(l.file_size_bytes)), "RLIMIT_FSIZE");
    w.key("limits", "open_files", std::to_string(l.open_files), "RLIMIT_NOFILE");
    w.key("limits", "stack", q(format_size(l.stack_bytes)), "RLIMIT_STACK");
    w.key("limits", "core", q(format_size(l.core_bytes)), "RLIMIT_CORE");

    const Filesystem& fs = p.filesystem;
    w.line("");
    w.line("[filesystem]");
    w.key("filesystem", "read_only", str_array(fs.read_only));
    w.key("filesystem", "read_write", str_array(fs.read_write));
    w.key("filesystem", "tmpfs", str_array(fs.tmpfs));
    w.key("filesystem", "tmpfs_size", q(format_size(fs.tmpfs_size_bytes)), "per tmpfs mount");
    w.key("filesystem", "landlock", q(landlock_mode_name(fs.landlock)));

    w.line("");
    w.line("[network]");
    w.key("network", "mode", q(network_mode_name(p.network)));

    w.line("");
    w.line("[environment]");
    w.key("environment", "pass", str_array(p.environment.pass));
    std::string set = "{";
    for (const auto& [k, v] : p.environment.set) set += (set.size() > 1 ? ", " : " ") + k + " = " + q(v);
    set += set.size() > 1 ? " }" : "}";
    w.key("environment", "set", set);

    const Seccomp& sc = p.seccomp;
    w.line("");
    w.line("[seccomp]");
    w.key("seccomp", "default_action", q(sc.default_action.str()));
    w.key("seccomp", "allow", str_array(sc.allow_entries),
          "expands to " + std::to_string(sc.allowed.size()) + " syscalls allowed without conditions");
    // The expansion, so an operator sees exactly what the groups mean.
    std::string row = "#";
    for (const std::string& name : sc.allowed) {
        if (row.size() + name.size() + 1 > 80) {
            w.line(row);
            row = "#";
        }
        row += " " + name;
    }
    if (row.size() > 1) w.line(row);
    if (sc.allowed.contains("clone3"))
        w.line("# clone3 is listed but never runs, by design: it is answered with ENOSYS (its flags are in\n"
               "# memory, where the filter cannot check them); glibc falls back to clone, which the filter\n"
               "# allows only without namespace flags.");

    for (size_t i = 0; i < sc.rules.size(); ++i) {
        const SeccompRule& r = sc.rules[i];
        const std::string sect = "seccomp.rule[" + std::to_string(i) + "]";
        w.line("");
        w.line("[[seccomp.rule]]");
        w.key(sect, "syscall", q(r.syscall));
        w.key(sect, "action", q(r.action.str()));
        std::string args = "[";
        for (size_t j = 0; j < r.args.size(); ++j) {
            const ArgCondition& c = r.args[j];
            args += j ? ", " : "";
            args += "{ index = " + std::to_string(c.index) + ", op = " + q(op_name(c.op)) + ", value = ";
            args += is_decimal_integer(c.value_text) ? c.value_text : q(c.value_text);
            if (c.op == ArgCondition::Op::MaskedEq) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(c.mask));
                args += std::string(", mask = ") + (c.mask <= uint64_t(LLONG_MAX) ? buf : q(buf));
            }
            args += " }";
        }
        args += "]";
        w.key(sect, "args", args);
    }

    w.line("");
    w.line("[monitor]");
    w.key("monitor", "sample_interval", q(format_duration_ns(p.monitor.sample_interval_ns)));
    w.key("monitor", "max_events", std::to_string(p.monitor.max_events),
          "denial rows stored one by one; past it denials are counted in aggregate rows");
    w.key("monitor", "max_event_bytes", q(format_size(p.monitor.max_event_bytes)), "approximate size of those rows");
    return w.take();
}

}  // namespace moat::policy
