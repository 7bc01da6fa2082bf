#pragma once
// The most denied syscalls of the loaded events, as horizontal bars.
#include <vector>

#include <qcustomplot.h>

namespace moat::ui {

class DenialStats;

class TopSyscallsChart final : public QCustomPlot {
    Q_OBJECT
public:
    explicit TopSyscallsChart(QWidget* parent = nullptr);
    void setStats(const DenialStats& stats);
    int barCount() const;
    QColor colorOf(const QString& syscall) const;
    QString emptyText() const;

private:
    std::vector<QCPBars*> m_bars;
    QCPItemText* m_empty = nullptr;
    QSharedPointer<QCPAxisTickerText> m_ticker;
};

}  // namespace moat::ui
