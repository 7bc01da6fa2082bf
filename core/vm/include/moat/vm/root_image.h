#pragma once
// The guest's read-only root: an ext4 image holding the policy's read_only
// host paths at their own paths (symlinks kept as symlinks: on merged-/usr
// Debian /lib is "usr/lib"). QEMU attaches it read-only; the guest mounts it
// read-only. See docs/vm.md#the-root-image.
//
// Who reads the host files: mkfs.ext4 -d, run as an UNPRIVILEGED uid, over a
// staging tree in a private mount namespace (a tmpfs with each path
// bind-mounted read-only at its place). The image can therefore hold only
// what that uid may read: a policy naming /etc/shadow fails with mkfs's own
// words; what it may not read INSIDE a named directory becomes an empty
// placeholder (RootImage::hidden). The image file is 0644: use a uid/gid that owns nothing (nobody)
// so the image holds only what every local user may read anyway.
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "moat/common/error.h"

namespace moat::vm {

struct RootImageOptions {
    std::vector<std::string> paths;  // absolute, normalised host paths ("/usr", "/etc/ld.so.cache")
    uid_t uid = 0;                   // mkfs runs as uid:gid with no supplementary groups; never 0
    gid_t gid = 0;
    std::string cache_dir = "/var/cache/moat/images";
    // Least-recently-used images are removed after a build until both hold.
    // A cached image costs its allocated blocks (sparse), roughly the tree's size.
    size_t max_images = 8;
    uint64_t max_bytes = 8ull << 30;  // 8 GiB of allocated blocks
    std::string mkfs = "/sbin/mkfs.ext4";
};

struct RootImage {
    std::string path;                  // <cache_dir>/root-<key>.img
    std::string key;                   // hex sha256 (root_image_key)
    uint64_t tree_bytes = 0;           // what the walk counted (data rounded to blocks)
    uint64_t image_bytes = 0;          // the image's apparent size
    uint64_t entries = 0;              // files, directories and links walked
    std::vector<std::string> missing;  // named paths that do not exist on the host (not in the image)
    // Entries inside the named trees that uid:gid may not read (a 0700
    // directory, a 0600 file): in the image as an EMPTY directory or file
    // (root's, mode 0755 / 0644), so the job sees the name but no content,
    // as it would on the host. A named path itself that the uid may not
    // read is not hidden: the build fails (mkfs's words in the error).
    std::vector<std::string> hidden;
    bool cache_hit = false;
};

// Builds the image or returns the cached one with the same key.
// Measured on the 2-core build machine for /usr /lib /lib64 /bin
// /etc/ld.so.cache (164 905 entries, 9.4 GiB: a /usr with toolchains and Qt):
// first build 92 s, cached hit 0.75 s (the key walk); docs/vm.md.
Result<RootImage> build_root_image(const RootImageOptions& opt);

// The cache key alone (no image is built): sha256 over the builder's
// uid:gid, the sorted, de-nested path list and, for every entry under those
// paths (lstat, no symlink followed): path, type, size, mtime_ns, inode,
// mode and link target (or "hidden" for what uid:gid may not read). Any
// change to a file's content changes its mtime or size, so it changes the key.
Result<RootImage> root_image_key(const std::vector<std::string>& paths, uid_t uid, gid_t gid);

}  // namespace moat::vm
