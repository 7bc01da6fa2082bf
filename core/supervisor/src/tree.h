#pragma once
// Directory inputs for replay (docs/replay.md, "Directory inputs").
//
// A directory tree is recorded as a manifest, the list of its entries
// (relative path, type, mode; a file's size and sha256, a symlink's target),
// stored as a blob of its own in canonical JSON: its sha256 names the tree.
// Each regular file's bytes are a content-addressed blob like any file input.
//
// Three operations, each through descriptors only:
// - walk_tree reads a tree below a directory fd (openat/fstatat without
//   following symlinks); each regular file is handed to a sink that stores or
//   hashes it.
// - parse_manifest reads a manifest as hostile input: moatd wrote it, but it
//   lies on disk and is turned into paths that moatd creates as root.
// - restore_tree recreates a manifest's tree below a directory fd, never
//   following a symlink while it does.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "moat/common/error.h"

namespace moat::supervisor {

// Bounds of a directory snapshot. bytes and entries come from moatd's flags
// (--record-input-max, --record-input-entries); depth and path length are
// fixed and also bound what parse_manifest accepts.
constexpr size_t kMaxTreeDepth = 64;       // directories below the input's top
constexpr size_t kMaxTreePath = 4096;      // a relative path, in bytes (PATH_MAX)
constexpr uint64_t kMaxManifestBytes = 256ull << 20;  // what parse_manifest reads at most

struct TreeLimits {
    uint64_t max_bytes = 1ull << 30;  // the files' bytes together
    uint64_t max_entries = 100000;    // directories, files and symlinks below the top
};

struct TreeEntry {
    enum class Type { Dir, File, Symlink };
    std::string path;      // relative, '/'-separated, no "." or ".." component
    Type type = Type::File;
    uint32_t mode = 0;     // permission bits (<= 07777); 0 for a symlink
    uint64_t size = 0;     // File: the bytes stored
    std::string sha256;    // File: its blob
    std::string target;    // Symlink: as read, never resolved
    bool operator==(const TreeEntry&) const = default;
};

struct TreeManifest {
    uint32_t root_mode = 0755;       // the top directory's permission bits
    std::vector<TreeEntry> entries;  // sorted by path (a parent before its children)
    bool operator==(const TreeManifest&) const = default;
};

// Canonical JSON: the same tree always gives the same bytes (and sha256).
std::string encode_manifest(const TreeManifest& m);
// Refuses anything encode_manifest would not write: paths that are empty,
// absolute, with "." / ".." / empty components or NUL, too long or too deep;
// entries out of order or repeated; an entry whose parent is not a directory
// entry; unknown types, modes over 07777, invalid sha256s.
Result<TreeManifest> parse_manifest(std::string_view text);

// What a walk found besides the manifest.
struct TreeWalk {
    TreeManifest manifest;
    uint64_t bytes = 0;                // the files' bytes stored
    std::vector<std::string> skipped;  // "path: why" (devices, FIFOs, sockets)
    std::vector<std::string> grown;    // files that grew while they were read (their first bytes are kept)
};

// Stores or hashes the regular file at `fd` (at most `max` bytes, read from
// its start); returns its sha256, the bytes taken and whether it had more.
struct FileDigest {
    std::string sha256;
    uint64_t bytes = 0;
    bool truncated = false;
};
using FileSink = std::function<Result<FileDigest>(int fd, uint64_t max)>;

// Reads the tree below `dirfd` (not closed). Every lookup is relative to a
// directory fd of the walk, with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW: a symlink
// is recorded, never entered, and the walk never leaves the tree. The caller's
// credentials apply to every open. Over a limit, or when `cancel` is set, it
// stops with an error saying so (the sink's blobs so far stay).
Result<TreeWalk> walk_tree(int dirfd, const TreeLimits& limits, const FileSink& sink, const std::atomic<bool>& cancel);

// Where a file entry's bytes are (the blob's path).
using BlobPath = std::function<std::string(const std::string& sha256)>;

// Creates directory `name` in `parent_fd` and the manifest's tree in it,
// everything owned by `owner` (uid and gid), with the recorded modes
// (set-id bits dropped). Entries are created relative to the fds of their
// parents, opened with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, with O_EXCL /
// O_NOFOLLOW: a manifest cannot make this write outside the new directory.
Result<void> restore_tree(const TreeManifest& m, int parent_fd, const std::string& name, uid_t owner,
                          const BlobPath& blob_path, const std::atomic<bool>& cancel);

// Copies `in` to `out` from their offsets, checking `cancel` between steps.
Result<void> copy_bytes(int in, int out, const std::atomic<bool>& cancel);

// Removes the directory `name` in `parent_fd` and everything below it, without
// following symlinks. Best effort (a stage directory on its way out).
void remove_tree_at(int parent_fd, const std::string& name);

}  // namespace moat::supervisor
