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
    auto ticker = QSharedPointer<QCPAxisTickerDateTime>::create();
    ticker->setDateTimeFormat(QStringLiteral("HH:mm:ss"));
    xAxis->setTicker(ticker);
    yAxis->setLabel(tr("denials/s"));
    legend->setVisible(true);
    legend->setFont(QFont(font().family(), std::max(7, font().pointSize() - 1)));
    axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    applyChartPalette(this);
    m_title->setTextColor(palette().color(QPalette::Text));
    setSelectionRectMode(QCP::srmCustom);
    connect(selectionRect(), &QCPSelectionRect::accepted, this, [this](const QRect& r, QMouseEvent*) {
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
        b->setName(i < names.size() ? QString::fromStdString(names[i]) : tr("other"));
        QColor c = i < names.size() ? seriesColor(int(i)) : QColor(0x9e, 0x9e, 0x9e);
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
        const double pad = std::max(2.0, (last - first) * 0.05);
        xAxis->setRange(first - pad, last + pad);
    } else {
        const double now = double(QDateTime::currentSecsSinceEpoch());
        xAxis->setRange(now - 60, now);
    }
    // Headroom for the legend, which sits in the top right corner.
    yAxis->setRange(0, std::max(1.0, maxSum * (bars.size() > 1 ? 1.2 + 0.17 * double(bars.size()) : 1.15)));
    legend->setVisible(!bars.empty());
    m_title->setText(tr("Denials per second (%1 in the loaded events; drag to select a time range)").arg(stats.total()));
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
