#include "charts/resource_chart.h"

#include "charts/chart_style.h"

#include <cmath>

namespace moat::ui {

ResourceChart::ResourceChart(const QString& title, const QString& unit, double scale, QWidget* parent)
    : QCustomPlot(parent), m_scale(scale) {
    setMinimumHeight(110);
    plotLayout()->insertRow(0);
    m_title = new QCPTextElement(this, title, QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, m_title);
    m_value = addGraph();
    m_value->setName(title);
    QColor c = seriesColor(0);
    m_value->setPen(QPen(c, 2));
    c.setAlpha(50);
    m_value->setBrush(c);
    m_limit = addGraph();
    m_limit->setName(tr("limit"));
    m_limit->setPen(QPen(seriesColor(2), 1.5, Qt::DashLine));
    m_limit->setAntialiased(false);  // a horizontal dashed line: antialiasing only costs
    xAxis->setLabel(tr("seconds since start"));
    yAxis->setLabel(unit);
    applyChartPalette(this);
    m_title->setTextColor(palette().color(QPalette::Text));
    xAxis->setRange(0, 60);
    yAxis->setRange(0, 1);
    m_empty = makeEmptyText(this);
    m_emptyMessage = tr("no samples yet");
    // Many charts replot at the sampling rate (issue 7, target 6c: 20 at
    // 10 Hz). In the raster engine antialiasing is a large part of a replot:
    // only the curves are antialiased (fills, grid and axes are not), and wide
    // polylines take QCustomPlot's fast path. console_bench: 41 % -> ~25 % of
    // the GUI thread for 20 charts.
    setNotAntialiasedElements(QCP::AntialiasedElements(QCP::aeAll) & ~QCP::AntialiasedElements(QCP::aePlottables));
    setPlottingHint(QCP::phFastPolylines, true);
    // The curves get a paint buffer of their own (issue 15, target 6c): a
    // sample that leaves the axes as they were redraws that layer alone, and
    // the axes, grid, tick labels and title are blitted from their buffer.
    // The x-axis moves in steps of a tenth of the window and the y-axis top
    // is a round number, so that is nearly every sample.
    addLayer(QStringLiteral("curves"), layer(QStringLiteral("main")), QCustomPlot::limAbove);
    m_curves = layer(QStringLiteral("curves"));
    m_curves->setMode(QCPLayer::lmBuffered);
    m_value->setLayer(m_curves);
    m_limit->setLayer(m_curves);
}

namespace {
// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 (times a power of ten)
// at or above v > 0: round, and close enough that the curve keeps the height.
double roundUp(double v) {
    const double e = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
        if (m * e >= v * (1 - 1e-12)) return m * e;
    return 10 * e;
}
}  // namespace

void ResourceChart::showEvent(QShowEvent* e) {
    QCustomPlot::showEvent(e);
    if (m_dirty) refresh();
}

void ResourceChart::clear() {
    m_value->data()->clear();
    m_limit->data()->clear();
    m_lastT = 0;
    m_maxValue = 0;
    m_lastLimit = 0;
    refresh();
}

int ResourceChart::sampleCount() const { return m_value->dataCount(); }

QString ResourceChart::shownEmptyText() const { return m_empty->visible() ? m_empty->text() : QString(); }

void ResourceChart::setIntegerValues(bool on) {
    m_integer = on;
    if (on) setIntegerTicks(yAxis);
}

void ResourceChart::addSample(double t, double value, double limit) {
    const double v = value / m_scale;
    m_value->addData(t, v);
    if (limit > 0) m_limit->addData(t, limit / m_scale);
    m_lastLimit = limit > 0 ? limit / m_scale : 0;
    m_lastT = std::max(m_lastT, t);
    // Keep memory bounded: drop what is far outside the window.
    m_value->data()->removeBefore(m_lastT - 4 * m_window);
    m_limit->data()->removeBefore(m_lastT - 4 * m_window);
}

void ResourceChart::refresh() {
    View v;
    // x: while the job is younger than the window, from 0 to a round number
    // above the newest sample (at least 10 s); then the window slides on a
    // tenth of itself at a time.
    if (m_lastT <= m_window) {
        v.hi = std::min(std::max(m_lastT > 0 ? roundUp(m_lastT) : 0.0, 10.0), std::max(m_window, 10.0));
    } else {
        const double step = std::max(m_window / 10, 1.0);
        v.hi = std::ceil(m_lastT / step) * step;
    }
    v.lo = std::max(0.0, v.hi - m_window);
    // y: the visible values, and the limit when it is within reach (a 512 MiB
    // limit would flatten a 3 MiB curve; it is then named in the title instead).
    double maxV = 0;
    for (auto it = m_value->data()->findBegin(v.lo); it != m_value->data()->constEnd(); ++it) maxV = std::max(maxV, it->value);
    // An all-zero series still gets a readable axis (0..1, or 0..5 for counts),
    // never a 1e-9 span. Otherwise a round number above the values.
    double top = maxV > 0 ? roundUp(maxV * 1.1) : (m_integer ? 5.0 : 1.0);
    if (m_integer) top = std::max(top, std::ceil(maxV) + 1);
    if (m_lastLimit > 0 && m_lastLimit <= std::max(maxV, 1e-9) * 4) top = std::max(top, m_lastLimit * 1.1);
    v.top = top;
    v.limit = m_lastLimit > 0 && m_lastLimit <= top;
    v.empty = sampleCount() == 0 ? m_emptyMessage : QString();
    if (!(v == m_shown)) {
        xAxis->setRange(v.lo, v.hi);
        yAxis->setRange(0, v.top);
        m_limit->setVisible(v.limit);
        setEmptyState(this, m_empty, v.empty);
        m_shown = v;
        m_needFull = true;
    }
    if (!isVisible()) {
        // Nothing to draw on: the next show draws it (a job's charts live in
        // a tab, and there may be many jobs).
        m_dirty = true;
        return;
    }
    m_dirty = false;
    if (!m_needFull && !hasInvalidatedPaintBuffers()) {
        // Once per pass of the event loop, however many samples came in it
        // (a burst of events from a watch): coalesced like rpQueuedReplot.
        if (m_curvesQueued) return;
        m_curvesQueued = true;
        QMetaObject::invokeMethod(this, [this] {
            m_curvesQueued = false;
            if (m_needFull || hasInvalidatedPaintBuffers()) return;  // a full replot draws them
            ++m_curveRedraws;
            m_curves->replot();
        }, Qt::QueuedConnection);
        return;
    }
    m_needFull = false;
    ++m_fullReplots;
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
