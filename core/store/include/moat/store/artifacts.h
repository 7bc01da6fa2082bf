#pragma once
// Content-addressed files that replay needs (stdin, --input snapshots), kept
// in DIR/artifacts/blobs/<sha256> (docs/replay.md). The store's `blobs` and
// `job_blobs` tables say which job uses which; this class only handles files.
// Writers: moatd's loop thread and the per-job I/O relays (stdin), each into
// its own temp file, renamed into place once hashed.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "moat/common/error.h"

namespace moat::store {

struct BlobInfo {
    std::string sha256;
    uint64_t bytes = 0;       // bytes stored
    bool truncated = false;   // the source had more than the limit
};

class Artifacts final {
public:
    // Creates DIR/blobs and DIR/tmp (mode 0700) when missing; empties DIR/tmp.
    static Result<Artifacts> open(const std::string& dir);
    Artifacts() = default;

    // Copies at most `max` bytes of the file at `fd` (read from its start)
    // into a blob. truncated says whether the file had more.
    // `cancel`, when given, is checked between reads (a stopped job's snapshot
    // ends early with an error).
    Result<BlobInfo> put_fd(int fd, uint64_t max, const std::atomic<bool>* cancel = nullptr) const;
    // Stores `bytes` as a blob (a directory input's manifest).
    Result<BlobInfo> put_bytes(std::string_view bytes) const;
    // A new temp file for a writer that streams (mode 0600, O_EXCL); the
    // caller writes it, then adopt()s it. Returns the open fd and its path.
    Result<std::pair<int, std::string>> make_temp() const;
    // Hashes a finished temp file and renames it into place (or drops it when
    // that blob exists already).
    Result<BlobInfo> adopt(const std::string& temp_path) const;

    std::string path(const std::string& sha256) const;
    bool exists(const std::string& sha256) const;
    void remove(const std::string& sha256) const;
    const std::string& dir() const { return m_dir; }

private:
    std::string m_dir;
};

// True for 64 lower-case hex digits (never trust a name from the database as a path).
bool valid_sha256(const std::string& s);

}  // namespace moat::store
