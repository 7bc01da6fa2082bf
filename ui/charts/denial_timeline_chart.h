#pragma once
// Denials per second, stacked by syscall (the five most denied, then "other").
// Dragging a rectangle selects a time range (rangeSelected).
#include <qcustomplot.h>

namespace moat::ui {

class DenialStats;

class DenialTimelineChart final : public QCustomPlot {
    Q_OBJECT
public:
    explicit DenialTimelineChart(QWidget* parent = nullptr);
    void setStats(const DenialStats& stats);
    int barCount() const;
    // The message shown instead of bars ("No denials ..."), "" when there are bars.
    QString emptyText() const;
    // The colour of a syscall's series (invalid when it has none).
    QColor colorOf(const QString& syscall) const;
    bool legendInsidePlot() const { return axisRect()->insetLayout()->elementCount() > 0; }

signals:
    // Nanoseconds since the epoch, inclusive.
    void rangeSelected(qint64 sinceNs, qint64 untilNs);

private:
    QCPTextElement* m_title = nullptr;
    QCPItemText* m_empty = nullptr;
    QSharedPointer<QCPAxisTickerDateTime> m_ticker;
};

}  // namespace moat::ui
