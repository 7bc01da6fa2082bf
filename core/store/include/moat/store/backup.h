#pragma once
// Incident copies of the state database (`moatctl db backup`, the console's
// File > Save incident copy...). moatd keeps the database in WAL mode and the
// WAL is checkpointed only now and then, so a plain `cp moat.db` can miss
// everything since the last checkpoint; SQLite's online backup API reads a
// consistent snapshot through the WAL while moatd keeps writing.
//
// Runs with the caller's own rights: the source is opened read-only by the
// caller (so an operator who cannot read the state directory cannot copy it),
// and the copy is written by the caller. moatd never writes a path for a client.
#include <cstdint>
#include <string>

#include "moat/common/error.h"

namespace moat::store {

struct BackupInfo {
    uint64_t bytes = 0;   // size of the copy
    int64_t jobs = 0;     // rows in the copy, for the operator's confirmation
    int64_t events = 0;
    int64_t policies = 0;
};

// Copies the database at src (read-only) to a new file dest. dest must not
// exist: the copy is built in a private directory next to it and renamed into
// place without replacing anything, so a half-written copy is never left at
// dest and a symlink planted at dest is never followed. The copy is a single
// file (rollback journal mode, no -wal), mode 0600, and opens read-only.
Result<BackupInfo> backup_database(const std::string& src, const std::string& dest);

// Why a file that does not read as a Moat database may be a copy missing its
// WAL, and what to do; "" when nothing points that way (no hint to give).
std::string wal_hint(const std::string& db_path);

}  // namespace moat::store
