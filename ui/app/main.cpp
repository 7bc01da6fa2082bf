// moat-console: parse arguments, pick the data source, show the window.
#include <QApplication>
#include <QFile>
#include <QCommandLineParser>
#include <QDir>
#include <QIcon>
#include <QPalette>
#include <QStyle>
#include <QTableView>
#include <QTimer>

#include <qcustomplot.h>

#include <memory>

#include "app/main_window.h"
#include "app/fleet_window.h"
#include "backend/daemon_client.h"
#include "moat/common/fd.h"
#include "moat/ipc/remote.h"
#include "backend/offline_store.h"
#include "models/event_table_model.h"
#include "models/job_table_model.h"
#include "moat/ipc/client.h"
#include "views/investigate_view.h"
#include "views/jobs_view.h"
#include "views/policy_view.h"
#include "views/policy_form.h"
#include "views/replay_panel.h"
#include "views/test_run_panel.h"

using namespace moat::ui;

int main(int argc, char** argv) {
    moat::ensure_stdio_open();
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("moat-console"));
    QApplication::setOrganizationName(QStringLiteral("moat"));
    QApplication::setApplicationVersion(QStringLiteral(MOAT_VERSION));  // the project version (CMake)
    QApplication::setDesktopFileName(QStringLiteral("moat-console"));
    QApplication::setWindowIcon(QIcon(QStringLiteral(":/moat-console.svg")));

    QCommandLineParser cli;
    cli.setApplicationDescription(QStringLiteral("The Moat operator console: jobs, denials and policies."));
    cli.addHelpOption();
    cli.addVersionOption();
    QCommandLineOption socketOpt(QStringLiteral("socket"), QStringLiteral("moatd's socket (default: $MOAT_SOCKET, else /run/moat/moatd.sock)."),
                                 QStringLiteral("PATH"));
    QCommandLineOption connectOpt(QStringLiteral("connect"),
                                  QStringLiteral("moatd on another host over SSH: ssh://[USER@]HOST[:PORT][/SOCKET] "
                                                 "(runs `moatctl proxy` there; docs/remote.md)."),
                                  QStringLiteral("URI"));
    QCommandLineOption dbOpt(QStringLiteral("open-db"), QStringLiteral("Open a copied moatd database read-only; no daemon needed."),
                             QStringLiteral("FILE"));
    QCommandLineOption viewOpt(QStringLiteral("show-view"), QStringLiteral("Start in this view: jobs, investigate or policies."),
                               QStringLiteral("VIEW"));
    QCommandLineOption jobOpt(QStringLiteral("select-job"), QStringLiteral("Select this job in the Jobs view."), QStringLiteral("ID"));
    QCommandLineOption filterOpt(QStringLiteral("filter"), QStringLiteral("Investigation filter to start with."), QStringLiteral("EXPR"));
    QCommandLineOption policyOpt(QStringLiteral("select-policy"), QStringLiteral("Open this policy (NAME or NAME:VERSION) in the editor."),
                                 QStringLiteral("NAME"));
    // Scripting (packaging/screenshots.sh, tests): hidden from --help.
    QCommandLineOption rowOpt(QStringLiteral("select-event-row"), QStringLiteral("Select this row of the event table."), QStringLiteral("N"));
    QCommandLineOption shotOpt(QStringLiteral("screenshot"), QStringLiteral("Save the window as PNG after a delay, then quit."),
                               QStringLiteral("FILE"));
    QCommandLineOption delayOpt(QStringLiteral("screenshot-delay"), QStringLiteral("Delay before --screenshot, ms."),
                                QStringLiteral("MS"), QStringLiteral("4000"));
    QCommandLineOption dumpHostsOpt(QStringLiteral("dump-hosts"),
                                    QStringLiteral("With --screenshot and several hosts: also write the hosts and "
                                                   "the all-hosts table as JSON to FILE."),
                                    QStringLiteral("FILE"));
    QCommandLineOption tomlTabOpt(QStringLiteral("toml-tab"), QStringLiteral("Show the policy editor's TOML tab."));
    QCommandLineOption historyOpt(QStringLiteral("history-tab"), QStringLiteral("Show the policy editor's History tab."));
    QCommandLineOption testRunOpt(QStringLiteral("test-run"), QStringLiteral("Test-run this command under the selected policy."),
                                  QStringLiteral("CMD"));
    QCommandLineOption syscallsOpt(QStringLiteral("show-syscalls"),
                                   QStringLiteral("Scroll the policy form to the syscall checklist, filtered by TEXT."),
                                   QStringLiteral("TEXT"));
    QCommandLineOption darkOpt(QStringLiteral("dark-palette"), QStringLiteral("Fusion style with a dark palette (checking colours)."));
    QCommandLineOption allowRowOpt(QStringLiteral("allow-event-row"),
                                   QStringLiteral("Select this event row and propose allowing its denial."), QStringLiteral("N"));
    QCommandLineOption replayOpt(QStringLiteral("replay-job"), QStringLiteral("Open the replay window on this job."),
                                 QStringLiteral("ID"));
    QCommandLineOption learnOpt(QStringLiteral("learn-job"), QStringLiteral("Open the learn window on this job."),
                                QStringLiteral("ID"));
    for (auto* o : {&dumpHostsOpt, &rowOpt, &shotOpt, &delayOpt, &tomlTabOpt, &historyOpt, &testRunOpt, &darkOpt, &allowRowOpt, &syscallsOpt,
                    &replayOpt, &learnOpt})
        o->setFlags(QCommandLineOption::HiddenFromHelp);
    for (auto* o : {&socketOpt, &connectOpt, &dumpHostsOpt, &dbOpt, &viewOpt, &jobOpt, &filterOpt, &policyOpt, &rowOpt, &shotOpt, &delayOpt, &tomlTabOpt,
                    &historyOpt, &testRunOpt, &darkOpt, &allowRowOpt, &syscallsOpt, &replayOpt, &learnOpt})
        cli.addOption(*o);
    cli.process(app);

    if (cli.isSet(darkOpt)) {
        QApplication::setStyle(QStringLiteral("Fusion"));
        QPalette p;
        const QColor window(45, 45, 48), base(30, 30, 32), text(220, 220, 220), disabled(120, 120, 120);
        p.setColor(QPalette::Window, window);
        p.setColor(QPalette::WindowText, text);
        p.setColor(QPalette::Base, base);
        p.setColor(QPalette::AlternateBase, QColor(40, 40, 43));
        p.setColor(QPalette::ToolTipBase, window);
        p.setColor(QPalette::ToolTipText, text);
        p.setColor(QPalette::PlaceholderText, QColor(140, 140, 140));
        p.setColor(QPalette::Text, text);
        p.setColor(QPalette::Button, window);
        p.setColor(QPalette::ButtonText, text);
        p.setColor(QPalette::BrightText, Qt::red);
        p.setColor(QPalette::Link, QColor(100, 170, 255));
        p.setColor(QPalette::Highlight, QColor(42, 130, 218));
        p.setColor(QPalette::HighlightedText, Qt::white);
        p.setColor(QPalette::Mid, QColor(70, 70, 74));
        p.setColor(QPalette::Dark, QColor(25, 25, 27));
        for (auto role : {QPalette::Text, QPalette::WindowText, QPalette::ButtonText})
            p.setColor(QPalette::Disabled, role, disabled);
        QApplication::setPalette(p);
    }

    // Several hosts (docs/remote.md): --connect given, or ssh:// connections
    // saved from an earlier session. The local daemon is always listed.
    const QString localSocket = QString::fromStdString(moat::ipc::socket_path(cli.value(socketOpt).toStdString()));
    QStringList remotes;
    for (const QString& target : cli.values(connectOpt)) {
        // --socket names the far host's socket when the address has none.
        auto t = moat::ipc::with_far_socket(target.toStdString(), cli.value(socketOpt).toStdString());
        if (!t) {
            fprintf(stderr, "moat-console: --connect: %s\n", t.error().message.c_str());
            return 2;
        }
        remotes << QString::fromStdString(*t);
    }
    const bool fleetMode = !cli.isSet(dbOpt) && (!remotes.isEmpty() || !FleetWindow::savedConnections().isEmpty());

    std::unique_ptr<Backend> backend;
    std::unique_ptr<MainWindow> single;
    std::unique_ptr<FleetWindow> fleet;
    MainWindow* wp = nullptr;
    if (fleetMode) {
        QStringList all = remotes;
        for (const QString& saved : FleetWindow::savedConnections())
            if (!all.contains(saved)) all << saved;
        fleet = std::make_unique<FleetWindow>(localSocket, all);
        fleet->restoreLayout();
        // The options below act on the first --connect host (else local).
        const int primary = remotes.isEmpty() ? 0 : fleet->indexOf(remotes.first());
        wp = fleet->hostWindow(primary);
        if (cli.value(viewOpt) == QLatin1String("hosts")) fleet->showAllHosts();
        else fleet->showHost(primary);
    } else {
        if (cli.isSet(dbOpt)) {
            backend = std::make_unique<OfflineStore>(cli.value(dbOpt));
        } else {
            auto client = std::make_unique<DaemonClient>(localSocket);
            client->start();
            backend = std::move(client);
        }
        single = std::make_unique<MainWindow>(backend.get());
        wp = single.get();
        wp->restoreLayout();
    }
    MainWindow& w = *wp;
    QWidget* top = fleet ? static_cast<QWidget*>(fleet.get()) : static_cast<QWidget*>(single.get());
    if (cli.isSet(viewOpt) && !(fleet && cli.value(viewOpt) == QLatin1String("hosts"))) {
        auto v = MainWindow::viewFromName(cli.value(viewOpt));
        if (!v) {
            fprintf(stderr, "moat-console: --show-view takes jobs, investigate or policies (with hosts: also hosts)\n");
            return 2;
        }
        w.showView(*v);
    }
    if (cli.isSet(filterOpt)) w.investigateView()->setFilterText(cli.value(filterOpt));
    if (cli.isSet(jobOpt)) w.jobsView()->selectJob(cli.value(jobOpt).toLongLong());
    if (cli.isSet(policyOpt)) {
        const QStringList p = cli.value(policyOpt).split(u':');
        w.policyView()->selectPolicy(p[0], p.size() > 1 ? p[1].toInt() : 0);
    }
    if (cli.isSet(tomlTabOpt)) w.policyView()->showTomlTab();
    if (cli.isSet(historyOpt)) w.policyView()->showHistoryTab();
    if (cli.isSet(syscallsOpt)) {
        // After the selected policy is loaded into the form.
        QTimer::singleShot(2000, w.policyView(), [pv = w.policyView(), t = cli.value(syscallsOpt)] { pv->form()->showSyscalls(t); });
    }
    if (cli.isSet(testRunOpt)) {
        // Once the selected policy's text is loaded (the list refreshed and the version fetched).
        auto* pv = w.policyView();
        pv->showTestRunTab();
        pv->testRun()->setCommand(cli.value(testRunOpt));
        QTimer::singleShot(1500, pv, [pv] {
            pv->showTestRunTab();
            pv->testRun()->run();
        });
    }
    if (cli.isSet(allowRowOpt)) {
        const int row = cli.value(allowRowOpt).toInt();
        auto* inv = w.investigateView();
        auto once = std::make_shared<bool>(false);
        QObject::connect(inv->model(), &EventTableModel::pageLoaded, inv, [inv, row, once] {
            if (*once || !inv->selectRow(row)) return;
            *once = true;
            inv->allowSelected();
        });
    }
    if (cli.isSet(rowOpt)) {
        const int row = cli.value(rowOpt).toInt();
        auto* inv = w.investigateView();
        QObject::connect(inv->model(), &EventTableModel::pageLoaded, inv, [inv, row] {
            if (inv->table()->selectionModel()->selectedRows().isEmpty()) inv->selectRow(row);
        });
    }
    for (auto [opt, learn] : {std::pair{&replayOpt, false}, std::pair{&learnOpt, true}}) {
        if (!cli.isSet(*opt)) continue;
        // Once the daemon has answered hello (role known) and listed the job.
        const int64_t id = cli.value(*opt).toLongLong();
        auto once = std::make_shared<bool>(false);
        QObject::connect(w.jobModel(), &JobTableModel::refreshed, &w, [&w, id, learn = learn, once] {
            if (*once || !w.jobModel()->jobById(id)) return;
            *once = true;
            w.openReplay(id, learn);
        });
    }
    top->show();

    if (cli.isSet(shotOpt)) {
        const QString file = cli.value(shotOpt);
        const QString dump = cli.value(dumpHostsOpt);
        FleetWindow* f = fleet.get();
        QTimer::singleShot(cli.value(delayOpt).toInt(), &w, [&w, top, file, dump, f] {
            if (!dump.isEmpty()) {
                QFile out(dump);
                const std::string text = (f ? f->describe() : nlohmann::json::object()).dump(2) + "\n";
                if (!out.open(QIODevice::WriteOnly | QIODevice::Truncate) || out.write(text.data(), qint64(text.size())) < 0)
                    fprintf(stderr, "moat-console: could not write %s\n", qPrintable(dump));
            }
            // Charts replot lazily; draw them now so the grab shows current data.
            for (QCustomPlot* p : top->findChildren<QCustomPlot*>()) p->replot(QCustomPlot::rpImmediateRefresh);
            // An open replay / learn window is what was asked for: grab it instead.
            QWidget* target = w.lastReplay() ? static_cast<QWidget*>(w.lastReplay()) : top;
            const bool ok = target->grab().save(file, "PNG");
            fprintf(stderr, "moat-console: %s %s\n", ok ? "saved" : "could not save", qPrintable(file));
            QApplication::exit(ok ? 0 : 1);
        });
    }
    return app.exec();
}
