// Issue 13 (items 7-10, 12): what the operator reads in the event table, the
// detail pane, the charts' empty and short states, the Jobs view's filter and
// columns, and incident copies of the database.
#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QLineEdit>
#include <QTableView>
#include <QTemporaryDir>

#include <QTest>
#include <gtest/gtest.h>

#include <filesystem>

#include "app/main_window.h"
#include "backend/offline_store.h"
#include "charts/denial_timeline_chart.h"
#include "charts/resource_chart.h"
#include "charts/top_syscalls_chart.h"
#include "fake_backend.h"
#include "models/denial_stats.h"
#include "models/event_row.h"
#include "models/event_summary.h"
#include "models/event_table_model.h"
#include "models/job_filter_proxy.h"
#include "models/job_table_model.h"
#include "moat/store/store.h"
#include "views/denial_detail.h"
#include "views/job_detail_view.h"
#include "views/jobs_view.h"

using nlohmann::json;
using namespace moat::ui;
using moat::ui::test::FakeBackend;
using moat::ui::test::waitFor;
namespace fs = std::filesystem;

namespace {

json envelope(int64_t id, const char* kind) {
    return {{"id", id}, {"time", "2026-11-29T16:39:24.548568544Z"}, {"job", 4}, {"kind", kind}, {"count", 1}};
}

json denial(int64_t id, const char* syscall, int64_t sec) {
    json e = envelope(id, "denial");
    e["time"] = "2026-11-29T16:39:" + std::to_string(10 + sec) + ".000000000Z";
    e.update({{"syscall", syscall}, {"nr", 1}, {"arch", "x86_64"}, {"args", {1, 2, 3, 4, 5, 6}},
              {"action", "errno:EPERM"}, {"rule", "seccomp.default_action"}, {"ip", "0x7f"}, {"module", nullptr},
              {"decoded", nullptr}, {"pid", 10}});
    return e;
}

json jobJson(int64_t id, const char* cause, std::vector<std::string> argv) {
    return {{"id", id},
            {"tier", "seccomp"},
            {"argv", argv},
            {"policy", {{"name", "thumbnailer"}, {"version", 3}, {"sha256", "527e88986f39aa"}}},
            {"started_at", "2026-11-29T16:39:24.500000000Z"},
            {"ended_at", "2026-11-29T16:39:24.551000000Z"},
            {"state", "finished"},
            {"exit_code", std::string(cause) == "exited" ? json(0) : json()},
            {"signal", nullptr},
            {"termination", {{"cause", cause}, {"detail", std::string(cause) == "exited" ? "exit code 0" : "mount source /nope missing"}}},
            {"resources", {{"cpu_time_ns", 18'000'000}, {"peak_memory_bytes", 786432}, {"peak_pids", 1}}},
            {"denial_count", 0},
            {"sandbox", json::object()}};
}

}  // namespace

// Item 7: resource and limit rows say what they are, with units.
TEST(EventSummary, ResourceAndLimitRowsAreReadableWithUnits) {
    json res = envelope(1, "resource");
    res.update({{"cpu_percent", 35.0}, {"cpu_time_ns", 1'200'000'000}, {"memory_bytes", 262144},
                {"memory_limit_bytes", 48ull << 20}, {"pids", 2}, {"pids_limit", 64}});
    json mem = envelope(2, "limit");
    mem.update({{"limit", "memory"}, {"value", 48ull << 20}, {"oom_kills", 1}});
    json wall = envelope(3, "limit");
    wall.update({{"limit", "wall-time"}, {"value_ns", 30'000'000'000}});

    FakeBackend backend([&](const json& req) -> json {
        json evs = json::array();
        for (const json& e : {res, mem, wall})
            if (e["id"].get<int64_t>() > req.value("after", int64_t(0))) evs.push_back(e);
        return {{"ok", true}, {"events", evs}, {"next", nullptr}};
    });
    EventTableModel model(&backend);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Warning);
    model.setQuery(json::object());
    ASSERT_TRUE(waitFor([&] { return model.rowCount() == 3; })) << model.rowCount() << " rows";
    auto cell = [&](int r, int c) { return model.data(model.index(r, c)).toString(); };
    EXPECT_EQ(cell(0, EventTableModel::What), QStringLiteral("sample"));
    EXPECT_EQ(cell(0, EventTableModel::Target), QStringLiteral("CPU 35.0 %, memory 256 KiB of 48 MiB, 2 of 64 pids, CPU time 1.2 s"));
    EXPECT_EQ(cell(1, EventTableModel::What), QStringLiteral("memory limit"));
    EXPECT_EQ(cell(1, EventTableModel::Action), QStringLiteral("1 OOM kill"));
    EXPECT_TRUE(cell(1, EventTableModel::Target).startsWith(QStringLiteral("limits.memory = 48 MiB reached"))) << cell(1, EventTableModel::Target).toStdString();
    EXPECT_EQ(cell(2, EventTableModel::Action), QStringLiteral("job killed"));
    EXPECT_TRUE(cell(2, EventTableModel::Target).contains(QStringLiteral("limits.wall_time = 30 s"))) << cell(2, EventTableModel::Target).toStdString();

    // The detail pane: units, and the raw number only as a footnote.
    const QString h = eventDetailHtml(res);
    EXPECT_TRUE(h.contains(QStringLiteral("256 KiB <small>(262144)</small>"))) << h.toStdString();
    EXPECT_TRUE(h.contains(QStringLiteral("35.0 %"))) << h.toStdString();
    const QString hm = eventDetailHtml(mem);
    EXPECT_TRUE(hm.contains(QStringLiteral("memory limit"))) << hm.toStdString();
    EXPECT_TRUE(hm.contains(QStringLiteral("48 MiB <small>(50331648)</small>"))) << hm.toStdString();
    EXPECT_TRUE(eventDetailHtml(wall).contains(QStringLiteral("30 s <small>(30000000000)</small>")));
}

// Item 12: named ioctl requests, only the arguments a syscall has, the job's
// policy and command.
TEST(DenialDetail, NamesIoctlRequestsShowsOnlyRealArgumentsAndTheJob) {
    json ioctl = denial(1, "ioctl", 0);
    ioctl["args"] = {1, 0x5401, 0x7ffd0000, 0, 0, 0};
    EventJobContext ctx{"thumbnailer", 3, {"sh", "-c", "echo a\necho b"}};
    const QString h = eventDetailHtml(ioctl, &ctx);
    EXPECT_TRUE(h.contains(QStringLiteral("arg1 cmd = 0x5401 (21505) <b>TCGETS</b>"))) << h.toStdString();
    EXPECT_TRUE(h.contains(QStringLiteral("arg2 arg = "))) << h.toStdString();
    EXPECT_FALSE(h.contains(QStringLiteral("arg3"))) << "ioctl takes three arguments: " << h.toStdString();
    EXPECT_TRUE(h.contains(QStringLiteral("thumbnailer v3"))) << h.toStdString();
    EXPECT_TRUE(h.contains(QStringLiteral("sh -c 'echo a⏎echo b'"))) << h.toStdString();

    json mkdir = denial(2, "mkdir", 0);
    const QString hm = eventDetailHtml(mkdir);
    EXPECT_TRUE(hm.contains(QStringLiteral("arg0 pathname"))) << hm.toStdString();
    EXPECT_TRUE(hm.contains(QStringLiteral("arg1 mode"))) << hm.toStdString();
    EXPECT_FALSE(hm.contains(QStringLiteral("arg2"))) << hm.toStdString();

    json getpid = denial(3, "getpid", 0);
    EXPECT_TRUE(eventDetailHtml(getpid).contains(QStringLiteral("takes no arguments")));
}

// Item 8: empty charts say so; counts have integer ticks; a syscall keeps its
// colour across filters and charts; the legend is outside the plot.
TEST(Charts, EmptyShortAndStable) {
    DenialTimelineChart timeline;
    TopSyscallsChart top;
    timeline.resize(700, 260);
    top.resize(500, 260);
    DenialStats none;
    timeline.setStats(none);
    top.setStats(none);
    EXPECT_EQ(timeline.emptyText(), QStringLiteral("No denials in the loaded events"));
    EXPECT_EQ(top.emptyText(), QStringLiteral("No denials in the loaded events"));
    EXPECT_FALSE(timeline.xAxis->tickLabels()) << "no wall-clock axis over nothing";

    DenialStats a;  // mkdir alone
    a.add(EventRow::fromJson(denial(1, "mkdir", 0)));
    DenialStats b;  // mkdir among others, more denied
    for (int i = 0; i < 5; ++i) b.add(EventRow::fromJson(denial(10 + i, "openat", i % 2)));
    b.add(EventRow::fromJson(denial(20, "mkdir", 0)));
    b.add(EventRow::fromJson(denial(21, "socket", 1)));
    timeline.setStats(a);
    top.setStats(a);
    EXPECT_EQ(timeline.emptyText(), QString());
    const QColor mkdirA = timeline.colorOf(QStringLiteral("mkdir"));
    ASSERT_TRUE(mkdirA.isValid());
    EXPECT_EQ(top.colorOf(QStringLiteral("mkdir")), mkdirA) << "the same colour in the ranking";
    timeline.setStats(b);
    top.setStats(b);
    EXPECT_EQ(timeline.colorOf(QStringLiteral("mkdir")), mkdirA) << "the same colour under another filter";
    EXPECT_EQ(top.colorOf(QStringLiteral("mkdir")), mkdirA);
    // Syscalls shown together get different colours.
    EXPECT_NE(top.colorOf(QStringLiteral("mkdir")), top.colorOf(QStringLiteral("openat")));
    EXPECT_NE(top.colorOf(QStringLiteral("socket")), top.colorOf(QStringLiteral("openat")));
    EXPECT_NE(top.colorOf(QStringLiteral("socket")), top.colorOf(QStringLiteral("mkdir")));
    EXPECT_FALSE(timeline.legendInsidePlot());

    // Integer ticks on count axes (a single denial once gave 0.25 steps).
    timeline.setStats(a);
    top.setStats(a);
    timeline.replot();
    top.replot();
    ASSERT_FALSE(timeline.yAxis->tickVector().isEmpty());
    for (double t : timeline.yAxis->tickVector()) EXPECT_EQ(t, std::round(t)) << "denials/s tick " << t;
    ASSERT_FALSE(top.xAxis->tickVector().isEmpty());
    for (double t : top.xAxis->tickVector()) EXPECT_EQ(t, std::round(t)) << "denials tick " << t;
}

TEST(Charts, ResourceChartWithoutOrWithZeroSamples) {
    ResourceChart chart(QStringLiteral("Memory"), QStringLiteral("MiB"), 1024.0 * 1024.0);
    chart.resize(500, 200);
    chart.setEmptyText(QStringLiteral("no samples: the job ended before its guest sent one"));
    chart.refresh();
    EXPECT_EQ(chart.shownEmptyText(), QStringLiteral("no samples: the job ended before its guest sent one"));
    chart.addSample(0.02, 0, 0);
    chart.addSample(0.05, 0, 0);
    chart.refresh();
    EXPECT_EQ(chart.shownEmptyText(), QString());
    EXPECT_GE(chart.yAxis->range().upper, 1.0) << "an all-zero series once got a 1e-9 axis";
}

// Issue 15, target 6c: a sample that leaves the axes as they were redraws the
// curves' layer only; a sample past the x step (a tenth of the window) or
// above the round y top replots all; a hidden chart draws nothing until shown.
TEST(Charts, ResourceChartRedrawsOnlyItsCurvesWhileTheAxesStay) {
    ResourceChart chart(QStringLiteral("CPU"), QStringLiteral("%"), 1.0);
    chart.setWindowSeconds(60);
    chart.resize(500, 200);
    chart.addSample(0.5, 40, 100);
    chart.refresh();  // hidden: nothing drawn, the axes are set
    EXPECT_EQ(chart.fullReplots(), 0);
    EXPECT_EQ(chart.curveRedraws(), 0);
    EXPECT_EQ(chart.xAxis->range().upper, 10.0);
    chart.show();
    ASSERT_TRUE(QTest::qWaitForWindowExposed(&chart));
    chart.replot(QCustomPlot::rpImmediateRefresh);
    const int full = chart.fullReplots();
    EXPECT_GE(full, 1) << "shown: the pending state is drawn";
    EXPECT_NEAR(chart.yAxis->range().upper, 110.0, 1e-9) << "the limit (100) in reach, with room";
    for (int i = 1; i <= 20; ++i) {  // 0.6 s .. 2.5 s: inside the first step, below the y top
        chart.addSample(0.5 + 0.1 * i, 40 + i, 100);
        chart.refresh();
        if (i % 5 == 0) QCoreApplication::processEvents();  // bursts of 5 samples per pass of the loop
    }
    EXPECT_EQ(chart.fullReplots(), full);
    EXPECT_EQ(chart.curveRedraws(), 4) << "one redraw of the curves per burst, not per sample";
    EXPECT_EQ(chart.xAxis->range().upper, 10.0);
    chart.addSample(10.5, 50, 100);  // past the step: the x-axis moves on
    chart.refresh();
    EXPECT_EQ(chart.fullReplots(), full + 1);
    EXPECT_EQ(chart.xAxis->range().upper, 12.0);
    chart.addSample(10.6, 500, 0);  // above the y top: the y-axis grows to a round number
    chart.refresh();
    EXPECT_EQ(chart.fullReplots(), full + 2);
    EXPECT_EQ(chart.yAxis->range().upper, 600.0);
}

// Item 8/9: a finished vm job without samples, and a setup-failed job.
TEST(JobDetailView, SaysWhyChartsAreEmptyAndShowsTheResultOnce) {
    FakeBackend backend([](const json& req) -> json {
        if (req.value("op", "") == "output")
            return {{"ok", true}, {"total_bytes", 0}, {"tail_bytes", 0}, {"truncated", false}, {"data_b64", ""}};
        return {{"ok", true}, {"events", json::array()}, {"next", nullptr}};
    });
    JobDetailView view(&backend);
    json vm = jobJson(5, "exited", {"true"});
    vm["tier"] = "vm";
    JobRow row = JobRow::fromJson(vm);
    view.showJob(&row);
    EXPECT_TRUE(view.cpuChart()->shownEmptyText().contains(QStringLiteral("before its guest sent one")))
        << view.cpuChart()->shownEmptyText().toStdString();
    const QString info = view.infoText();
    EXPECT_EQ(info.count(QStringLiteral("exit code 0")), 1) << info.toStdString();
    row = JobRow::fromJson(jobJson(6, "setup-failed", {"true"}));
    view.showJob(&row);
    EXPECT_TRUE(view.pidsChart()->shownEmptyText().contains(QStringLiteral("never ran")));
}

// Item 9: Command column, no usage for a job that never ran, the quick filter.
TEST(JobsView, CommandColumnSetupFailedAndQuickFilter) {
    const json jobs = json::array({jobJson(3, "setup-failed", {"/usr/bin/convert", "in.png"}),
                                   jobJson(2, "exited", {"sh", "-c", "echo one\necho two"}),
                                   jobJson(1, "exited", {"/bin/true"})});
    FakeBackend backend([&](const json& req) -> json {
        if (req.value("op", "") == "jobs") return {{"ok", true}, {"jobs", jobs}};
        return {{"ok", true}, {"events", json::array()}, {"next", nullptr}};
    });
    JobTableModel model(&backend);
    JobsView view(&backend, &model);
    QAbstractItemModelTester tester(view.proxy(), QAbstractItemModelTester::FailureReportingMode::Warning);
    model.applyJobs(jobs);
    emit model.refreshed();
    auto cell = [&](int r, int c, int role = Qt::DisplayRole) { return model.data(model.index(r, c), role).toString(); };
    EXPECT_EQ(cell(0, JobTableModel::Cpu), QStringLiteral("—"));
    EXPECT_EQ(cell(0, JobTableModel::Memory), QStringLiteral("—"));
    EXPECT_EQ(cell(0, JobTableModel::Pids), QStringLiteral("—"));
    EXPECT_EQ(cell(1, JobTableModel::Memory), QStringLiteral("768 KiB")) << "a job that ran keeps its figures";
    EXPECT_EQ(cell(1, JobTableModel::Command), QStringLiteral("sh -c 'echo one⏎echo two'"));
    EXPECT_EQ(cell(1, JobTableModel::Command, Qt::ToolTipRole), QStringLiteral("sh -c 'echo one\necho two'"));
    EXPECT_EQ(model.headerData(JobTableModel::Command, Qt::Horizontal).toString(), QStringLiteral("Command"));

    QTableView* t = view.table();
    EXPECT_EQ(t->model()->rowCount(), 3);
    view.filterEdit()->setText(QStringLiteral("echo TWO"));
    ASSERT_EQ(t->model()->rowCount(), 1);
    EXPECT_EQ(t->model()->data(t->model()->index(0, JobTableModel::Id)).toLongLong(), 2);
    view.filterEdit()->setText(QStringLiteral("mount"));  // the cause's detail
    ASSERT_EQ(t->model()->rowCount(), 1);
    EXPECT_EQ(t->model()->data(t->model()->index(0, JobTableModel::Id)).toLongLong(), 3);
    view.filterEdit()->clear();
    view.stateFilter()->setCurrentIndex(view.stateFilter()->findData(int(JobFilterProxy::State::Problems)));
    EXPECT_EQ(t->model()->rowCount(), 1);
    // Selecting by id works through the filter, and one hidden by it is shown.
    EXPECT_TRUE(view.selectJob(1));
    EXPECT_EQ(view.selectedJob(), 1);
    EXPECT_EQ(view.stateFilter()->currentIndex(), 0);
}

// Item 10: a copy of moat.db taken without its -wal says why it looks empty;
// Save incident copy makes a copy that opens.
TEST(IncidentCopy, WallessCopyExplainsAndSaveMakesAnOpenableCopy) {
    QTemporaryDir dir;
    ASSERT_TRUE(dir.isValid());
    const std::string d = dir.path().toStdString();
    auto live = moat::store::Store::open(d + "/moat.db");
    ASSERT_TRUE(live.has_value()) << live.error().message;
    // What cp moat.db does while moatd runs: the schema and every row are in moat.db-wal.
    ASSERT_TRUE(fs::exists(d + "/moat.db-wal"));
    fs::copy_file(d + "/moat.db", d + "/copy.db");
    {
        OfflineStore store(QString::fromStdString(d + "/copy.db"));
        MainWindow w(&store);
        ASSERT_TRUE(waitFor([&] { return store.state() == Backend::State::Failed; })) << store.describe().toStdString();
        ASSERT_TRUE(waitFor([&] { return !w.bannerText().isEmpty(); }));
        EXPECT_TRUE(w.bannerText().contains(QStringLiteral("copy.db-wal"))) << w.bannerText().toStdString();
        EXPECT_TRUE(w.bannerText().contains(QStringLiteral("moatctl db backup"))) << w.bannerText().toStdString();
        EXPECT_TRUE(w.windowTitle().contains(QStringLiteral("copy.db (offline copy, read-only)"))) << w.windowTitle().toStdString();
    }
    // Save incident copy from a window on the live file: a consistent single file.
    OfflineStore src(QString::fromStdString(d + "/moat.db"));
    MainWindow w(&src);
    ASSERT_TRUE(waitFor([&] { return src.state() == Backend::State::Offline; })) << src.describe().toStdString();
    EXPECT_EQ(w.bannerText(), QString());
    bool done = false, ok = false;
    QString msg;
    QObject::connect(&w, &MainWindow::incidentCopyDone, [&](bool o, const QString& m) { done = true; ok = o; msg = m; });
    w.saveIncidentCopy(QString::fromStdString(d + "/incident.db"));
    ASSERT_TRUE(waitFor([&] { return done; }, 10000));
    EXPECT_TRUE(ok) << msg.toStdString();
    EXPECT_FALSE(fs::exists(d + "/incident.db-wal"));
    auto copy = moat::store::Store::open_read_only(d + "/incident.db");
    EXPECT_TRUE(copy.has_value()) << copy.error().message;
    // Never over an existing file.
    done = false;
    w.saveIncidentCopy(QString::fromStdString(d + "/incident.db"));
    ASSERT_TRUE(waitFor([&] { return done; }, 10000));
    EXPECT_FALSE(ok);
    EXPECT_TRUE(msg.contains(QStringLiteral("exists"))) << msg.toStdString();
}
