#include "moat/sandbox/container_plan.h"

#include "moat/common/paths.h"
#include "moat/policy/container_dev.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <stdexcept>

namespace moat::sandbox {

namespace {

const char* kind_name(MountSpec::Kind k) {
    switch (k) {
        case MountSpec::Kind::BindRo: return "bind-ro";
        case MountSpec::Kind::BindRw: return "bind-rw";
        case MountSpec::Kind::Tmpfs: return "tmpfs";
        case MountSpec::Kind::Symlink: return "symlink";
        case MountSpec::Kind::TreeRo: return "tree-ro";
        case MountSpec::Kind::TreeRw: return "tree-rw";
    }
    return "?";
}

// An unsigned integer field no larger than `max`. nlohmann's get<uint64_t>()
// would convert a float or a negative number (a float out of range is
// undefined behaviour; the wire fuzzer found one), so the type is checked first.
uint64_t plan_uint(const nlohmann::json& v, const char* what, uint64_t max = UINT64_MAX) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
        throw std::invalid_argument(std::string(what) + " is not a non-negative integer");
    uint64_t x = v.get<uint64_t>();
    if (x > max) throw std::invalid_argument(std::string(what) + " is out of range");
    return x;
}

int depth(const std::string& p) { return int(std::count(p.begin(), p.end(), '/')) - (p == "/" ? 1 : 0); }


}  // namespace

const std::vector<std::string>& proc_masked_paths() {
    static const std::vector<std::string> v = {"/proc/acpi",       "/proc/asound",      "/proc/kcore",
                                               "/proc/keys",       "/proc/latency_stats", "/proc/timer_list",
                                               "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                               "/proc/interrupts", "/proc/kallsyms"};
    return v;
}

const std::vector<std::string>& proc_readonly_paths() {
    static const std::vector<std::string> v = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                               "/proc/sysrq-trigger"};
    return v;
}

nlohmann::json ContainerPlan::to_json() const {
    nlohmann::json m = nlohmann::json::array();
    for (const auto& x : mounts) {
        m.push_back({{"kind", kind_name(x.kind)}, {"source", x.source}, {"target", x.target}, {"size", x.size}});
        if (x.verify) m.back()["expect"] = {x.dev, x.ino};
        if (x.tree >= 0) m.back()["tree"] = x.tree;
    }
    // The filter as one string, 16 hex digits per instruction (code, jt, jf,
    // k, most significant first): an array of arrays was most of the plan's
    // parse (~0.1 ms of a container start for 115 instructions).
    std::string f;
    f.reserve(filter.size() * 16);
    static constexpr char kHex[] = "0123456789abcdef";
    for (const auto& i : filter) {
        const uint64_t v = uint64_t(i.code) << 48 | uint64_t(i.jt) << 40 | uint64_t(i.jf) << 32 | i.k;
        for (int shift = 60; shift >= 0; shift -= 4) f.push_back(kHex[(v >> shift) & 15]);
    }
    return {{"hostname", hostname},
            {"loopback", loopback},
            {"newroot", newroot},
            {"root_size", root_size},
            {"mounts", m},
            {"uid", uid},
            {"gid", gid},
            {"rlimits",
             {rlimits.file_size, rlimits.open_files, rlimits.stack, rlimits.core, rlimits.cpu_seconds}},
            {"argv", argv},
            {"env", env},
            {"exe", exe},
            {"cwd", cwd},
            {"filter", f},
            {"root_tree", root_tree},
            {"root_read_only", root_read_only},
            {"dev_shm_size", dev_shm_size},
            {"resolve_exe", resolve_exe},
            {"trees", trees}};
}

Result<ContainerPlan> ContainerPlan::from_json(const nlohmann::json& j) {
    // The plan comes from moatd, but it is still parsed defensively: a bad plan
    // is a clear setup error, never undefined behaviour.
    try {
        ContainerPlan p;
        p.hostname = j.at("hostname").get<std::string>();
        p.loopback = j.at("loopback").get<bool>();
        p.newroot = j.at("newroot").get<std::string>();
        p.root_size = plan_uint(j.at("root_size"), "root_size");
        for (const auto& m : j.at("mounts")) {
            MountSpec s;
            std::string k = m.at("kind").get<std::string>();
            if (k == "bind-ro") s.kind = MountSpec::Kind::BindRo;
            else if (k == "bind-rw") s.kind = MountSpec::Kind::BindRw;
            else if (k == "tmpfs") s.kind = MountSpec::Kind::Tmpfs;
            else if (k == "symlink") s.kind = MountSpec::Kind::Symlink;
            else if (k == "tree-ro") s.kind = MountSpec::Kind::TreeRo;
            else if (k == "tree-rw") s.kind = MountSpec::Kind::TreeRw;
            else return fail("plan: unknown mount kind " + k);
            s.source = m.at("source").get<std::string>();
            s.target = m.at("target").get<std::string>();
            s.size = plan_uint(m.at("size"), "mount size");
            if (auto e = m.find("expect"); e != m.end()) {
                if (!e->is_array() || e->size() != 2) return fail("plan: bad mount expect");
                s.verify = true;
                s.dev = plan_uint((*e)[0], "mount expect dev");
                s.ino = plan_uint((*e)[1], "mount expect ino");
            }
            const bool is_tree = s.kind == MountSpec::Kind::TreeRo || s.kind == MountSpec::Kind::TreeRw;
            if (auto t = m.find("tree"); t != m.end()) s.tree = int(plan_uint(*t, "mount tree", kMaxTrees - 1));
            if (is_tree != (s.tree >= 0)) return fail("plan: a tree mount needs a tree index, and only it");
            if (!normalised_abs(s.target)) return fail("plan: bad mount target " + s.target);
            p.mounts.push_back(std::move(s));
        }
        p.uid = uint32_t(plan_uint(j.at("uid"), "uid", UINT32_MAX));
        p.gid = uint32_t(plan_uint(j.at("gid"), "gid", UINT32_MAX));
        auto r = j.at("rlimits");
        if (!r.is_array() || r.size() != 5) return fail("plan: bad rlimits");
        p.rlimits = {plan_uint(r[0], "rlimit"), plan_uint(r[1], "rlimit"), plan_uint(r[2], "rlimit"),
                     plan_uint(r[3], "rlimit"), plan_uint(r[4], "rlimit")};
        p.argv = j.at("argv").get<std::vector<std::string>>();
        p.env = j.at("env").get<std::vector<std::string>>();
        p.exe = j.at("exe").get<std::string>();
        p.cwd = j.at("cwd").get<std::string>();
        const auto& f = j.at("filter").get_ref<const std::string&>();
        if (f.empty() || f.size() % 16 != 0 || f.size() / 16 > 4096) return fail("plan: filter size out of range");
        p.filter.reserve(f.size() / 16);
        for (size_t at = 0; at < f.size(); at += 16) {
            uint64_t v = 0;
            for (size_t d = at; d < at + 16; ++d) {
                const char c = f[d];
                const int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (x < 0) return fail("plan: the filter is not lower-case hex");
                v = v << 4 | uint64_t(x);
            }
            p.filter.push_back(sock_filter{uint16_t(v >> 48), uint8_t(v >> 40), uint8_t(v >> 32), uint32_t(v)});
        }
        // Absent in a plan from an older moatd: a tmpfs root, as before.
        p.trees = size_t(plan_uint(j.value("trees", nlohmann::json(0)), "trees", kMaxTrees));
        if (auto r = j.value("root_tree", nlohmann::json(-1)); !(r.is_number_integer() && r.get<int64_t>() == -1))
            p.root_tree = int(plan_uint(r, "root_tree", kMaxTrees - 1));
        p.root_read_only = j.value("root_read_only", true);
        p.dev_shm_size = plan_uint(j.value("dev_shm_size", nlohmann::json(0)), "dev_shm_size", 1ull << 40);
        p.resolve_exe = j.value("resolve_exe", false);
        if (p.root_tree >= 0 && size_t(p.root_tree) >= p.trees) return fail("plan: root tree index out of range");
        for (const auto& m : p.mounts)
            if (m.tree >= 0 && size_t(m.tree) >= p.trees) return fail("plan: mount tree index out of range");
        if (p.resolve_exe && p.exe.find('/') != std::string::npos) return fail("plan: a name to resolve has no '/'");
        if (p.argv.empty() || p.exe.empty()) return fail("plan: no program");
        if (p.uid == 0 || p.gid == 0) return fail("plan: the job may not run as uid/gid 0 inside");
        return p;
    } catch (const nlohmann::json::exception& e) {
        return fail(std::string("plan: ") + e.what());
    } catch (const std::invalid_argument& e) {
        return fail(std::string("plan: ") + e.what());
    }
}

Result<std::vector<MountSpec>> plan_mounts(const std::vector<std::string>& read_only,
                                           const std::vector<std::string>& read_write,
                                           const std::vector<std::string>& tmpfs, uint64_t tmpfs_size,
                                           const std::vector<InputMount>& inputs) {
    std::vector<MountSpec> out;
    auto add_bind = [&](const std::string& path, const std::string& target, bool rw,
                        const InputMount* input = nullptr) -> Result<void> {
        if (!normalised_abs(path) || !normalised_abs(target)) return fail("not a normalised absolute path: " + path);
        // Look at each component on the host: only the last may be a symlink.
        std::string cur;
        size_t i = 1;
        while (i <= path.size()) {
            size_t j = path.find('/', i);
            if (j == std::string::npos) j = path.size();
            cur = path.substr(0, j);
            struct stat st{};
            if (lstat(cur.c_str(), &st) < 0) return fail_sys("mount source lstat(\"" + cur + "\")", errno);
            if (S_ISLNK(st.st_mode)) {
                if (input && input->verify)
                    return fail("input " + path + ": " + cur +
                                " is a symlink now, but the client opened the file itself: it changed after the "
                                "client's open");
                if (j != path.size())
                    return fail("mount source " + path + " passes through the symlink " + cur +
                                "; name the real path so no link can redirect the mount");
                char buf[4096];
                ssize_t n = readlink(cur.c_str(), buf, sizeof buf - 1);
                if (n <= 0) return fail_sys("readlink(\"" + cur + "\")", errno);
                // Recreated inside the root: it resolves there, against what the policy mounted.
                out.push_back({MountSpec::Kind::Symlink, std::string(buf, size_t(n)), target, 0});
                return {};
            }
            i = j + 1;
        }
        out.push_back({rw ? MountSpec::Kind::BindRw : MountSpec::Kind::BindRo, path, target, 0});
        if (input && input->verify) {
            out.back().verify = true;
            out.back().dev = input->dev;
            out.back().ino = input->ino;
        }
        return {};
    };
    // The container's /dev is its own (policy::container_dev): its devices
    // satisfy a policy that lists them; anything else there is refused, not
    // hidden under the /dev tmpfs container_init mounts after the binds.
    auto dev_entry = [](const std::string& p, bool is_tmpfs) -> Result<bool> {
        switch (policy::container_dev(p, is_tmpfs)) {
            case policy::ContainerDev::Ordinary: return false;
            case policy::ContainerDev::OwnDevice: return true;
            case policy::ContainerDev::Refused: break;
        }
        return fail(policy::container_dev_message(p));
    };
    for (auto [list, rw] : {std::pair{&read_only, false}, std::pair{&read_write, true}})
        for (const auto& p : *list) {
            auto dev = dev_entry(p, false);
            if (!dev) return std::unexpected(dev.error());
            if (*dev) continue;
            if (auto r = add_bind(p, p, rw); !r) return std::unexpected(r.error());
        }
    for (const auto& p : tmpfs) {
        if (!normalised_abs(p)) return fail("not a normalised absolute path: " + p);
        if (auto dev = dev_entry(p, true); !dev) return std::unexpected(dev.error());
        out.push_back({MountSpec::Kind::Tmpfs, "tmpfs", p, tmpfs_size});
    }
    for (const auto& in : inputs) {
        if (policy::container_dev(in.sandbox, true) != policy::ContainerDev::Ordinary)
            return fail("--input " + in.sandbox + ": " + policy::container_dev_message(in.sandbox));
        if (auto r = add_bind(in.host, in.sandbox, false, &in); !r) return std::unexpected(r.error());
    }
    for (size_t a = 0; a < out.size(); ++a)
        for (size_t b = a + 1; b < out.size(); ++b)
            if (out[a].target == out[b].target) return fail("two mounts at " + out[a].target);
    // Parent before child: a read-only bind inside a tmpfs lands on top of it and stays read-only.
    std::stable_sort(out.begin(), out.end(), [](const MountSpec& x, const MountSpec& y) {
        int dx = depth(x.target), dy = depth(y.target);
        return dx != dy ? dx < dy : x.target < y.target;
    });
    return out;
}

}  // namespace moat::sandbox
