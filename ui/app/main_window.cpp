#include "app/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QCoreApplication>
#include <QFileDialog>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QProcess>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTableView>
#include <QDateTime>
#include <QPointer>
#include <QThread>
#include <QVBoxLayout>

#include "backend/backend.h"
#include "models/event_filter.h"
#include "models/job_table_model.h"
#include "views/investigate_view.h"
#include "views/job_detail_view.h"
#include "views/jobs_view.h"
#include "views/policy_view.h"
#include "views/replay_panel.h"
#include "views/test_run_panel.h"
#include "backend/daemon_client.h"
#include "backend/endpoint.h"
#include "backend/watcher.h"
#include "moat/ipc/incident_copy.h"
#include "models/policy_list_model.h"
#include "backend/offline_store.h"
#include "models/format.h"
#include "models/status_color.h"
#include "moat/store/backup.h"

namespace moat::ui {

MainWindow::MainWindow(Backend* backend, QWidget* parent) : QMainWindow(parent), m_backend(backend) {
    // [*] shows while the policy editor holds unsaved edits.
    setWindowTitle(tr("Moat Console[*]"));
    setWindowIcon(QIcon(QStringLiteral(":/moat-console.svg")));
    m_jobModel = new JobTableModel(backend, this);
    m_jobs = new JobsView(backend, m_jobModel);
    m_investigate = new InvestigateView(backend, m_jobModel);
    m_policies = new PolicyView(backend);
    if (auto* client = qobject_cast<DaemonClient*>(backend)) {
        m_socketPath = client->socketPath();
        m_policies->testRun()->setSocketPath(m_socketPath);
        // Jobs and policies are pushed by moatd as they are stored (op
        // `watch`), not polled: a job's end or a new denial count is on
        // screen one loop pass after the store has it.
        // Until the first push (and after a refused watch: an older moatd)
        // the table is polled as before.
        m_watcher = new Watcher(this);
        connect(m_watcher, &Watcher::pushed, this, [this](const nlohmann::json& f) {
            const std::string push = f.value("push", std::string());
            if (push == "jobs") {
                m_jobModel->setJobsPushed(true);
                if (f.value("snapshot", false)) {
                    m_jobModel->applyJobs(f.value("jobs", nlohmann::json::array()));
                } else {
                    m_jobModel->applyJobUpdates(f.value("jobs", nlohmann::json::array()));
                }
            } else if (push == "live") {
                m_jobModel->applyLive(f.value("jobs", nlohmann::json::array()));
            } else if (push == "policies") {
                m_policies->model()->applyPushed(f.value("policies", nlohmann::json::array()));
            }
        });
        connect(m_watcher, &Watcher::problem, this, [this](const QString& why) {
            m_jobModel->setJobsPushed(false);  // polled until the watch is back (its snapshot re-syncs)
            showMessage(tr("Live updates: %1").arg(why), 5000);
        });
        m_watcher->start(m_socketPath, {{"op", "watch"}, {"jobs", true}, {"policies", true}});
    }
    m_tabs = new QTabWidget;
    m_tabs->setDocumentMode(true);
    m_tabs->addTab(m_jobs, tr("&Jobs"));
    m_tabs->addTab(m_investigate, tr("&Investigate"));
    m_tabs->addTab(m_policies, tr("&Policies"));
    m_banner = new QLabel;
    m_banner->setObjectName(QStringLiteral("openFailure"));
    m_banner->setWordWrap(true);
    m_banner->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_banner->setMargin(8);
    m_banner->setVisible(false);
    auto* central = new QWidget;
    auto* cl = new QVBoxLayout(central);
    cl->setContentsMargins(0, 0, 0, 0);
    cl->setSpacing(0);
    cl->addWidget(m_banner);
    cl->addWidget(m_tabs, 1);
    setCentralWidget(central);

    m_connLabel = new QLabel;
    m_roleLabel = new QLabel;
    statusBar()->addPermanentWidget(m_roleLabel);
    statusBar()->addPermanentWidget(m_connLabel);

    connect(m_jobs, &JobsView::message, this, &MainWindow::showMessage);
    connect(m_investigate, &InvestigateView::message, this, &MainWindow::showMessage);
    connect(m_policies, &PolicyView::message, this, &MainWindow::showMessage);
    connect(m_policies, &PolicyView::modifiedChanged, this, [this](bool modified) {
        setWindowModified(modified);
        m_tabs->setTabText(2, modified ? tr("&Policies •") : tr("&Policies"));
        m_tabs->setTabToolTip(2, modified ? tr("The policy editor has unsaved edits") : QString());
    });
    connect(m_jobModel, &JobTableModel::failed, this, [this](const QString& m) { showMessage(m, 5000); });
    connect(m_jobs->detail(), &JobDetailView::policyLinkActivated, this, [this](const QString& name, int version) {
        showView(View::Policies);
        m_policies->selectPolicy(name, version);
    });
    connect(m_jobs->detail(), &JobDetailView::investigateJob, this, [this](qint64 job) {
        showView(View::Investigate);
        m_investigate->setFilterText(QStringLiteral("job=%1").arg(job));
    });
    connect(m_jobs->detail(), &JobDetailView::replayRequested, this, [this](qint64 job, bool learn) { openReplay(job, learn); });
    connect(m_investigate, &InvestigateView::allowDenialRequested, this,
            [this](const QString& name, int version, const QString& event) {
                showView(View::Policies);
                m_policies->allowDenial(name, version, event);
            });
    connect(m_investigate, &InvestigateView::filterApplied, this,
            [this](const QString& text) { QSettings().setValue(filterKey(), text); });
    connect(m_backend, &Backend::stateChanged, this, &MainWindow::updateConnection);
    connect(m_backend, &Backend::stateChanged, this, [this] {
        if (m_backend->state() == Backend::State::Connected || m_backend->state() == Backend::State::Offline) {
            m_jobModel->refresh();
            m_policies->refresh();
            m_investigate->reload();
        }
    });
    buildMenus();
    updateConnection();
    m_jobModel->setPollInterval(1000);
    resize(1400, 900);
}

MainWindow::~MainWindow() = default;

std::optional<MainWindow::View> MainWindow::viewFromName(const QString& name) {
    if (name == u"jobs") return View::Jobs;
    if (name == u"investigate") return View::Investigate;
    if (name == u"policies" || name == u"policy") return View::Policies;
    return std::nullopt;
}

void MainWindow::showView(View v) {
    m_tabs->setCurrentIndex(v == View::Jobs ? 0 : v == View::Investigate ? 1 : 2);
}

void MainWindow::buildMenus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* openDb = file->addAction(tr("&Open Database Copy…"));
    openDb->setShortcut(QKeySequence::Open);
    connect(openDb, &QAction::triggered, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Open a copied moatd database (read-only)"), QString(),
                                                       tr("SQLite databases (*.db);;All files (*)"));
        if (f.isEmpty()) return;
        // A second window on its own backend keeps this one's live view intact.
        if (!QProcess::startDetached(QCoreApplication::applicationFilePath(), {QStringLiteral("--open-db"), f}))
            showMessage(tr("Could not start a second console"), 8000);
    });
    QAction* saveCopy = file->addAction(tr("&Save Incident Copy…"));
    saveCopy->setObjectName(QStringLiteral("saveIncidentCopy"));
    saveCopy->setToolTip(tr("A consistent copy of the database (as moatctl db backup makes), for --open-db"));
    connect(saveCopy, &QAction::triggered, this, [this] {
        const QString src = incidentSource();
        if (src.isEmpty()) {
            showMessage(tr("No database to copy: the daemon has not said where its database is"), 8000);
            return;
        }
        const QString f = QFileDialog::getSaveFileName(this, tr("Save an incident copy of %1").arg(src),
                                                       QStringLiteral("moat-incident-%1.db").arg(QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss"))),
                                                       tr("SQLite databases (*.db);;All files (*)"), nullptr,
                                                       QFileDialog::DontConfirmOverwrite);
        if (!f.isEmpty()) saveIncidentCopy(f);
    });
    connect(this, &MainWindow::incidentCopyDone, this, [this](bool, const QString& m) { showMessage(m, 15000); });
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    const std::pair<View, QString> views[] = {{View::Jobs, tr("&Jobs")}, {View::Investigate, tr("&Investigate")},
                                              {View::Policies, tr("&Policies")}};
    int n = 1;
    for (const auto& [v, label] : views) {
        QAction* a = view->addAction(label);
        a->setShortcut(QKeySequence(QStringLiteral("Ctrl+%1").arg(n++)));
        connect(a, &QAction::triggered, this, [this, v = v] { showView(v); });
    }
    view->addSeparator();
    QAction* refresh = view->addAction(tr("&Refresh"));
    refresh->setShortcut(QKeySequence::Refresh);
    connect(refresh, &QAction::triggered, this, [this] {
        m_jobModel->refresh();
        m_policies->refresh();
        if (m_tabs->currentWidget() == m_investigate) m_investigate->reload();
    });
    QAction* filter = view->addAction(tr("&Filter Events"));
    filter->setShortcut(QKeySequence::Find);
    connect(filter, &QAction::triggered, this, [this] {
        showView(View::Investigate);
        m_investigate->focusFilter();
    });

    QMenu* job = menuBar()->addMenu(tr("J&ob"));
    QAction* stop = job->addAction(tr("&Stop Selected Job"));
    stop->setShortcut(QKeySequence(QStringLiteral("Ctrl+K")));
    connect(stop, &QAction::triggered, this, [this] {
        const int64_t id = m_jobs->selectedJob();
        if (!id) {
            showMessage(tr("Select a job first"), 4000);
            return;
        }
        m_backend->request({{"op", "stop"}, {"job", id}}, this, [this, id](const nlohmann::json& a) {
            showMessage(a.value("ok", false) ? tr("Stopped job %1").arg(id)
                                             : tr("Could not stop job %1: %2").arg(id).arg(Backend::errorText(a)),
                        8000);
        });
    });
    QAction* inv = job->addAction(tr("&Investigate Selected Job"));
    inv->setShortcut(QKeySequence(QStringLiteral("Ctrl+I")));
    connect(inv, &QAction::triggered, this, [this] {
        if (const int64_t id = m_jobs->selectedJob()) {
            showView(View::Investigate);
            m_investigate->setFilterText(QStringLiteral("job=%1").arg(id));
        }
    });

    QAction* replay = job->addAction(tr("&Replay Selected Job"));
    replay->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+R")));
    QAction* learn = job->addAction(tr("&Learn Policy from Selected Job…"));
    learn->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+L")));
    for (auto [a, isLearn] : {std::pair{replay, false}, std::pair{learn, true}}) {
        connect(a, &QAction::triggered, this, [this, isLearn = isLearn] {
            if (const int64_t id = m_jobs->selectedJob()) openReplay(id, isLearn);
            else showMessage(tr("Select a finished job first"), 4000);
        });
    }

    QMenu* policy = menuBar()->addMenu(tr("&Policy"));
    QAction* np = policy->addAction(tr("&New Policy"));
    np->setShortcut(QKeySequence::New);
    connect(np, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->newPolicy();
    });
    QAction* save = policy->addAction(tr("&Save as New Version"));
    save->setShortcut(QKeySequence::Save);
    connect(save, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->save();
    });
    QAction* form = policy->addAction(tr("Edit as &Form"));
    form->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+F")));
    connect(form, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->showFormTab();
    });
    QAction* toml = policy->addAction(tr("Edit as &TOML"));
    toml->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+T")));
    connect(toml, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->showTomlTab();
    });

    QAction* hist = policy->addAction(tr("&History and Diff"));
    hist->setShortcut(QKeySequence(QStringLiteral("Ctrl+Shift+H")));
    connect(hist, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->showHistoryTab();
    });
    QAction* trun = policy->addAction(tr("Test &Run"));
    trun->setShortcut(QKeySequence(QStringLiteral("Ctrl+R")));
    connect(trun, &QAction::triggered, this, [this] {
        showView(View::Policies);
        m_policies->showTestRunTab();
        m_policies->testRun()->run();
    });
    QAction* allow = policy->addAction(tr("&Allow Selected Denial in a New Version…"));
    connect(allow, &QAction::triggered, m_investigate, &InvestigateView::allowSelected);
    allow->setEnabled(m_investigate->canAllowSelected());
    connect(m_investigate, &InvestigateView::allowAvailableChanged, allow, &QAction::setEnabled);

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    QAction* syntax = help->addAction(tr("&Filter Syntax"));
    connect(syntax, &QAction::triggered, this, [this] {
        auto* box = new QMessageBox(QMessageBox::Information, tr("Filter syntax"),
                                    tr("FIELD OP VALUE terms combined with and / or and parentheses.\n\n"
                                       "Fields: %1\nOperators: = != ~ (contains) !~ < <= > >=\n\n"
                                       "Examples:\n  kind=denial and syscall=mkdir\n  path~/tmp or path~/home\n"
                                       "  action=errno:EPERM and since=-10m\n  job=3 and (syscall=openat or syscall=mkdir)")
                                        .arg(EventFilter::fieldNames().join(QStringLiteral(", "))),
                                    QMessageBox::Close, this);
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->setModal(false);  // never block the operator
        box->show();
    });
    QAction* about = help->addAction(tr("&About Moat Console"));
    connect(about, &QAction::triggered, this, [this] {
        auto* box = new QMessageBox(QMessageBox::NoIcon, tr("About Moat Console"),
                                    tr("Moat Console %1\nThe operator's view of moatd: jobs, denials and policies.")
                                        .arg(QCoreApplication::applicationVersion()),
                                    QMessageBox::Close, this);
        box->setIconPixmap(windowIcon().pixmap(64, 64));
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->setModal(false);
        box->show();
    });
}

ReplayPanel* MainWindow::lastReplay() const { return m_lastReplay.data(); }

ReplayPanel* MainWindow::openReplay(int64_t job, bool learn) {
    if (m_socketPath.isEmpty() || !m_backend->canWrite()) {
        showMessage(tr("Replaying needs a connection to moatd with the admin role"), 8000);
        return nullptr;
    }
    if (const JobRow* j = m_jobModel->jobById(job); j && j->running()) {
        showMessage(tr("Job %1 is still running; it can be replayed when it ends").arg(job), 6000);
        return nullptr;
    }
    auto* panel = new ReplayPanel(m_backend, m_socketPath, job, learn, this);
    panel->setAttribute(Qt::WA_DeleteOnClose);
    connect(panel, &ReplayPanel::message, this, &MainWindow::showMessage);
    connect(panel, &ReplayPanel::appliedVersionSaved, m_policies, [this] { m_policies->refresh(); });
    connect(panel, &ReplayPanel::policyLinkActivated, this, [this](const QString& name, int version) {
        showView(View::Policies);
        m_policies->selectPolicy(name, version);
        activateWindow();
        raise();
    });
    m_lastReplay = panel;
    panel->show();
    panel->start();
    return panel;
}

void MainWindow::showMessage(const QString& text, int timeoutMs) { statusBar()->showMessage(text, timeoutMs); }

QString MainWindow::incidentSource() const {
    if (auto* o = qobject_cast<OfflineStore*>(m_backend)) return o->path();
    if (auto* c = qobject_cast<DaemonClient*>(m_backend))
        return c->databasePath().isEmpty() ? QString::fromLatin1(moat::ipc::kDefaultDatabase) : c->databasePath();
    return {};
}

QString MainWindow::bannerText() const { return m_banner->isHidden() ? QString() : m_banner->text(); }

void MainWindow::saveIncidentCopy(const QString& dest) {
    const std::string src = incidentSource().toStdString();
    const std::string to = dest.toStdString();
    showMessage(tr("Copying %1 to %2…").arg(QString::fromStdString(src), dest), 0);
    // The copy reads the whole database: a worker thread, never the GUI's.
    // It runs as the operator (the console is never privileged), so it can
    // copy only what the operator may read.
    // On a live daemon an operator who cannot read its state directory gets
    // the copy written by moatd into a file the console created (the same
    // path as `moatctl db backup`, moat/ipc/incident_copy.h).
    const std::string socket = m_socketPath.toStdString();
    if (isRemote(m_socketPath)) {
        // The copy is made by the operator, or written by moatd into a file
        // passed to it: neither crosses ssh.
        emit incidentCopyDone(false, tr("Incident copy failed: %1 is reached over ssh; run `moatctl db backup FILE` "
                                        "on that host and open the copy here")
                                         .arg(displayName(m_socketPath)));
        return;
    }
    QPointer<MainWindow> self(this);
    QThread* t = QThread::create([self, src, to, dest, socket] {
        auto r = moat::ipc::make_incident_copy(socket, src, to);
        const bool ok = r.has_value();
        const QString m = ok ? tr("Saved an incident copy%1 to %2: %3, %4 jobs, %5 events (open it with File > Open Database Copy)")
                                   .arg(r->by_moatd ? tr(" (made by moatd)") : QString(), dest, formatBytes(r->info.bytes),
                                        QString::number(r->info.jobs), QString::number(r->info.events))
                             : tr("Incident copy failed: %1").arg(QString::fromStdString(r.error().message));
        QMetaObject::invokeMethod(qApp, [self, ok, m] {
            if (self) emit self->incidentCopyDone(ok, m);
        }, Qt::QueuedConnection);
    });
    connect(t, &QThread::finished, t, &QObject::deleteLater);
    t->start();
}

void MainWindow::updateConnection() {
    QString colour;
    switch (m_backend->state()) {
        case Backend::State::Connected: colour = QStringLiteral("#2e7d32"); break;
        case Backend::State::Offline: colour = QStringLiteral("#1565c0"); break;
        case Backend::State::Connecting: colour = QStringLiteral("#f9a825"); break;
        default: colour = QStringLiteral("#c62828"); break;
    }
    // Which daemon or which file this window shows: two consoles side by side
    // (live and a copy) must not be confused.
    if (auto* o = qobject_cast<OfflineStore*>(m_backend))
        setWindowTitle(tr("Moat Console — %1 (offline copy, read-only)[*]").arg(o->path()));
    else if (!m_socketPath.isEmpty())
        setWindowTitle(isRemote(m_socketPath) ? tr("Moat Console — moatd on %1 (ssh)[*]").arg(displayName(m_socketPath))
                                              : tr("Moat Console — moatd at %1[*]").arg(m_socketPath));
    if (auto* o = qobject_cast<OfflineStore*>(m_backend); o && m_backend->state() == Backend::State::Failed) {
        m_banner->setText(tr("<b>Cannot open %1</b><br>%2").arg(o->path().toHtmlEscaped(), o->failure().toHtmlEscaped()));
        m_banner->setStyleSheet(QStringLiteral("QLabel#openFailure { border: 2px solid %1; }").arg(statusColor(Status::Bad).name()));
        m_banner->setVisible(true);
    } else {
        m_banner->setVisible(false);
    }
    m_connLabel->setText(QStringLiteral("<span style='color:%1'>●</span> %2").arg(colour, m_backend->describe().toHtmlEscaped()));
    const QString role = m_backend->role();
    m_roleLabel->setText(role.isEmpty() ? QString() : tr("Role: <b>%1</b>").arg(role));
    m_roleLabel->setToolTip(role == u"viewer" ? tr("Viewers can read everything but not stop jobs or save policies") : QString());
}

void MainWindow::restoreLayout() {
    QSettings s;
    if (!m_embedded) {
        if (s.contains(QStringLiteral("window/geometry")))
            restoreGeometry(s.value(QStringLiteral("window/geometry")).toByteArray());
        restoreState(s.value(QStringLiteral("window/state")).toByteArray());
    }
    for (QSplitter* sp : findChildren<QSplitter*>())
        if (!sp->objectName().isEmpty())
            sp->restoreState(s.value(QStringLiteral("splitters/") + sp->objectName()).toByteArray());
    m_tabs->setCurrentIndex(s.value(QStringLiteral("window/tab"), 0).toInt());
    m_investigate->setFilterText(s.value(filterKey(), QStringLiteral("kind=denial")).toString());
}

QString MainWindow::filterKey() const { return m_settingsPrefix + QStringLiteral("investigate/filter"); }

void MainWindow::setEmbedded(const QString& settingsKey) {
    m_embedded = true;
    QString key = settingsKey;
    key.replace(u'/', u'_');  // one QSettings group per host
    m_settingsPrefix = QStringLiteral("hosts/%1/").arg(key);
    setWindowFlags(Qt::Widget);
}

void MainWindow::saveLayout() {
    QSettings s;
    if (!m_embedded) {
        s.setValue(QStringLiteral("window/geometry"), saveGeometry());
        s.setValue(QStringLiteral("window/state"), saveState());
    }
    s.setValue(QStringLiteral("window/tab"), m_tabs->currentIndex());
    for (QSplitter* sp : findChildren<QSplitter*>())
        if (!sp->objectName().isEmpty()) s.setValue(QStringLiteral("splitters/") + sp->objectName(), sp->saveState());
}

void MainWindow::closeEvent(QCloseEvent* e) {
    saveLayout();
    e->accept();
}

}  // namespace moat::ui
