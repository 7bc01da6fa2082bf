#pragma once
// The guest kernel kit that `packaging/moat.sh guest-kernel` unpacks from
// Debian's cloud kernel package (docs/vm.md#the-guest-kernel):
//   <dir>/current -> <release>
//   <dir>/<release>/manifest, vmlinux, modules/<name>.ko
// GuestKernel finds it and checks it before anything boots it.
#include <cstdint>
#include <string>
#include <vector>

#include "moat/common/error.h"

namespace moat::vm {

// $MOAT_GUEST_DIR when set, else /var/cache/moat/guest.
std::string default_guest_dir();

struct GuestModule {
    std::string name;    // "virtio_ring" (the guest loads /lib/modules/<name>.ko)
    std::string path;    // absolute path of the .ko in the kit
    std::string sha256;  // from the manifest
};

class GuestKernel final {
public:
    // `dir` is the kit's base (holding `current`) or one release directory.
    // Checks the manifest's format, that vmlinux is an ELF file of the size
    // the manifest names and that every module exists. It does not hash the
    // 53 MB vmlinux (verify() does). A missing kit is an error that says to
    // run `packaging/moat.sh guest-kernel`.
    static Result<GuestKernel> find(const std::string& dir = default_guest_dir());

    // Hashes vmlinux and every module against the manifest (~0.2 s).
    Result<void> verify() const;

    const std::string& dir() const { return m_dir; }          // the release directory
    const std::string& release() const { return m_release; }  // "6.1.0-57-cloud-amd64"
    const std::string& package() const { return m_package; }  // "linux-image-6.1.0-57-cloud-amd64 6.1.192-3"
    const std::string& vmlinux() const { return m_vmlinux; }  // absolute path
    const std::string& vmlinux_sha256() const { return m_vmlinux_sha256; }
    // In load order: each module after the modules it depends on.
    const std::vector<GuestModule>& modules() const { return m_modules; }

private:
    std::string m_dir, m_release, m_package, m_vmlinux, m_vmlinux_sha256;
    uint64_t m_vmlinux_size = 0;
    std::vector<GuestModule> m_modules;
};

}  // namespace moat::vm
