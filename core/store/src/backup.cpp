#include "moat/store/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "schema.h"
#include "sqlite.h"

namespace moat::store {

namespace {

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// The private directory the copy is built in: removed with what is in it
// (the copy, a journal SQLite may have left) unless the copy was moved out.
struct TempDir {
    std::string path;
    ~TempDir() {
        if (path.empty()) return;
        for (const char* suffix : {"/copy.db", "/copy.db-journal", "/copy.db-wal", "/copy.db-shm"})
            ::unlink((path + suffix).c_str());
        ::rmdir(path.c_str());
    }
};

Result<int64_t> count(sql::Db& db, const char* table) {
    return db.scalar(std::string("counting ") + table, std::string("SELECT count(*) FROM ") + table);
}

}  // namespace

Result<BackupInfo> backup_database(const std::string& src, const std::string& dest) {
    if (dest.empty()) return fail("backup: empty destination path");
    struct stat st{};
    if (::lstat(dest.c_str(), &st) == 0) return fail("backup to \"" + dest + "\": it exists (the copy never replaces a file)");
    if (errno != ENOENT) return fail_sys("lstat(\"" + dest + "\")", errno);

    // Read-only, through the WAL: moatd's uncheckpointed writes are part of
    // what the snapshot sees. The schema check refuses to copy something that
    // is not a Moat database (a wrong --db) with the reason.
    auto in = sql::Db::open(sql::read_only_uri(src), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX);
    if (!in) {
        std::string m = in.error().message;
        if (::access(src.c_str(), R_OK) != 0)
            m += " (this runs with your own rights: you need read access to the database and its directory; "
                 "moatd's state directory is mode 0700, so run it as moatd's user)";
        return fail(m);
    }
    sqlite3_busy_timeout(in->get(), 5000);
    if (auto v = schema::check_read_only(*in, src); !v) return std::unexpected(v.error());

    // A directory only this process's user can enter: nobody else can place a
    // symlink or a file where SQLite creates the copy and its journal.
    std::string tmpl = dir_of(dest) + "/.moat-backup-XXXXXX";
    TempDir tmp;
    if (!::mkdtemp(tmpl.data())) return fail_sys("mkdtemp(\"" + tmpl + "\")", errno);
    tmp.path = tmpl;
    const std::string copy = tmp.path + "/copy.db";
    {
        const int fd = ::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return fail_sys("open(\"" + copy + "\")", errno);
        ::close(fd);
    }
    auto out = sql::Db::open(copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX);
    if (!out) return std::unexpected(out.error());

    {
        std::unique_ptr<sqlite3_backup, decltype(&sqlite3_backup_finish)> b(
            sqlite3_backup_init(out->get(), "main", in->get(), "main"), &sqlite3_backup_finish);
        if (!b) return std::unexpected(sql::make_error(out->get(), "sqlite3_backup_init"));
        // step(-1): every page in one read transaction of the source, so the
        // copy is one consistent snapshot. The WAL lets moatd keep writing
        // meanwhile; a lock it holds for a moment (a checkpoint resetting the
        // WAL) is waited for by the source's busy timeout (5 s, above).
        const int rc = sqlite3_backup_step(b.get(), -1);
        if (rc != SQLITE_DONE) {
            std::string m = std::string("sqlite3_backup_step(\"") + src + "\"): " + sqlite3_errstr(rc);
            return fail(m);
        }
        const int frc = sqlite3_backup_finish(b.release());
        if (frc != SQLITE_OK) return std::unexpected(sql::make_error(out->get(), "sqlite3_backup_finish"));
    }
    // The copied header says WAL (the source's mode); a single self-contained
    // file is what an incident copy should be, and a WAL-mode file cannot be
    // opened read-only where its -shm cannot be created.
    if (auto r = out->scalar_text("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode=DELETE"); !r)
        return std::unexpected(r.error());
    if (auto r = out->scalar_text("PRAGMA quick_check", "PRAGMA quick_check"); !r || *r != "ok")
        return fail("the copy failed its check: " + (r ? *r : r.error().message));
    BackupInfo info;
    for (auto [table, field] : {std::pair{"jobs", &info.jobs}, std::pair{"events", &info.events},
                                std::pair{"policies", &info.policies}}) {
        auto n = count(*out, table);
        if (!n) return std::unexpected(n.error());
        *field = *n;
    }
    *out = sql::Db();  // closed before it moves: nothing of SQLite's is left open on it
    struct stat cs{};
    if (::stat(copy.c_str(), &cs) == 0) info.bytes = uint64_t(cs.st_size);
    // renameat2(RENAME_NOREPLACE): never replaces what appeared at dest since
    // the check above, and does not follow a symlink there.
    if (::renameat2(AT_FDCWD, copy.c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) != 0)
        return fail_sys("renameat2(\"" + copy + "\" -> \"" + dest + "\", RENAME_NOREPLACE)", errno);
    return info;
}

std::string wal_hint(const std::string& db_path) {
    const std::string wal = db_path + "-wal";
    struct stat st{};
    if (::stat(wal.c_str(), &st) == 0) {
        return "a " + wal + " is next to it (" + std::to_string(st.st_size) +
               " bytes) but SQLite did not use it: the directory must be writable (SQLite creates " + db_path +
               "-shm to read a WAL), and the -wal must be from the same copy. Make the copy with `moatctl db "
               "backup FILE` (or File > Save incident copy... in the console) instead";
    }
    return "moatd keeps its database in WAL mode, and recent data lives in moat.db-wal until a checkpoint: a plain "
           "copy of moat.db alone can be empty. Copy moat.db-wal too (next to the copy, named " +
           wal.substr(wal.rfind('/') == std::string::npos ? 0 : wal.rfind('/') + 1) +
           "), or make the copy with `moatctl db backup FILE`";
}

}  // namespace moat::store
