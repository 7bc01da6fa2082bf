#include "bundle.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "moat/policy/oci.h"
#include "moat/policy/parser.h"

namespace moat::runtime {

namespace {

using json = nlohmann::json;

// A container runs until it is stopped: its clocks are the policy's maximum
// unless the bundle's annotations say otherwise (docs/fleet.md).
constexpr const char* kContainerTime = "720h";
constexpr uint64_t kDevShmBytes = 64ull << 20;  // podman's and docker's default /dev/shm
constexpr size_t kMaxArgs = 4096, kMaxEnv = 4096, kMaxMounts = 256;

// A note quotes config.json and ends up on a comment line of the policy and
// a line of the log: no control character may start a line of its own.
std::string one_line(std::string s) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    if (s.size() > 1000) s = s.substr(0, 1000) + "...";
    return s;
}

bool abs_path(const std::string& p) {
    if (p.empty() || p[0] != '/' || p.size() > 4096 || p.find('\0') != std::string::npos) return false;
    return true;
}

// "/a//b/./c/" -> "/a/b/c"; ".." is refused (a mount target stays below /).
std::optional<std::string> normalise(const std::string& p) {
    if (!abs_path(p)) return std::nullopt;
    std::string out;
    std::stringstream ss(p);
    std::string part;
    while (std::getline(ss, part, '/')) {
        if (part.empty() || part == ".") continue;
        if (part == "..") return std::nullopt;
        out += "/" + part;
    }
    return out.empty() ? "/" : out;
}

std::string str_or(const json& j, const char* key, std::string dflt = "") {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

bool has_option(const json& m, std::string_view opt) {
    auto it = m.find("options");
    if (it == m.end() || !it->is_array()) return false;
    for (const auto& o : *it)
        if (o.is_string() && o.get_ref<const std::string&>() == opt) return true;
    return false;
}

// tmpfs "size=65536k" (k, m, g; bytes without a suffix); nullopt when absent
// or not a plain size (a percentage).
std::optional<uint64_t> tmpfs_size(const json& m) {
    auto it = m.find("options");
    if (it == m.end() || !it->is_array()) return std::nullopt;
    for (const auto& o : *it) {
        if (!o.is_string()) continue;
        const std::string& s = o.get_ref<const std::string&>();
        if (s.rfind("size=", 0) != 0) continue;
        std::string v = s.substr(5);
        uint64_t mult = 1;
        if (!v.empty()) {
            char c = char(std::tolower(static_cast<unsigned char>(v.back())));
            if (c == 'k') mult = 1ull << 10;
            if (c == 'm') mult = 1ull << 20;
            if (c == 'g') mult = 1ull << 30;
            if (mult != 1) v.pop_back();
        }
        if (v.empty() || v.size() > 15 || !std::all_of(v.begin(), v.end(), ::isdigit)) return std::nullopt;
        const uint64_t n = std::stoull(v);
        if (n > (1ull << 44) / mult) return std::nullopt;  // above 16 TiB: not a size this job can have
        return n * mult;
    }
    return std::nullopt;
}

std::string bytes(uint64_t n) { return std::to_string(n) + "B"; }

// The rlimits a Moat policy has, and what else is said about the rest.
void map_rlimits(const json& process, toml::table& limits, std::vector<std::string>& notes,
                 std::vector<std::string>& errors) {
    auto it = process.find("rlimits");
    if (it == process.end()) return;
    if (!it->is_array()) {
        errors.push_back("process.rlimits must be an array");
        return;
    }
    for (const auto& r : *it) {
        if (!r.is_object() || !r.contains("type") || !r["type"].is_string() || !r.contains("hard") ||
            !r["hard"].is_number_unsigned()) {
            errors.push_back("process.rlimits: each needs a \"type\" and a non-negative \"hard\"");
            continue;
        }
        const std::string type = r["type"].get<std::string>();
        const uint64_t hard = r["hard"].get<uint64_t>();
        const bool infinite = hard >= (1ull << 62);
        if (type == "RLIMIT_NOFILE") {
            uint64_t v = std::clamp<uint64_t>(hard, 1, 1048576);
            if (v != hard) notes.push_back("RLIMIT_NOFILE " + std::to_string(hard) + " clamped to " + std::to_string(v));
            limits.insert_or_assign("open_files", int64_t(v));
        } else if (type == "RLIMIT_FSIZE") {
            if (!infinite) limits.insert_or_assign("file_size", bytes(hard));
            else limits.insert_or_assign("file_size", "16TiB");
        } else if (type == "RLIMIT_STACK") {
            if (!infinite) limits.insert_or_assign("stack", bytes(std::clamp<uint64_t>(hard, 64ull << 10, 4096ull << 20)));
        } else if (type == "RLIMIT_CORE") {
            limits.insert_or_assign("core", bytes(infinite ? 0 : hard));
            if (infinite) notes.push_back("RLIMIT_CORE unlimited: Moat jobs write no core files (limits.core = 0)");
        } else if (type == "RLIMIT_CPU") {
            if (!infinite && hard > 0)
                limits.insert_or_assign("cpu_time", std::to_string(hard) + "s");
            notes.push_back("RLIMIT_CPU applies to the whole container as limits.cpu_time, not to each process");
        } else if (type == "RLIMIT_NPROC") {
            notes.push_back("RLIMIT_NPROC " + std::to_string(hard) +
                            " not set: processes are bounded by limits.pids in the job's cgroup");
        } else {
            notes.push_back(type + " not set (Moat sets RLIMIT_NOFILE, FSIZE, STACK, CORE and CPU)");
        }
    }
}

void map_resources(const json& linux, toml::table& limits, std::vector<std::string>& notes) {
    auto it = linux.find("resources");
    if (it == linux.end() || !it->is_object()) return;
    const json& r = *it;
    if (auto m = r.find("memory"); m != r.end() && m->is_object()) {
        if (auto l = m->find("limit"); l != m->end() && l->is_number_integer() && l->get<int64_t>() > 0) {
            uint64_t v = std::max<uint64_t>(l->get<uint64_t>(), 1ull << 20);
            limits.insert_or_assign("memory", bytes(v));
        }
        for (const char* k : {"reservation", "swap", "kernel", "kernelTCP", "swappiness"})
            if (m->contains(k)) notes.push_back(std::string("linux.resources.memory.") + k + " not applied (limits.memory only)");
    }
    if (auto p = r.find("pids"); p != r.end() && p->is_object())
        if (auto l = p->find("limit"); l != p->end() && l->is_number_integer() && l->get<int64_t>() > 0)
            limits.insert_or_assign("pids", std::min<int64_t>(l->get<int64_t>(), 4194304));
    if (auto c = r.find("cpu"); c != r.end() && c->is_object() && !c->empty())
        notes.push_back("linux.resources.cpu (shares, quota, cpus) not applied: Moat bounds CPU time (limits.cpu_time), "
                        "not its rate");
    for (const char* k : {"blockIO", "hugepageLimits", "network", "rdma", "unified"})
        if (auto x = r.find(k); x != r.end() && !x->is_null() && !x->empty())
            notes.push_back(std::string("linux.resources.") + k + " not applied");
    if (auto d = r.find("devices"); d != r.end() && d->is_array())
        for (const auto& rule : *d)
            if (rule.is_object() && rule.value("allow", false)) {
                notes.push_back("linux.resources.devices allows devices; a Moat job's /dev has only null, zero, full, "
                                "random and urandom");
                break;
            }
}

}  // namespace

bool valid_container_id(std::string_view id) {
    if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '+')) return false;
    return true;
}

Result<BundleJob> convert_bundle(std::string_view text, const std::string& bundle, const std::string& id) {
    if (text.size() > kMaxConfigBytes) return fail("config.json is larger than 4 MiB");
    json c = json::parse(text, nullptr, false);
    if (c.is_discarded() || !c.is_object()) return fail("config.json is not a JSON object");
    std::vector<std::string> errors, notes;
    BundleJob job;
    try {
        const std::string ver = str_or(c, "ociVersion");
        if (ver.rfind("1.", 0) != 0) errors.push_back("ociVersion \"" + ver.substr(0, 32) + "\" is not 1.x");

        // The root filesystem.
        const json& root = c.value("root", json::object());
        job.rootfs = str_or(root, "path");
        if (job.rootfs.empty()) errors.push_back("root.path is missing");
        else if (job.rootfs[0] != '/') job.rootfs = bundle + "/" + job.rootfs;
        job.root_read_only = root.value("readonly", false);

        // The process.
        const json& proc = c.value("process", json::object());
        if (!proc.is_object() || proc.empty()) errors.push_back("process is missing (nothing to run)");
        if (auto a = proc.find("args"); a != proc.end() && a->is_array() && !a->empty() && a->size() <= kMaxArgs) {
            for (const auto& s : *a) {
                if (!s.is_string()) { errors.push_back("process.args must be strings"); break; }
                job.argv.push_back(s.get<std::string>());
            }
        } else if (proc.is_object() && !proc.empty()) {
            errors.push_back("process.args must be a non-empty array of at most 4096 strings");
        }
        if (proc.contains("commandLine")) errors.push_back("process.commandLine is for Windows");
        job.cwd = str_or(proc, "cwd", "/");
        if (auto n = normalise(job.cwd)) job.cwd = *n;
        else errors.push_back("process.cwd must be an absolute path");
        job.terminal = proc.value("terminal", false);
        toml::table env_set;
        if (auto e = proc.find("env"); e != proc.end()) {
            if (!e->is_array() || e->size() > kMaxEnv) errors.push_back("process.env must be an array of at most 4096 strings");
            else
                for (const auto& kv : *e) {
                    if (!kv.is_string()) { errors.push_back("process.env must be strings"); break; }
                    const std::string& s = kv.get_ref<const std::string&>();
                    auto eq = s.find('=');
                    if (eq == 0 || eq == std::string::npos) {
                        errors.push_back("process.env entry \"" + s.substr(0, 64) + "\" is not NAME=VALUE");
                        continue;
                    }
                    env_set.insert_or_assign(s.substr(0, eq), s.substr(eq + 1));
                }
        }
        if (const json& u = proc.value("user", json::object()); u.is_object()) {
            int64_t uid = u.value("uid", int64_t(0)), gid = u.value("gid", int64_t(0));
            notes.push_back("process.user " + std::to_string(uid) + ":" + std::to_string(gid) +
                            " not used: a Moat job runs as an unprivileged user (uid 1000 inside its user namespace)");
            if (u.contains("additionalGids") && !u["additionalGids"].empty())
                notes.push_back("process.user.additionalGids not set (the job has no supplementary groups)");
        }
        if (const json& caps = proc.value("capabilities", json::object()); caps.is_object()) {
            size_t n = 0;
            for (const auto& [k, v] : caps.items()) n += v.is_array() ? v.size() : 0;
            if (n) notes.push_back("process.capabilities not granted: a Moat job holds no capability");
        }
        for (const char* k : {"apparmorProfile", "selinuxLabel", "oomScoreAdj", "ioPriority", "scheduler", "execCPUAffinity"})
            if (proc.contains(k)) notes.push_back(std::string("process.") + k + " not applied");

        // Hooks run programs on the host at points moatd does not have.
        if (auto h = c.find("hooks"); h != c.end() && h->is_object())
            for (const auto& [k, v] : h->items())
                if (v.is_array() && !v.empty())
                    errors.push_back("hooks." + k + " is set; moat-runtime runs no OCI hooks (they would run on the host, "
                                     "outside the job's record)");

        const json& lx = c.value("linux", json::object());
        // Namespaces: every Moat job gets new ones; joining an existing one is
        // refused, and a namespace the container would share is noted.
        std::set<std::string> asked;
        if (auto ns = lx.find("namespaces"); ns != lx.end() && ns->is_array())
            for (const auto& n : *ns) {
                if (!n.is_object()) continue;
                std::string type = str_or(n, "type");
                asked.insert(type);
                const std::string path = str_or(n, "path");
                if (!path.empty() && type == "network") {
                    if (!abs_path(path)) errors.push_back("linux.namespaces: network path must be absolute");
                    job.netns_path = path;
                } else if (!path.empty() && type == "mount") {
                    errors.push_back("linux.namespaces: joining the mount namespace at " + path +
                                     " is not supported; a Moat job's root is built in a new one");
                } else if (!path.empty()) {
                    // Stricter, not weaker: what the container would have shared
                    // with others (a pod's IPC, hostname, processes) it does not.
                    notes.push_back("linux.namespaces: the " + type + " namespace at " + path +
                                    " is not joined; the job gets its own (it shares no " + type +
                                    " namespace with other containers)");
                }
                if (type == "time") notes.push_back("linux.namespaces: no time namespace");
            }
        for (const char* t : {"pid", "network", "ipc", "uts", "mount"})
            if (!asked.count(t))
                notes.push_back(std::string("linux.namespaces has no ") + t +
                                " namespace (the host's would be shared); the job gets its own");
        if (lx.contains("uidMappings") || lx.contains("gidMappings"))
            notes.push_back("linux.uidMappings/gidMappings not used: Moat maps the job's ids itself");
        if (auto s = lx.find("sysctl"); s != lx.end() && s->is_object() && !s->empty())
            notes.push_back("linux.sysctl not written (" + std::to_string(s->size()) + " set)");
        for (const char* k : {"intelRdt", "personality", "mountLabel", "rootfsPropagation", "devices"})
            if (auto x = lx.find(k); x != lx.end() && !x->is_null() && !x->empty())
                notes.push_back(std::string("linux.") + k + " not applied");

        toml::table limits;
        limits.insert_or_assign("wall_time", kContainerTime);
        limits.insert_or_assign("cpu_time", kContainerTime);
        map_rlimits(proc, limits, notes, errors);
        map_resources(lx, limits, notes);
        // Operators set what the OCI spec has no field for through annotations.
        const json& ann = c.value("annotations", json::object());
        for (const char* k : {"wall_time", "cpu_time", "memory"}) {
            std::string key = std::string("org.moat.limits.") + k;
            if (auto a = ann.find(key); a != ann.end() && a->is_string()) limits.insert_or_assign(k, a->get<std::string>());
        }

        // Mounts.
        toml::array tmpfs;
        uint64_t tmpfs_bytes = 0;
        auto mounts = c.value("mounts", json::array());
        if (!mounts.is_array() || mounts.size() > kMaxMounts) errors.push_back("mounts must be an array of at most 256");
        else
            for (const auto& m : mounts) {
                if (!m.is_object()) { errors.push_back("mounts: each must be an object"); continue; }
                const std::string type = str_or(m, "type");
                const std::string src = str_or(m, "source");
                auto dst = normalise(str_or(m, "destination"));
                if (!dst) {
                    errors.push_back("mount destination \"" + str_or(m, "destination").substr(0, 200) +
                                     "\" is not an absolute path without ..");
                    continue;
                }
                const bool bind = type == "bind" || has_option(m, "bind") || has_option(m, "rbind");
                const bool under_dev = dst->rfind("/dev/", 0) == 0;
                if (*dst == "/proc" && type == "proc") continue;  // the job's own
                if (*dst == "/dev" && type == "tmpfs") continue;  // the job's own, with Moat's devices
                if (*dst == "/dev/shm") {
                    job.dev_shm_bytes = bind ? kDevShmBytes : tmpfs_size(m).value_or(kDevShmBytes);
                    notes.push_back("/dev/shm is Moat's own tmpfs of " + std::to_string(job.dev_shm_bytes >> 20) +
                                    " MiB (counted in the job's memory)");
                    continue;
                }
                if (type == "sysfs" || type == "cgroup" || type == "cgroup2") {
                    notes.push_back(*dst + " (" + type + ") not mounted: a Moat job sees no sysfs or cgroupfs");
                    continue;
                }
                if (type == "devpts" || type == "mqueue" || (under_dev && !bind && type != "tmpfs")) {
                    notes.push_back(*dst + " (" + type + ") not mounted: a Moat job's /dev has only null, zero, full, "
                                    "random, urandom" + (type == "devpts" ? " and no terminal" : ""));
                    continue;
                }
                if (under_dev || *dst == "/dev" || *dst == "/proc" || dst->rfind("/proc/", 0) == 0) {
                    errors.push_back("mount at " + *dst + " (" + type + "): a Moat job's /dev and /proc are its own");
                    continue;
                }
                if (*dst == "/") {
                    errors.push_back("a mount at / (" + type + "); the root is root.path");
                    continue;
                }
                if (type == "tmpfs" && !bind) {
                    tmpfs.push_back(*dst);
                    job.mount_points.push_back(*dst);
                    if (auto sz = tmpfs_size(m)) tmpfs_bytes = std::max(tmpfs_bytes, *sz);
                    continue;
                }
                if (bind) {
                    if (!abs_path(src)) {
                        errors.push_back("bind mount at " + *dst + " has no absolute source");
                        continue;
                    }
                    BundleBind b{src, *dst, has_option(m, "ro"), has_option(m, "rbind")};
                    job.binds.push_back(std::move(b));
                    continue;
                }
                errors.push_back("mount type \"" + type + "\" at " + *dst +
                                 " is not supported (moat-runtime mounts binds and tmpfs; /proc, /dev and /dev/shm are "
                                 "the job's own)");
            }
        if (job.binds.size() > 32) errors.push_back("at most 32 bind mounts per container (" +
                                                    std::to_string(job.binds.size()) + " given)");
        job.mount_points.insert(job.mount_points.begin(), {"/proc", "/dev"});

        // The seccomp profile, through the OCI import (which reads
        // linux.seccomp of a config.json).
        if (!lx.contains("seccomp") || lx["seccomp"].is_null())
            errors.push_back("the container has no seccomp profile (seccomp=unconfined?); every Moat job runs under a "
                             "filter: give it a profile (podman: the default, or --security-opt seccomp=FILE)");
        if (!errors.empty()) {
            std::string all;
            for (const auto& e : errors) all += (all.empty() ? "" : "; ") + one_line(e);
            return fail(all);
        }
        std::string short_id = id.substr(0, 12);
        job.policy_name = "oci-" + short_id;
        auto imp = policy::import_oci(text, "config.json", job.policy_name);
        if (imp.toml.empty()) {
            std::string all;
            for (const auto& d : imp.diagnostics) all += (all.empty() ? "" : "; ") + d.message;
            return fail("the container's seccomp profile: " + all);
        }
        for (const auto& d : imp.diagnostics)
            if (d.severity != policy::Diagnostic::Severity::Error) notes.push_back("seccomp: " + d.message);

        toml::table pol = toml::parse(imp.toml, std::string_view("config.json"));
        pol.insert_or_assign("name", job.policy_name);
        pol.insert_or_assign("description", "OCI container " + id + " (bundle " + bundle + "), run by moat-runtime");
        pol.insert_or_assign("tier", "container");
        if (auto h = str_or(c, "hostname"); !h.empty()) pol.insert_or_assign("hostname", h);
        pol.insert_or_assign("limits", limits);
        toml::table fs;
        fs.insert_or_assign("read_only", toml::array{});
        fs.insert_or_assign("read_write", toml::array{});
        fs.insert_or_assign("tmpfs", tmpfs);
        if (tmpfs_bytes) fs.insert_or_assign("tmpfs_size", bytes(std::max<uint64_t>(tmpfs_bytes, 4096)));
        pol.insert_or_assign("filesystem", fs);
        pol.insert_or_assign("network", toml::table{{"mode", job.netns_path.empty() ? "loopback" : "engine"}});
        toml::table env;
        env.insert_or_assign("pass", toml::array{});
        env.insert_or_assign("set", env_set);
        pol.insert_or_assign("environment", env);

        for (auto& n : notes) n = one_line(std::move(n));
        std::ostringstream out;
        out << "# Made by moat-runtime from the OCI bundle " << one_line(bundle) << " (container " << id << ").\n";
        out << "# Not honoured or changed (" << notes.size() << "):\n";
        for (const auto& n : notes) out << "#   " << n << "\n";
        out << "\n" << pol << "\n";
        job.policy_toml = out.str();
        job.notes = std::move(notes);
        auto parsed = policy::parse_policy(job.policy_toml, job.policy_name + ".toml");
        if (!parsed.policy) {
            std::string all;
            for (const auto& d : parsed.diagnostics)
                if (d.severity == policy::Diagnostic::Severity::Error) all += (all.empty() ? "" : "; ") + d.message;
            return fail("the policy made from config.json is not valid: " + all);
        }
        return job;
    } catch (const json::exception& e) {
        return fail(std::string("config.json: ") + e.what());
    } catch (const toml::parse_error& e) {
        return fail(std::string("the imported policy: ") + std::string(e.description()));
    }
}

}  // namespace moat::runtime
