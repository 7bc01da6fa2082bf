#pragma once
// The guest's initramfs, shared by every vm job (what differs per job comes
// over the virtio ports): a newc cpio, uncompressed (the kernel unpacks 1-2 MB
// of cpio faster than it inflates it), written with libarchive.
//   /init                      the guest agent (a static executable)
//   /lib/modules/<name>.ko     the kit's modules
//   /modules.order             their names, one a line, in load order
//   /dev /proc /sys /tmp /mnt  empty mount points; /dev/console (c 5 1)
// Every entry has uid 0, gid 0 and mtime 0, so the same inputs give the same
// bytes.
#include <string>

#include "moat/common/error.h"
#include "moat/vm/guest_kernel.h"

namespace moat::vm {

struct InitramfsInputs {
    std::string agent;      // host path of the static agent, becomes /init (required)
    std::string cache_dir = "/var/cache/moat/initramfs";
};

class BaseInitramfs final {
public:
    // Returns <cache_dir>/initramfs-<key>.cpio, building it only when no file
    // with that key exists. key = sha256 over a format tag and the sha256 of
    // every input's bytes (the agent, each module with its name), so a
    // rebuilt agent or another kernel kit gets a new file; a second call with
    // the same inputs costs the hashing of the inputs (a few ms).
    static Result<BaseInitramfs> build(const GuestKernel& kernel, const InitramfsInputs& in);

    const std::string& path() const { return m_path; }
    const std::string& key() const { return m_key; }
    bool cache_hit() const { return m_cache_hit; }

private:
    std::string m_path, m_key;
    bool m_cache_hit = false;
};

}  // namespace moat::vm
