// Benchmarks for moat_store (docs/store.md, "Performance").
//
// Not wired into CMake yet. Standalone build, from a build tree that has built
// the moat_store target (BUILD = that tree):
//
//   g++ -std=c++23 -O2 -DNDEBUG -I core/store/include -I core/common/include
//       tests/bench/store_bench.cpp BUILD/core/store/libmoat_store.a
//       BUILD/core/common/libmoat_common.a -lbenchmark -lsqlite3 -lcrypto -lpthread
//       -o store_bench                  (one command line)
//   ./store_bench                       # MOAT_BENCH_DIR=/some/disk to pick the disk
//
// What is measured:
//   - Ingest: 1000 denial events offered then flush(), i.e. one 1000-row
//     group through the queue, the writer thread and a WAL commit. Each event
//     is made as moatd's supervisor makes a denial row: the typed payload
//     (store::DenialFields) filled from the notice's values and strings,
//     moved into the Event and offer()ed (Supervisor::judge and
//     flush_denials). Against a raw-SQLite baseline in the same run that
//     inserts the same rows (already encoded) into the same schema with one
//     prepared statement per BEGIN/COMMIT of 1000 rows. The ratio is the
//     store's overhead (encoding, queue hand-off, thread wake-up).
//   - Queries on a store of N events (100k, 1M): one job's denials (first page),
//     denials of one syscall in a one-minute window, top syscalls (all jobs and
//     one job), count_denials.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "moat/store/store.h"

using namespace moat::store;
using nlohmann::json;

namespace {

constexpr int64_t kT0 = 1'764'432'000'000'000'000;  // 2025-11-29T16:00:00Z
constexpr int kJobs = 100;
const char* const kSyscalls[] = {"openat", "connect", "socket", "execve", "unlinkat", "ptrace", "mount",
                                 "bpf",    "kill",    "ioctl",  "mmap",   "mprotect", "clone3", "setns",
                                 "chmod",  "chown",   "bind",   "listen", "keyctl",   "reboot"};
constexpr int kNumSyscalls = int(std::size(kSyscalls));

class BenchDir {
public:
    BenchDir() {
        const char* base = getenv("MOAT_BENCH_DIR");
        std::string tmpl = (std::filesystem::path(base ? base : std::filesystem::temp_directory_path().c_str()) /
                            "moat-store-bench.XXXXXX")
                               .string();
        if (!mkdtemp(tmpl.data())) abort();
        m_path = tmpl;
    }
    ~BenchDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    std::string file(const std::string& n) const { return (m_path / n).string(); }

private:
    std::filesystem::path m_path;
};

// CPU time of the whole process and of the calling thread, in ns. On a shared
// machine the wall-clock rate moves with other load; the CPU per row does not
// (much), and for the store it splits into the producer (the benchmark thread)
// and the writer thread (the rest of the process).
struct CpuClock {
    static int64_t read(clockid_t c) {
        timespec ts{};
        clock_gettime(c, &ts);
        return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }
    int64_t process = read(CLOCK_PROCESS_CPUTIME_ID);
    int64_t thread = read(CLOCK_THREAD_CPUTIME_ID);
};

BenchDir& bench_dir() {
    static BenchDir d;
    return d;
}

// The i-th denial, typed, as Supervisor::judge fills it from a notice.
DenialFields make_denial_fields(int i) {
    DenialFields d;
    d.pid = 1000 + i % 50;
    d.syscall = kSyscalls[(i * 7) % kNumSyscalls];
    d.nr = 257;
    d.arch = "x86_64";
    const uint64_t args[6] = {4294967196ULL, 140737488346112ULL + uint64_t(i), 524288, 0, 0, 0};
    std::copy(args, args + 6, d.args);
    d.action = "errno:EPERM";
    d.rule = "default_action";
    d.ip = 0x7f3a1c11f0aULL;
    d.module = "libc.so.6+0x11f0a";
    d.decoded = "/etc/ssl/private/key-" + std::to_string(i % 1000) + ".pem";
    return d;
}

// The i-th denial as a row, as Supervisor::flush_denials hands it to the store.
Event make_denial(int64_t job, int i, int64_t time_ns) {
    Event ev;
    ev.job = job;
    ev.kind = EventKind::Denial;
    ev.time_ns = time_ns;
    ev.count = 1 + uint64_t(i % 3);
    ev.denial = std::make_shared<moat::store::DenialFields>(make_denial_fields(i));
    return ev;
}

std::unique_ptr<Store> open_or_die(const std::string& path) {
    auto s = Store::open(path);
    if (!s) {
        fprintf(stderr, "Store::open: %s\n", s.error().message.c_str());
        abort();
    }
    return std::move(*s);
}

// ------------------------------------------------------------------ ingest

void BM_StoreIngest(benchmark::State& state) {
    const int rows = int(state.range(0));
    static int n = 0;
    auto store = open_or_die(bench_dir().file("ingest-" + std::to_string(++n) + ".db"));
    JobRecord job;
    job.tier = "seccomp";
    int64_t id = store->create_job(job).value();
    int i = 0;
    uint64_t refused = 0;
    CpuClock c0;
    for (auto _ : state) {
        for (int r = 0; r < rows; ++r, ++i) {
            // offer(), as moatd stores denial rows (its share is far above 1000 here).
            Event ev = make_denial(id, i, kT0 + i);
            if (!store->offer(ev)) ++refused;
        }
        store->flush();
    }
    CpuClock c1;
    if (refused) state.SkipWithError("the store refused rows: the rate would not be of stored rows");
    auto st = store->stats();
    state.SetItemsProcessed(int64_t(state.iterations()) * rows);
    const double nrows = double(state.iterations()) * rows;
    state.counters["cpu_ns_per_row"] = double(c1.process - c0.process) / nrows;
    state.counters["producer_cpu_ns_per_row"] = double(c1.thread - c0.thread) / nrows;
    state.counters["writer_cpu_ns_per_row"] = double((c1.process - c0.process) - (c1.thread - c0.thread)) / nrows;
    state.counters["rows_per_txn"] = st.batches ? double(st.written) / double(st.batches) : 0;
    state.counters["dropped"] = double(st.dropped);
}
BENCHMARK(BM_StoreIngest)->Arg(1000)->UseRealTime();

// Baseline: the same rows straight into SQLite, one transaction per `rows`.
void BM_RawSqliteIngest(benchmark::State& state) {
    const int rows = int(state.range(0));
    static int n = 0;
    std::string path = bench_dir().file("raw-" + std::to_string(++n) + ".db");
    int64_t job_id = 0;
    {
        auto store = open_or_die(path);  // same schema, indexes and pragmas as the store
        JobRecord job;
        job.tier = "seccomp";
        job_id = store->create_job(job).value();
    }
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) abort();
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", nullptr, nullptr,
                 nullptr);
    sqlite3_stmt* ins = nullptr;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO events(job_id, time_ns, kind, count, syscall, data) "
                           "VALUES (?1, ?2, 'denial', ?3, ?4, ?5)",
                           -1, &ins, nullptr) != SQLITE_OK)
        abort();
    // Pre-encode: the baseline measures SQLite alone.
    std::vector<std::string> data;
    for (int r = 0; r < 1000; ++r) {
        json f = make_denial_fields(r).to_json();
        f.erase("syscall");
        data.push_back(f.dump());
    }
    int i = 0;
    CpuClock c0;
    for (auto _ : state) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        for (int r = 0; r < rows; ++r, ++i) {
            sqlite3_bind_int64(ins, 1, job_id);
            sqlite3_bind_int64(ins, 2, kT0 + i);
            sqlite3_bind_int64(ins, 3, 1 + i % 3);
            sqlite3_bind_text(ins, 4, kSyscalls[(i * 7) % kNumSyscalls], -1, SQLITE_STATIC);
            const std::string& d = data[size_t(i) % data.size()];
            sqlite3_bind_text(ins, 5, d.data(), int(d.size()), SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE) abort();
            sqlite3_reset(ins);
        }
        if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) abort();
    }
    CpuClock c1;
    sqlite3_finalize(ins);
    sqlite3_close(db);
    state.SetItemsProcessed(int64_t(state.iterations()) * rows);
    state.counters["cpu_ns_per_row"] = double(c1.process - c0.process) / (double(state.iterations()) * rows);
}
BENCHMARK(BM_RawSqliteIngest)->Arg(1000)->UseRealTime();

// ------------------------------------------------------------------ queries

// Store sizes for the query benchmarks: 100k and 1M, plus 10M (issue 7's
// size; about 3 GB and several minutes to build) when MOAT_BENCH_BIG=1.
void StoreSizes(benchmark::internal::Benchmark* b) {
    b->Arg(100'000)->Arg(1'000'000);
    if (const char* big = getenv("MOAT_BENCH_BIG"); big && std::string(big) == "1") b->Arg(10'000'000);
}

// A store of n events over one hour: 100 jobs, 80% denials over 20 syscalls,
// the rest resource samples. Built once per n and reused by every query benchmark.
Store& populated(int64_t n) {
    BenchDir& dir = bench_dir();  // constructed first, so destroyed after the stores in it
    static std::map<int64_t, std::unique_ptr<Store>> stores;
    auto& s = stores[n];
    if (s) return *s;
    s = open_or_die(dir.file("query-" + std::to_string(n) + ".db"));
    std::vector<int64_t> jobs;
    for (int j = 0; j < kJobs; ++j) {
        JobRecord job;
        job.tier = "container";
        job.argv = {"/usr/bin/app", std::to_string(j)};
        jobs.push_back(s->create_job(job).value());
    }
    const int64_t step = 3'600'000'000'000 / n;  // one hour in total
    for (int64_t i = 0; i < n; ++i) {
        int64_t job = jobs[size_t(i % kJobs)];
        if (i % 5 == 4) {
            Event ev;
            ev.job = job;
            ev.kind = EventKind::Resource;
            ev.time_ns = kT0 + i * step;
            ev.fields = {{"cpu_time_ns", i * 1000}, {"memory_bytes", 1 << 20}, {"pids", 3}};
            s->append(std::move(ev));
        } else {
            s->append(make_denial(job, int(i), kT0 + i * step));
        }
        if (i % 50000 == 0) s->flush();  // stay under the queue capacity: no drops
    }
    s->flush();
    if (s->stats().dropped) abort();
    return *s;
}

void BM_QueryJobDenials(benchmark::State& state) {
    Store& s = populated(state.range(0));
    int64_t job = 1;
    size_t rows = 0;
    for (auto _ : state) {
        EventQuery q;
        q.job = job;
        q.kind = EventKind::Denial;
        q.limit = 1000;
        auto r = s.query_events(q);
        if (!r) state.SkipWithError(r.error().message.c_str());
        rows = r->size();
        job = job % kJobs + 1;
    }
    state.counters["rows"] = double(rows);
}
BENCHMARK(BM_QueryJobDenials)->Apply(StoreSizes)->Unit(benchmark::kMicrosecond);

void BM_QueryDenialsBySyscallInTimeRange(benchmark::State& state) {
    Store& s = populated(state.range(0));
    int minute = 0;
    size_t rows = 0;
    for (auto _ : state) {
        int64_t since = kT0 + int64_t(minute) * 60'000'000'000;
        EventQuery q;
        q.kind = EventKind::Denial;
        q.syscall = "openat";
        q.since_ns = since;
        q.until_ns = since + 60'000'000'000;
        q.limit = 1000;
        auto r = s.query_events(q);
        if (!r) state.SkipWithError(r.error().message.c_str());
        rows = r->size();
        minute = (minute + 7) % 60;
    }
    state.counters["rows"] = double(rows);
}
BENCHMARK(BM_QueryDenialsBySyscallInTimeRange)->Apply(StoreSizes)->Unit(benchmark::kMicrosecond);

void BM_TopSyscallsAllJobs(benchmark::State& state) {
    Store& s = populated(state.range(0));
    for (auto _ : state) {
        auto r = s.top_syscalls(std::nullopt, 10);
        if (!r) state.SkipWithError(r.error().message.c_str());
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(BM_TopSyscallsAllJobs)->Apply(StoreSizes)->Unit(benchmark::kMillisecond);

void BM_TopSyscallsOneJob(benchmark::State& state) {
    Store& s = populated(state.range(0));
    int64_t job = 1;
    for (auto _ : state) {
        auto r = s.top_syscalls(job, 10);
        if (!r) state.SkipWithError(r.error().message.c_str());
        benchmark::DoNotOptimize(r);
        job = job % kJobs + 1;
    }
}
BENCHMARK(BM_TopSyscallsOneJob)->Apply(StoreSizes)->Unit(benchmark::kMicrosecond);

void BM_CountDenials(benchmark::State& state) {
    Store& s = populated(state.range(0));
    int64_t job = 1;
    for (auto _ : state) {
        auto r = s.count_denials(job);
        if (!r) state.SkipWithError(r.error().message.c_str());
        benchmark::DoNotOptimize(r);
        job = job % kJobs + 1;
    }
}
BENCHMARK(BM_CountDenials)->Apply(StoreSizes)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
