#include "schema.h"

#include <span>

#include "moat/common/timeutil.h"

namespace moat::store::schema {
namespace {

struct Step {
    int version;
    const char* name;
    const char* sql;
};

// The ordered list of migrations. Append only: a released step is never edited
// (a database that already ran it would silently differ); fix mistakes with a
// new step. Each step runs in its own transaction together with the
// schema_migrations row and the PRAGMA user_version bump, so a crash leaves
// the database at the previous version, never half-migrated.
constexpr Step kSteps[] = {
    {1, "initial schema", R"sql(
CREATE TABLE schema_migrations(
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_ns  INTEGER NOT NULL
);

CREATE TABLE policies(
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    sha256      TEXT NOT NULL,
    toml        TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    UNIQUE (name, sha256),
    UNIQUE (name, version)
);

CREATE TABLE jobs(
    id                 INTEGER PRIMARY KEY,
    policy_id          INTEGER REFERENCES policies(id),
    tier               TEXT NOT NULL,
    argv               TEXT NOT NULL DEFAULT '[]',
    env                TEXT NOT NULL DEFAULT '[]',
    cwd                TEXT NOT NULL DEFAULT '',
    started_ns         INTEGER NOT NULL,
    ended_ns           INTEGER,
    state              TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished')),
    exit_code          INTEGER,
    signal             INTEGER,
    cause              TEXT NOT NULL DEFAULT '',
    detail             TEXT NOT NULL DEFAULT '',
    cpu_time_ns        INTEGER NOT NULL DEFAULT 0,
    peak_memory_bytes  INTEGER NOT NULL DEFAULT 0,
    peak_pids          INTEGER NOT NULL DEFAULT 0,
    denial_count       INTEGER NOT NULL DEFAULT 0,
    uid                INTEGER NOT NULL DEFAULT -1,
    pid                INTEGER NOT NULL DEFAULT -1,
    cgroup             TEXT NOT NULL DEFAULT '',
    accelerator        TEXT NOT NULL DEFAULT '',
    info               TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_policy ON jobs(policy_id);
CREATE INDEX jobs_running ON jobs(id) WHERE state = 'running';

CREATE TABLE events(
    id       INTEGER PRIMARY KEY,
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    time_ns  INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('lifecycle', 'resource', 'denial', 'limit')),
    count    INTEGER NOT NULL DEFAULT 1,
    syscall  TEXT,
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_job ON events(job_id, id);
CREATE INDEX events_syscall_time ON events(syscall, time_ns) WHERE syscall IS NOT NULL;
CREATE INDEX events_kind_time ON events(kind, time_ns);
)sql"},
    // count_denials/top_syscalls scanned every denial row; keep running totals
    // per (job, syscall), maintained by the writer in the batch transaction,
    // and backfill them from the events already stored.
    {2, "denial totals", R"sql(
CREATE TABLE denial_totals(
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    syscall  TEXT NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (job_id, syscall)
) WITHOUT ROWID;
INSERT INTO denial_totals(job_id, syscall, count)
    SELECT job_id, coalesce(syscall, ''), sum(count) FROM events WHERE kind = 'denial' GROUP BY 1, 2;
)sql"},
    // Replay (docs/replay.md): what a job needs to be run again. Input files
    // and stdin are content-addressed blobs in DIR/artifacts (blobs lists them
    // with their size for the budget, job_blobs says which job uses which);
    // stdout/stderr tails live in job_output; jobs.recording describes them.
    {3, "replay recordings", R"sql(
ALTER TABLE jobs ADD COLUMN replay_of INTEGER;
ALTER TABLE jobs ADD COLUMN learn INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN recording TEXT NOT NULL DEFAULT '{}';
CREATE TABLE blobs(
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE job_blobs(
    job_id  INTEGER NOT NULL REFERENCES jobs(id),
    sha256  TEXT NOT NULL,
    PRIMARY KEY (job_id, sha256)
) WITHOUT ROWID;
CREATE INDEX job_blobs_sha ON job_blobs(sha256);
CREATE TABLE job_output(
    job_id       INTEGER NOT NULL REFERENCES jobs(id),
    stream       TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    total_bytes  INTEGER NOT NULL,
    data         BLOB NOT NULL,
    PRIMARY KEY (job_id, stream)
) WITHOUT ROWID;
)sql"},
    // One job's events of one kind, in id order (the first page of a job's
    // denials, a job's resource samples): events_job(job_id, id) had to read
    // every row of the job to test its kind, all 100,000 of a job with no
    // denial in a 10M-event store (~300 ms); this index goes straight to them.
    // ~8 % more file; built once on upgrade (~7 s for 10M events here).
    {4, "events by job and kind", R"sql(
CREATE INDEX events_job_kind ON events(job_id, kind, id);
)sql"},
};

Result<int64_t> read_version(sql::Db& db) { return db.scalar("PRAGMA user_version", "PRAGMA user_version"); }

// The checks shared by both open modes.
Result<int> check_identity(sql::Db& db, const std::string& path, int64_t version) {
    auto app = db.scalar("PRAGMA application_id", "PRAGMA application_id");
    if (!app) return std::unexpected(app.error());
    if (*app != 0 && *app != kApplicationId)
        return fail(path + ": not a Moat database (application_id " + std::to_string(*app) + ")");
    if (version > latest_version())
        return fail(path + ": schema version " + std::to_string(version) + " is newer than this build knows (" +
                    std::to_string(latest_version()) + "); refusing to open it, upgrade Moat instead");
    if (version < 0) return fail(path + ": invalid schema version " + std::to_string(version));
    return int(version);
}

}  // namespace

int latest_version() { return int(std::size(kSteps)); }

Result<int> migrate(sql::Db& db, const std::string& path) {
    auto v0 = read_version(db);
    if (!v0) return std::unexpected(v0.error());
    if (auto r = check_identity(db, path, *v0); !r) return r;
    if (*v0 == 0) {
        // Version 0 with tables in it is somebody else's database: do not add ours.
        auto n = db.scalar("SELECT FROM sqlite_schema", "SELECT count(*) FROM sqlite_schema");
        if (!n) return std::unexpected(n.error());
        if (*n != 0) return fail(path + ": not a Moat database (has tables but no Moat schema version)");
    }

    for (const Step& step : kSteps) {
        if (*v0 >= step.version) continue;
        // Re-read the version inside the write lock: another process (a second
        // moatd by mistake, a migration tool) may have migrated meanwhile.
        auto tx = sql::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error().wrap("migrating " + path));
        auto v = read_version(db);
        if (!v) return std::unexpected(v.error());
        if (auto r = check_identity(db, path, *v); !r) return r;
        if (*v >= step.version) continue;  // already applied; tx rolls back (nothing written)
        if (*v != step.version - 1)
            return fail(path + ": schema version " + std::to_string(*v) + " cannot take migration " +
                        std::to_string(step.version));

        std::string label = "migration " + std::to_string(step.version) + " (" + step.name + ")";
        if (auto r = db.exec(label, step.sql); !r) return std::unexpected(r.error().wrap(path));
        auto ins = db.query("INSERT INTO schema_migrations",
                            "INSERT INTO schema_migrations(version, name, applied_ns) VALUES (?1, ?2, ?3)");
        if (!ins) return std::unexpected(ins.error());
        ins->bind(1, step.version).bind(2, step.name).bind(3, now_realtime_ns());
        if (auto r = ins->run(); !r) return std::unexpected(r.error());
        // PRAGMAs take no bound parameters; the values are integers from this file.
        if (auto r = db.exec("PRAGMA user_version",
                             "PRAGMA application_id = " + std::to_string(kApplicationId) +
                                 "; PRAGMA user_version = " + std::to_string(step.version));
            !r)
            return std::unexpected(r.error());
        if (auto r = tx->commit(); !r) return std::unexpected(r.error().wrap(label));
    }
    auto v = read_version(db);
    if (!v) return std::unexpected(v.error());
    return int(*v);
}

Result<int> check_read_only(sql::Db& db, const std::string& path) {
    auto v = read_version(db);
    if (!v) return std::unexpected(v.error());
    auto r = check_identity(db, path, *v);
    if (!r) return r;
    if (*r == 0) return fail(path + ": not a Moat database (no Moat schema)");
    if (*r < latest_version())
        return fail(path + ": schema version " + std::to_string(*r) + " is older than this build's (" +
                    std::to_string(latest_version()) + "); a read-only open cannot migrate it, open it read-write once");
    return r;
}

}  // namespace moat::store::schema
