#include "charts/denial_timeline_chart.h"

#include "charts/chart_style.h"
#include "models/denial_stats.h"

namespace moat::ui {

namespace {
constexpr size_t kStacked = 5;
}

DenialTimelineChart::DenialTimelineChart(QWidget* parent) : QCustomPlot(parent) {
    setMinimumHeight(150);
    plotLayout()->insertRow(0);
    m_title = new QCPTextElement(this, tr("Denials per second"), QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, m_title);
    m_ticker = QSharedPointer<QCPAxisTickerDateTime>::create();
    m_ticker->setDateTimeFormat(QStringLiteral("HH:mm:ss"));
    xAxis->setTicker(m_ticker);
    yAxis->setLabel(tr("denials/s"));
    setIntegerTicks(yAxis);
    legend->setVisible(true);
    legend->setFont(QFont(font().family(), std::max(7, font().pointSize() - 1)));
    // The legend sits right of the plot, not over it: inside it would cover
    // the newest bars, which are the ones an operator looks at.
    axisRect()->insetLayout()->take(legend);
    auto* side = new QCPLayoutGrid;
    plotLayout()->addElement(1, 1, side);
    side->addElement(0, 0, legend);
    side->addElement(1, 0, new QCPLayoutElement(this));  // takes the height below the legend
    side->setRowStretchFactor(0, 0.001);
    side->setRowStretchFactor(1, 1);
    plotLayout()->setColumnStretchFactor(0, 1);
    plotLayout()->setColumnStretchFactor(1, 0.001);
    legend->setMargins(QMargins(4, 2, 4, 2));
    applyChartPalette(this);
    m_title->setTextColor(palette().color(QPalette::Text));
    m_empty = makeEmptyText(this);
    setSelectionRectMode(QCP::srmCustom);
    connect(selectionRect(), &QCPSelectionRect::accepted, this, [this](const QRect& r, QMouseEvent*) {
        if (m_empty->visible()) return;
        double a = xAxis->pixelToCoord(r.left()), b = xAxis->pixelToCoord(r.right());
        if (a > b) std::swap(a, b);
        if (b - a < 0.5) return;
        emit rangeSelected(qint64(a * 1e9), qint64(b * 1e9));
    });
}

int DenialTimelineChart::barCount() const {
    int n = 0;
    // QCustomPlot::plottable() is not const; counting does not modify anything.
    auto* self = const_cast<DenialTimelineChart*>(this);
    for (int i = 0; i < self->plottableCount(); ++i)
        if (auto* b = qobject_cast<QCPBars*>(self->plottable(i))) n += b->dataCount();
    return n;
}

QString DenialTimelineChart::emptyText() const { return m_empty->visible() ? m_empty->text() : QString(); }

QColor DenialTimelineChart::colorOf(const QString& syscall) const {
    auto* self = const_cast<DenialTimelineChart*>(this);
    for (int i = 0; i < self->plottableCount(); ++i)
        if (auto* b = qobject_cast<QCPBars*>(self->plottable(i)); b && b->name() == syscall) return b->brush().color();
    return {};
}

void DenialTimelineChart::setStats(const DenialStats& stats) {
    clearPlottables();
    const auto top = stats.top(kStacked);
    std::vector<std::string> names;
    for (const auto& [n, c] : top) names.push_back(n);
    const bool hasOther = stats.top(kStacked + 1).size() > kStacked;
    std::vector<QCPBars*> bars;
    QCPBars* below = nullptr;
    for (size_t i = 0; i < names.size() + (hasOther ? 1 : 0); ++i) {
        auto* b = new QCPBars(xAxis, yAxis);
        const QString name = i < names.size() ? QString::fromStdString(names[i]) : tr("other");
        b->setName(name);
        QColor c = i < names.size() ? syscallColor(name) : QColor(0x9e, 0x9e, 0x9e);
        b->setPen(QPen(c.darker(120)));
        b->setBrush(c);
        b->setWidth(0.8);
        b->setStackingGap(0);
        if (below) b->moveAbove(below);
        below = b;
        bars.push_back(b);
    }
    double maxSum = 0, first = 0, last = 0;
    bool any = false;
    for (const auto& [sec, bySc] : stats.perSecond()) {
        double sum = 0;
        std::vector<double> v(bars.size(), 0);
        for (const auto& [sc, c] : bySc) {
            auto it = std::find(names.begin(), names.end(), sc);
            size_t idx = it != names.end() ? size_t(it - names.begin()) : names.size();
            if (idx < v.size()) v[idx] += double(c);
            sum += double(c);
        }
        for (size_t i = 0; i < bars.size(); ++i)
            if (v[i] > 0) bars[i]->addData(double(sec) + 0.5, v[i]);
        maxSum = std::max(maxSum, sum);
        if (!any) first = double(sec);
        last = double(sec) + 1;
        any = true;
    }
    if (any) {
        // At least 10 s wide, so a job that denied within one second shows
        // one bar with readable ticks around it, not one tick per pixel.
        const double pad = std::max(2.0, (last - first) * 0.05);
        const double span = last - first + 2 * pad;
        const double extra = span < 10 ? (10 - span) / 2 : 0;
        xAxis->setRange(first - pad - extra, last + pad + extra);
        m_ticker->setDateTimeFormat(last - first > 2 * 86400 ? QStringLiteral("MM-dd HH:mm") : QStringLiteral("HH:mm:ss"));
    } else {
        xAxis->setRange(0, 1);
    }
    yAxis->setRange(0, std::max(2.0, std::ceil(maxSum * 1.1)));
    legend->setVisible(!bars.empty());
    setEmptyState(this, m_empty, any ? QString() : tr("No denials in the loaded events"));
    m_title->setText(any ? tr("Denials per second (%1 in the loaded events; drag to select a time range)").arg(stats.total())
                         : tr("Denials per second"));
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
