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
    setIntegerTicks(xAxis);
    applyChartPalette(this);
    title->setTextColor(palette().color(QPalette::Text));
    m_empty = makeEmptyText(this);
}

int TopSyscallsChart::barCount() const {
    int n = 0;
    for (const QCPBars* b : m_bars) n += b->dataCount();
    return n;
}

QColor TopSyscallsChart::colorOf(const QString& syscall) const {
    for (const QCPBars* b : m_bars)
        if (b->name() == syscall) return b->brush().color();
    return {};
}

QString TopSyscallsChart::emptyText() const { return m_empty->visible() ? m_empty->text() : QString(); }

void TopSyscallsChart::setStats(const DenialStats& stats) {
    const auto top = stats.top(kTop);
    m_ticker->clear();
    for (QCPBars* b : m_bars) removePlottable(b);
    m_bars.clear();
    double maxV = 1;
    // One bars series per syscall, so each has its own colour: the same as
    // in the timeline (syscallColor), whatever the filter.
    for (size_t i = 0; i < top.size(); ++i) {
        const double key = double(top.size() - i);  // most denied at the top: highest key
        const QString name = QString::fromStdString(top[i].first);
        auto* b = new QCPBars(yAxis, xAxis);  // key axis vertical: horizontal bars
        b->setName(name);
        b->setWidth(0.7);
        const QColor c = syscallColor(name);
        b->setPen(QPen(c.darker(120)));
        b->setBrush(c);
        b->addData(key, double(top[i].second));
        m_bars.push_back(b);
        m_ticker->addTick(key, name);
        maxV = std::max(maxV, double(top[i].second));
    }
    xAxis->setRange(0, std::max(2.0, std::ceil(maxV * 1.15)));
    yAxis->setRange(0.3, std::max<double>(double(top.size()) + 0.7, 3.7));
    setEmptyState(this, m_empty, top.empty() ? tr("No denials in the loaded events") : QString());
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
