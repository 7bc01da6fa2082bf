#pragma once
// Live monitoring: the job table (polled every second) above the selected job.
#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QSplitter;
class QTableView;

namespace moat::ui {

class Backend;
class JobDetailView;
class JobFilterProxy;
class JobTableModel;

class JobsView final : public QWidget {
    Q_OBJECT
public:
    JobsView(Backend* backend, JobTableModel* model, QWidget* parent = nullptr);

    bool selectJob(int64_t id);
    // Column widths from sample contents (they follow the font and DPI); also
    // the console's all-hosts table.
    static void sizeColumns(QTableView* table);
    // Row selection, alternating rows, compact rows: the Jobs table's look.
    static void styleTable(QTableView* table);
    int64_t selectedJob() const;
    JobDetailView* detail() const { return m_detail; }
    QTableView* table() const { return m_table; }
    QSplitter* splitter() const { return m_splitter; }
    QLineEdit* filterEdit() const { return m_filter; }
    QComboBox* stateFilter() const { return m_state; }
    JobFilterProxy* proxy() const { return m_proxy; }

signals:
    void message(const QString& text, int timeoutMs);

private:
    void selectionChanged();

    void updateCount();

    JobTableModel* m_model;
    JobFilterProxy* m_proxy;
    QLineEdit* m_filter;
    QComboBox* m_state;
    QLabel* m_count;
    QTableView* m_table;
    JobDetailView* m_detail;
    QSplitter* m_splitter;
    int64_t m_pendingSelect = 0;
};

}  // namespace moat::ui
