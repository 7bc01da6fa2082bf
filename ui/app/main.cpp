// moat-console: parse arguments, pick the data source, show the window.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QIcon>
#include <QTableView>
#include <QTimer>

#include <qcustomplot.h>

#include "app/main_window.h"
#include "backend/daemon_client.h"
#include "backend/offline_store.h"
#include "models/event_table_model.h"
#include "moat/ipc/client.h"
#include "views/investigate_view.h"
#include "views/jobs_view.h"
#include "views/policy_view.h"

using namespace moat::ui;

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("moat-console"));
    QApplication::setOrganizationName(QStringLiteral("moat"));
    QApplication::setApplicationVersion(QStringLiteral("0.1.0"));
    QApplication::setDesktopFileName(QStringLiteral("moat-console"));
    QApplication::setWindowIcon(QIcon(QStringLiteral(":/moat-console.svg")));

    QCommandLineParser cli;
    cli.setApplicationDescription(QStringLiteral("The Moat operator console: jobs, denials and policies."));
    cli.addHelpOption();
    cli.addVersionOption();
    QCommandLineOption socketOpt(QStringLiteral("socket"), QStringLiteral("moatd's socket (default: $MOAT_SOCKET, else /run/moat/moatd.sock)."),
                                 QStringLiteral("PATH"));
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
    QCommandLineOption tomlTabOpt(QStringLiteral("toml-tab"), QStringLiteral("Show the policy editor's TOML tab."));
    for (auto* o : {&rowOpt, &shotOpt, &delayOpt, &tomlTabOpt}) o->setFlags(QCommandLineOption::HiddenFromHelp);
    for (auto* o : {&socketOpt, &dbOpt, &viewOpt, &jobOpt, &filterOpt, &policyOpt, &rowOpt, &shotOpt, &delayOpt, &tomlTabOpt})
        cli.addOption(*o);
    cli.process(app);

    std::unique_ptr<Backend> backend;
    if (cli.isSet(dbOpt)) {
        backend = std::make_unique<OfflineStore>(cli.value(dbOpt));
    } else {
        auto client = std::make_unique<DaemonClient>(
            QString::fromStdString(moat::ipc::socket_path(cli.value(socketOpt).toStdString())));
        client->start();
        backend = std::move(client);
    }

    MainWindow w(backend.get());
    w.restoreLayout();
    if (cli.isSet(viewOpt)) {
        auto v = MainWindow::viewFromName(cli.value(viewOpt));
        if (!v) {
            fprintf(stderr, "moat-console: --show-view takes jobs, investigate or policies\n");
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
    if (cli.isSet(rowOpt)) {
        const int row = cli.value(rowOpt).toInt();
        auto* inv = w.investigateView();
        QObject::connect(inv->model(), &EventTableModel::pageLoaded, inv, [inv, row] {
            if (inv->table()->selectionModel()->selectedRows().isEmpty()) inv->selectRow(row);
        });
    }
    w.show();

    if (cli.isSet(shotOpt)) {
        const QString file = cli.value(shotOpt);
        QTimer::singleShot(cli.value(delayOpt).toInt(), &w, [&w, file] {
            // Charts replot lazily; draw them now so the grab shows current data.
            for (QCustomPlot* p : w.findChildren<QCustomPlot*>()) p->replot(QCustomPlot::rpImmediateRefresh);
            const bool ok = w.grab().save(file, "PNG");
            fprintf(stderr, "moat-console: %s %s\n", ok ? "saved" : "could not save", qPrintable(file));
            QApplication::exit(ok ? 0 : 1);
        });
    }
    return app.exec();
}
