#include "views/jobs_view.h"

#include <iterator>

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QItemSelectionModel>
#include <QSplitter>
#include <QTableView>
#include <QVBoxLayout>

#include "models/job_filter_proxy.h"
#include "models/job_table_model.h"
#include "views/job_detail_view.h"

namespace moat::ui {

JobsView::JobsView(Backend* backend, JobTableModel* model, QWidget* parent) : QWidget(parent), m_model(model) {
    m_proxy = new JobFilterProxy(model, this);
    m_filter = new QLineEdit;
    m_filter->setObjectName(QStringLiteral("jobFilter"));
    m_filter->setClearButtonEnabled(true);
    m_filter->setPlaceholderText(tr("Filter jobs: id, policy, command, cause (all words must match)"));
    m_state = new QComboBox;
    m_state->setObjectName(QStringLiteral("jobStateFilter"));
    m_state->addItem(tr("All jobs"), int(JobFilterProxy::State::Any));
    m_state->addItem(tr("Running"), int(JobFilterProxy::State::Running));
    m_state->addItem(tr("Finished"), int(JobFilterProxy::State::Finished));
    m_state->addItem(tr("Problems (not exit 0)"), int(JobFilterProxy::State::Problems));
    m_count = new QLabel;
    connect(m_filter, &QLineEdit::textChanged, this, [this](const QString& t) {
        m_proxy->setText(t);
        updateCount();
    });
    connect(m_state, &QComboBox::currentIndexChanged, this, [this] {
        m_proxy->setState(JobFilterProxy::State(m_state->currentData().toInt()));
        updateCount();
    });
    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, &JobsView::updateCount);
    connect(m_proxy, &QAbstractItemModel::rowsRemoved, this, &JobsView::updateCount);

    m_table = new QTableView;
    m_table->setModel(m_proxy);
    styleTable(m_table);
    sizeColumns(m_table);
    // One host's own view: its host is in the window, not in every row (the
    // all-hosts table shows the column).
    m_table->setColumnHidden(JobTableModel::Host, true);

    m_detail = new JobDetailView(backend);
    m_splitter = new QSplitter(Qt::Vertical);
    m_splitter->setObjectName(QStringLiteral("jobsSplitter"));
    auto* top = new QWidget;
    auto* tl = new QVBoxLayout(top);
    tl->setContentsMargins(0, 0, 0, 0);
    auto* bar = new QHBoxLayout;
    bar->addWidget(m_filter, 1);
    bar->addWidget(m_state);
    bar->addWidget(m_count);
    tl->addLayout(bar);
    tl->addWidget(m_table, 1);
    // The table keeps room for a dozen rows: the list is what an operator
    // scans first; the detail pane scrolls.
    top->setMinimumHeight(m_table->verticalHeader()->defaultSectionSize() * 8);
    m_splitter->addWidget(top);
    m_splitter->addWidget(m_detail);
    m_splitter->setStretchFactor(0, 1);
    m_splitter->setStretchFactor(1, 1);
    m_splitter->setSizes({1000, 1000});
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_splitter);
    updateCount();

    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this, &JobsView::selectionChanged);
    // The model keeps persistent indexes valid across refreshes, so the
    // selection follows its job; the detail pane only needs fresh values.
    connect(model, &JobTableModel::refreshed, this, [this] {
        updateCount();
        if (m_pendingSelect && selectJob(m_pendingSelect)) m_pendingSelect = 0;
        m_detail->showJob(m_model->jobById(selectedJob()));
    });
    connect(m_detail, &JobDetailView::message, this, &JobsView::message);
    connect(m_detail, &JobDetailView::jobLinkActivated, this, [this](qint64 id) { selectJob(id); });
}

int64_t JobsView::selectedJob() const {
    const auto rows = m_table->selectionModel()->selectedRows();
    if (rows.isEmpty()) return 0;
    const JobRow* j = m_model->job(m_proxy->mapToSource(rows.first()).row());
    return j ? j->id : 0;
}

bool JobsView::selectJob(int64_t id) {
    const int row = m_model->rowOfId(id);
    if (row < 0) {
        m_pendingSelect = id;  // not loaded yet: select when it appears
        return false;
    }
    QModelIndex idx = m_proxy->mapFromSource(m_model->index(row, 0));
    if (!idx.isValid()) {
        // Hidden by the quick filter: asked for by id (a link, --select-job),
        // so the filter yields rather than the request failing.
        m_filter->clear();
        m_state->setCurrentIndex(0);
        idx = m_proxy->mapFromSource(m_model->index(row, 0));
        if (!idx.isValid()) return false;
    }
    m_table->selectRow(idx.row());
    m_table->scrollTo(idx);
    return true;
}

void JobsView::updateCount() {
    m_count->setText(m_proxy->active() ? tr("%1 of %2 jobs").arg(m_proxy->rowCount()).arg(m_model->rowCount())
                                       : tr("%1 jobs").arg(m_model->rowCount()));
}

void JobsView::selectionChanged() { m_detail->showJob(m_model->jobById(selectedJob())); }

void JobsView::styleTable(QTableView* table) {
    table->setSelectionBehavior(QAbstractItemView::SelectRows);
    table->setSelectionMode(QAbstractItemView::SingleSelection);
    table->setAlternatingRowColors(true);
    table->verticalHeader()->hide();
    table->verticalHeader()->setDefaultSectionSize(table->fontMetrics().height() + 6);
    table->horizontalHeader()->setStretchLastSection(true);
    table->horizontalHeader()->setHighlightSections(false);
}

void JobsView::sizeColumns(QTableView* table) {
    // Widths from sample contents, so they follow the font and DPI.
    // Command is last and takes the rest of the width.
    const char* samples[] = {"000000", "thumbnailer-long v12", "container", "finished", "2026-11-29 17:07:23",
                             "12m 05s", "100.0", "1023 MiB", "1024", "Denials", "signaled (signal 9)", "sh -c 'x'",
                             "operator@build-host-01"};
    static_assert(std::size(samples) == JobTableModel::ColumnCount);
    for (int c = 0; c < JobTableModel::ColumnCount; ++c)
        table->setColumnWidth(c, table->fontMetrics().horizontalAdvance(QString::fromLatin1(samples[c])) + 24);
}

}  // namespace moat::ui
