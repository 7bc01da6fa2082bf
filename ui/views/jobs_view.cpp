#include "views/jobs_view.h"

#include <QHeaderView>
#include <QItemSelectionModel>
#include <QSplitter>
#include <QTableView>
#include <QVBoxLayout>

#include "models/job_table_model.h"
#include "views/job_detail_view.h"

namespace moat::ui {

JobsView::JobsView(Backend* backend, JobTableModel* model, QWidget* parent) : QWidget(parent), m_model(model) {
    m_table = new QTableView;
    m_table->setModel(model);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setAlternatingRowColors(true);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->horizontalHeader()->setHighlightSections(false);
    // Widths from sample contents, so they follow the font and DPI.
    const char* samples[] = {"000000", "thumbnailer-long v12", "container", "finished", "2026-11-29 17:07:23",
                             "12m 05s", "100.0", "1023 MiB", "1024", "Denials", "supervisor-lost"};
    for (int c = 0; c < JobTableModel::ColumnCount; ++c)
        m_table->setColumnWidth(c, fontMetrics().horizontalAdvance(QString::fromLatin1(samples[c])) + 24);

    m_detail = new JobDetailView(backend);
    m_splitter = new QSplitter(Qt::Vertical);
    m_splitter->setObjectName(QStringLiteral("jobsSplitter"));
    m_splitter->addWidget(m_table);
    m_splitter->addWidget(m_detail);
    m_splitter->setStretchFactor(0, 2);
    m_splitter->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_splitter);

    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this, &JobsView::selectionChanged);
    // The model keeps persistent indexes valid across refreshes, so the
    // selection follows its job; the detail pane only needs fresh values.
    connect(model, &JobTableModel::refreshed, this, [this] {
        if (m_pendingSelect && selectJob(m_pendingSelect)) m_pendingSelect = 0;
        m_detail->showJob(m_model->jobById(selectedJob()));
    });
    connect(m_detail, &JobDetailView::message, this, &JobsView::message);
    connect(m_detail, &JobDetailView::jobLinkActivated, this, [this](qint64 id) { selectJob(id); });
}

int64_t JobsView::selectedJob() const {
    const auto rows = m_table->selectionModel()->selectedRows();
    if (rows.isEmpty()) return 0;
    const JobRow* j = m_model->job(rows.first().row());
    return j ? j->id : 0;
}

bool JobsView::selectJob(int64_t id) {
    const int row = m_model->rowOfId(id);
    if (row < 0) {
        m_pendingSelect = id;  // not loaded yet: select when it appears
        return false;
    }
    m_table->selectRow(row);
    m_table->scrollTo(m_model->index(row, 0));
    return true;
}

void JobsView::selectionChanged() { m_detail->showJob(m_model->jobById(selectedJob())); }

}  // namespace moat::ui
