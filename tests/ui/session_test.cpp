// A scripted console session against a real moatd (needs root, like the
// scenario tests): a denied mkdir shows up as a job with its denial in the
// Jobs view, in the Investigate view with its decoded path, and a policy
// saved from the editor becomes a new version; a job's recorded output, its
// replay and learning a policy from it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QPushButton>
#include <QTableView>
#include <QTextBrowser>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/main_window.h"
#include "backend/daemon_client.h"
#include "backend/offline_store.h"
#include "fake_backend.h"
#include "models/event_table_model.h"
#include "models/job_table_model.h"
#include "models/policy_list_model.h"
#include "models/proposal_model.h"
#include "views/investigate_view.h"
#include "views/job_detail_view.h"
#include "views/jobs_view.h"
#include "views/policy_view.h"
#include "views/replay_panel.h"
#include "views/test_run_panel.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace moat::ui;
using moat::ui::test::waitFor;

namespace {

pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    pid_t pid = fork();
    if (pid != 0) return pid;
    // Child of a multi-threaded (Qt) process: only async-signal-safe calls until exec.
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(cargv[0], cargv.data());
    _exit(127);
}

int runWait(const std::vector<std::string>& argv, const std::string& log) {
    pid_t pid = spawn(argv, log);
    int ws = 0;
    waitpid(pid, &ws, 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

std::string readText(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class Session : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "the session test starts moatd, which needs root";
        char tmpl[] = "/tmp/moat-gui-XXXXXX";
        ASSERT_TRUE(mkdtemp(tmpl));
        m_dir = tmpl;
        m_sock = m_dir + "/s";
        m_log = m_dir + "/moatd.log";
        m_cg = "moat-gui-test-" + std::to_string(getpid());
        // A job uid range of our own: moatd refuses one another moatd holds
        // (tests run in parallel), so try slots until one is free.
        for (int attempt = 0; attempt < 20; ++attempt) {
            std::string base = std::to_string(10'000'000 + ((unsigned(getpid()) + attempt) % 1024) * 2048);
            m_moatd = spawn({MOATD_PATH, "--state-dir", m_dir + "/state", "--socket", m_sock, "--cgroup-parent", m_cg,
                             "--uid-base", base, "--uid-count", "2048"},
                            m_log);
            bool exited = false;
            waitFor([&] {
                exited = waitpid(m_moatd, nullptr, WNOHANG) == m_moatd;
                return exited || fs::exists(m_sock);
            }, 10000);
            if (!exited) break;
            m_moatd = -1;
        }
        ASSERT_TRUE(m_moatd > 0 && fs::exists(m_sock)) << readText(m_log);
    }
    void TearDown() override {
        if (m_moatd > 0) {
            kill(m_moatd, SIGTERM);
            waitpid(m_moatd, nullptr, 0);
        }
        if (HasFailure()) std::cerr << "---- moatd log ----\n" << readText(m_log);
        // Our own per-daemon parent group, in every hierarchy (v1) or at the root (v2).
        std::error_code ec;
        std::vector<fs::path> parents = {fs::path("/sys/fs/cgroup") / m_cg};
        for (const auto& hier : fs::directory_iterator("/sys/fs/cgroup", ec)) parents.push_back(hier.path() / m_cg);
        for (const auto& p : parents) {
            if (fs::is_directory(p, ec)) {
                std::vector<fs::path> dirs;
                for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); ++it)
                    if (it->is_directory(ec)) dirs.push_back(it->path());
                for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) rmdir(d->c_str());
                rmdir(p.c_str());
            }
        }
        if (!m_dir.empty()) fs::remove_all(m_dir);
    }

    int runDemo() {
        return runWait({MOATCTL_PATH, "--socket", m_sock, "run", "--policy", DEMO_POLICY, "--", "mkdir", "/tmp/moat-gui-demo"},
                       m_dir + "/moatctl.log");
    }

    std::string m_dir, m_sock, m_log, m_cg;
    pid_t m_moatd = -1;
};

}  // namespace

TEST_F(Session, ShowsAJobAndItsDenial) {
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");

    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    MainWindow w(&client);
    w.show();
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; })) << client.describe().toStdString();
    EXPECT_EQ(client.role(), QStringLiteral("admin"));

    // Jobs view: the job, finished, with one denial.
    JobTableModel* jobs = w.jobModel();
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 1 && jobs->job(0)->denials == 1; }));
    EXPECT_EQ(jobs->job(0)->policyName, "demo-mkdir");
    EXPECT_EQ(jobs->data(jobs->index(0, JobTableModel::Result)).toString(), QStringLiteral("exit 1"));
    ASSERT_TRUE(w.jobsView()->selectJob(jobs->job(0)->id));
    EventTableModel* denials = w.jobsView()->detail()->denialModel();
    ASSERT_TRUE(waitFor([&] { return denials->rowCount() == 1; }));
    EXPECT_EQ(denials->event(0)->syscall, "mkdir");
    EXPECT_EQ(denials->data(denials->index(0, EventTableModel::Target)).toString(), QStringLiteral("/tmp/moat-gui-demo"));

    // Investigate view: the filter finds it, the detail pane explains it.
    w.showView(MainWindow::View::Investigate);
    InvestigateView* inv = w.investigateView();
    ASSERT_TRUE(inv->setFilterText(QStringLiteral("kind=denial and syscall=mkdir and path~moat-gui")));
    ASSERT_TRUE(waitFor([&] { return inv->model()->rowCount() == 1 && inv->model()->atEnd(); }));
    ASSERT_TRUE(inv->selectRow(0));
    const QString detail = inv->detail()->toPlainText();
    EXPECT_TRUE(detail.contains(QStringLiteral("/tmp/moat-gui-demo"))) << detail.toStdString();
    EXPECT_TRUE(detail.contains(QStringLiteral("seccomp.default_action"))) << detail.toStdString();
    EXPECT_TRUE(detail.contains(QStringLiteral("libc.so.6+0x"))) << detail.toStdString();
    EXPECT_FALSE(inv->setFilterText(QStringLiteral("syscall=")));  // invalid: not applied
    EXPECT_EQ(inv->model()->rowCount(), 1);

    // A new job appears on top; the selection stays on the job it was on.
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 2; }));
    EXPECT_EQ(w.jobsView()->selectedJob(), jobs->job(1)->id);  // the selection stayed on its job
}

TEST_F(Session, SavesAPolicyAsANewVersion) {
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");
    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    PolicyView view(&client);
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; }));
    view.selectPolicy(QStringLiteral("demo-mkdir"));
    ASSERT_TRUE(waitFor([&] { return view.tomlText().contains(QStringLiteral("demo-mkdir")) && view.model()->rowCount() == 1; }));
    // Allow mkdir, save: version 2.
    QString text = view.tomlText();
    text.replace(QStringLiteral("\"umask\""), QStringLiteral("\"umask\", \"mkdir\""));
    view.setTomlText(text);
    ASSERT_EQ(view.errorCount(), 0);
    view.save();
    ASSERT_TRUE(waitFor([&] { return view.model()->rowCount() == 2; }));
    EXPECT_EQ(view.model()->policy(view.model()->latestRowOf("demo-mkdir"))->version, 2);

    // The daemon refuses what the editor would flag.
    json answer;
    client.request({{"op", "policy_put"}, {"policy_toml", "name = \"x\"\n[limits]\nmemory = 512\n"}}, nullptr,
                   [&](const json& a) { answer = a; });
    ASSERT_TRUE(waitFor([&] { return !answer.is_null(); }));
    EXPECT_EQ(answer.value("code", ""), "bad-policy");
    answer = nullptr;
    client.request({{"op", "policy"}, {"id", 424242}}, nullptr, [&](const json& a) { answer = a; });
    ASSERT_TRUE(waitFor([&] { return !answer.is_null(); }));
    EXPECT_EQ(answer.value("code", ""), "not-found");
}

TEST_F(Session, OpensACopiedDatabaseOffline) {
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");
    kill(m_moatd, SIGTERM);
    waitpid(m_moatd, nullptr, 0);
    m_moatd = -1;
    const std::string copy = m_dir + "/copy.db";
    fs::copy_file(m_dir + "/state/moat.db", copy);
    OfflineStore store(QString::fromStdString(copy));
    MainWindow w(&store);
    ASSERT_TRUE(waitFor([&] { return store.state() == Backend::State::Offline; })) << store.describe().toStdString();
    ASSERT_TRUE(waitFor([&] { return w.jobModel()->rowCount() == 1; }));
    EXPECT_EQ(w.jobModel()->job(0)->denials, 1u);
    // The recorded output is in the copy too.
    bool loaded = false;
    QObject::connect(w.jobsView()->detail(), &JobDetailView::outputLoaded, [&] { loaded = true; });
    ASSERT_TRUE(w.jobsView()->selectJob(w.jobModel()->job(0)->id));
    ASSERT_TRUE(waitFor([&] { return loaded; }));
    EXPECT_TRUE(w.jobsView()->detail()->outputText(true).contains(QStringLiteral("Operation not permitted")))
        << w.jobsView()->detail()->outputInfo(true).toStdString();
    EXPECT_EQ(w.jobsView()->detail()->outputInfo(false), QStringLiteral("stdout: 0 bytes"));
    ASSERT_TRUE(w.investigateView()->setFilterText(QStringLiteral("kind=denial")));
    ASSERT_TRUE(waitFor([&] { return w.investigateView()->model()->rowCount() == 1; }));
    EXPECT_FALSE(store.canWrite());
}

TEST(DaemonClientOffline, ReportsAMissingDaemonAndRetries) {
    DaemonClient client(QStringLiteral("/nonexistent/moatd.sock"));
    client.start();
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Disconnected; }));
    EXPECT_TRUE(client.describe().contains(QStringLiteral("No such file"))) << client.describe().toStdString();
    json answer;
    client.request({{"op", "jobs"}}, nullptr, [&](const json& a) { answer = a; });
    ASSERT_TRUE(waitFor([&] { return !answer.is_null(); }));
    EXPECT_EQ(answer.value("code", ""), "disconnected");
    // It keeps trying by itself.
    int changes = 0;
    QObject::connect(&client, &Backend::stateChanged, [&] { ++changes; });
    EXPECT_TRUE(waitFor([&] { return changes >= 2; }, 3000));
}

TEST_F(Session, TestRunShowsResultOutputAndDenials) {
    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    PolicyView view(&client);
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; }));
    view.setTomlText(QString::fromStdString(readText(DEMO_POLICY)));
    ASSERT_EQ(view.errorCount(), 0);
    TestRunPanel* panel = view.testRun();
    panel->setSocketPath(QString::fromStdString(m_sock));
    panel->setCommand(QStringLiteral("mkdir /tmp/moat-gui-testrun"));
    bool done = false;
    QObject::connect(panel, &TestRunPanel::done, [&] { done = true; });
    panel->run();
    ASSERT_TRUE(panel->running());
    ASSERT_TRUE(waitFor([&] { return done; }, 30000)) << panel->resultText().toStdString();
    const QString r = panel->resultText();
    EXPECT_TRUE(r.contains(QStringLiteral("exited"))) << r.toStdString();
    EXPECT_TRUE(r.contains(QStringLiteral("exit code 1"))) << r.toStdString();
    EXPECT_TRUE(r.contains(QStringLiteral("Operation not permitted"))) << r.toStdString();  // mkdir's stderr
    EXPECT_TRUE(r.contains(QStringLiteral("Denials (1)"))) << r.toStdString();
    EXPECT_TRUE(r.contains(QStringLiteral("/tmp/moat-gui-testrun"))) << r.toStdString();
    EXPECT_FALSE(fs::exists("/tmp/moat-gui-testrun"));
}

TEST_F(Session, AllowsADenialInANewVersion) {
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");
    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    MainWindow w(&client);
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; }));
    ASSERT_TRUE(waitFor([&] { return w.jobModel()->rowCount() == 1; }));
    InvestigateView* inv = w.investigateView();
    ASSERT_TRUE(inv->setFilterText(QStringLiteral("kind=denial")));
    ASSERT_TRUE(waitFor([&] { return inv->model()->rowCount() == 1; }));
    ASSERT_TRUE(inv->selectRow(0));
    EXPECT_TRUE(inv->detail()->toPlainText().contains(QStringLiteral("0777"))) << inv->detail()->toPlainText().toStdString();
    inv->allowSelected();
    PolicyView* pv = w.policyView();
    ASSERT_TRUE(waitFor([&] { return pv->tomlText().contains(QStringLiteral("\"mkdir\"")); })) << pv->tomlText().toStdString();
    EXPECT_EQ(pv->errorCount(), 0);
    pv->save();
    ASSERT_TRUE(waitFor([&] { return pv->model()->rowCount() == 2; }));
}

// A job denied one syscall (rmdir) under a seccomp-tier policy: the Jobs view
// shows its recorded output; Replay reproduces it; Learn is refused in the
// seccomp tier, works in the container tier and proposes rmdir; Apply stores
// a new version and Verify replays the original under it: pass.
TEST_F(Session, ReplaysAJobAndLearnsAPolicyFromIt) {
    // A directory the job's own uid may write (mkdtemp makes it 0700).
    char tmpl[] = "/tmp/moat-gui-rw-XXXXXX";
    ASSERT_TRUE(mkdtemp(tmpl));
    const std::string rw = tmpl;
    struct Cleanup {
        std::string dir;
        ~Cleanup() { fs::remove_all(dir); }
    } cleanup{rw};
    ASSERT_EQ(chmod(rw.c_str(), 0777), 0);
    const std::string policy = m_dir + "/learn.toml";
    std::ofstream(policy) << "name = \"gui-learn\"\ntier = \"seccomp\"\n[limits]\nwall_time = \"20s\"\n"
                             "[filesystem]\nread_only = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc/ld.so.cache\"]\n"
                             "read_write = [\"" << rw << "\"]\ntmpfs = []\n"
                             "[seccomp]\ndefault_action = \"errno:EPERM\"\nallow = [\"@default\"]\n";
    // mkdir -p succeeds every time (rmdir never runs in the original), so
    // every replay sees the same denial.
    const std::string script = "echo out; echo err >&2; mkdir -p " + rw + "/x; rmdir " + rw + "/x";
    ASSERT_EQ(runWait({MOATCTL_PATH, "--socket", m_sock, "run", "--policy", policy, "--", "/bin/sh", "-c", script},
                      m_dir + "/moatctl.log"),
              1)
        << readText(m_dir + "/moatctl.log");

    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    MainWindow w(&client);
    w.show();
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; }));
    JobTableModel* jobs = w.jobModel();
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 1 && !jobs->job(0)->running(); }));
    const int64_t orig = jobs->job(0)->id;

    // The detail shows the recorded output tails.
    JobDetailView* detail = w.jobsView()->detail();
    bool loaded = false;
    QObject::connect(detail, &JobDetailView::outputLoaded, [&](qint64 id) { loaded = id == orig; });
    ASSERT_TRUE(w.jobsView()->selectJob(orig));
    ASSERT_TRUE(waitFor([&] { return loaded; }));
    EXPECT_EQ(detail->outputText(false), QStringLiteral("out\n"));
    EXPECT_EQ(detail->outputInfo(false), QStringLiteral("stdout: 4 bytes"));
    EXPECT_TRUE(detail->outputText(true).startsWith(QStringLiteral("err\n"))) << detail->outputText(true).toStdString();
    EXPECT_TRUE(detail->outputText(true).contains(QStringLiteral("Operation not permitted")));

    // Replay under its own policy: reproduced.
    ReplayPanel* replay = w.openReplay(orig, false);
    ASSERT_TRUE(replay);
    ASSERT_TRUE(waitFor([&] { return replay->reproduced().has_value() || !replay->errorCode().isEmpty(); }, 30000))
        << replay->statusText().toStdString();
    EXPECT_TRUE(replay->reproduced().value_or(false)) << replay->comparisonText().toStdString();
    const QString cmp = replay->comparisonText();
    EXPECT_TRUE(cmp.contains(QStringLiteral("Reproduced: yes"))) << cmp.toStdString();
    EXPECT_TRUE(cmp.contains(QStringLiteral("rmdir"))) << cmp.toStdString();
    EXPECT_TRUE(cmp.contains(QStringLiteral("exit code 1"))) << cmp.toStdString();
    const int64_t replayJob = replay->replayJob();
    ASSERT_GT(replayJob, orig);
    // The replay is a job of its own, and its detail says what it replayed.
    ASSERT_TRUE(waitFor([&] { return jobs->rowOfId(replayJob) >= 0; }));
    ASSERT_TRUE(w.jobsView()->selectJob(replayJob));
    EXPECT_TRUE(detail->infoText().contains(QStringLiteral("replay of job %1").arg(orig))) << detail->infoText().toStdString();

    // Learn: refused in the seccomp tier, with a way to retry in the container tier.
    ReplayPanel* learn = w.openReplay(orig, true);
    ASSERT_TRUE(learn);
    ASSERT_TRUE(waitFor([&] { return !learn->errorCode().isEmpty(); }, 10000)) << learn->statusText().toStdString();
    EXPECT_EQ(learn->errorCode(), QStringLiteral("refused"));
    EXPECT_TRUE(learn->statusText().contains(QStringLiteral("seccomp tier is refused"))) << learn->statusText().toStdString();
    EXPECT_TRUE(learn->retryButton()->isVisibleTo(learn));
    EXPECT_TRUE(learn->retryVmButton()->isVisibleTo(learn));  // the vm tier has namespaces too
    learn->retryButton()->click();
    ASSERT_TRUE(waitFor([&] { return learn->proposal()->rowCount() > 0 || (!learn->busy() && !learn->errorCode().isEmpty()); },
                        30000))
        << learn->statusText().toStdString();
    ProposalModel* proposal = learn->proposal();
    int rmdirRow = -1;
    for (int r = 0; r < proposal->rowCount(); ++r)
        if (proposal->additions()[size_t(r)].entry == "rmdir") rmdirRow = r;
    ASSERT_GE(rmdirRow, 0) << learn->fragmentText().toStdString();
    EXPECT_EQ(proposal->checkedCount(), proposal->rowCount());  // all checked by default
    EXPECT_TRUE(learn->fragmentText().contains(QStringLiteral("\"rmdir\""))) << learn->fragmentText().toStdString();
    EXPECT_TRUE(learn->comparisonText().contains(QStringLiteral("container"))) << learn->comparisonText().toStdString();
    // Unchecking takes it out of the preview; checking puts it back.
    proposal->setData(proposal->index(rmdirRow, ProposalModel::Entry), Qt::Unchecked, Qt::CheckStateRole);
    EXPECT_FALSE(learn->fragmentText().contains(QStringLiteral("\"rmdir\""))) << learn->fragmentText().toStdString();
    proposal->setData(proposal->index(rmdirRow, ProposalModel::Entry), Qt::Checked, Qt::CheckStateRole);
    EXPECT_TRUE(learn->fragmentText().contains(QStringLiteral("\"rmdir\"")));

    // Apply: a new version of the policy.
    learn->apply();
    ASSERT_TRUE(waitFor([&] { return learn->appliedVersion() != 0; })) << learn->verifyText().toStdString();
    EXPECT_EQ(learn->appliedName(), QStringLiteral("gui-learn"));
    EXPECT_EQ(learn->appliedVersion(), 2);
    json answer;
    client.request({{"op", "policies"}}, nullptr, [&](const json& a) { answer = a; });
    ASSERT_TRUE(waitFor([&] { return !answer.is_null(); }));
    int64_t v2 = 0;
    for (const auto& p : answer.value("policies", json::array()))
        if (p.value("name", "") == "gui-learn" && p.value("version", 0) == 2) v2 = p.value("id", int64_t(0));
    ASSERT_NE(v2, 0) << answer.dump();
    answer = nullptr;
    client.request({{"op", "policy"}, {"id", v2}}, nullptr, [&](const json& a) { answer = a; });
    ASSERT_TRUE(waitFor([&] { return !answer.is_null(); }));
    EXPECT_NE(answer.value("toml", "").find("\"rmdir\""), std::string::npos) << answer.dump();

    // Verify: the original job, replayed enforced under the new version, passes.
    learn->verify();
    ASSERT_TRUE(waitFor([&] { return learn->verifyPassed().has_value(); }, 30000)) << learn->verifyText().toStdString();
    EXPECT_TRUE(*learn->verifyPassed()) << learn->verifyText().toStdString();
    EXPECT_TRUE(learn->verifyText().contains(QStringLiteral("Verify: pass"))) << learn->verifyText().toStdString();
    EXPECT_FALSE(fs::exists(rw + "/x"));  // the verified replay removed it
}

TEST_F(Session, JobsAndPoliciesArePushedWithoutPolling) {
    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    MainWindow w(&client);
    w.show();
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; })) << client.describe().toStdString();
    JobTableModel* jobs = w.jobModel();
    jobs->setPollInterval(0);  // nothing polls from here on: what arrives was pushed
    PolicyView* pv = w.policyView();
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 0 && pv->model()->rowCount() == 0; }));
    InvestigateView* inv = w.investigateView();
    ASSERT_TRUE(inv->setFilterText(QStringLiteral("kind=denial")));
    ASSERT_TRUE(waitFor([&] { return inv->model()->atEnd() && inv->model()->rowCount() == 0; }));
    // A job (and with it its policy's first version) stored by another client.
    ASSERT_EQ(runDemo(), 1) << readText(m_dir + "/moatctl.log");
    // The Investigate list does not poll on a live daemon: moatd's "stored" hint fetches the tail.
    EXPECT_TRUE(waitFor([&] { return inv->model()->rowCount() == 1; }, 3000)) << "the new denial was not fetched";
    EXPECT_TRUE(waitFor([&] { return pv->model()->rowCount() == 1; })) << "the policy list was not pushed";
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 1 && !jobs->job(0)->running(); })) << "the job was not pushed";
    EXPECT_EQ(jobs->job(0)->denials, 1u);
    EXPECT_EQ(jobs->job(0)->cause, "exited");
}

TEST_F(Session, ARunningJobsOutputAndSamplesArePushedToItsDetail) {
    const std::string pol = m_dir + "/live.toml";
    {
        std::ofstream f(pol);
        f << "name = \"live-output\"\ntier = \"seccomp\"\n[limits]\nwall_time = \"30s\"\n"
             "[monitor]\nsample_interval = \"200ms\"\n"
             "[filesystem]\nread_only = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc\"]\n"
             "[seccomp]\ndefault_action = \"errno:EPERM\"\n"
             "allow = [\"@default\", \"@basic-io\", \"@process\", \"@signal\", \"@memory\", \"@time\", \"newfstatat\","
             " \"openat\", \"fcntl\", \"dup2\", \"pipe2\", \"wait4\", \"clone\", \"getcwd\", \"ioctl\", \"faccessat2\"]\n";
    }
    DaemonClient client(QString::fromStdString(m_sock));
    client.start();
    MainWindow w(&client);
    w.show();
    ASSERT_TRUE(waitFor([&] { return client.state() == Backend::State::Connected; })) << client.describe().toStdString();
    pid_t ctl = spawn({MOATCTL_PATH, "--socket", m_sock, "run", "--policy", pol, "--", "/bin/sh", "-c",
                       "echo first-line; sleep 3; echo second-line"},
                      m_dir + "/live.log");
    JobTableModel* jobs = w.jobModel();
    ASSERT_TRUE(waitFor([&] { return jobs->rowCount() == 1 && jobs->job(0)->running(); })) << readText(m_dir + "/live.log");
    ASSERT_TRUE(w.jobsView()->selectJob(jobs->job(0)->id));
    JobDetailView* d = w.jobsView()->detail();
    // The first line is on screen while the job still sleeps: pushed, not recorded-at-the-end.
    EXPECT_TRUE(waitFor([&] { return d->outputText(false).contains(QStringLiteral("first-line")); }, 2500))
        << d->outputInfo(false).toStdString();
    EXPECT_TRUE(jobs->job(0)->running());
    EXPECT_FALSE(d->outputText(false).contains(QStringLiteral("second-line")));
    // The row's live CPU/memory figures came with the pushed row (nothing polls the samples).
    EXPECT_TRUE(waitFor([&] { return jobs->job(0)->hasSample && jobs->job(0)->memory > 0; }, 2000));
    // Then the end: the recorded output, both lines.
    ASSERT_TRUE(waitFor([&] { return !jobs->job(0)->running(); }, 10000));
    EXPECT_TRUE(waitFor([&] { return d->outputText(false).contains(QStringLiteral("second-line")); }, 3000))
        << d->outputText(false).toStdString();
    int st = 0;
    waitpid(ctl, &st, 0);
}
