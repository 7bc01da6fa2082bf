#include "moat/sandbox/landlock.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace moat::sandbox {

namespace {

// Debian 12's kernel headers stop at Landlock ABI 2; the values below are the
// kernel's stable UAPI for later ABIs (include/uapi/linux/landlock.h).
constexpr uint64_t kFsTruncate = 1ULL << 14;   // ABI 3
constexpr uint64_t kFsIoctlDev = 1ULL << 15;   // ABI 5
constexpr uint64_t kNetBindTcp = 1ULL << 0;    // ABI 4
constexpr uint64_t kNetConnectTcp = 1ULL << 1; // ABI 4
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr uint64_t kScopeSignal = 1ULL << 1;        // ABI 6

struct RulesetAttr {  // layout of struct landlock_ruleset_attr at ABI 6
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct PathBeneathAttr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                 LANDLOCK_ACCESS_FS_READ_FILE | kFsTruncate | kFsIoctlDev;

uint64_t fs_rights_for_abi(int abi) {
    uint64_t r = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  // ABI 1: bits 0..12
    if (abi >= 2) r |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) r |= kFsTruncate;
    if (abi >= 5) r |= kFsIoctlDev;
    return r;
}

}  // namespace

int landlock_abi() {
    long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : int(v);
}

Result<LandlockRuleset> build_landlock(const policy::Filesystem& fs, policy::NetworkMode net,
                                       const std::vector<ExtraPath>& extra) {
    LandlockRuleset out;
    if (fs.landlock == policy::LandlockMode::Off) {
        out.notes.push_back("landlock = \"off\": filesystem rules are not enforced in the seccomp tier");
        return out;
    }
    int abi = landlock_abi();
    if (abi <= 0) {
        if (fs.landlock == policy::LandlockMode::Required)
            return fail("Landlock is not available in this kernel and the policy requires it "
                        "(filesystem.landlock = \"required\")");
        out.notes.push_back("Landlock unavailable: filesystem rules NOT enforced (landlock = \"best-effort\")");
        return out;
    }
    out.abi = abi;
    const uint64_t handled = fs_rights_for_abi(abi);
    RulesetAttr attr{};
    attr.handled_access_fs = handled;
    size_t attr_size = sizeof(uint64_t);
    if (abi >= 4) {
        attr_size = 2 * sizeof(uint64_t);
        // network = host leaves TCP alone; none and loopback deny TCP bind and
        // connect (loopback-only needs a network namespace: container tier).
        if (net != policy::NetworkMode::Host) {
            attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
            out.net_restricted = true;
        }
    }
    if (abi >= 6) {
        attr_size = sizeof(RulesetAttr);
        // Signals and abstract unix sockets may not cross the job's domain: the
        // job cannot kill or connect to anything outside itself.
        attr.scoped = kScopeAbstractUnix | kScopeSignal;
        out.scoped = true;
    }
    long rfd = syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (rfd < 0) return fail_sys("landlock_create_ruleset(abi " + std::to_string(abi) + ")", errno);
    out.fd.reset(int(rfd));

    auto add = [&](const std::string& path, bool writable, int given = -1) -> Result<void> {
        // O_PATH: no read access is needed (or granted) to name the hierarchy.
        UniqueFd pfd(given >= 0 ? ::fcntl(given, F_DUPFD_CLOEXEC, 0) : ::open(path.c_str(), O_PATH | O_CLOEXEC));
        if (!pfd && given >= 0) return fail_sys("dup(input fd for \"" + path + "\")", errno);
        if (!pfd) {
            if (errno == ENOENT) {
                out.notes.push_back("path " + path + " does not exist; no access granted");
                return {};
            }
            return fail_sys("open(\"" + path + "\", O_PATH)", errno);
        }
        struct stat st{};
        if (fstat(pfd.get(), &st) < 0) return fail_sys("fstat(\"" + path + "\")", errno);
        uint64_t rights = writable ? handled
                                   : (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |
                                      LANDLOCK_ACCESS_FS_READ_DIR);
        if (!S_ISDIR(st.st_mode)) rights &= kFileRights;  // directory rights on a file are EINVAL
        rights &= handled;
        PathBeneathAttr pb{rights, pfd.get()};
        if (syscall(SYS_landlock_add_rule, out.fd.get(), LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
            return fail_sys("landlock_add_rule(\"" + path + "\")", errno);
        return {};
    };
    for (const auto& p : fs.read_only)
        if (auto r = add(p, false); !r) return std::unexpected(r.error());
    for (const auto& p : fs.read_write)
        if (auto r = add(p, true); !r) return std::unexpected(r.error());
    for (const auto& e : extra)
        if (auto r = add(e.path, e.writable, e.fd); !r) return std::unexpected(r.error());
    return out;
}

}  // namespace moat::sandbox
