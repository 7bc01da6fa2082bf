#pragma once
// An incident copy of moatd's state database (`moatctl db backup`, the
// console's File > Save Incident Copy…), the one way both make it:
//   - the database readable by the caller (root, or an offline copy): the
//     caller copies it itself with SQLite's backup API (store::backup_database);
//   - not readable (an admin who is not root; the state directory is 0700):
//     the caller creates FILE with its own rights and hands it open to moatd
//     (op `backup`), which writes a consistent copy into it. moatd never
//     opens a path the client names. A refused copy leaves no FILE behind.
// Blocking: call it off any GUI thread.
#include <string>

#include "moat/common/error.h"
#include "moat/store/backup.h"

namespace moat::ipc {

inline constexpr const char* kDefaultDatabase = "/var/lib/moat/moat.db";  // moatd's default --state-dir

struct IncidentCopy {
    store::BackupInfo info;
    std::string source;       // the database copied
    bool by_moatd = false;    // written by moatd into the caller's file
};

// `db`: the database path ("" asks moatd on `socket`, else kDefaultDatabase).
Result<IncidentCopy> make_incident_copy(const std::string& socket, std::string db, const std::string& dest);

}  // namespace moat::ipc
