#pragma once
// Schema migrations (docs/store.md, "Schema and migrations").
#include "moat/common/error.h"
#include "sqlite.h"

namespace moat::store::schema {

// PRAGMA application_id of a Moat database: "MOAT" in ASCII.
inline constexpr int64_t kApplicationId = 0x4d4f4154;

// The newest schema version this build knows (= number of migration steps).
int latest_version();

// Brings a writable connection up to latest_version(), one transaction per
// step; refuses a database whose version is newer than this build knows, or a
// non-empty database that is not Moat's. Returns the version now in place.
Result<int> migrate(sql::Db& db, const std::string& path);

// For read-only opens: checks that the database is Moat's and exactly at
// latest_version() (a read-only open cannot migrate). Returns the version.
Result<int> check_read_only(sql::Db& db, const std::string& path);

}  // namespace moat::store::schema
