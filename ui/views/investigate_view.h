#pragma once
// Investigation, modelled on a packet analyser: a filter bar checked as you
// type, the event table (keyset paging over the store), a detail pane for the
// selected event, a denials-per-second timeline and the top denied syscalls.
#include <QTimer>
#include <QWidget>

#include "models/denial_stats.h"

class QLabel;
class QLineEdit;
class QPushButton;
class QSplitter;
class QTableView;
class QTextBrowser;

namespace moat::ui {

class Backend;
class DenialTimelineChart;
struct EventRow;
class EventTableModel;
class JobTableModel;
class TopSyscallsChart;

class InvestigateView final : public QWidget {
    Q_OBJECT
public:
    InvestigateView(Backend* backend, JobTableModel* jobs, QWidget* parent = nullptr);

    // Sets the filter text and applies it when valid; returns whether it was.
    bool setFilterText(const QString& text);
    QString filterText() const;
    void reload();
    void focusFilter();
    bool selectRow(int row);
    // Proposes allowing the selected denial (emits allowDenialRequested).
    void allowSelected();
    QPushButton* allowButton() const { return m_allowBtn; }
    // A denial is selected and the window is connected to moatd.
    bool canAllowSelected() const;

    EventTableModel* model() const { return m_model; }
    QTableView* table() const { return m_table; }
    QTextBrowser* detail() const { return m_detail; }
    QSplitter* mainSplitter() const { return m_vsplit; }
    QSplitter* lowerSplitter() const { return m_hsplit; }
    DenialTimelineChart* timeline() const { return m_timeline; }
    TopSyscallsChart* topChart() const { return m_top; }

signals:
    void message(const QString& text, int timeoutMs);
    void filterApplied(const QString& text);
    // "Allow in a new policy version…" on a denial: the job's policy version and the event's JSON.
    void allowDenialRequested(const QString& policyName, int version, const QString& eventJson);
    void allowAvailableChanged(bool available);

private:
    bool validate(bool apply);
    void rebuildStats();
    void showSelected();
    void updateAllowAction();
    const EventRow* selectedDenial() const;

    Backend* m_backend;
    JobTableModel* m_jobs;
    EventTableModel* m_model;
    QLineEdit* m_filter;
    QLabel* m_filterStatus;
    QLabel* m_count;
    QTableView* m_table;
    QTextBrowser* m_detail;
    QPushButton* m_allowBtn;
    QString m_allowTip;
    DenialTimelineChart* m_timeline;
    TopSyscallsChart* m_top;
    QSplitter* m_vsplit;
    QSplitter* m_hsplit;
    DenialStats m_stats;
    int m_statsRows = 0;  // rows already counted into m_stats
    QTimer m_applyTimer;
    QTimer m_chartTimer;
    QString m_applied;
};

}  // namespace moat::ui
