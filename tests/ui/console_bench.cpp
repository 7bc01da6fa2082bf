// Console benchmark (issue 7, target 6). Not a test: no assertions on time,
// not registered with CTest. Run offscreen:
//
//   QT_QPA_PLATFORM=offscreen build/tests/ui/console_bench [DB] [--events N] [--pages K]
//   QT_QPA_PLATFORM=offscreen build/tests/ui/console_bench --push SOCKET [--rounds N]
//
// --push (issue 13): pushed-update latency against a running moatd (admin).
// Each round stores a new policy version with `policy_put` and times, from
// the request, (a) moatd's answer and (b) the pushed policy list applied to a
// PolicyListModel by the console's Watcher (what the Policies view shows).
// (b) - (a) bounds the store -> screen path (the commit is before the answer);
// (a) is the baseline measured in the same run.
//
// DB: a state database to reuse (or to create when missing); without it a
// temporary one is generated and removed at the end. N events (default
// 1,000,000) are generated through moat::store::Store (append + flush).
//
// What is measured:
//   1. Event view open: an OfflineStore (the `moat-console --open-db` backend)
//      plus an EventTableModel with an empty filter (what the Investigate view
//      does), from construction until the first page is in the model.
//   2. Page fetch: K successive fetchMore() calls, each timed until its rows
//      are in the model. Baseline in the same run: the same pages read by raw
//      SQLite (`SELECT ... FROM events WHERE id > ? ORDER BY id LIMIT 500`,
//      every column read) on the same file.
//   3. Live charts: 20 ResourceCharts in a shown window, each fed a sample at
//      10 Hz for 5 s by one QTimer, refresh() after each sample (as the job
//      view does). GUI-thread busy fraction = time spent delivering events on
//      the GUI thread (outermost QApplication::notify, timed with
//      QElapsedTimer: the timer callback plus the queued replots and paint
//      events it causes) / wall time; also the timer callback alone and the
//      GUI thread's CPU time. Baseline: the same loop without refresh() (no
//      replot).
#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QGridLayout>
#include <QStandardPaths>
#include <QTimer>
#include <QWidget>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/daemon_client.h"
#include "backend/offline_store.h"
#include "backend/watcher.h"
#include "models/policy_list_model.h"
#include "charts/resource_chart.h"
#include "models/event_table_model.h"
#include "moat/store/store.h"

using nlohmann::json;
using namespace moat;

namespace {

constexpr int64_t kT0 = 1'764'432'000'000'000'000;  // 2025-11-29T16:00:00Z
const char* const kSyscalls[] = {"openat", "connect", "socket", "execve", "unlinkat", "ptrace", "mount",
                                 "bpf",    "kill",    "ioctl",  "mmap",   "mprotect", "clone3", "setns",
                                 "chmod",  "chown",   "bind",   "listen", "keyctl",   "reboot"};
constexpr int kNumSyscalls = int(std::size(kSyscalls));

double ms_since(const QElapsedTimer& t) { return double(t.nsecsElapsed()) / 1e6; }

// Times every outermost event delivery on the GUI thread while `measuring`.
class TimedApp final : public QApplication {
public:
    using QApplication::QApplication;
    bool notify(QObject* o, QEvent* e) override {
        if (!measuring || depth > 0) {
            ++depth;
            const bool r = QApplication::notify(o, e);
            --depth;
            return r;
        }
        QElapsedTimer t;
        t.start();
        ++depth;
        const bool r = QApplication::notify(o, e);
        --depth;
        busy_ms += ms_since(t);
        return r;
    }
    bool measuring = false;
    double busy_ms = 0;
    int depth = 0;
};

double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

double quantile(std::vector<double> v, double q) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const double pos = q * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos)), hi = size_t(std::ceil(pos));
    return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

store::Event make_event(int64_t job, int64_t i, int64_t time_ns) {
    store::Event ev;
    ev.job = job;
    ev.time_ns = time_ns;
    if (i % 50 == 7) {  // 2 %: resource samples
        ev.kind = store::EventKind::Resource;
        ev.fields = {{"cpu_pct", double(i % 100)},
                     {"memory_bytes", 50'000'000 + (i % 1000) * 4096},
                     {"memory_limit", 536'870'912},
                     {"pids", 3 + i % 5},
                     {"pids_limit", 256}};
        return ev;
    }
    if (i % 500 == 11) {  // 0.2 %: lifecycle
        ev.kind = store::EventKind::Lifecycle;
        ev.fields = {{"event", "started"}, {"pid", 1000 + i % 50}};
        return ev;
    }
    ev.kind = store::EventKind::Denial;
    ev.count = 1 + uint64_t(i % 3);
    ev.fields = {{"pid", 1000 + i % 50},
                 {"tid", 1000 + i % 50},
                 {"syscall", kSyscalls[(i * 7) % kNumSyscalls]},
                 {"nr", 257},
                 {"arch", "x86_64"},
                 {"args", json::array({4294967196ULL, 140737488346112ULL + uint64_t(i), 524288, 0, 0, 0})},
                 {"action", "errno:EPERM"},
                 {"ip", "0x7f3a1c11f0a"},
                 {"module", "libc.so.6+0x11f0a"},
                 {"decoded", "/etc/ssl/private/key-" + std::to_string(i % 1000) + ".pem"}};
    return ev;
}

bool generate(const std::string& path, int64_t n) {
    auto s = store::Store::open(path);
    if (!s) {
        fprintf(stderr, "Store::open(%s): %s\n", path.c_str(), s.error().message.c_str());
        return false;
    }
    auto& st = **s;
    std::vector<int64_t> jobs;
    for (int j = 0; j < 5; ++j) {
        store::JobRecord job;
        job.tier = j % 2 ? "container" : "seccomp";
        job.argv = {"/usr/bin/python3", "build.py", "--job", std::to_string(j)};
        job.cwd = "/srv/work";
        job.started_ns = kT0 + j * 1'000'000'000LL;
        auto id = st.create_job(job);
        if (!id) {
            fprintf(stderr, "create_job: %s\n", id.error().message.c_str());
            return false;
        }
        jobs.push_back(*id);
    }
    for (int64_t i = 0; i < n;) {
        const int64_t end = std::min(n, i + 1000);
        for (; i < end; ++i) st.append(make_event(jobs[size_t(i % int64_t(jobs.size()))], i, kT0 + i * 1'000'000));
        st.flush();
    }
    auto stats = st.stats();
    if (stats.dropped) fprintf(stderr, "warning: %llu events dropped\n", (unsigned long long)stats.dropped);
    return true;
}

int64_t count_events(const std::string& path) {
    sqlite3* db = nullptr;
    int64_t n = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* q = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &q, nullptr) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            n = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return n;
}

struct RawRun {
    double open_ms = 0;          // open + first page
    std::vector<double> page_ms; // pages 2..K+1
};

// The same pages as the model, straight from SQLite, every column read.
RawRun raw_pages(const std::string& path, int pages, int page_size) {
    RawRun r;
    QElapsedTimer t;
    t.start();
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) abort();
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, job_id, time_ns, kind, count, syscall, data FROM events "
                           "WHERE id > ?1 ORDER BY id LIMIT ?2",
                           -1, &q, nullptr) != SQLITE_OK)
        abort();
    int64_t cursor = 0;
    size_t bytes = 0;
    for (int p = 0; p <= pages; ++p) {
        if (p > 0) t.restart();
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, cursor);
        sqlite3_bind_int(q, 2, page_size);
        while (sqlite3_step(q) == SQLITE_ROW) {
            cursor = sqlite3_column_int64(q, 0);
            bytes += size_t(sqlite3_column_int64(q, 1) + sqlite3_column_int64(q, 2) + sqlite3_column_int64(q, 4));
            for (int c : {3, 5, 6}) {
                const unsigned char* s = sqlite3_column_text(q, c);
                bytes += s ? size_t(sqlite3_column_bytes(q, c)) : 0;
            }
        }
        if (p == 0) r.open_ms = ms_since(t);
        else r.page_ms.push_back(ms_since(t));
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    if (bytes == 0) fprintf(stderr, "raw baseline read nothing\n");
    return r;
}

// Runs the event loop until `model` emits pageLoaded/failed or timeout.
bool wait_page(ui::EventTableModel* model, int timeout_ms) {
    QEventLoop loop;
    bool ok = true;
    auto c1 = QObject::connect(model, &ui::EventTableModel::pageLoaded, &loop, &QEventLoop::quit);
    auto c2 = QObject::connect(model, &ui::EventTableModel::failed, &loop, [&](const QString& m) {
        fprintf(stderr, "model failed: %s\n", qPrintable(m));
        ok = false;
        loop.quit();
    });
    QTimer::singleShot(timeout_ms, &loop, [&] {
        fprintf(stderr, "timeout waiting for a page\n");
        ok = false;
        loop.quit();
    });
    loop.exec();
    QObject::disconnect(c1);
    QObject::disconnect(c2);
    return ok;
}

struct ModelRun {
    double open_ms = 0;
    int first_rows = 0;
    std::vector<double> page_ms;
    int rows = 0;
};

bool model_pages(const std::string& path, int pages, ModelRun& r) {
    QElapsedTimer t;
    t.start();
    auto* backend = new ui::OfflineStore(QString::fromStdString(path));
    auto* model = new ui::EventTableModel(backend);
    model->setQuery(json::object(), ui::EventFilter{});
    while (model->rowCount() == 0) {
        if (!wait_page(model, 30000)) return false;
        if (model->atEnd() && model->rowCount() == 0) break;
    }
    r.open_ms = ms_since(t);
    r.first_rows = model->rowCount();
    for (int p = 0; p < pages && model->canFetchMore({}); ++p) {
        const int before = model->rowCount();
        t.restart();
        model->fetchMore({});
        while (model->rowCount() == before && !model->atEnd())
            if (!wait_page(model, 30000)) return false;
        r.page_ms.push_back(ms_since(t));
    }
    r.rows = model->rowCount();
    delete model;
    delete backend;
    return true;
}

struct ChartRun {
    double wall_ms = 0, awake_ms = 0, callback_ms = 0, cpu_ms = 0;
    int ticks = 0;
};

ChartRun charts(bool replot, int n_charts, int hz, int seconds) {
    QWidget win;
    auto* grid = new QGridLayout(&win);
    std::vector<ui::ResourceChart*> cs;
    for (int i = 0; i < n_charts; ++i) {
        auto* c = new ui::ResourceChart(QStringLiteral("job %1 CPU").arg(i + 1), QStringLiteral("%"), 1.0, &win);
        c->setWindowSeconds(60);
        // Two minutes of history, as for a job that has been running a while.
        for (int k = 0; k < 120 * hz; ++k) c->addSample(double(k) / hz, 40 + 30 * std::sin(k * 0.05 + i), 100);
        c->refresh();
        grid->addWidget(c, i / 4, i % 4);
        cs.push_back(c);
    }
    win.resize(1600, 1000);
    win.show();
    // Settle: first layout and paint are not part of the steady state.
    QElapsedTimer settle;
    settle.start();
    while (settle.elapsed() < 300) QCoreApplication::processEvents(QEventLoop::AllEvents, 50);

    ChartRun r;
    auto* tapp = static_cast<TimedApp*>(qApp);
    double t = 120;
    QTimer timer;
    timer.setTimerType(Qt::PreciseTimer);
    timer.setInterval(1000 / hz);
    QObject::connect(&timer, &QTimer::timeout, [&] {
        QElapsedTimer cb;
        cb.start();
        t += 1.0 / hz;
        for (size_t i = 0; i < cs.size(); ++i) {
            cs[i]->addSample(t, 40 + 30 * std::sin(t * 0.5 + double(i)), 100);
            if (replot) cs[i]->refresh();
        }
        r.callback_ms += ms_since(cb);
        ++r.ticks;
    });
    QEventLoop loop;
    QTimer::singleShot(seconds * 1000, &loop, &QEventLoop::quit);
    QElapsedTimer wall;
    const double cpu0 = thread_cpu_ms();
    tapp->busy_ms = 0;
    wall.start();
    tapp->measuring = true;
    timer.start();
    loop.exec();
    tapp->measuring = false;
    timer.stop();
    r.awake_ms = tapp->busy_ms;
    r.wall_ms = ms_since(wall);
    r.cpu_ms = thread_cpu_ms() - cpu0;
    return r;
}

void usage() {
    fprintf(stderr, "usage: console_bench [DB] [--events N] [--pages K]\n"
                    "       console_bench --push SOCKET [--rounds N]\n");
}

int push_bench(const QString& socket, int rounds) {
    ui::DaemonClient client(socket);
    client.start();
    auto wait = [](const std::function<bool()>& done, int ms) {
        QElapsedTimer t;
        t.start();
        while (!done() && t.elapsed() < ms) QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
        return done();
    };
    if (!wait([&] { return client.state() == ui::Backend::State::Connected; }, 5000)) {
        fprintf(stderr, "console_bench: cannot connect to %s: %s\n", qPrintable(socket), qPrintable(client.describe()));
        return 1;
    }
    ui::PolicyListModel model(&client);
    ui::Watcher watcher;
    QElapsedTimer clock;
    clock.start();
    int64_t pushed_at = 0;
    QObject::connect(&watcher, &ui::Watcher::pushed, [&](const nlohmann::json& f) {
        if (f.value("push", std::string()) != "policies") return;
        model.applyPushed(f.value("policies", nlohmann::json::array()));
        pushed_at = clock.nsecsElapsed();
    });
    watcher.start(socket, {{"op", "watch"}, {"policies", true}});
    if (!wait([&] { return pushed_at != 0; }, 5000)) {
        fprintf(stderr, "console_bench: no policy list was pushed\n");
        return 1;
    }
    std::vector<double> answer_ms, push_ms;
    const std::string tag = std::to_string(getpid());
    for (int i = 0; i < rounds; ++i) {
        const int before = model.rowCount();
        const std::string toml = "name = \"bench-push-" + tag + "-" + std::to_string(i) +
                                 "\"\ntier = \"seccomp\"\n[seccomp]\ndefault_action = \"errno:EPERM\"\n"
                                 "allow = [\"@default\"]\n";
        int64_t answered_at = 0;
        bool ok = false;
        const int64_t t0 = clock.nsecsElapsed();
        client.request({{"op", "policy_put"}, {"policy_toml", toml}}, &model, [&](const nlohmann::json& a) {
            answered_at = clock.nsecsElapsed();
            ok = a.value("ok", false);
            if (!ok) fprintf(stderr, "console_bench: policy_put: %s\n", a.dump().c_str());
        });
        if (!wait([&] { return answered_at != 0 && model.rowCount() > before; }, 5000) || !ok) {
            fprintf(stderr, "console_bench: round %d: no answer or no push within 5 s\n", i);
            return 1;
        }
        answer_ms.push_back(double(answered_at - t0) / 1e6);
        push_ms.push_back(double(pushed_at - t0) / 1e6);
    }
    const double am = quantile(answer_ms, 0.5), a95 = quantile(answer_ms, 0.95);
    const double pm = quantile(push_ms, 0.5), p95 = quantile(push_ms, 0.95);
    printf("console_bench --push: %d rounds against %s\n", rounds, qPrintable(socket));
    printf("%-52s %10s %22s %8s %8s\n", "figure", "measured", "baseline", "ratio", "target");
    printf("%-52s %7.2f ms %13.2f ms answer %7.2fx %8s\n", "request -> pushed list in the model, median", pm, am, pm / am,
           "<100 ms");
    printf("%-52s %7.2f ms %13.2f ms answer %7.2fx %8s\n", "request -> pushed list in the model, p95", p95, a95, p95 / a95,
           "<100 ms");
    printf("raw: push_median_ms=%.3f push_p95_ms=%.3f answer_median_ms=%.3f answer_p95_ms=%.3f rounds=%d\n", pm, p95, am,
           a95, rounds);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
    QStandardPaths::setTestModeEnabled(true);
    TimedApp app(argc, argv);

    std::string db;
    int64_t events = 1'000'000;
    int pages = 50;
    QString pushSocket;
    int rounds = 50;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--push" && i + 1 < argc) { pushSocket = QString::fromLocal8Bit(argv[++i]); continue; }
        if (a == "--rounds" && i + 1 < argc) { rounds = std::max(1, std::atoi(argv[++i])); continue; }
        if (a == "--events" && i + 1 < argc) events = std::atoll(argv[++i]);
        else if (a == "--pages" && i + 1 < argc) pages = std::atoi(argv[++i]);
        else if (a == "-h" || a == "--help") { usage(); return 0; }
        else if (!a.empty() && a[0] != '-' && db.empty()) db = a;
        else { usage(); return 2; }
    }
    if (!pushSocket.isEmpty()) return push_bench(pushSocket, rounds);
    bool temp = false;
    std::filesystem::path tmpdir;
    if (db.empty()) {
        const char* base = getenv("MOAT_BENCH_DIR");
        std::string tmpl = (std::filesystem::path(base ? base : std::filesystem::temp_directory_path().c_str()) /
                            "moat-console-bench.XXXXXX").string();
        if (!mkdtemp(tmpl.data())) { perror("mkdtemp"); return 1; }
        tmpdir = tmpl;
        db = (tmpdir / "state.db").string();
        temp = true;
    }

    double gen_ms = -1;
    if (!std::filesystem::exists(db)) {
        printf("generating %lld events into %s ...\n", (long long)events, db.c_str());
        fflush(stdout);
        QElapsedTimer t;
        t.start();
        if (!generate(db, events)) return 1;
        gen_ms = ms_since(t);
    }
    const int64_t stored = count_events(db);
    if (gen_ms >= 0)
        printf("generated %lld events in %.1f s (%.0f events/s; not a target)\n", (long long)stored, gen_ms / 1000,
               double(stored) / (gen_ms / 1000));
    else
        printf("reusing %s: %lld events\n", db.c_str(), (long long)stored);

    const int page = ui::EventTableModel::kPageSize;
    raw_pages(db, pages, page);  // warm the OS page cache for both runs below
    ModelRun m;
    if (!model_pages(db, pages, m)) return 1;
    RawRun raw = raw_pages(db, pages, page);

    const ChartRun base = charts(false, 20, 10, 5);
    const ChartRun live = charts(true, 20, 10, 5);

    const double pm = quantile(m.page_ms, 0.5), p95 = quantile(m.page_ms, 0.95);
    const double rm = quantile(raw.page_ms, 0.5), r95 = quantile(raw.page_ms, 0.95);
    auto pct = [](double a, double w) { return 100.0 * a / w; };
    printf("\nconsole_bench: %lld events, page size %d, %zu page fetches after the first\n", (long long)stored, page,
           m.page_ms.size());
    printf("%-44s %12s %20s %9s %8s\n", "figure", "measured", "baseline", "ratio", "target");
    printf("%-44s %9.2f ms %14.3f ms raw %8.1fx %8s\n", "event view open (first page in model)", m.open_ms, raw.open_ms,
           m.open_ms / raw.open_ms, "<300 ms");
    printf("%-44s %9.2f ms %14.3f ms raw %8.1fx %8s\n", "page fetch, median", pm, rm, pm / rm, "<16 ms");
    printf("%-44s %9.2f ms %14.3f ms raw %8.1fx %8s\n", "page fetch, p95", p95, r95, p95 / r95, "<16 ms");
    printf("%-44s %10.1f %% %14.1f %% no-rp %8.2fx %8s\n", "charts 20x10 Hz: GUI thread busy (events)",
           pct(live.awake_ms, live.wall_ms), pct(base.awake_ms, base.wall_ms),
           live.awake_ms / std::max(base.awake_ms, 1e-9), "<20 %");
    printf("%-44s %10.1f %% %14.1f %% no-rp %8.2fx\n", "charts: inside the timer callback",
           pct(live.callback_ms, live.wall_ms), pct(base.callback_ms, base.wall_ms),
           live.callback_ms / std::max(base.callback_ms, 1e-9));
    printf("%-44s %10.1f %% %14.1f %% no-rp %8.2fx\n", "charts: GUI thread CPU time",
           pct(live.cpu_ms, live.wall_ms), pct(base.cpu_ms, base.wall_ms), live.cpu_ms / std::max(base.cpu_ms, 1e-9));
    printf("\nraw: model_open_ms=%.3f raw_open_ms=%.3f model_page_median_ms=%.3f model_page_p95_ms=%.3f "
           "raw_page_median_ms=%.4f raw_page_p95_ms=%.4f model_rows=%d first_rows=%d\n",
           m.open_ms, raw.open_ms, pm, p95, rm, r95, m.rows, m.first_rows);
    printf("raw: chart_ticks=%d/%d chart_wall_ms=%.0f busy_ms=%.1f/%.1f callback_ms=%.1f/%.1f cpu_ms=%.1f/%.1f "
           "(live/no-replot)\n",
           live.ticks, base.ticks, live.wall_ms, live.awake_ms, base.awake_ms, live.callback_ms, base.callback_ms,
           live.cpu_ms, base.cpu_ms);
    if (temp) {
        std::error_code ec;
        std::filesystem::remove_all(tmpdir, ec);
    }
    return 0;
}
