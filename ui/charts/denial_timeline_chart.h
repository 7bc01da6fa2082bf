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

signals:
    // Nanoseconds since the epoch, inclusive.
    void rangeSelected(qint64 sinceNs, qint64 untilNs);

private:
    QCPTextElement* m_title = nullptr;
};

}  // namespace moat::ui
