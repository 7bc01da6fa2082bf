// Unit tests for moat_store (core/store). No privileges needed.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "moat/common/sha256.h"
#include "moat/common/timeutil.h"
#include "moat/store/artifacts.h"
#include "moat/store/store.h"
#include "schema.h"
#include "test_access.h"

using namespace moat;
using namespace moat::store;
using nlohmann::json;

namespace {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "moat-store-test.XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        m_path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    std::string file(const std::string& name) const { return (m_path / name).string(); }

private:
    std::filesystem::path m_path;
};

// Runs one statement on a separate raw connection (what an operator's sqlite3 would do).
void raw_exec(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
}

int64_t raw_int(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

// denial_totals is derived data: it must equal what the events table says.
// Every stored event's syscall column and data text, in id order, read with
// SQLite directly (what the writer wrote, not what the store reads back).
struct StoredRow {
    std::optional<std::string> syscall;
    std::string data;
};
std::vector<StoredRow> stored_rows(const std::string& path) {
    std::vector<StoredRow> out;
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
        ADD_FAILURE() << "open " << path;
        sqlite3_close(db);
        return out;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT syscall, data FROM events ORDER BY id", -1, &st, nullptr) != SQLITE_OK)
        ADD_FAILURE() << sqlite3_errmsg(db);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        StoredRow r;
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            r.syscall = std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                                    size_t(sqlite3_column_bytes(st, 0)));
        r.data.assign(reinterpret_cast<const char*>(sqlite3_column_text(st, 1)), size_t(sqlite3_column_bytes(st, 1)));
        out.push_back(std::move(r));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

void expect_totals_match_events(const std::string& path) {
    EXPECT_EQ(raw_int(path, "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'denial'"),
              raw_int(path, "SELECT coalesce(sum(count), 0) FROM denial_totals"));
    EXPECT_EQ(raw_int(path,
                      "SELECT count(*) FROM (SELECT job_id, coalesce(syscall, '') AS sc, sum(count) AS n FROM events"
                      " WHERE kind = 'denial' GROUP BY 1, 2) e"
                      " FULL JOIN denial_totals t ON t.job_id = e.job_id AND t.syscall = e.sc"
                      " WHERE e.n IS NOT t.count"),
              0);
}

std::unique_ptr<Store> open_store(const std::string& path, size_t cap = 1 << 16) {
    auto s = Store::open(path, cap);
    if (!s) ADD_FAILURE() << s.error().message;
    return s ? std::move(*s) : nullptr;
}

int64_t new_job(Store& s, int64_t policy_id = 0, std::vector<std::string> argv = {"/bin/true"}) {
    JobRecord j;
    j.tier = "seccomp";
    j.argv = std::move(argv);
    j.policy_id = policy_id;
    auto id = s.create_job(j);
    if (!id) ADD_FAILURE() << id.error().message;
    return id ? *id : 0;
}

Event denial(int64_t job, const std::string& syscall, int64_t time_ns, uint64_t count = 1) {
    Event ev;
    ev.job = job;
    ev.kind = EventKind::Denial;
    ev.time_ns = time_ns;
    ev.count = count;
    ev.fields = {{"pid", 4242},
                 {"syscall", syscall},
                 {"nr", 257},
                 {"arch", "x86_64"},
                 {"args", json::array({4294967196ULL, 140737488346112ULL, 0, 0, 0, UINT64_MAX})},
                 {"action", "errno:EPERM"},
                 {"ip", "0x7f3a1c11f0a"},
                 {"module", "libc.so.6+0x11f0a"},
                 {"decoded", "/etc/shadow"}};
    return ev;
}

Event lifecycle(int64_t job, int64_t time_ns, const std::string& what = "started") {
    Event ev;
    ev.job = job;
    ev.kind = EventKind::Lifecycle;
    ev.time_ns = time_ns;
    ev.fields = {{"event", what}};
    return ev;
}

std::vector<Event> all_events(Store& s, EventQuery q = {}) {
    std::vector<Event> out;
    q.limit = 10000;
    for (;;) {
        auto page = s.query_events(q);
        EXPECT_TRUE(page) << page.error().message;
        if (!page || page->empty()) break;
        q.after_id = page->back().id;
        for (auto& e : *page) out.push_back(std::move(e));
    }
    return out;
}

std::vector<Event> limit_events(Store& s, int64_t job) {
    EventQuery q;
    q.job = job;
    q.kind = EventKind::Limit;
    return all_events(s, q);
}

}  // namespace

// ------------------------------------------------------------------ schema

TEST(StoreSchema, MigratesAnEmptyFileAndReopensIdempotently) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    {
        auto s = open_store(path);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->schema_version(), schema::latest_version());
        EXPECT_EQ(s->integrity_check().value(), "ok");
    }
    struct stat st{};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the database holds argv/env of every job";
    EXPECT_EQ(raw_int(path, "PRAGMA user_version"), schema::latest_version());
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM schema_migrations"), schema::latest_version());
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
    {
        auto s = open_store(path);  // second open: no migration re-applied, no error
        ASSERT_TRUE(s);
        EXPECT_EQ(s->schema_version(), schema::latest_version());
        EXPECT_EQ(new_job(*s), 1);
    }
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM schema_migrations"), schema::latest_version());
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM jobs"), 1);
}

TEST(StoreSchema, UpgradesAVersion1DatabaseAndBackfillsDenialTotals) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    int64_t job = 0;
    {
        auto s = open_store(path);
        ASSERT_TRUE(s);
        job = new_job(*s);
        for (int i = 0; i < 10; ++i) s->append(denial(job, i % 2 ? "openat" : "connect", i + 1, 3));
    }
    // Turn it back into what schema version 1 looked like.
    raw_exec(path,
             "DROP TABLE job_output; DROP TABLE job_blobs; DROP TABLE blobs; ALTER TABLE jobs DROP COLUMN replay_of;"
             " ALTER TABLE jobs DROP COLUMN learn; ALTER TABLE jobs DROP COLUMN recording;"
             " DROP TABLE denial_totals; DROP INDEX events_job_kind; DELETE FROM schema_migrations WHERE version >= 2;"
             " PRAGMA user_version = 1");
    auto ro = Store::open_read_only(path);
    ASSERT_FALSE(ro) << "a read-only open cannot migrate";
    EXPECT_NE(ro.error().message.find("older"), std::string::npos) << ro.error().message;

    auto s = open_store(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->schema_version(), schema::latest_version());
    EXPECT_EQ(s->count_denials(job).value(), 30u);
    auto top = s->top_syscalls(job).value();
    ASSERT_EQ(top.size(), 2u);
    EXPECT_EQ(top[0].count, 15u);
    expect_totals_match_events(path);
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM schema_migrations"), schema::latest_version());
}

// Schema 4: a job's events of one kind are found through events_job_kind,
// not by reading every row of the job (a job with 100,000 samples and no
// denial made the first page of its denials ~300 ms at 10M events).
TEST(StoreSchema, AJobsEventsOfOneKindAreFoundThroughTheirIndex) {
    TempDir d;
    const std::string path = d.file("moat.db");
    { auto s = open_store(path); ASSERT_TRUE(s); }
    // The text Store::query_events prepares for a job and a kind.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "EXPLAIN QUERY PLAN SELECT id, job_id, time_ns, kind, count, syscall, data FROM events "
                                 "WHERE id > ?1 AND job_id = ?2 AND kind = ?3 ORDER BY id LIMIT ?4",
                                 -1, &st, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string plan;
    while (sqlite3_step(st) == SQLITE_ROW) plan += reinterpret_cast<const char*>(sqlite3_column_text(st, 3)) + std::string("\n");
    sqlite3_finalize(st);
    sqlite3_close(db);
    EXPECT_NE(plan.find("events_job_kind"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << "no sort: the index gives id order\n" << plan;
}

TEST(StoreSchema, RefusesANewerSchema) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    { ASSERT_TRUE(open_store(path)); }
    raw_exec(path, "PRAGMA user_version = 99");
    auto s = Store::open(path);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("schema version 99 is newer"), std::string::npos) << s.error().message;
    auto ro = Store::open_read_only(path);
    ASSERT_FALSE(ro);
    EXPECT_NE(ro.error().message.find("newer"), std::string::npos) << ro.error().message;
    EXPECT_EQ(raw_int(path, "PRAGMA user_version"), 99) << "a refused database is left untouched";
}

TEST(StoreSchema, RefusesSomeoneElsesDatabase) {
    TempDir dir;
    std::string path = dir.file("other.db");
    raw_exec(path, "CREATE TABLE notes(x)");
    auto s = Store::open(path);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("not a Moat database"), std::string::npos) << s.error().message;
}

TEST(StoreSchema, MissingDirectoryIsAClearError) {
    TempDir dir;
    std::string path = dir.file("no/such/dir/moat.db");
    auto s = Store::open(path);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find(path), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("ENOENT"), std::string::npos) << s.error().message;
}

// ------------------------------------------------------------------ policies

TEST(StorePolicies, VersionsByContentPerName) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    auto a1 = s->put_policy("web", "name = \"web\"", "aaa").value();
    EXPECT_EQ(a1.version, 1);
    auto again = s->put_policy("web", "name = \"web\"", "aaa").value();
    EXPECT_EQ(again.id, a1.id);
    EXPECT_EQ(again.version, 1);
    auto a2 = s->put_policy("web", "name = \"web\"\n# v2", "bbb").value();
    EXPECT_EQ(a2.version, 2);
    EXPECT_NE(a2.id, a1.id);
    auto b1 = s->put_policy("batch", "name = \"batch\"", "aaa").value();
    EXPECT_EQ(b1.version, 1) << "versions count per name";
    auto back = s->put_policy("web", "name = \"web\"", "aaa").value();
    EXPECT_EQ(back.id, a1.id) << "returning to an old text is the old version, not a new one";

    auto got = s->get_policy(a2.id).value();
    EXPECT_EQ(got.name, "web");
    EXPECT_EQ(got.toml, "name = \"web\"\n# v2");
    EXPECT_EQ(got.sha256, "bbb");
    EXPECT_GT(got.created_ns, 0);
    EXPECT_FALSE(s->get_policy(9999));

    auto list = s->list_policies().value();
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].name, "batch");
    EXPECT_EQ(list[1].version, 1);
    EXPECT_EQ(list[2].version, 2);
}

// A put of a stored version is answered from memory (Impl::known_policies,
// bounded): past the bound, and after the store is reopened, every answer is
// still the row that was stored, and nothing is stored twice.
TEST(StorePolicies, RepeatedPutsPastTheRememberedOnesStayExact) {
    TempDir dir;
    std::vector<moat::store::PolicyRecord> first;
    {
        auto s = open_store(dir.file("moat.db"));
        ASSERT_TRUE(s);
        for (int round = 0; round < 3; ++round)
            for (int i = 0; i < 40; ++i) {
                const std::string name = "p" + std::to_string(i % 20);
                auto r = s->put_policy(name, "text " + std::to_string(i), "sha" + std::to_string(i)).value();
                if (round == 0) first.push_back(r);
                else {
                    EXPECT_EQ(r.id, first[size_t(i)].id) << name << " round " << round;
                    EXPECT_EQ(r.version, first[size_t(i)].version);
                    EXPECT_EQ(r.toml, "text " + std::to_string(i));
                }
            }
        EXPECT_EQ(s->list_policies().value().size(), 40u);
        EXPECT_EQ(first[25].version, 2) << "p5's second text is its version 2";
    }
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    auto r = s->put_policy("p5", "text 25", "sha25").value();
    EXPECT_EQ(r.id, first[25].id);
    auto n = s->put_policy("p5", "text new", "shanew").value();
    EXPECT_EQ(n.version, 3);
    EXPECT_EQ(s->list_policies().value().size(), 41u);
}

TEST(StorePolicies, ConcurrentPutsGetDistinctVersions) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    std::vector<std::thread> threads;
    std::mutex mu;
    std::map<std::string, PolicyRecord> by_sha;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                // Every thread stores the same 10 texts: exactly 10 versions result.
                std::string sha = "sha" + std::to_string((i + t) % 10);
                auto p = s->put_policy("p", "toml " + sha, sha);
                ASSERT_TRUE(p) << p.error().message;
                std::lock_guard lk(mu);
                auto [it, fresh] = by_sha.emplace(sha, *p);
                if (!fresh) {
                    EXPECT_EQ(it->second.id, p->id);
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    auto list = s->list_policies().value();
    ASSERT_EQ(list.size(), 10u);
    for (size_t i = 0; i < list.size(); ++i) EXPECT_EQ(list[i].version, int(i + 1));
}

// ------------------------------------------------------------------ jobs

TEST(StoreJobs, CreateUpdateFinishGetList) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    auto pol = s->put_policy("thumbnailer", "name = \"thumbnailer\"", "abc123").value();

    JobRecord j;
    j.tier = "container";
    j.argv = {"/usr/bin/convert", "in.png", "out ü.png"};
    j.env = {"LANG=C.UTF-8", "OMP_NUM_THREADS=1"};
    j.cwd = "/work";
    j.policy_id = pol.id;
    j.started_ns = 1'700'000'000'123'456'789;
    auto id = s->create_job(j);
    ASSERT_TRUE(id) << id.error().message;
    EXPECT_EQ(j.id, *id);
    int64_t second = new_job(*s, pol.id);
    int64_t third = new_job(*s);  // no policy (e.g. the policy failed to parse)

    ASSERT_TRUE(s->update_job_runtime(*id, 31337, 100000, "/sys/fs/cgroup/moat/job-1", {{"landlock_abi", 3}}));
    EXPECT_FALSE(s->update_job_runtime(12345, 1, 1, "", json::object())) << "unknown job";

    auto running = s->running_jobs().value();
    ASSERT_EQ(running.size(), 3u);
    EXPECT_EQ(running[0].id, *id);

    JobRecord fin = j;
    fin.ended_ns = j.started_ns + 5'000'000'000;
    fin.exit_code = std::nullopt;
    fin.signal = 9;
    fin.cause = "memory";
    fin.detail = "memory.max 256MiB reached";
    fin.resources = {123456789, 268435456, 12};
    fin.denial_count = 7;
    ASSERT_TRUE(s->finish_job(fin));

    auto got = s->get_job(*id);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got->tier, "container");
    EXPECT_EQ(got->argv, j.argv);
    EXPECT_EQ(got->env, j.env);
    EXPECT_EQ(got->cwd, "/work");
    EXPECT_EQ(got->policy_id, pol.id);
    EXPECT_EQ(got->policy_name, "thumbnailer");
    EXPECT_EQ(got->policy_version, 1);
    EXPECT_EQ(got->policy_sha256, "abc123");
    EXPECT_EQ(got->started_ns, j.started_ns);
    EXPECT_EQ(got->ended_ns, fin.ended_ns);
    EXPECT_EQ(got->state, "finished");
    EXPECT_EQ(got->exit_code, std::nullopt);
    EXPECT_EQ(got->signal, 9);
    EXPECT_EQ(got->cause, "memory");
    EXPECT_EQ(got->detail, "memory.max 256MiB reached");
    EXPECT_EQ(got->resources.cpu_time_ns, 123456789u);
    EXPECT_EQ(got->resources.peak_memory_bytes, 268435456u);
    EXPECT_EQ(got->resources.peak_pids, 12u);
    EXPECT_EQ(got->denial_count, 7u);
    EXPECT_EQ(got->pid, 31337);
    EXPECT_EQ(got->uid, 100000);
    EXPECT_EQ(got->cgroup, "/sys/fs/cgroup/moat/job-1");
    EXPECT_EQ(got->info, json({{"landlock_abi", 3}}));

    auto third_rec = s->get_job(third).value();
    EXPECT_EQ(third_rec.policy_id, 0);
    EXPECT_EQ(third_rec.policy_name, "");
    EXPECT_EQ(third_rec.state, "running");
    EXPECT_FALSE(third_rec.ended_ns);

    running = s->running_jobs().value();
    ASSERT_EQ(running.size(), 2u);
    EXPECT_EQ(running[0].id, second);
    EXPECT_EQ(running[1].id, third);

    auto list = s->list_jobs().value();
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].id, third) << "newest first";
    EXPECT_EQ(list[1].id, second);
    EXPECT_EQ(list[2].id, *id);
    auto page = s->list_jobs(1, second).value();  // keyset: older than `second`
    ASSERT_EQ(page.size(), 1u);
    EXPECT_EQ(page[0].id, *id);

    auto missing = s->get_job(999);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "job 999 not found");
    JobRecord ghost;
    ghost.id = 999;
    EXPECT_FALSE(s->finish_job(ghost));
}

TEST(StoreJobs, UnknownPolicyIsRefusedWithTheSqliteReason) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    JobRecord j;
    j.tier = "seccomp";
    j.policy_id = 77;
    auto id = s->create_job(j);
    ASSERT_FALSE(id);
    EXPECT_EQ(id.error().message, "INSERT INTO jobs: FOREIGN KEY constraint failed");
}

// ------------------------------------------------------------------ events

TEST(StoreEvents, DenialRoundTripsEveryField) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    Event d = denial(job, "openat", 1'764'432'446'123'456'789, 3);
    Event nulls = denial(job, "connect", 1'764'432'447'000'000'000);
    nulls.fields["module"] = nullptr;
    nulls.fields["decoded"] = nullptr;
    s->append(d);
    s->append(nulls);
    s->flush();

    auto evs = s->query_events({.job = job}).value();
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_GT(evs[0].id, 0);
    EXPECT_LT(evs[0].id, evs[1].id);
    EXPECT_EQ(evs[0].job, job);
    EXPECT_EQ(evs[0].kind, EventKind::Denial);
    EXPECT_EQ(evs[0].time_ns, d.time_ns);
    EXPECT_EQ(evs[0].count, 3u);
    EXPECT_EQ(evs[0].fields, d.fields) << evs[0].fields.dump();
    EXPECT_EQ(evs[1].fields, nulls.fields) << evs[1].fields.dump();
    EXPECT_EQ(evs[0].fields["args"][5].get<uint64_t>(), UINT64_MAX);

    json line = evs[0].to_json();
    EXPECT_EQ(line["id"], evs[0].id);
    EXPECT_EQ(line["time"], "2025-11-29T16:07:26.123456789Z");
    EXPECT_EQ(line["job"], job);
    EXPECT_EQ(line["kind"], "denial");
    EXPECT_EQ(line["count"], 3);
    EXPECT_EQ(line["syscall"], "openat");
    EXPECT_EQ(line["ip"], "0x7f3a1c11f0a");
    EXPECT_EQ(line["module"], "libc.so.6+0x11f0a");
    EXPECT_TRUE(evs[1].to_json()["module"].is_null());
    EXPECT_TRUE(evs[1].to_json()["decoded"].is_null());
    EXPECT_TRUE(evs[1].to_json().contains("decoded"));

    EXPECT_EQ(s->count_denials(job).value(), 4u) << "sum of counts, not rows";
    EXPECT_EQ(s->stats().written, 2u);
}

TEST(StoreEvents, EnvelopeKeysInFieldsDoNotOverrideColumns) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    Event ev = lifecycle(job, 5);
    ev.fields["kind"] = "bogus";
    ev.fields["job"] = 12345;
    ev.fields["count"] = 99;
    s->append(ev);
    s->flush();
    auto evs = s->query_events({.job = job}).value();
    ASSERT_EQ(evs.size(), 1u);
    json line = evs[0].to_json();
    EXPECT_EQ(line["kind"], "lifecycle");
    EXPECT_EQ(line["job"], job);
    EXPECT_EQ(line["count"], 1);
    EXPECT_EQ(line["event"], "started");
}

TEST(StoreEvents, KeysetPagingVisitsEveryEventOnce) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    constexpr int kN = 12345;
    for (int i = 0; i < kN; ++i) s->append(lifecycle(job, 1000 + i, std::to_string(i)));
    s->flush();

    EventQuery q;
    q.job = job;
    q.limit = 1000;
    std::set<int64_t> seen;
    int pages = 0, expect_seq = 0;
    int64_t last = 0;
    for (;;) {
        auto page = s->query_events(q).value();
        if (page.empty()) break;
        ++pages;
        EXPECT_LE(page.size(), 1000u);
        for (auto& e : page) {
            EXPECT_GT(e.id, last) << "oldest first";
            last = e.id;
            EXPECT_TRUE(seen.insert(e.id).second);
            EXPECT_EQ(e.fields["event"], std::to_string(expect_seq++)) << "append order kept";
        }
        q.after_id = page.back().id;
    }
    EXPECT_EQ(seen.size(), size_t(kN));
    EXPECT_EQ(pages, 13);

    q.after_id = 0;
    q.limit = 1'000'000;
    EXPECT_EQ(s->query_events(q).value().size(), 10000u) << "limit is capped";
}

TEST(StoreEvents, FiltersByJobKindSyscallAndTime) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    int64_t a = new_job(*s), b = new_job(*s);
    for (int i = 0; i < 100; ++i) {
        s->append(denial(a, i % 2 ? "openat" : "connect", 1000 + i, 2));
        s->append(denial(b, "openat", 1000 + i));
        s->append(lifecycle(a, 1000 + i));
    }
    Event res;
    res.job = b;
    res.kind = EventKind::Resource;
    res.time_ns = 5000;
    res.fields = {{"cpu_time_ns", 10}, {"memory_bytes", 4096}, {"pids", 1}};
    s->append(res);
    s->flush();

    EXPECT_EQ(all_events(*s, {.job = a}).size(), 200u);
    EXPECT_EQ(all_events(*s, {.job = a, .kind = EventKind::Denial}).size(), 100u);
    EXPECT_EQ(all_events(*s, {.kind = EventKind::Denial, .syscall = "openat"}).size(), 150u);
    EXPECT_EQ(all_events(*s, {.job = a, .syscall = "connect"}).size(), 50u);
    // [since, until): times 1010..1019 -> 10 per job for denials of both syscalls.
    auto win = all_events(*s, {.kind = EventKind::Denial, .syscall = "openat", .since_ns = 1010, .until_ns = 1020});
    EXPECT_EQ(win.size(), 15u);
    for (auto& e : win) {
        EXPECT_GE(e.time_ns, 1010);
        EXPECT_LT(e.time_ns, 1020);
        EXPECT_EQ(e.fields["syscall"], "openat");
    }
    auto r = all_events(*s, {.kind = EventKind::Resource});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].fields, res.fields);
    EXPECT_FALSE(r[0].fields.contains("syscall"));
    EXPECT_TRUE(all_events(*s, {.job = 4242}).empty());

    EXPECT_EQ(s->count_denials(a).value(), 200u);
    EXPECT_EQ(s->count_denials(b).value(), 100u);
    auto top = s->top_syscalls().value();
    ASSERT_EQ(top.size(), 2u);
    EXPECT_EQ(top[0].syscall, "openat");
    EXPECT_EQ(top[0].count, 200u);  // a: 50 x 2, b: 100 x 1
    EXPECT_EQ(top[1].syscall, "connect");
    EXPECT_EQ(top[1].count, 100u);
    auto top_b = s->top_syscalls(b, 5).value();
    ASSERT_EQ(top_b.size(), 1u);
    EXPECT_EQ(top_b[0].count, 100u);
}

TEST(StoreEvents, EventOfAnUnknownJobIsDroppedNotTheBatch) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    {
        auto hold = StoreTestAccess::hold_writer(*s);  // all four land in one batch
        s->append(lifecycle(job, 1));
        s->append(lifecycle(9999, 2));
        s->append(denial(9999, "openat", 3, 5));
        s->append(denial(job, "openat", 4));
    }
    s->flush();
    EXPECT_EQ(all_events(*s, {.job = job}).size(), 2u);
    auto st = s->stats();
    EXPECT_EQ(st.written, 2u);
    EXPECT_EQ(st.dropped, 2u);
    EXPECT_EQ(s->top_syscalls().value().at(0).count, 1u) << "the rejected denial is not counted";
    expect_totals_match_events(path);
}

TEST(StoreEvents, DenialWithoutASyscallNameIsCountedButNotRanked) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    Event odd = denial(job, "x", 1, 4);
    odd.fields["syscall"] = 451;  // a number the supervisor could not name
    s->append(odd);
    s->append(denial(job, "openat", 2, 1));
    s->flush();
    auto evs = s->query_events({.job = job}).value();
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_EQ(evs[0].fields["syscall"], 451) << "kept in data unchanged";
    EXPECT_EQ(s->count_denials(job).value(), 5u);
    auto top = s->top_syscalls(job).value();
    ASSERT_EQ(top.size(), 1u);
    EXPECT_EQ(top[0].syscall, "openat");
    expect_totals_match_events(path);
}

// The stored bytes are a contract (the sqlite3 CLI, backups, older readers):
// events.data must be exactly dump() of the fields minus the envelope keys and,
// for a denial, minus a string syscall; the syscall column that string. The
// writer serialises member by member into a reused buffer; this pins its
// output to the library's dump() for keys and values that need escaping,
// invalid UTF-8 (replaced), nesting, and the non-object cases.
TEST(StoreEvents, StoredDataIsExactlyTheDumpOfTheFields) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    std::vector<Event> evs;
    evs.push_back(denial(job, "openat", 1));
    Event d = denial(job, "conn\"ect\\\n\x01", 2, 7);
    d.fields["decoded"] = std::string("/tmp/\xff\xfe bad utf8 \xc3\x28 and \xe2\x82\xac \x7f \t\b\f\r");
    d.fields["k\xc3\xa9y \"q\""] = "v";
    d.fields["ctl\x1f"] = json::array({1, -2, 3.5, nullptr, true, "s\"", json::object(), json::array()});
    d.fields["nested"] = {{"b", {{"c", "\\"}}}, {"a", json::array({json::object({{"x", 1}})})}};
    d.fields["\xff"] = 0;
    d.fields[""] = "";
    d.fields["id"] = 5;
    d.fields["time"] = "x";
    evs.push_back(d);
    Event odd = denial(job, "x", 3);
    odd.fields["syscall"] = 451;
    evs.push_back(odd);
    Event lc = lifecycle(job, 4);
    lc.fields["syscall"] = "stays in data (not a denial)";
    lc.fields["kind"] = "bogus";
    evs.push_back(lc);
    Event only_envelope = lifecycle(job, 5);
    only_envelope.fields = {{"job", 1}, {"count", 2}};
    evs.push_back(only_envelope);
    Event empty = lifecycle(job, 6);
    empty.fields = json::object();
    evs.push_back(empty);
    Event null_fields = lifecycle(job, 7);
    null_fields.fields = nullptr;
    evs.push_back(null_fields);
    Event array_fields = lifecycle(job, 8);
    array_fields.fields = json::array({1, "two\xff"});
    evs.push_back(array_fields);
    Event string_fields = lifecycle(job, 9);
    string_fields.fields = "just a string";
    evs.push_back(string_fields);
    Event only_syscall = denial(job, "openat", 10);
    only_syscall.fields = {{"syscall", "openat"}};
    evs.push_back(only_syscall);
    for (const auto& ev : evs) s->append(ev);
    s->flush();

    // What the writer stored before it serialised member by member.
    auto expected = [](Event ev, std::optional<std::string>* syscall) {
        auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
        if (!ev.fields.is_object()) return ev.fields.is_null() ? std::string("{}") : dump(json{{"fields", ev.fields}});
        for (const char* key : {"id", "time", "job", "kind", "count"}) ev.fields.erase(key);
        if (ev.kind == EventKind::Denial) {
            auto it = ev.fields.find("syscall");
            if (it != ev.fields.end() && it->is_string()) {
                *syscall = it->get<std::string>();
                ev.fields.erase(it);
            }
        }
        return dump(ev.fields);
    };
    const auto rows = stored_rows(path);
    ASSERT_EQ(rows.size(), evs.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        std::optional<std::string> want_syscall;
        std::string want = expected(evs[i], &want_syscall);
        EXPECT_EQ(rows[i].data, want) << "row " << i;
        EXPECT_EQ(rows[i].syscall, want_syscall) << "row " << i;
    }
    expect_totals_match_events(path);
}

// ------------------------------------------------------------------ typed denials

// What Supervisor::judge built for a new denial before the typed payload
// (copied from it, not derived from DenialFields::to_json()): the typed path
// must store, read back and approximate exactly this.
json judge_json(const DenialFields& d) {
    char ip[24];
    snprintf(ip, sizeof ip, "0x%llx", (unsigned long long)d.ip);
    json f = {{"pid", d.pid},
              {"syscall", d.syscall},
              {"nr", d.nr},
              {"arch", d.arch},
              {"args", {d.args[0], d.args[1], d.args[2], d.args[3], d.args[4], d.args[5]}},
              {"action", d.action},
              {"rule", d.rule},
              {"ip", ip},
              {"module", d.module ? json(*d.module) : json(nullptr)},
              {"decoded", d.decoded ? json(*d.decoded) : json(nullptr)}};
    if (d.reason) f["reason"] = *d.reason;
    if (d.enforced) f["enforced"] = *d.enforced;
    if (d.module_note) f["module_note"] = *d.module_note;
    return f;
}

DenialFields typed(const std::string& syscall) {
    DenialFields d;
    d.pid = 4242;
    d.syscall = syscall;
    d.nr = 257;
    d.arch = "x86_64";
    const uint64_t args[6] = {4294967196ULL, 140737488346112ULL, 0, 0, 0, UINT64_MAX};
    std::copy(args, args + 6, d.args);
    d.action = "errno:EPERM";
    d.rule = "default_action";
    d.ip = 0x7f3a1c11f0aULL;
    d.module = "libc.so.6+0x11f0a";
    d.decoded = "/etc/shadow";
    return d;
}

// The cases the supervisor produces (docs/store.md, "events"), and strings a
// hostile job controls (decoded paths, module names) that need escaping.
std::vector<DenialFields> typed_cases() {
    std::vector<DenialFields> out;
    out.push_back(typed("openat"));
    DenialFields nulls = typed("connect");
    nulls.module.reset();
    nulls.decoded.reset();
    out.push_back(nulls);
    DenialFields foreign = typed("syscall_999");
    foreign.arch = "i386";
    foreign.nr = 999;
    foreign.rule = "abi";
    foreign.reason = "foreign ABI: only native x86_64 syscalls are judged by the allowlist";
    out.push_back(foreign);
    DenialFields x32 = typed("openat");
    x32.arch = "x32";
    x32.reason = foreign.reason;
    out.push_back(x32);
    DenialFields learn_on = typed("mkdir");
    learn_on.enforced = false;
    out.push_back(learn_on);
    DenialFields learn_off = typed("unshare");
    learn_off.enforced = true;
    learn_off.action = "kill_process";
    learn_off.rule = "seccomp.rule[3]";
    out.push_back(learn_off);
    DenialFields note = typed("rmdir");
    note.module.reset();
    note.module_note = "not resolved: the job used up its share of moatd's time (limit supervisor-time)";
    out.push_back(note);
    DenialFields everything = foreign;
    everything.enforced = true;
    everything.module.reset();
    everything.module_note = note.module_note;
    out.push_back(everything);
    DenialFields hostile = typed("conn\"ect\\\n\x01");
    hostile.decoded = std::string("/tmp/\xff\xfe bad utf8 \xc3\x28 \"q\" \\ and \xe2\x82\xac \x7f \t\b\f\r");
    hostile.module = "lib\xc3\xa9.so+0x1";
    hostile.action = "errno:\"x\"";
    hostile.rule = "seccomp.rule[\x01]";
    hostile.arch = "unknown";
    out.push_back(hostile);
    DenialFields extremes = typed("");
    extremes.pid = 0;
    extremes.nr = -1;
    extremes.ip = 0;
    std::fill(std::begin(extremes.args), std::end(extremes.args), UINT64_MAX);
    extremes.decoded = "";
    out.push_back(extremes);
    DenialFields big_ip = typed("ptrace");
    big_ip.ip = UINT64_MAX;
    big_ip.pid = INT32_MAX;
    out.push_back(big_ip);
    return out;
}

// The typed payload is stored byte for byte as dump() of the tree the
// supervisor used to build (minus syscall, which goes to its column), reads
// back as that tree, takes the same queue share, and feeds denial_totals.
TEST(StoreEvents, TypedDenialIsStoredExactlyAsTheJsonTheSupervisorBuilt) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    const auto cases = typed_cases();
    uint64_t count = 1;
    for (const auto& d : cases) {
        json want = judge_json(d);
        EXPECT_EQ(d.to_json(), want) << d.to_json().dump();
        Event ev;
        ev.job = job;
        ev.kind = EventKind::Denial;
        ev.time_ns = int64_t(100 + count);
        ev.count = count++;
        ev.fields = {{"ignored", "the typed payload wins"}};
        ev.denial = std::make_shared<DenialFields>(d);
        Event as_json = ev;
        as_json.denial.reset();
        as_json.fields = want;
        EXPECT_EQ(approx_event_bytes(ev), approx_event_bytes(as_json)) << want.dump();
        EXPECT_EQ(ev.to_json(), as_json.to_json());
        EXPECT_TRUE(s->offer(ev));
    }
    s->flush();

    const auto rows = stored_rows(path);
    ASSERT_EQ(rows.size(), cases.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        json want = judge_json(cases[i]);
        want.erase("syscall");
        EXPECT_EQ(rows[i].data, want.dump(-1, ' ', false, json::error_handler_t::replace)) << "case " << i;
        EXPECT_EQ(rows[i].syscall, std::optional<std::string>(cases[i].syscall)) << "case " << i;
    }
    expect_totals_match_events(path);

    // Read back through the store: the fields the supervisor built (a
    // string that was not valid UTF-8 comes back with U+FFFD, as before).
    auto evs = all_events(*s, {.job = job});
    ASSERT_EQ(evs.size(), cases.size());
    for (size_t k = 0; k < cases.size(); ++k) {
        json want = json::parse(judge_json(cases[k]).dump(-1, ' ', false, json::error_handler_t::replace));
        EXPECT_EQ(evs[k].fields, want) << "case " << k;
        EXPECT_EQ(evs[k].count, k + 1);
        EXPECT_FALSE(evs[k].denial);
    }
    EXPECT_EQ(s->count_denials(job).value(), cases.size() * (cases.size() + 1) / 2);
}

// Many rows in one batch go through the writer's grouped INSERT (sixteen
// rows per execution, each with its own encoder): byte for byte what one row
// at a time stores, in order, and denial_totals sums them all.
TEST(StoreEvents, TypedDenialsInOneBatchAreStoredAsSingleOnesAre) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    const auto cases = typed_cases();
    constexpr size_t kRounds = 5;  // several full groups and a partial one
    {
        auto hold = StoreTestAccess::hold_writer(*s);  // all in one batch
        for (size_t r = 0; r < kRounds; ++r)
            for (size_t i = 0; i < cases.size(); ++i) {
                Event ev;
                ev.job = job;
                ev.kind = EventKind::Denial;
                ev.time_ns = int64_t(1000 + r * cases.size() + i);
                ev.denial = std::make_shared<DenialFields>(cases[i]);
                ASSERT_TRUE(s->offer(ev));
                if (i % 5 == 0) s->append(lifecycle(job, ev.time_ns));  // other kinds in the same groups
            }
    }
    s->flush();
    const auto rows = stored_rows(path);
    size_t k = 0, lifecycles = 0;
    for (const auto& row : rows) {
        if (!row.syscall) {
            EXPECT_EQ(row.data, "{\"event\":\"started\"}") << "row " << k;
            ++lifecycles;
            continue;
        }
        const auto& want_fields = cases[k % cases.size()];
        json want = judge_json(want_fields);
        want.erase("syscall");
        EXPECT_EQ(row.data, want.dump(-1, ' ', false, json::error_handler_t::replace)) << "row " << k;
        EXPECT_EQ(row.syscall, std::optional<std::string>(want_fields.syscall)) << "row " << k;
        ++k;
    }
    EXPECT_EQ(k, kRounds * cases.size());
    EXPECT_EQ(lifecycles, kRounds * ((cases.size() + 4) / 5));
    EXPECT_EQ(rows.size(), k + lifecycles);
    EXPECT_GE(rows.size(), 3 * 16u) << "the test must fill several groups";
    EXPECT_EQ(s->count_denials(job).value(), kRounds * cases.size());
    EXPECT_EQ(s->stats().dropped, 0u);
    expect_totals_match_events(path);
}

// Committed events are released (they hold a job's strings): by the
// appends that follow, a few each, or by the writer once no rows come.
// Nothing of a batch stays held after the store goes quiet.
TEST(StoreEvents, CommittedEventsAreReleasedByLaterAppendsOrAnIdleWriter) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    auto offer_some = [&](int n, std::vector<std::weak_ptr<const DenialFields>>* held) {
        for (int i = 0; i < n; ++i) {
            Event ev;
            ev.job = job;
            ev.kind = EventKind::Denial;
            ev.time_ns = 100 + i;
            auto d = std::make_shared<const DenialFields>(typed("rmdir"));
            if (held) held->push_back(d);
            ev.denial = std::move(d);
            ASSERT_TRUE(s->offer(ev));
        }
    };
    auto alive = [](const std::vector<std::weak_ptr<const DenialFields>>& v) {
        return size_t(std::count_if(v.begin(), v.end(), [](const auto& w) { return !w.expired(); }));
    };
    std::vector<std::weak_ptr<const DenialFields>> first;
    offer_some(200, &first);
    s->flush();
    // The writer frees what no append took once it has been idle a moment.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (alive(first) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(alive(first), 0u) << "an idle store still holds committed events";

    // Appends free the last committed batch as they go (the writer waits an
    // hour before it would, and is held).
    StoreTestAccess::set_grave_idle(*s, std::chrono::hours(1));
    std::vector<std::weak_ptr<const DenialFields>> second;
    {
        auto hold = StoreTestAccess::hold_writer(*s);  // the 64 in one batch, handed over whole
        offer_some(64, &second);
    }
    s->flush();
    {
        auto hold = StoreTestAccess::hold_writer(*s);
        const size_t before = alive(second);
        EXPECT_EQ(before, 64u) << "committed events were freed, but not by the appends";
        offer_some(int(before), nullptr);
        EXPECT_EQ(alive(second), 0u) << "of " << before;
    }
    s->flush();
    EXPECT_EQ(s->stats().dropped, 0u);
}

// A row the database refuses (its job is unknown) inside a group of the
// grouped INSERT: the statement is backed out whole, its rows go one by one,
// and only the refused row is missing; the others keep their order.
TEST(StoreEvents, AnUnknownJobInsideAGroupDropsOnlyItsRow) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    // A refused row every ten: wherever the writer's groups of sixteen start
    // (it may have taken a few rows before the rest were queued), each full
    // group holds one.
    constexpr int kN = 50;
    auto refused = [](int i) { return i % 10 == 5; };
    {
        auto hold = StoreTestAccess::hold_writer(*s);
        for (int i = 0; i < kN; ++i) s->append(denial(refused(i) ? 9999 : job, "openat", 100 + i));
    }
    s->flush();
    auto evs = all_events(*s, {.job = job});
    ASSERT_EQ(evs.size(), size_t(kN - 5));
    int want = 0;
    for (const auto& ev : evs) {
        while (refused(want)) ++want;
        EXPECT_EQ(ev.time_ns, 100 + want++);
    }
    auto st = s->stats();
    EXPECT_EQ(st.written, uint64_t(kN - 5));
    EXPECT_EQ(st.dropped, 5u);
    EXPECT_EQ(s->count_denials(job).value(), uint64_t(kN - 5));
    expect_totals_match_events(path);
}

// A typed denial the queue refuses stays with the caller, whole (the
// supervisor folds it into an aggregate row from those fields).
TEST(StoreQueue, ARefusedTypedDenialStaysWithTheCaller) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path, 8);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    size_t queued = 0, refused = 0;
    {
        auto hold = StoreTestAccess::hold_writer(*s);
        for (int i = 0; i < 20; ++i) {
            Event ev;
            ev.job = job;
            ev.kind = EventKind::Denial;
            ev.time_ns = 100 + i;
            DenialFields d = typed("rmdir");
            d.decoded = "/d/" + std::to_string(i);
            ev.denial = std::make_shared<const DenialFields>(std::move(d));
            if (s->offer(ev)) {
                ++queued;
            } else {
                ++refused;
                ASSERT_TRUE(ev.denial);
                EXPECT_EQ(ev.denial->decoded, "/d/" + std::to_string(i));
                EXPECT_EQ(ev.denial->to_json(), judge_json(*ev.denial));
            }
        }
    }
    s->flush();
    EXPECT_GT(queued, 0u);
    EXPECT_GT(refused, 0u);
    EXPECT_EQ(s->stats().dropped, 0u);
    EXPECT_EQ(all_events(*s, {.job = job}).size(), queued);
    EXPECT_EQ(s->count_denials(job).value(), queued);
    expect_totals_match_events(path);
}

// ------------------------------------------------------------------ queue

TEST(StoreQueue, OverflowIsCountedExactlyInALimitEvent) {
    TempDir dir;
    constexpr size_t kCap = 8;
    auto s = open_store(dir.file("moat.db"), kCap);
    ASSERT_TRUE(s);
    int64_t a = new_job(*s), b = new_job(*s);
    constexpr int kN = 500;
    uint64_t denial_total_a = 0;
    {
        // Park the writer: it takes the marker event as its batch, then blocks
        // on the held connection. The queue then holds exactly kCap events and
        // every later append is dropped, so the expected loss is exact.
        auto hold = StoreTestAccess::hold_writer(*s);
        s->append(lifecycle(a, 99, "marker"));
        while (s->stats().queued != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (int i = 0; i < kN; ++i) {
            if (i % 3 == 0) {
                s->append(lifecycle(a, 100 + i));
            } else {
                s->append(denial(a, "openat", 100 + i, 1 + i % 4));
                if (i >= int(kCap / 2)) denial_total_a += 1 + i % 4;  // the first kCap/2 per job are queued
            }
            s->append(lifecycle(b, 100 + i));
        }
        EXPECT_EQ(s->stats().queued, kCap);
        EXPECT_EQ(s->stats().dropped, uint64_t(2 * kN) - kCap);
    }
    s->flush();
    auto st = s->stats();
    EXPECT_EQ(st.dropped, uint64_t(2 * kN) - kCap);
    EXPECT_EQ(st.written, kCap + 1);
    EXPECT_EQ(st.written + st.dropped, uint64_t(2 * kN + 1)) << "every append is either written or counted";

    for (int64_t job : {a, b}) {
        auto limits = limit_events(*s, job);
        ASSERT_EQ(limits.size(), 1u) << "one limit event per job with drops";
        json f = limits[0].to_json();
        EXPECT_EQ(f["reason"], "event-queue-overflow");
        EXPECT_EQ(f["kind"], "limit");
        EXPECT_EQ(f["dropped"].get<uint64_t>(), uint64_t(kN) - kCap / 2);
        EXPECT_EQ(f["first_time"], rfc3339_utc(100 + kCap / 2));
        EXPECT_EQ(f["last_time"], rfc3339_utc(100 + kN - 1));
        EXPECT_EQ(limits[0].time_ns, 100 + kN - 1);
        if (job == a) {
            EXPECT_EQ(f["dropped_denials"].get<uint64_t>(), denial_total_a)
                << "the job's lost denials are recoverable";
        } else {
            EXPECT_EQ(f["dropped_denials"], 0);
        }
    }
    EXPECT_EQ(all_events(*s, {.job = a}).size(), 1 + kCap / 2 + 1);
    EXPECT_EQ(all_events(*s, {.job = b}).size(), kCap / 2 + 1);

    // Once drained, the queue takes events again and no further limit event appears.
    for (int i = 0; i < 5; ++i) {
        s->append(lifecycle(a, 10'000 + i));
        s->flush();
    }
    EXPECT_EQ(limit_events(*s, a).size(), 1u);
    EXPECT_EQ(s->stats().dropped, st.dropped);
}

// Issue 11: one job flooding the queue with denial rows must not make the
// store drop another job's events. offer() keeps each job to its fair share
// (capacity / (jobs with queued events + 1)); what does not fit is refused,
// not dropped (the supervisor counts it in aggregate rows), and append()
// (lifecycle, limit) still finds room.
TEST(StoreQueue, OneJobFloodingCannotTakeAnotherJobsShare) {
    TempDir dir;
    constexpr size_t kCap = 64;
    auto s = open_store(dir.file("moat.db"), kCap);
    ASSERT_TRUE(s);
    int64_t flood = new_job(*s), flood2 = new_job(*s), quiet = new_job(*s);
    size_t flood_queued = 0, flood2_queued = 0, quiet_queued = 0;
    uint64_t refused_offers = 0;
    {
        auto hold = StoreTestAccess::hold_writer(*s);
        s->append(lifecycle(flood, 1, "marker"));
        while (s->stats().queued != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        // The writer is parked: nothing leaves the queue while the jobs offer.
        for (int i = 0; i < 10 * int(kCap); ++i) {
            Event ev = denial(flood, "rmdir", 100 + i);
            if (s->offer(ev)) ++flood_queued;
            else {
                ++refused_offers;
                EXPECT_EQ(ev.fields.value("decoded", ""), "/etc/shadow") << "a refused event stays with the caller";
            }
        }
        EXPECT_EQ(flood_queued, kCap / 2) << "one job alone gets half the queue";
        for (int i = 0; i < 10 * int(kCap); ++i) {
            Event ev = denial(flood2, "rmdir", 100 + i);
            if (s->offer(ev)) ++flood2_queued;
            else ++refused_offers;
        }
        EXPECT_EQ(flood2_queued, kCap / 3) << "a second flooder gets its share, not the rest";
        for (int i = 0; i < 8; ++i) {
            Event ev = denial(quiet, "openat", 100 + i);
            if (s->offer(ev)) ++quiet_queued;
        }
        EXPECT_EQ(quiet_queued, 8u) << "the quiet job's denials all found room";
        // Events that must be kept take the rest of the queue.
        for (int64_t j : {flood, flood2, quiet}) s->append(lifecycle(j, 5000, "finished"));
        auto st = s->stats();
        EXPECT_EQ(st.dropped, 0u);
        EXPECT_EQ(st.refused, refused_offers);
        EXPECT_LE(st.queued, kCap);
        EXPECT_GT(st.queued_bytes, 0u);
    }
    s->flush();
    auto st = s->stats();
    EXPECT_EQ(st.dropped, 0u) << "nothing was dropped: refused offers are the caller's";
    EXPECT_EQ(st.queued_bytes, 0u) << "the byte accounting returns to zero";
    for (int64_t j : {flood, flood2, quiet}) {
        EXPECT_TRUE(limit_events(*s, j).empty()) << "no job lost events";
        auto fin = all_events(*s, {.job = j, .kind = EventKind::Lifecycle});
        EXPECT_EQ(fin.back().fields.value("event", ""), "finished");
    }
    EXPECT_EQ(all_events(*s, {.job = quiet, .kind = EventKind::Denial}).size(), 8u);
    EXPECT_EQ(all_events(*s, {.job = flood, .kind = EventKind::Denial}).size(), kCap / 2);

    // Drained: the flooder has its share again.
    Event ev = denial(flood, "rmdir", 9000);
    EXPECT_TRUE(s->offer(ev));
}

TEST(StoreQueue, ByteShareBoundsBigEvents) {
    TempDir dir;
    QueueLimits lim;
    lim.events = 1 << 16;
    lim.bytes = 256 << 10;
    auto s = Store::open(dir.file("moat.db"), lim);
    ASSERT_TRUE(s) << s.error().message;
    Store& st = **s;
    int64_t flood = new_job(st), quiet = new_job(st);
    const std::string big(8000, 'x');
    size_t flood_queued = 0;
    {
        auto hold = StoreTestAccess::hold_writer(st);
        st.append(lifecycle(flood, 1, "marker"));
        while (st.stats().queued != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (int i = 0; i < 1000; ++i) {
            Event ev = denial(flood, "rmdir", 100 + i);
            ev.fields["decoded"] = big;
            if (st.offer(ev)) ++flood_queued;
        }
        EXPECT_GT(flood_queued, 0u);
        EXPECT_LE(st.stats().queued_bytes, lim.bytes / 2) << "one job holds at most half the bytes";
        EXPECT_LT(flood_queued, 1000u);
        Event q = denial(quiet, "openat", 100);
        q.fields["decoded"] = big;
        EXPECT_TRUE(st.offer(q)) << "the quiet job still has room";
    }
    st.flush();
    EXPECT_EQ(st.stats().dropped, 0u);
    EXPECT_EQ(all_events(st, {.job = flood, .kind = EventKind::Denial}).size(), flood_queued);
}

TEST(StoreQueue, OverflowTotalsAddUpUnderRandomTiming) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"), 4);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    constexpr int kN = 20000;
    uint64_t denials = 0;
    for (int i = 0; i < kN; ++i) {
        s->append(denial(job, "openat", i + 1, 1 + i % 3));
        denials += 1 + i % 3;
    }
    s->flush();
    // The writer may report the loss across several limit events; summed they are exact.
    uint64_t lost = 0, lost_denials = 0;
    auto limits = limit_events(*s, job);
    for (const auto& l : limits) {
        lost += l.fields["dropped"].get<uint64_t>();
        lost_denials += l.fields["dropped_denials"].get<uint64_t>();
    }
    auto st = s->stats();
    EXPECT_EQ(lost, st.dropped);
    EXPECT_EQ(st.written + st.dropped, uint64_t(kN));
    EXPECT_EQ(s->count_denials(job).value() + lost_denials, denials);
    EXPECT_EQ(all_events(*s, {.job = job}).size() - limits.size() + lost, size_t(kN));
}

TEST(StoreQueue, FlushWaitsForEverythingAppendedBefore) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    ASSERT_TRUE(s);
    s->flush();  // nothing appended: returns at once
    int64_t job = new_job(*s);

    std::atomic<bool> flushed{false};
    std::thread flusher;
    {
        auto hold = StoreTestAccess::hold_writer(*s);
        for (int i = 0; i < 100; ++i) s->append(lifecycle(job, i + 1));
        flusher = std::thread([&] {
            s->flush();
            flushed = true;
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_FALSE(flushed) << "flush returned while the writer could not commit";
    }
    flusher.join();
    EXPECT_TRUE(flushed);
    // After flush the events are visible to a reader at once.
    EXPECT_EQ(all_events(*s, {.job = job}).size(), 100u);
    for (int round = 0; round < 20; ++round) {
        s->append(lifecycle(job, 1000 + round));
        s->flush();
        EXPECT_EQ(all_events(*s, {.job = job}).size(), size_t(101 + round));
    }
}

TEST(StoreQueue, ConcurrentAppendersAndReadersSeeExactCounts) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path, 1 << 20);
    ASSERT_TRUE(s);
    constexpr int kThreads = 4, kPerThread = 20000;
    std::vector<int64_t> jobs;
    for (int t = 0; t < kThreads; ++t) jobs.push_back(new_job(*s));

    std::atomic<bool> done{false};
    std::atomic<int> reader_errors{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&, r] {
            uint64_t last = 0;
            while (!done) {
                auto c = s->count_denials(jobs[r]);
                if (!c) {
                    ++reader_errors;
                    continue;
                }
                if (*c < last) ++reader_errors;  // committed data never disappears
                last = *c;
                auto page = s->query_events({.job = jobs[r], .limit = 100});
                if (!page) ++reader_errors;
                // Job writes interleave with event batches on the writer connection.
                auto j = s->get_job(jobs[r]);
                if (!j) ++reader_errors;
            }
        });
    }
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
        writers.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) s->append(denial(jobs[t], i % 2 ? "openat" : "read", i + 1, 2));
        });
    }
    std::thread job_writer([&] {
        for (int i = 0; i < 50; ++i) {
            int64_t id = new_job(*s);
            ASSERT_TRUE(s->update_job_runtime(id, 100 + i, 1000, "cg", json::object()));
        }
    });
    for (auto& w : writers) w.join();
    job_writer.join();
    s->flush();
    done = true;
    for (auto& r : readers) r.join();

    EXPECT_EQ(reader_errors.load(), 0);
    auto st = s->stats();
    EXPECT_EQ(st.dropped, 0u);
    EXPECT_EQ(st.written, uint64_t(kThreads * kPerThread));
    EXPECT_GT(st.batches, 0u);
    EXPECT_LT(st.batches, st.written) << "events are batched";
    for (int64_t job : jobs) EXPECT_EQ(s->count_denials(job).value(), uint64_t(2 * kPerThread));
    EXPECT_EQ(s->list_jobs(1000).value().size(), size_t(kThreads + 50));
    expect_totals_match_events(path);
}

TEST(StoreQueue, DestructionDrainsTheQueue) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    constexpr int kN = 30000;
    int64_t job = 0;
    {
        auto s = open_store(path);
        ASSERT_TRUE(s);
        job = new_job(*s);
        for (int i = 0; i < kN; ++i) s->append(denial(job, "openat", i + 1));
        // no flush: the destructor must write everything
    }
    EXPECT_EQ(raw_int(path, "SELECT count(*) FROM events WHERE job_id = " + std::to_string(job)), kN);
    auto s = open_store(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->count_denials(job).value(), uint64_t(kN));
}

// ------------------------------------------------------------------ failure

TEST(StoreFailure, FullDiskDropsAndCountsButNeverCorrupts) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    auto s = open_store(path);
    ASSERT_TRUE(s);
    int64_t job = new_job(*s);
    s->append(lifecycle(job, 1));
    s->flush();

    // The database may not grow any more: every write needing a page fails with SQLITE_FULL.
    ASSERT_TRUE(StoreTestAccess::set_max_page_count(*s, 1));
    constexpr int kN = 3000;
    uint64_t denials = 0;
    for (int i = 0; i < kN; ++i) {
        Event d = denial(job, "openat", 100 + i, 2);
        d.fields["decoded"] = std::string(200, 'x') + std::to_string(i);
        s->append(d);
        denials += 2;
    }
    s->flush();
    auto st = s->stats();
    EXPECT_GT(st.dropped, 0u);
    EXPECT_EQ(st.written + st.dropped, uint64_t(kN + 1));

    JobRecord big;
    big.tier = "seccomp";
    big.argv.assign(200, std::string(100, 'a'));
    auto full = s->create_job(big);
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().message, "INSERT INTO jobs: database or disk is full");
    ASSERT_TRUE(s->integrity_check());
    EXPECT_EQ(s->integrity_check().value(), "ok");

    // Space returns: the next batch records the loss.
    ASSERT_TRUE(StoreTestAccess::set_max_page_count(*s, 1 << 30));
    s->append(lifecycle(job, 1'000'000));
    s->flush();
    // Small batches may still have fit in free pages while others failed, so
    // the loss can be reported in more than one limit event; together they are exact.
    auto limits = limit_events(*s, job);
    ASSERT_GE(limits.size(), 1u);
    uint64_t lost = 0, lost_denials = 0;
    for (const auto& l : limits) {
        json f = l.to_json();
        EXPECT_EQ(f["reason"], "event-write-failed");
        EXPECT_NE(f["error"].get<std::string>().find("INSERT INTO events: database or disk is full"), std::string::npos)
            << f.dump();
        lost += f["dropped"].get<uint64_t>();
        lost_denials += f["dropped_denials"].get<uint64_t>();
    }
    EXPECT_EQ(lost, st.dropped);
    EXPECT_EQ(s->count_denials(job).value() + lost_denials, denials);
    size_t stored_non_limit = all_events(*s, {.job = job}).size() - limits.size();
    EXPECT_EQ(stored_non_limit + lost, size_t(kN + 2));
    EXPECT_EQ(s->integrity_check().value(), "ok");
    expect_totals_match_events(path);
}

// ------------------------------------------------------------------ read-only

TEST(StoreReadOnly, ReadsWorkAndWritesAreRefused) {
    TempDir dir;
    std::string path = dir.file("moat.db");
    int64_t job = 0;
    {
        auto s = open_store(path);
        ASSERT_TRUE(s);
        auto p = s->put_policy("p", "t", "s").value();
        job = new_job(*s, p.id);
        for (int i = 0; i < 10; ++i) s->append(denial(job, "openat", i + 1));
    }
    // A copy, as an operator would take it offline.
    std::string copy = dir.file("copy.db");
    std::filesystem::copy_file(path, copy);

    for (const std::string& p : {path, copy}) {
        auto ro = Store::open_read_only(p);
        ASSERT_TRUE(ro) << ro.error().message;
        Store& s = **ro;
        EXPECT_EQ(s.schema_version(), schema::latest_version());
        EXPECT_EQ(s.get_job(job).value().policy_name, "p");
        EXPECT_EQ(s.count_denials(job).value(), 10u);
        EXPECT_EQ(s.query_events({.job = job}).value().size(), 10u);
        EXPECT_EQ(s.integrity_check().value(), "ok");

        auto pol = s.put_policy("q", "t", "s2");
        ASSERT_FALSE(pol);
        EXPECT_NE(pol.error().message.find("read-only"), std::string::npos);
        JobRecord j;
        j.tier = "vm";
        EXPECT_FALSE(s.create_job(j));
        j.id = job;
        EXPECT_FALSE(s.finish_job(j));
        EXPECT_FALSE(s.update_job_runtime(job, 1, 1, "", json::object()));
        s.append(lifecycle(job, 5));
        s.flush();  // returns: there is no writer
        EXPECT_EQ(s.stats().dropped, 1u);
        EXPECT_EQ(s.query_events({.job = job}).value().size(), 10u);
    }
    EXPECT_EQ(raw_int(copy, "SELECT count(*) FROM events"), 10);

    auto none = Store::open_read_only(dir.file("absent.db"));
    EXPECT_FALSE(none);
}

// ---- replay recordings ------------------------------------------------------

namespace recordings {

std::string write_blob(const moat::store::Artifacts& a, Store& s, const std::string& content) {
    auto tmp = a.make_temp();
    EXPECT_TRUE(tmp);
    if (!tmp) return "";
    EXPECT_EQ(::write(tmp->first, content.data(), content.size()), ssize_t(content.size()));
    ::close(tmp->first);
    auto b = a.adopt(tmp->second);
    EXPECT_TRUE(b);
    if (!b) return "";
    EXPECT_TRUE(s.put_blob(b->sha256, b->bytes));
    return b->sha256;
}

void finish(Store& s, int64_t id, int64_t ended_ns) {
    JobRecord j = s.get_job(id).value();
    j.state = "finished";
    j.ended_ns = ended_ns;
    j.cause = "exited";
    j.exit_code = 0;
    ASSERT_TRUE(s.finish_job(j));
}

TEST(StoreRecordings, BlobsAreContentAddressedAndDeduplicated) {
    TempDir dir;
    auto a = moat::store::Artifacts::open(dir.file("artifacts"));
    ASSERT_TRUE(a) << a.error().message;
    auto s = open_store(dir.file("moat.db"));
    std::string x = write_blob(*a, *s, "same bytes");
    std::string y = write_blob(*a, *s, "same bytes");
    EXPECT_EQ(x, y);
    EXPECT_EQ(x, moat::sha256_hex("same bytes"));
    EXPECT_TRUE(a->exists(x));
    EXPECT_EQ(s->blob_bytes().value(), 10u);
    EXPECT_FALSE(a->exists("../../etc/passwd")) << "a name that is not a sha256 is never a path";

    // put_fd copies at most `max` bytes and says when it cut.
    std::string src = dir.file("src");
    { std::ofstream(src) << "0123456789"; }
    int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    auto cut = a->put_fd(fd, 4);
    auto whole = a->put_fd(fd, 1 << 20);
    ::close(fd);
    ASSERT_TRUE(cut && whole);
    EXPECT_TRUE(cut->truncated);
    EXPECT_EQ(cut->bytes, 4u);
    EXPECT_EQ(cut->sha256, moat::sha256_hex("0123"));
    EXPECT_FALSE(whole->truncated);
    EXPECT_EQ(whole->sha256, moat::sha256_hex("0123456789"));

    // A directory input's files, registered in one transaction: duplicates once.
    const std::string p = moat::sha256_hex("p"), q = moat::sha256_hex("q");
    ASSERT_TRUE(s->put_blobs({{p, 100}, {q, 1000}, {p, 100}}));
    ASSERT_TRUE(s->put_blobs({}));
    EXPECT_EQ(s->blob_bytes().value(), 10u + 100u + 1000u);
}

TEST(StoreRecordings, RecordingAndOutputRoundTripIncludingBinaryBytes) {
    TempDir dir;
    auto a = moat::store::Artifacts::open(dir.file("artifacts")).value();
    auto s = open_store(dir.file("moat.db"));
    int64_t job = new_job(*s);
    std::string sha = write_blob(a, *s, "stdin");
    nlohmann::json rec = {{"stdin", {{"sha256", sha}, {"bytes", 5}, {"truncated", false}}},
                          {"inputs", nlohmann::json::array()}};
    ASSERT_TRUE(s->set_recording(job, rec, {sha}));
    moat::store::JobOutput out;
    out.total_bytes = 1000;
    out.data = std::string("tail\0\xff\xfe bytes", 13);
    ASSERT_TRUE(s->put_output(job, "stdout", out));
    JobRecord j = s->get_job(job).value();
    EXPECT_EQ(j.recording, rec);
    auto got = s->get_output(job, "stdout").value();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->total_bytes, 1000u);
    EXPECT_EQ(got->data, out.data) << "output bytes must survive as stored";
    EXPECT_FALSE(s->get_output(job, "stderr").value().has_value());
}

// A job's end in one commit: both tails and the recording, or none of them.
TEST(StoreRecordings, OutputsAndRecordingAreWrittenTogether) {
    TempDir dir;
    auto a = moat::store::Artifacts::open(dir.file("artifacts")).value();
    auto s = open_store(dir.file("moat.db"));
    int64_t job = new_job(*s);
    std::string sha = write_blob(a, *s, "stdin");
    nlohmann::json rec = {{"stdin", {{"sha256", sha}, {"bytes", 5}}}, {"inputs", nlohmann::json::array()}};
    moat::store::JobOutput out, err;
    out.total_bytes = 7;
    out.data = std::string("out\0put", 7);
    err.total_bytes = 5000;
    err.data = "the tail";
    ASSERT_TRUE(s->put_outputs_and_recording(job, out, err, rec, {sha}));
    EXPECT_EQ(s->get_job(job).value().recording, rec);
    EXPECT_EQ(s->get_output(job, "stdout").value()->data, out.data);
    EXPECT_EQ(s->get_output(job, "stderr").value()->total_bytes, 5000u);
    EXPECT_EQ(s->get_output(job, "stderr").value()->data, "the tail");
    // The last statement fails (a trigger stands in for a full disk at that
    // point): the tails written before it in the transaction are gone too.
    int64_t other = new_job(*s);
    raw_exec(dir.file("moat.db"), "CREATE TRIGGER fail_recording BEFORE UPDATE OF recording ON jobs WHEN NEW.id = " +
                                      std::to_string(other) + " BEGIN SELECT RAISE(ABORT, 'no room'); END");
    const uint64_t blobs_before = s->blob_bytes().value();
    const std::string unseen(64, 'e');
    auto r = s->put_outputs_and_recording(other, out, err, rec, {unseen}, {{unseen, 1234}});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("no room"), std::string::npos) << r.error().message;
    EXPECT_FALSE(s->get_output(other, "stdout").value().has_value()) << "a tail outlived its failed transaction";
    EXPECT_FALSE(s->get_output(other, "stderr").value().has_value());
    EXPECT_EQ(s->blob_bytes().value(), blobs_before) << "the new blob's row outlived its failed transaction";
    // The job's stdin blob goes in with its recording (no commit of its own).
    int64_t third = new_job(*s);
    const std::string fresh(64, 'f');
    ASSERT_TRUE(s->put_outputs_and_recording(third, out, err, rec, {fresh}, {{fresh, 1000}}));
    EXPECT_EQ(s->blob_bytes().value(), blobs_before + 1000);
}

// A job whose output was all relayed before it ended has its finish written
// with its outputs and recording, in one commit (issue 15): all of it lands,
// or none of it; and a finish for another job is refused.
TEST(StoreRecordings, TheFinishCanGoInTheSameCommitAsTheOutputs) {
    TempDir dir;
    auto s = open_store(dir.file("moat.db"));
    nlohmann::json rec = {{"stdin", nullptr}, {"inputs", nlohmann::json::array()}};
    moat::store::JobOutput out, err;
    out.total_bytes = 3;
    out.data = "hi\n";
    auto finish_of = [](int64_t id) {
        JobRecord f;
        f.id = id;
        f.ended_ns = 42;
        f.exit_code = 3;
        f.cause = "exited";
        f.detail = "exit code 3";
        f.resources = {1000, 2000, 3};
        f.denial_count = 4;
        f.info = {{"startup_us", {{"recording", 7}}}};
        return f;
    };
    const int64_t job = new_job(*s);
    const JobRecord fin = finish_of(job);
    ASSERT_TRUE(s->put_outputs_and_recording(job, out, err, rec, {}, {}, &fin));
    auto got = s->get_job(job).value();
    EXPECT_EQ(got.state, "finished");
    EXPECT_EQ(got.exit_code, 3);
    EXPECT_EQ(got.cause, "exited");
    EXPECT_EQ(got.resources.peak_pids, 3u);
    EXPECT_EQ(got.denial_count, 4u);
    EXPECT_EQ(got.info["startup_us"]["recording"], 7);
    EXPECT_EQ(got.recording, rec);
    EXPECT_EQ(s->get_output(job, "stdout").value()->data, "hi\n");

    // The recording's write fails: the finish written before it in the same
    // transaction is gone too (the supervisor then writes it alone).
    const int64_t other = new_job(*s);
    raw_exec(dir.file("moat.db"), "CREATE TRIGGER fail_recording BEFORE UPDATE OF recording ON jobs WHEN NEW.id = " +
                                      std::to_string(other) + " BEGIN SELECT RAISE(ABORT, 'no room'); END");
    const JobRecord fin2 = finish_of(other);
    ASSERT_FALSE(s->put_outputs_and_recording(other, out, err, rec, {}, {}, &fin2));
    EXPECT_EQ(s->get_job(other).value().state, "running") << "the finish outlived its failed transaction";
    ASSERT_TRUE(s->finish_job(fin2));
    EXPECT_EQ(s->get_job(other).value().state, "finished");

    // A finish that names another job than the outputs is refused, and nothing is written.
    const int64_t third = new_job(*s);
    auto r = s->put_outputs_and_recording(third, out, err, rec, {}, {}, &fin);
    ASSERT_FALSE(r);
    EXPECT_FALSE(s->get_output(third, "stdout").value().has_value());
}

TEST(StoreRecordings, RetentionAndBudgetDropOldestRecordingsAndFreeUnusedBlobs) {
    TempDir dir;
    auto a = moat::store::Artifacts::open(dir.file("artifacts")).value();
    auto s = open_store(dir.file("moat.db"));
    int64_t old_job = new_job(*s), mid_job = new_job(*s), new_job_id = new_job(*s), running = new_job(*s);
    std::string shared = write_blob(a, *s, std::string(100, 's'));  // used by old and new
    std::string only_old = write_blob(a, *s, std::string(100, 'o'));
    std::string only_mid = write_blob(a, *s, std::string(100, 'm'));
    std::string only_running = write_blob(a, *s, std::string(100, 'r'));
    ASSERT_TRUE(s->set_recording(old_job, {{"inputs", nlohmann::json::array()}}, {shared, only_old}));
    ASSERT_TRUE(s->set_recording(mid_job, {{"inputs", nlohmann::json::array()}}, {only_mid}));
    ASSERT_TRUE(s->set_recording(new_job_id, {{"inputs", nlohmann::json::array()}}, {shared}));
    ASSERT_TRUE(s->set_recording(running, {{"inputs", nlohmann::json::array()}}, {only_running}));
    finish(*s, old_job, 1000);
    finish(*s, mid_job, 5000);
    finish(*s, new_job_id, 9000);

    // Retention: only the job that ended before the cut-off loses its recording;
    // the blob it shares with a kept job stays.
    auto gone = s->expire_recordings(2000, 1 << 30).value();
    EXPECT_EQ(gone, std::vector<std::string>{only_old});
    EXPECT_TRUE(s->get_job(old_job).value().recording.contains("evicted"));
    EXPECT_FALSE(s->get_job(mid_job).value().recording.contains("evicted"));

    // Budget: 300 bytes referenced (shared, mid, running) > 250: the oldest
    // finished recording goes; a running job's never does.
    gone = s->expire_recordings(0, 250).value();
    EXPECT_EQ(gone, std::vector<std::string>{only_mid});
    EXPECT_TRUE(s->get_job(mid_job).value().recording.contains("evicted"));
    gone = s->expire_recordings(0, 0).value();
    EXPECT_EQ(gone, std::vector<std::string>{shared});
    EXPECT_FALSE(s->get_job(running).value().recording.contains("evicted"));
    EXPECT_EQ(s->blob_bytes().value(), 100u);
}

}  // namespace recordings
