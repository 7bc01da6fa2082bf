#pragma once
// The most denied syscalls of the loaded events, as horizontal bars.
#include <qcustomplot.h>

namespace moat::ui {

class DenialStats;

class TopSyscallsChart final : public QCustomPlot {
    Q_OBJECT
public:
    explicit TopSyscallsChart(QWidget* parent = nullptr);
    void setStats(const DenialStats& stats);
    int barCount() const { return m_bars ? m_bars->dataCount() : 0; }

private:
    QCPBars* m_bars = nullptr;
    QSharedPointer<QCPAxisTickerText> m_ticker;
};

}  // namespace moat::ui
