// The tiers this moatd has, and what they share.
#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "../tier.h"
#include "../tree.h"
#include "moat/common/sha256.h"

namespace moat::supervisor {

std::unique_ptr<Tier> make_seccomp_tier();
std::unique_ptr<Tier> make_container_tier(const Config& cfg);

std::unique_ptr<Tier> make_vm_tier(const Config& cfg, TierHost host);

std::vector<std::unique_ptr<Tier>> make_tiers(const Config& cfg, TierHost host) {
    std::vector<std::unique_ptr<Tier>> out;
    out.push_back(make_seccomp_tier());
    out.push_back(make_container_tier(cfg));
    out.push_back(make_vm_tier(cfg, std::move(host)));
    return out;
}

bool program_under_binds(const std::string& exe, const std::vector<sandbox::MountSpec>& mounts, bool read_only_only) {
    char real[PATH_MAX];
    const std::string resolved = realpath(exe.c_str(), real) ? std::string(real) : exe;
    for (const auto& mt : mounts) {
        const bool bind = mt.kind == sandbox::MountSpec::Kind::BindRo ||
                          (!read_only_only && mt.kind == sandbox::MountSpec::Kind::BindRw);
        if (bind && (path_under(exe, mt.target) || path_under(resolved, mt.target))) return true;
    }
    return false;
}

void remove_tree(const std::string& dir) {
    // A stage directory holds files and, for directory inputs, trees whose
    // symlinks must not be followed on the way out (tree.h).
    remove_tree_at(AT_FDCWD, dir);
}

// Hashes the file behind `fd` from its start (pread: the client's offset is untouched).
Result<std::string> fd_sha256(int fd, uint64_t* size, const std::atomic<bool>& cancel) {
    Sha256 h;
    std::vector<char> buf(1 << 16);
    uint64_t total = 0;
    for (;;) {
        if (cancel) return fail("cancelled");
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(total));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::unexpected(Error::sys("read", errno));
        if (n == 0) break;
        h.update({buf.data(), size_t(n)});
        total += uint64_t(n);
    }
    if (size) *size = total;
    return h.hex();
}

Result<void> copy_file(const std::string& from, const std::string& to, uid_t owner, const std::atomic<bool>& cancel) {
    UniqueFd in(open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) return std::unexpected(Error::sys("open " + from, errno));
    UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (!out) return std::unexpected(Error::sys("create " + to, errno));
    if (auto r = copy_bytes(in.get(), out.get(), cancel); !r) return std::unexpected(r.error().wrap(from + " -> " + to));
    if (fchown(out.get(), owner, owner) < 0) return std::unexpected(Error::sys("chown " + to, errno));
    return {};
}

}  // namespace moat::supervisor
