#include <QAbstractItemModelTester>
#include <QCoreApplication>
#include <QElapsedTimer>
#include <QPersistentModelIndex>

#include <gtest/gtest.h>

#include "fake_backend.h"
#include "models/event_table_model.h"
#include "models/job_table_model.h"
#include "models/policy_list_model.h"
#include "models/proposal_model.h"
#include "moat/common/base64.h"
#include "views/investigate_view.h"
#include "views/job_detail_view.h"
#include <QPushButton>
#include "moat/policy/parser.h"

using nlohmann::json;
using namespace moat::ui;
using moat::ui::test::FakeBackend;
using moat::ui::test::waitFor;

namespace {

json job(int64_t id, const char* state, int denials = 0) {
    json j = {{"id", id},
              {"tier", "seccomp"},
              {"argv", {"mkdir", "/tmp/x"}},
              {"policy", {{"name", "demo-mkdir"}, {"version", 1}, {"sha256", "527e88986f39aa"}}},
              {"started_at", "2026-11-29T16:39:24.500000000Z"},
              {"ended_at", nullptr},
              {"state", state},
              {"exit_code", nullptr},
              {"signal", nullptr},
              {"termination", {{"cause", nullptr}, {"detail", nullptr}}},
              {"resources", {{"cpu_time_ns", 1000000}, {"peak_memory_bytes", 4 << 20}, {"peak_pids", 1}}},
              {"denial_count", denials},
              {"sandbox", json::object()}};
    if (std::string(state) == "finished") {
        j["ended_at"] = "2026-11-29T16:39:25.000000000Z";
        j["exit_code"] = 1;
        j["termination"] = {{"cause", "exited"}, {"detail", "exit code 1"}};
    }
    return j;
}

json event(int64_t id, const char* kind, const char* syscall = "mkdir", int64_t jobId = 1) {
    json e = {{"id", id}, {"time", "2026-11-29T16:39:24.548568544Z"}, {"job", jobId}, {"kind", kind}, {"count", 1}};
    if (std::string(kind) == "denial") {
        e.update({{"syscall", syscall}, {"nr", 83}, {"arch", "x86_64"}, {"args", {1, 2, 3, 4, 5, 6}},
                  {"action", "errno:EPERM"}, {"rule", "seccomp.default_action"}, {"ip", "0x7f"},
                  {"module", "libc.so.6+0xf7f37"}, {"decoded", "/tmp/moat-demo"}, {"pid", 10}});
    } else {
        e["event"] = "exec";
        e["path"] = "/bin/mkdir";
    }
    return e;
}

}  // namespace

TEST(JobTableModel, MergesRefreshesWithoutLosingTheSelection) {
    FakeBackend backend([](const json&) { return json{{"ok", true}, {"jobs", json::array()}}; });
    JobTableModel model(&backend);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);

    model.applyJobs(json::array({job(3, "running"), job(2, "finished", 1), job(1, "finished")}));
    ASSERT_EQ(model.rowCount(), 3);
    QPersistentModelIndex selected(model.index(1, 0));  // job 2
    EXPECT_EQ(model.data(model.index(1, JobTableModel::Id)).toLongLong(), 2);
    EXPECT_EQ(model.data(model.index(1, JobTableModel::Policy)).toString(), QStringLiteral("demo-mkdir v1"));
    EXPECT_EQ(model.data(model.index(1, JobTableModel::Result)).toString(), QStringLiteral("exit 1"));
    EXPECT_EQ(model.data(model.index(1, JobTableModel::Denials)).toULongLong(), 1u);

    // Two new jobs on top, job 1 gone, job 3 finished: the persistent index follows job 2.
    model.applyJobs(json::array({job(5, "running"), job(4, "running"), job(3, "finished", 2), job(2, "finished", 1)}));
    ASSERT_EQ(model.rowCount(), 4);
    ASSERT_TRUE(selected.isValid());
    EXPECT_EQ(selected.row(), 3);
    EXPECT_EQ(model.job(2)->state, "finished");
    EXPECT_EQ(model.rowOfId(4), 1);
    EXPECT_EQ(model.rowOfId(1), -1);
    EXPECT_EQ(model.policyOfJob(5), QStringLiteral("demo-mkdir"));

    // Live samples reach running jobs only.
    model.applyResourceEvents(json::array({{{"id", 9}, {"job", 5}, {"kind", "resource"}, {"cpu_percent", 42.5},
                                            {"memory_bytes", 3 << 20}, {"pids", 2}}}));
    EXPECT_EQ(model.data(model.index(0, JobTableModel::Cpu)).toString(), QStringLiteral("42.5"));
    EXPECT_EQ(model.data(model.index(0, JobTableModel::Memory)).toString(), QStringLiteral("3.0 MiB"));

    model.applyJobs(json::array());
    EXPECT_EQ(model.rowCount(), 0);
}

TEST(JobTableModel, PollsTheDaemon) {
    FakeBackend backend([](const json& req) -> json {
        if (req["op"] == "jobs") return {{"ok", true}, {"jobs", json::array({job(2, "finished"), job(1, "finished")})}};
        return {{"ok", true}, {"events", json::array()}, {"next", nullptr}};
    });
    JobTableModel model(&backend);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);
    model.refresh();
    ASSERT_TRUE(waitFor([&] { return model.rowCount() == 2; }));
    EXPECT_EQ(backend.requests.front()["op"], "jobs");
}

TEST(EventTableModel, PagesWithAfterAndNext) {
    // 1200 events; pages of EventTableModel::kPageSize.
    FakeBackend backend([](const json& req) -> json {
        const int64_t after = req.value("after", int64_t(0));
        const int64_t limit = req.value("limit", int64_t(1000));
        json evs = json::array();
        for (int64_t id = after + 1; id <= 1200 && int64_t(evs.size()) < limit; ++id)
            evs.push_back(event(id, id % 2 ? "denial" : "lifecycle", id % 3 ? "mkdir" : "openat"));
        json next = int64_t(evs.size()) == limit ? json(evs.back()["id"]) : json(nullptr);
        return {{"ok", true}, {"events", evs}, {"next", next}};
    });
    EventTableModel model(&backend);
    // No tester yet: QAbstractItemModelTester itself calls fetchMore, which
    // would hide whether paging waits for the view to ask.
    model.setQuery(json::object());
    ASSERT_TRUE(waitFor([&] { return !model.loading(); }));
    EXPECT_EQ(model.rowCount(), EventTableModel::kPageSize);
    EXPECT_TRUE(model.canFetchMore({}));
    model.fetchMore({});
    ASSERT_TRUE(waitFor([&] { return !model.loading(); }));
    EXPECT_EQ(model.rowCount(), 2 * EventTableModel::kPageSize);
    EXPECT_EQ(backend.requests.back().value("after", 0), EventTableModel::kPageSize);
    while (model.canFetchMore({})) {
        model.fetchMore({});
        ASSERT_TRUE(waitFor([&] { return !model.loading(); }));
    }
    EXPECT_EQ(model.rowCount(), 1200);
    EXPECT_TRUE(model.atEnd());
    EXPECT_EQ(model.data(model.index(0, EventTableModel::What)).toString(), QStringLiteral("mkdir"));
    EXPECT_EQ(model.data(model.index(0, EventTableModel::Target)).toString(), QStringLiteral("/tmp/moat-demo"));

    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);
    // A filter: pushed-down fields are sent, the rest is checked here.
    auto f = EventFilter::parse(QStringLiteral("kind=denial and syscall~open"));
    ASSERT_TRUE(f);
    model.setQuery(json::object(), *f);
    ASSERT_TRUE(waitFor([&] { return !model.loading(); }));
    EXPECT_EQ(backend.requests.back().value("kind", ""), "denial");
    while (model.canFetchMore({})) {
        model.fetchMore({});
        ASSERT_TRUE(waitFor([&] { return !model.loading(); }));
    }
    // The fake ignores "kind": the model filters client-side too.
    int expected = 0;
    for (int id = 1; id <= 1200; ++id) expected += (id % 2) && !(id % 3);
    EXPECT_EQ(model.rowCount(), expected);
    for (int r = 0; r < model.rowCount(); ++r) ASSERT_EQ(model.event(r)->syscall, "openat");
}

TEST(EventTableModel, BoundedTailDropsTheOldest) {
    int64_t produced = 0;
    FakeBackend backend([&](const json& req) -> json {
        const int64_t after = req.value("after", int64_t(0));
        json evs = json::array();
        for (int64_t id = after + 1; id <= produced; ++id) evs.push_back(event(id, "denial"));
        return {{"ok", true}, {"events", evs}, {"next", nullptr}};
    });
    EventTableModel model(&backend);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);
    model.setCapacity(10);
    produced = 6;
    model.setQuery({{"job", 1}, {"kind", "denial"}});
    ASSERT_TRUE(waitFor([&] { return model.rowCount() == 6; }));
    model.setTailInterval(10);
    produced = 25;
    ASSERT_TRUE(waitFor([&] { return model.event(model.rowCount() - 1) && model.event(model.rowCount() - 1)->id == 25; }));
    EXPECT_EQ(model.rowCount(), 10);
    EXPECT_EQ(model.event(0)->id, 16);
    EXPECT_EQ(backend.requests.back().value("job", 0), 1);
}

TEST(PolicyListModel, AddsNewVersionsInPlace) {
    FakeBackend backend([](const json&) { return json{{"ok", true}}; });
    PolicyListModel model(&backend);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);
    auto pol = [](int64_t id, const char* name, int v) {
        return json{{"id", id}, {"name", name}, {"version", v}, {"sha256", "abcdef0123456789"},
                    {"created_at", "2026-11-29T16:38:33.246357686Z"}};
    };
    model.applyPolicies(json::array({pol(1, "a", 1), pol(2, "b", 1)}));
    QPersistentModelIndex b(model.index(1, 0));
    model.applyPolicies(json::array({pol(1, "a", 1), pol(3, "a", 2), pol(2, "b", 1)}));
    ASSERT_EQ(model.rowCount(), 3);
    EXPECT_EQ(b.row(), 2);
    EXPECT_EQ(model.latestRowOf("a"), 1);
    EXPECT_EQ(model.rowOf("b", 1), 2);
    EXPECT_EQ(model.data(model.index(1, PolicyListModel::Version)).toString(), QStringLiteral("v2"));
    model.applyPolicies(json::array({pol(2, "b", 1)}));  // not a superset: reset
    EXPECT_EQ(model.rowCount(), 1);
}

TEST(ProposalModel, ChecklistStartsCheckedAndFeedsTheFragment) {
    auto base = moat::policy::parse_policy("name = \"p\"\ntier = \"seccomp\"\n[filesystem]\ntmpfs = []\n"
                                           "[seccomp]\nallow = [\"@default\"]\n",
                                           "p.toml");
    ASSERT_TRUE(base.policy);
    ProposalModel model;
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::Fatal);
    moat::learn::Addition rmdir;
    rmdir.entry = "rmdir";
    rmdir.syscalls = {"rmdir"};
    rmdir.evidence = "1 call(s); first rmdir(/tmp/x) at libc.so.6+0xf9b77";
    moat::learn::Addition ptrace;
    ptrace.entry = "ptrace";
    ptrace.syscalls = {"ptrace"};
    ptrace.risk = "reads and writes other processes' memory";
    ptrace.evidence = "2 call(s); first ptrace() at libc.so.6+0x1";
    int changes = 0;
    QObject::connect(&model, &ProposalModel::checkedChanged, [&] { ++changes; });
    model.setAdditions({rmdir, ptrace});
    ASSERT_EQ(model.rowCount(), 2);
    EXPECT_EQ(model.checkedCount(), 2);
    EXPECT_EQ(model.data(model.index(0, ProposalModel::Entry), Qt::CheckStateRole).toInt(), int(Qt::Checked));
    EXPECT_EQ(model.data(model.index(0, ProposalModel::Risk)).toString(), QStringLiteral("none known"));
    EXPECT_EQ(model.data(model.index(1, ProposalModel::Risk)).toString(),
              QStringLiteral("reads and writes other processes' memory"));
    EXPECT_TRUE(model.flags(model.index(1, ProposalModel::Entry)) & Qt::ItemIsUserCheckable);
    EXPECT_FALSE(model.flags(model.index(1, ProposalModel::Evidence)) & Qt::ItemIsUserCheckable);
    std::string frag = moat::learn::fragment(*base.policy, model.checkedAdditions());
    EXPECT_NE(frag.find("\"rmdir\""), std::string::npos) << frag;
    EXPECT_NE(frag.find("\"ptrace\""), std::string::npos) << frag;

    // The operator unchecks the risky one: it leaves the fragment and the applied text.
    ASSERT_TRUE(model.setData(model.index(1, ProposalModel::Entry), Qt::Unchecked, Qt::CheckStateRole));
    EXPECT_EQ(changes, 2);
    ASSERT_EQ(model.checkedAdditions().size(), 1u);
    EXPECT_EQ(model.checkedAdditions()[0].entry, "rmdir");
    frag = moat::learn::fragment(*base.policy, model.checkedAdditions());
    EXPECT_EQ(frag.find("\"ptrace\""), std::string::npos) << frag;
    const std::string full = moat::learn::apply(*base.policy, model.checkedAdditions());
    auto reparsed = moat::policy::parse_policy(full, "applied.toml");
    ASSERT_TRUE(reparsed.policy) << full;
    EXPECT_TRUE(reparsed.policy->seccomp.allowed.count("rmdir"));
    EXPECT_FALSE(reparsed.policy->seccomp.allowed.count("ptrace"));
    EXPECT_FALSE(model.setData(model.index(0, ProposalModel::Risk), Qt::Unchecked, Qt::CheckStateRole));
}

TEST(JobDetailView, ShowsTheRecordedOutputTailsOfAFinishedJob) {
    // stdout: the last 6 of 1000 bytes, one of them not UTF-8; stderr: empty.
    FakeBackend backend([](const json& req) -> json {
        if (req.value("op", "") != "output") return {{"ok", true}, {"events", json::array()}, {"next", nullptr}};
        if (req.value("stream", "") == "stdout")
            return {{"ok", true}, {"stream", "stdout"}, {"total_bytes", 1000}, {"tail_bytes", 6}, {"truncated", true},
                    {"data_b64", moat::base64_encode(std::string("ab\xff" "cd\n"))}};
        return {{"ok", true}, {"stream", "stderr"}, {"total_bytes", 0}, {"tail_bytes", 0}, {"truncated", false}, {"data_b64", ""}};
    });
    JobDetailView view(&backend);
    json j = job(7, "finished", 1);
    j["replay_of"] = 3;
    j["learn"] = true;
    const JobRow row = JobRow::fromJson(j);
    bool loaded = false;
    QObject::connect(&view, &JobDetailView::outputLoaded, [&](qint64 id) { loaded = id == 7; });
    view.showJob(&row);
    ASSERT_TRUE(waitFor([&] { return loaded; }));
    EXPECT_EQ(view.outputInfo(false), QStringLiteral("stdout: last 6 of 1000 bytes"));
    EXPECT_EQ(view.outputText(false), QStringLiteral("ab\uFFFDcd\n"));
    EXPECT_EQ(view.outputInfo(true), QStringLiteral("stderr: 0 bytes"));
    EXPECT_TRUE(view.infoText().contains(QStringLiteral("replay of job 3 in learn mode"))) << view.infoText().toStdString();
    // A refresh of the same finished job does not fetch again.
    const size_t asked = backend.requests.size();
    view.showJob(&row);
    int outputs = 0;
    for (size_t i = asked; i < backend.requests.size(); ++i) outputs += backend.requests[i].value("op", "") == "output";
    EXPECT_EQ(outputs, 0);
    // A running job has no output to show yet.
    const JobRow running = JobRow::fromJson(job(8, "running"));
    view.showJob(&running);
    EXPECT_EQ(view.outputText(false), QString());
    EXPECT_EQ(view.outputInfo(false), QStringLiteral("shown when the job ends"));
}

// A vm-tier job's record as moatd writes it (core/supervisor/src/tiers/vm.cpp):
// the detail shows the accelerator and why, the boot (warm or cold), the
// guest kernel and memory and the root image; what the guest reported is
// shown as text, never as markup.
TEST(JobDetailView, ShowsAVmJobsAcceleratorBootAndGuestKernel) {
    FakeBackend backend([](const json& req) -> json {
        if (req.value("op", "") == "output")
            return {{"ok", true}, {"total_bytes", 0}, {"tail_bytes", 0}, {"truncated", false}, {"data_b64", ""}};
        return {{"ok", true}, {"events", json::array()}, {"next", nullptr}};
    });
    JobDetailView view(&backend);
    json j = job(21, "finished");
    j["tier"] = "vm";
    j["accelerator"] = "tcg";
    j["sandbox"] = {{"cgroup_version", "v1"},
                    {"accelerator", "tcg"},
                    {"accelerator_reason", "/dev/kvm absent"},
                    {"boot_ms", 2412},
                    {"warm", false},
                    {"guest_kernel", "6.1.0-57-cloud-amd64"},
                    {"guest_kernel_package", "linux-image-6.1.0-57-cloud-amd64"},
                    {"guest_kernel_reported", "6.1.0-57-cloud-amd64 <b>pwned</b>"},
                    {"guest_memory_bytes", 192ULL << 20},
                    {"vmm", "qemu microvm"},
                    {"vmm_uid", 16000003},
                    {"root_image", {{"sha256", "0123456789abcdef0123"}, {"bytes", 24ULL << 20}, {"entries", 57}, {"cached", true}}},
                    {"notes", json::array()}};
    JobRow row = JobRow::fromJson(j);
    view.showJob(&row);
    const QString info = view.infoText();
    EXPECT_TRUE(info.contains(QStringLiteral("tier vm"))) << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral("tcg — /dev/kvm absent"))) << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral("2.4 s, cold (booted for this job)"))) << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral("kernel 6.1.0-57-cloud-amd64 (package linux-image-6.1.0-57-cloud-amd64)")))
        << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral(", memory 192 MiB"))) << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral("24 MiB, 57 entries, cached, sha256 0123456789ab"))) << info.toStdString();
    EXPECT_TRUE(info.contains(QStringLiteral("qemu microvm as uid 16000003"))) << info.toStdString();
    // The guest's own words arrive as text: the tags are visible, not applied.
    EXPECT_TRUE(info.contains(QStringLiteral("the guest reports 6.1.0-57-cloud-amd64 <b>pwned</b>"))) << info.toStdString();

    // A warm guest from the pool.
    j["sandbox"]["warm"] = true;
    j["sandbox"]["boot_ms"] = 640;
    j["sandbox"]["root_image"]["cached"] = false;
    row = JobRow::fromJson(j);
    view.showJob(&row);
    EXPECT_TRUE(view.infoText().contains(QStringLiteral("640 ms, warm (a booted guest from the pool)"))) << view.infoText().toStdString();
    EXPECT_TRUE(view.infoText().contains(QStringLiteral("built for this job"))) << view.infoText().toStdString();

    // Still booting: no boot time yet, and it says so.
    json booting = job(22, "running");
    booting["tier"] = "vm";
    booting["sandbox"] = {{"accelerator", "tcg"}, {"accelerator_reason", "/dev/kvm absent"}, {"guest_kernel", "6.1.0-57-cloud-amd64"}};
    row = JobRow::fromJson(booting);
    view.showJob(&row);
    EXPECT_TRUE(view.infoText().contains(QStringLiteral("booting…"))) << view.infoText().toStdString();

    // A seccomp job shows none of it.
    row = JobRow::fromJson(job(23, "finished"));
    view.showJob(&row);
    EXPECT_FALSE(view.infoText().contains(QStringLiteral("Accelerator"))) << view.infoText().toStdString();
}

// Issue 13, item 4: "Allow in a new policy version…" is enabled only for a
// selected denial, and never in an offline (read-only) window.
TEST(InvestigateView, AllowIsOnlyForASelectedDenialInAConnectedWindow) {
    FakeBackend backend([](const json& req) -> json {
        if (req["op"] == "events")
            return {{"ok", true}, {"events", {event(1, "lifecycle"), event(2, "denial"), event(3, "denial")}}, {"next", nullptr}};
        return {{"ok", true}, {"jobs", json::array()}};
    });
    JobTableModel jobs(&backend);
    InvestigateView view(&backend, &jobs);
    view.reload();
    ASSERT_TRUE(waitFor([&] { return view.model()->rowCount() == 3; }));
    QPushButton* allow = view.allowButton();
    bool available = true;
    QObject::connect(&view, &InvestigateView::allowAvailableChanged, [&](bool a) { available = a; });
    EXPECT_FALSE(allow->isEnabled());  // nothing selected
    int denialRow = -1, otherRow = -1;
    for (int r = 0; r < view.model()->rowCount(); ++r)
        (view.model()->event(r)->kind == "denial" ? denialRow : otherRow) = r;
    ASSERT_GE(denialRow, 0);
    ASSERT_GE(otherRow, 0);
    view.selectRow(otherRow);
    EXPECT_FALSE(allow->isEnabled());
    view.selectRow(denialRow);
    EXPECT_TRUE(allow->isEnabled());
    EXPECT_TRUE(available);
    // A reload drops the selection without selectionChanged.
    view.reload();
    ASSERT_TRUE(waitFor([&] { return view.model()->rowCount() == 3; }));
    EXPECT_FALSE(allow->isEnabled());
    EXPECT_FALSE(available);
    view.selectRow(denialRow);
    EXPECT_TRUE(allow->isEnabled());
    // Offline: a denial is selected, but there is no daemon to open its policy in.
    int asked = 0;
    QObject::connect(&view, &InvestigateView::allowDenialRequested, [&] { ++asked; });
    backend.setState(Backend::State::Offline);
    EXPECT_FALSE(allow->isEnabled());
    EXPECT_FALSE(available);
    view.allowSelected();
    QCoreApplication::processEvents();
    EXPECT_EQ(asked, 0);
}

TEST(JobTableModel, JobTextInToolTipsIsNeverRenderedAsHtml) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) { return nlohmann::json{{"ok", true}, {"jobs", nlohmann::json::array()}}; });
    JobTableModel m(&backend);
    m.applyJobs(nlohmann::json::array({{{"id", 1}, {"state", "finished"}, {"argv", {"<img src=x>", "<b>bold</b>"}},
                                        {"termination", {{"cause", "signaled"}, {"detail", "<h1>big</h1>"}}}}}));
    ASSERT_EQ(m.rowCount(), 1);
    const QString cmd = m.data(m.index(0, JobTableModel::Command), Qt::ToolTipRole).toString();
    EXPECT_FALSE(cmd.contains(QStringLiteral("<img"))) << cmd.toStdString();
    EXPECT_TRUE(cmd.contains(QStringLiteral("&lt;img src=x&gt;"))) << cmd.toStdString();
    const QString res = m.data(m.index(0, JobTableModel::Result), Qt::ToolTipRole).toString();
    EXPECT_FALSE(res.contains(QStringLiteral("<h1>"))) << res.toStdString();
}
