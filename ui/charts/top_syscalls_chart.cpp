#include "charts/top_syscalls_chart.h"

#include "charts/chart_style.h"
#include "models/denial_stats.h"

namespace moat::ui {

namespace {
constexpr size_t kTop = 10;
}

TopSyscallsChart::TopSyscallsChart(QWidget* parent) : QCustomPlot(parent) {
    setMinimumHeight(150);
    plotLayout()->insertRow(0);
    auto* title = new QCPTextElement(this, tr("Top denied syscalls"), QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, title);
    m_ticker = QSharedPointer<QCPAxisTickerText>::create();
    yAxis->setTicker(m_ticker);
    yAxis->setTickLength(0, 2);
    yAxis->setSubTicks(false);
    xAxis->setLabel(tr("denials"));
    m_bars = new QCPBars(yAxis, xAxis);  // key axis vertical: horizontal bars
    m_bars->setWidth(0.7);
    m_bars->setPen(QPen(seriesColor(2).darker(120)));
    m_bars->setBrush(seriesColor(2));
    applyChartPalette(this);
    title->setTextColor(palette().color(QPalette::Text));
}

void TopSyscallsChart::setStats(const DenialStats& stats) {
    const auto top = stats.top(kTop);
    m_ticker->clear();
    QVector<double> keys, values;
    // Most denied at the top: highest key.
    for (size_t i = 0; i < top.size(); ++i) {
        const double key = double(top.size() - i);
        keys << key;
        values << double(top[i].second);
        m_ticker->addTick(key, QString::fromStdString(top[i].first));
    }
    m_bars->setData(keys, values, true);
    double maxV = 1;
    for (double v : values) maxV = std::max(maxV, v);
    xAxis->setRange(0, maxV * 1.15);
    yAxis->setRange(0.3, std::max<double>(double(top.size()) + 0.7, 3.7));
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
