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
    const double hi = std::max(m_lastT, 10.0);
    const double lo = std::max(0.0, hi - m_window);
    xAxis->setRange(lo, hi);
    // y: the visible values, and the limit when it is within reach (a 512 MiB
    // limit would flatten a 3 MiB curve; it is then named in the title instead).
    double maxV = 0;
    for (auto it = m_value->data()->findBegin(lo); it != m_value->data()->constEnd(); ++it) maxV = std::max(maxV, it->value);
    // An all-zero series still gets a readable axis (0..1, or 0..5 for counts),
    // never a 1e-9 span.
    double top = maxV > 0 ? maxV * 1.2 : (m_integer ? 5.0 : 1.0);
    if (m_integer) top = std::max(top, std::ceil(maxV) + 1);
    if (m_lastLimit > 0 && m_lastLimit <= std::max(maxV, 1e-9) * 4) top = std::max(top, m_lastLimit * 1.1);
    m_limit->setVisible(m_lastLimit > 0 && m_lastLimit <= top);
    yAxis->setRange(0, top);
    setEmptyState(this, m_empty, sampleCount() == 0 ? m_emptyMessage : QString());
    replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moat::ui
