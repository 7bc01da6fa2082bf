#include "views/investigate_view.h"

#include <QDateTime>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QSplitter>
#include <QTableView>
#include <QTextBrowser>
#include <QVBoxLayout>

#include "models/status_color.h"
#include "backend/backend.h"
#include "backend/daemon_client.h"
#include "backend/watcher.h"
#include "charts/denial_timeline_chart.h"
#include "charts/top_syscalls_chart.h"
#include "models/event_filter.h"
#include "models/event_table_model.h"
#include "models/job_table_model.h"
#include "views/denial_detail.h"

namespace moat::ui {

InvestigateView::InvestigateView(Backend* backend, JobTableModel* jobs, QWidget* parent)
    : QWidget(parent), m_backend(backend), m_jobs(jobs) {
    m_filter = new QLineEdit;
    m_filter->setObjectName(QStringLiteral("filterBar"));
    m_filter->setClearButtonEnabled(true);
    m_filter->setPlaceholderText(tr("Filter, e.g.  kind=denial and syscall=mkdir   path~/tmp   action=errno:EPERM   since=-10m"));
    m_filter->setToolTip(tr("Fields: %1\nOperators: = != ~ (contains) !~ < <= > >=; combine with and / or and parentheses.\n"
                            "Times: RFC 3339 (2026-11-29T16:38:33Z) or relative (-30s, -5m, -2h).")
                             .arg(EventFilter::fieldNames().join(QStringLiteral(", "))));
    m_filterStatus = new QLabel;
    m_filterStatus->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* apply = new QPushButton(tr("Apply"));
    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Filter:")));
    bar->addWidget(m_filter, 1);
    bar->addWidget(apply);
    m_count = new QLabel;

    m_model = new EventTableModel(backend, this);
    m_model->setPolicyLookup([jobs](int64_t job) { return jobs->policyOfJob(job); });
    if (auto* client = qobject_cast<DaemonClient*>(backend)) {
        // Live daemon: moatd says when events were stored (op watch,
        // "stored"), and only then is the tail fetched with the filter.
        auto* hint = new Watcher(this);
        connect(hint, &Watcher::pushed, this, [this](const nlohmann::json& f) {
            if (f.value("push", std::string()) == "stored") m_model->tailNow();
        });
        hint->start(client->socketPath(), {{"op", "watch"}, {"stored", true}});
    } else {
        m_model->setTailInterval(2000);  // an offline copy does not change; a test backend may
    }
    m_table = new QTableView;
    m_table->setModel(m_model);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setAlternatingRowColors(true);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    m_table->horizontalHeader()->setStretchLastSection(true);
    const char* samples[] = {"0000000", "2026-11-29 17:07:23.938", "00000", "lifecycle", "Count", "Syscall / event",
                             "kill-process", "/var/lib/something/longer/path.txt", "libc.so.6+0x11f0a"};
    for (int c = 0; c < EventTableModel::ColumnCount; ++c)
        m_table->setColumnWidth(c, fontMetrics().horizontalAdvance(QString::fromLatin1(samples[c])) + 24);
    // Path / detail takes the spare width (paths and limit figures are the
    // long texts), not Module, which is short.
    m_table->horizontalHeader()->setStretchLastSection(false);
    m_table->horizontalHeader()->setSectionResizeMode(EventTableModel::Target, QHeaderView::Stretch);

    m_detail = new QTextBrowser;
    m_detail->setOpenLinks(false);
    m_detail->setPlaceholderText(tr("Select an event to see its details."));
    m_timeline = new DenialTimelineChart;
    m_top = new TopSyscallsChart;
    auto* charts = new QSplitter(Qt::Vertical);
    charts->addWidget(m_timeline);
    charts->addWidget(m_top);

    m_hsplit = new QSplitter(Qt::Horizontal);
    m_hsplit->setObjectName(QStringLiteral("investigateLowerSplitter"));
    m_allowBtn = new QPushButton(tr("Allow in a new policy version…"));
    m_allowBtn->setObjectName(QStringLiteral("allowDenial"));
    m_allowBtn->setEnabled(false);
    m_allowTip = tr("Open the job's policy version in the editor with this syscall allowed "
                    "(an argument rule where one fits), to review and save");
    m_allowBtn->setToolTip(m_allowTip);
    auto* detailPane = new QWidget;
    auto* dpl = new QVBoxLayout(detailPane);
    dpl->setContentsMargins(0, 0, 0, 0);
    dpl->addWidget(m_detail, 1);
    auto* dpb = new QHBoxLayout;
    dpb->addWidget(m_allowBtn);
    dpb->addStretch();
    dpl->addLayout(dpb);
    connect(m_allowBtn, &QPushButton::clicked, this, &InvestigateView::allowSelected);
    m_hsplit->addWidget(detailPane);
    m_hsplit->addWidget(charts);
    m_hsplit->setStretchFactor(0, 2);
    m_hsplit->setStretchFactor(1, 3);

    m_vsplit = new QSplitter(Qt::Vertical);
    m_vsplit->setObjectName(QStringLiteral("investigateSplitter"));
    m_vsplit->addWidget(m_table);
    m_vsplit->addWidget(m_hsplit);
    m_vsplit->setStretchFactor(0, 1);
    m_vsplit->setStretchFactor(1, 1);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(bar);
    layout->addWidget(m_filterStatus);
    layout->addWidget(m_vsplit, 1);
    layout->addWidget(m_count);

    m_applyTimer.setSingleShot(true);
    m_applyTimer.setInterval(500);
    m_chartTimer.setSingleShot(true);
    m_chartTimer.setInterval(250);
    connect(m_filter, &QLineEdit::textChanged, this, [this] {
        if (validate(false)) m_applyTimer.start();
        else m_applyTimer.stop();
    });
    connect(m_filter, &QLineEdit::returnPressed, this, [this] { validate(true); });
    connect(apply, &QPushButton::clicked, this, [this] { validate(true); });
    connect(&m_applyTimer, &QTimer::timeout, this, [this] { validate(true); });
    connect(&m_chartTimer, &QTimer::timeout, this, &InvestigateView::rebuildStats);
    connect(m_model, &QAbstractItemModel::rowsInserted, this, [this] { m_chartTimer.start(); });
    connect(m_model, &QAbstractItemModel::modelReset, this, [this] {
        m_stats.clear();
        m_statsRows = 0;
        m_chartTimer.start();
    });
    connect(m_model, &EventTableModel::failed, this, [this](const QString& m) { emit message(m, 8000); });
    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this, &InvestigateView::showSelected);
    // A reset (new filter, reload) drops the selection without selectionChanged.
    connect(m_model, &QAbstractItemModel::modelReset, this, &InvestigateView::showSelected);
    connect(m_backend, &Backend::stateChanged, this, &InvestigateView::updateAllowAction);
    connect(m_timeline, &DenialTimelineChart::rangeSelected, this, [this](qint64 since, qint64 until) {
        auto iso = [](qint64 ns) {
            return QDateTime::fromMSecsSinceEpoch(ns / 1'000'000, Qt::UTC).toString(Qt::ISODate);
        };
        QString text = m_filter->text();
        static const QRegularExpression timeTerms(QStringLiteral("\\s*(and\\s+)?(since|until)\\s*=\\s*\\S+"));
        text.remove(timeTerms);
        text = text.trimmed();
        static const QRegularExpression leadingAnd(QStringLiteral("^and\\s+"));
        text.remove(leadingAnd);
        const QString range = QStringLiteral("since=%1 and until=%2").arg(iso(since), iso(until + 999'999'999));
        setFilterText(text.isEmpty() ? range : QStringLiteral("(%1) and %2").arg(text, range));
    });
}

QString InvestigateView::filterText() const { return m_filter->text(); }

void InvestigateView::focusFilter() {
    m_filter->setFocus();
    m_filter->selectAll();
}

bool InvestigateView::setFilterText(const QString& text) {
    m_filter->setText(text);
    return validate(true);
}

void InvestigateView::reload() {
    m_applied.clear();
    validate(true);
}

bool InvestigateView::validate(bool apply) {
    auto f = EventFilter::parse(m_filter->text());
    if (!f) {
        m_filter->setStyleSheet(QStringLiteral("QLineEdit#filterBar { border: 2px solid %1; }").arg(statusColor(Status::Bad).name()));
        m_filterStatus->setText(QStringLiteral("<span style='color:%3'>%1 (at column %2)</span>")
                                    .arg(f.error().message.toHtmlEscaped())
                                    .arg(f.error().position + 1)
                                    .arg(statusColor(Status::Bad).name()));
        return false;
    }
    m_filter->setStyleSheet(QStringLiteral("QLineEdit#filterBar { border: 2px solid #2e7d32; }"));
    m_filterStatus->setText(f->isEmpty() ? tr("No filter: every event.") : tr("Valid filter."));
    if (apply && (f->text() != m_applied || m_applied.isEmpty())) {
        m_applied = f->text();
        m_model->setQuery(nlohmann::json::object(), *f);
        m_detail->clear();
        emit filterApplied(m_applied);
    }
    return true;
}

void InvestigateView::rebuildStats() {
    // Incremental: only rows added since the last rebuild are counted.
    for (int r = m_statsRows; r < m_model->rowCount(); ++r)
        if (const EventRow* e = m_model->event(r)) m_stats.add(*e);
    m_statsRows = m_model->rowCount();
    m_timeline->setStats(m_stats);
    m_top->setStats(m_stats);
    m_count->setText(tr("%1 events loaded%2, %3 denials")
                         .arg(m_model->rowCount())
                         .arg(m_model->atEnd() ? tr(" (all)") : tr(" (scroll for more)"))
                         .arg(m_stats.total()));
}

bool InvestigateView::selectRow(int row) {
    if (row < 0 || row >= m_model->rowCount()) return false;
    m_table->selectRow(row);
    m_table->scrollTo(m_model->index(row, 0));
    return true;
}

void InvestigateView::showSelected() {
    const auto rows = m_table->selectionModel()->selectedRows();
    const EventRow* e = rows.isEmpty() ? nullptr : m_model->event(rows.first().row());
    EventJobContext ctx;
    const JobRow* j = e ? m_jobs->jobById(e->job) : nullptr;
    if (j) ctx = {j->policyName, j->policyVersion, j->argv};
    m_detail->setHtml(e ? eventDetailHtml(e->toJson(), j ? &ctx : nullptr) : QString());
    updateAllowAction();
}

const EventRow* InvestigateView::selectedDenial() const {
    const auto rows = m_table->selectionModel()->selectedRows();
    const EventRow* e = rows.isEmpty() ? nullptr : m_model->event(rows.first().row());
    return e && e->kind == "denial" ? e : nullptr;
}

void InvestigateView::updateAllowAction() {
    // Only a denial can be allowed, and only a live daemon has the policy
    // versions to open: an offline window (a database copy) is read-only.
    const bool can = canAllowSelected();
    m_allowBtn->setEnabled(can);
    m_allowBtn->setToolTip(can ? m_allowTip
                           : selectedDenial() ? tr("Allowing a denial needs a connection to moatd (this window is offline or disconnected)")
                                              : tr("Select a denial event to allow it in a new policy version"));
    emit allowAvailableChanged(can);
}

bool InvestigateView::canAllowSelected() const {
    return selectedDenial() && m_backend->state() == Backend::State::Connected;
}

void InvestigateView::allowSelected() {
    if (!canAllowSelected()) return;
    const EventRow* e = selectedDenial();
    const QString raw = QString::fromStdString(e->raw);
    const int64_t job = e->job;
    if (const JobRow* j = m_jobs->jobById(job)) {
        emit allowDenialRequested(QString::fromStdString(j->policyName), j->policyVersion, raw);
        return;
    }
    // Not in the job table (an old job): ask moatd for it.
    m_backend->request({{"op", "show"}, {"job", job}}, this, [this, raw, job](const nlohmann::json& a) {
        const auto p = a.value("job", nlohmann::json::object()).value("policy", nlohmann::json::object());
        if (!a.value("ok", false) || !p.contains("name")) {
            emit message(tr("Job %1's policy is unknown: %2").arg(job).arg(Backend::errorText(a)), 8000);
            return;
        }
        emit allowDenialRequested(QString::fromStdString(p.value("name", std::string())), p.value("version", 0), raw);
    });
}

}  // namespace moat::ui
