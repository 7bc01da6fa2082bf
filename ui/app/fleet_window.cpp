#include "app/fleet_window.h"

#include <QAction>
#include <QCloseEvent>
#include <QConcatenateTablesProxyModel>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QPainter>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTableView>
#include <QVBoxLayout>

#include "app/main_window.h"
#include "backend/daemon_client.h"
#include "backend/endpoint.h"
#include "models/job_table_model.h"
#include "models/status_color.h"
#include "views/jobs_view.h"
#include "moat/ipc/remote.h"

namespace moat::ui {

namespace {
const QString kConnectionsKey = QStringLiteral("connections");

QIcon dot(const QColor& c) {
    QPixmap pm(12, 12);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    p.setBrush(c);
    p.setPen(Qt::NoPen);
    p.drawEllipse(1, 1, 10, 10);
    return QIcon(pm);
}
}  // namespace

struct FleetWindow::Host {
    QString target;
    QString name;
    std::unique_ptr<DaemonClient> client;  // outlives window (deleted after it)
    MainWindow* window = nullptr;
    QListWidgetItem* item = nullptr;
};

QStringList FleetWindow::savedConnections() { return QSettings().value(kConnectionsKey).toStringList(); }

FleetWindow::FleetWindow(const QString& localSocket, const QStringList& remotes, QWidget* parent)
    : QMainWindow(parent) {
    setWindowTitle(tr("Moat Console — hosts"));
    setWindowIcon(QIcon(QStringLiteral(":/moat-console.svg")));

    m_list = new QListWidget;
    m_list->setObjectName(QStringLiteral("hostList"));
    m_list->setIconSize(QSize(12, 12));
    m_list->addItem(new QListWidgetItem(tr("All hosts")));
    m_stack = new QStackedWidget;

    // All hosts: every host's job model, one after the other, sorted by start.
    m_concat = new QConcatenateTablesProxyModel(this);
    m_sorted = new QSortFilterProxyModel(this);
    m_sorted->setSourceModel(m_concat);
    m_sorted->setSortRole(JobTableModel::kSortRole);
    m_table = new QTableView;
    m_table->setObjectName(QStringLiteral("allHostsJobs"));
    m_table->setModel(m_sorted);
    m_table->setSortingEnabled(true);
    JobsView::styleTable(m_table);
    m_summary = new QLabel;
    m_summary->setMargin(4);
    auto* hint = new QLabel(tr("Double-click a job to open it on its host's page."));
    hint->setMargin(4);
    hint->setEnabled(false);
    m_allPage = new QWidget;
    auto* al = new QVBoxLayout(m_allPage);
    al->setContentsMargins(4, 4, 4, 4);
    al->addWidget(m_summary);
    al->addWidget(m_table, 1);
    al->addWidget(hint);
    m_stack->addWidget(m_allPage);
    connect(m_table, &QTableView::doubleClicked, this, &FleetWindow::openJob);

    auto* split = new QSplitter;
    split->setObjectName(QStringLiteral("fleetSplitter"));
    split->addWidget(m_list);
    split->addWidget(m_stack);
    split->setStretchFactor(1, 1);
    split->setSizes({200, 1200});
    setCentralWidget(split);
    connect(m_list, &QListWidget::currentRowChanged, this, [this](int row) {
        if (row >= 0) m_stack->setCurrentIndex(row);
    });

    addHost(localSocket, QStringLiteral("local"));
    for (const QString& r : remotes)
        if (indexOf(r) < 0) addHost(r, displayName(r));
    // The Host column first; widths after the first host's model is in.
    m_table->horizontalHeader()->moveSection(JobTableModel::Host, 0);
    JobsView::sizeColumns(m_table);
    m_table->sortByColumn(JobTableModel::Started, Qt::DescendingOrder);
    buildMenus();
    m_list->setCurrentRow(0);
    updateSummary();
}

FleetWindow::~FleetWindow() {
    // The views and models use their host's client: they go first.
    m_table->setModel(nullptr);
    for (auto& h : m_hosts) {
        m_concat->removeSourceModel(h->window->jobModel());
        delete h->window;
        h->window = nullptr;
    }
    m_hosts.clear();
}

void FleetWindow::buildMenus() {
    QMenu* hosts = menuBar()->addMenu(tr("&Hosts"));
    QAction* all = hosts->addAction(tr("&All Hosts"), this, &FleetWindow::showAllHosts);
    all->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    QAction* add = hosts->addAction(tr("&Connect to Host…"), this, [this] {
        bool ok = false;
        const QString uri = QInputDialog::getText(this, tr("Connect to host"),
                                                  tr("moatd over SSH (the far host runs `moatctl proxy`):\n"
                                                     "ssh://[USER@]HOST[:PORT][/SOCKET]"),
                                                  QLineEdit::Normal, QStringLiteral("ssh://"), &ok);
        if (!ok) return;
        QString why;
        if (!addConnection(uri.trimmed(), &why)) statusBar()->showMessage(why, 8000);
    });
    add->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_N));
    QAction* remove = hosts->addAction(tr("&Remove Host"), this, [this] {
        const int row = m_list->currentRow();
        if (row <= 1) {
            statusBar()->showMessage(tr("Select an ssh:// host to remove (the local daemon always stays)"), 5000);
            return;
        }
        removeConnection(row - 1);
    });
    (void)remove;
    hosts->addSeparator();
    hosts->addAction(tr("&Quit"), this, &QWidget::close)->setShortcut(QKeySequence::Quit);
}

MainWindow* FleetWindow::hostWindow(int i) const {
    return i >= 0 && i < hostCount() ? m_hosts[size_t(i)]->window : nullptr;
}

QString FleetWindow::hostName(int i) const { return i >= 0 && i < hostCount() ? m_hosts[size_t(i)]->name : QString(); }

int FleetWindow::indexOf(const QString& target) const {
    for (size_t i = 0; i < m_hosts.size(); ++i)
        if (m_hosts[i]->target == target) return int(i);
    return -1;
}

void FleetWindow::showAllHosts() { m_list->setCurrentRow(0); }
void FleetWindow::showHost(int i) {
    if (i >= 0 && i < hostCount()) m_list->setCurrentRow(i + 1);
}

void FleetWindow::addHost(const QString& target, const QString& name) {
    auto h = std::make_unique<Host>();
    h->target = target;
    h->name = name;
    h->client = std::make_unique<DaemonClient>(target);
    // Connecting before the views exist: their first requests queue behind
    // the hello instead of failing as "not connected".
    h->client->start();
    h->window = new MainWindow(h->client.get());
    h->window->setEmbedded(name);
    h->window->jobModel()->setHost(name);
    h->item = new QListWidgetItem(name);
    m_list->addItem(h->item);
    m_stack->addWidget(h->window);
    m_concat->addSourceModel(h->window->jobModel());
    Host* raw = h.get();
    connect(h->client.get(), &Backend::stateChanged, this, [this, raw] {
        updateHostItem(*raw);
        updateSummary();
    });
    connect(h->window->jobModel(), &QAbstractItemModel::rowsInserted, this, &FleetWindow::updateSummary);
    connect(h->window->jobModel(), &QAbstractItemModel::rowsRemoved, this, &FleetWindow::updateSummary);
    updateHostItem(*h);
    m_hosts.push_back(std::move(h));
}

void FleetWindow::updateHostItem(Host& h) {
    Status st = Status::Bad;
    switch (h.client->state()) {
        case Backend::State::Connected: st = Status::Good; break;
        case Backend::State::Connecting: st = Status::Warn; break;
        default: break;
    }
    h.item->setIcon(dot(statusColor(st)));
    QString text = h.name;
    if (h.client->state() == Backend::State::Connected && !h.client->role().isEmpty()) text += QStringLiteral("  (%1)").arg(h.client->role());
    h.item->setText(text);
    h.item->setToolTip(h.client->describe());
}

void FleetWindow::updateSummary() {
    int connected = 0, jobs = 0;
    for (const auto& h : m_hosts) {
        connected += h->client->state() == Backend::State::Connected;
        jobs += h->window->jobModel()->rowCount();
    }
    QStringList down;
    for (const auto& h : m_hosts)
        if (h->client->state() != Backend::State::Connected) down << h->name;
    QString s = tr("%1 jobs on %2 of %3 hosts").arg(jobs).arg(connected).arg(hostCount());
    if (!down.isEmpty()) s += tr(" — not connected: %1").arg(down.join(QStringLiteral(", ")));
    m_summary->setText(s);
}

void FleetWindow::openJob(const QModelIndex& index) {
    const QModelIndex src = m_concat->mapToSource(m_sorted->mapToSource(index));
    for (int i = 0; i < hostCount(); ++i) {
        MainWindow* w = m_hosts[size_t(i)]->window;
        if (src.model() != w->jobModel()) continue;
        const qint64 id = src.data(JobTableModel::kIdRole).toLongLong();
        showHost(i);
        w->showView(MainWindow::View::Jobs);
        w->jobsView()->selectJob(id);
        return;
    }
}

bool FleetWindow::addConnection(const QString& uri, QString* why) {
    auto t = moat::ipc::parse_ssh_uri(uri.toStdString());
    if (!t) {
        *why = QString::fromStdString(t.error().message);
        return false;
    }
    if (indexOf(uri) >= 0) {
        *why = tr("%1 is already listed").arg(uri);
        return false;
    }
    addHost(uri, displayName(uri));
    saveConnections();
    m_hosts.back()->window->restoreLayout();
    showHost(hostCount() - 1);
    return true;
}

void FleetWindow::removeConnection(int i) {
    if (i <= 0 || i >= hostCount()) return;  // 0 is the local daemon
    auto& h = m_hosts[size_t(i)];
    m_concat->removeSourceModel(h->window->jobModel());
    m_stack->removeWidget(h->window);
    delete h->window;
    delete h->item;
    m_hosts.erase(m_hosts.begin() + i);
    saveConnections();
    showAllHosts();
    updateSummary();
}

void FleetWindow::saveConnections() const {
    QStringList l;
    for (size_t i = 1; i < m_hosts.size(); ++i) l << m_hosts[i]->target;
    QSettings().setValue(kConnectionsKey, l);
}

nlohmann::json FleetWindow::describe() const {
    using nlohmann::json;
    json hosts = json::array();
    for (const auto& h : m_hosts) {
        const char* st = "disconnected";
        switch (h->client->state()) {
            case Backend::State::Connected: st = "connected"; break;
            case Backend::State::Connecting: st = "connecting"; break;
            default: break;
        }
        hosts.push_back({{"name", h->name.toStdString()},
                         {"target", h->target.toStdString()},
                         {"state", st},
                         {"role", h->client->role().toStdString()},
                         {"detail", h->client->describe().toStdString()},
                         {"jobs", h->window->jobModel()->rowCount()}});
    }
    json rows = json::array();
    for (int r = 0; r < m_sorted->rowCount(); ++r) {
        auto cell = [&](int c) { return m_sorted->index(r, c).data().toString().toStdString(); };
        rows.push_back({{"host", cell(JobTableModel::Host)},
                        {"id", m_sorted->index(r, JobTableModel::Id).data(JobTableModel::kIdRole).toLongLong()},
                        {"policy", cell(JobTableModel::Policy)},
                        {"result", cell(JobTableModel::Result)},
                        {"denials", cell(JobTableModel::Denials)}});
    }
    return {{"hosts", hosts}, {"all_jobs", rows}, {"page", m_list->currentRow()}};
}

void FleetWindow::restoreLayout() {
    QSettings s;
    if (s.contains(QStringLiteral("fleet/geometry"))) restoreGeometry(s.value(QStringLiteral("fleet/geometry")).toByteArray());
    else resize(1400, 900);
    for (auto& h : m_hosts) h->window->restoreLayout();
}

void FleetWindow::closeEvent(QCloseEvent* e) {
    QSettings().setValue(QStringLiteral("fleet/geometry"), saveGeometry());
    for (auto& h : m_hosts) h->window->saveLayout();
    e->accept();
}

}  // namespace moat::ui
