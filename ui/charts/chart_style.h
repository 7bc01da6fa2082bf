#pragma once
// Shared look of the console's QCustomPlot charts: colours from the widget's
// palette so the charts read well in light and dark themes.
#include <QColor>
#include <QPalette>

#include <qcustomplot.h>

namespace moat::ui {

inline void applyChartPalette(QCustomPlot* plot) {
    const QPalette pal = plot->palette();
    plot->setBackground(pal.color(QPalette::Base));
    const QColor fg = pal.color(QPalette::Text);
    QColor grid = fg;
    grid.setAlpha(40);
    for (QCPAxis* axis : {plot->xAxis, plot->yAxis}) {
        axis->setBasePen(QPen(fg));
        axis->setTickPen(QPen(fg));
        axis->setSubTickPen(QPen(fg));
        axis->setTickLabelColor(fg);
        axis->setLabelColor(fg);
        axis->grid()->setPen(QPen(grid, 0, Qt::DotLine));
    }
    if (plot->legend) {
        plot->legend->setBrush(pal.color(QPalette::Base));
        plot->legend->setTextColor(fg);
        plot->legend->setBorderPen(QPen(grid));
    }
}

// A qualitative palette (Tableau 10), distinct in both themes.
inline QColor seriesColor(int i) {
    static const QColor kColors[] = {QColor(0x4e, 0x79, 0xa7), QColor(0xf2, 0x8e, 0x2b), QColor(0xe1, 0x57, 0x59),
                                     QColor(0x76, 0xb7, 0xb2), QColor(0x59, 0xa1, 0x4f), QColor(0xed, 0xc9, 0x48),
                                     QColor(0xb0, 0x7a, 0xa1), QColor(0xff, 0x9d, 0xa7), QColor(0x9c, 0x75, 0x5f),
                                     QColor(0xba, 0xb0, 0xac)};
    return kColors[i % 10];
}

// One colour per syscall name, the same in every chart and every filter: the
// name's FNV-1a hash picks from the palette (qHash is seeded per process, so
// it would not be stable across runs). Two names may share a colour; the
// legend and the axis labels still tell them apart.
inline QColor syscallColor(const QString& name) {
    uint32_t h = 2166136261u;
    for (const QChar c : name) {
        h ^= c.unicode();
        h *= 16777619u;
    }
    return seriesColor(int(h % 10));
}

// Counts (denials, pids) have no fractional ticks: steps of 1, 2, 5, 10...
inline void setIntegerTicks(QCPAxis* axis) {
    auto t = QSharedPointer<QCPAxisTickerFixed>::create();
    t->setTickStep(1.0);
    t->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    axis->setTicker(t);
    axis->setNumberFormat(QStringLiteral("f"));
    axis->setNumberPrecision(0);
}

// A message in the middle of the plot area ("no denials") that replaces an
// empty chart's meaningless axes; hidden with an empty text.
inline QCPItemText* makeEmptyText(QCustomPlot* plot) {
    auto* t = new QCPItemText(plot);
    t->position->setType(QCPItemPosition::ptAxisRectRatio);
    t->position->setCoords(0.5, 0.5);
    t->setPositionAlignment(Qt::AlignCenter);
    t->setTextAlignment(Qt::AlignCenter);
    QColor c = plot->palette().color(QPalette::Text);
    c.setAlpha(170);
    t->setColor(c);
    t->setVisible(false);
    return t;
}

inline void setEmptyState(QCustomPlot* plot, QCPItemText* text, const QString& message) {
    const bool empty = !message.isEmpty();
    text->setText(message);
    text->setVisible(empty);
    // Tick labels over nothing read as data (1e-9, 17:02:13): hide them.
    for (QCPAxis* a : {plot->xAxis, plot->yAxis}) {
        a->setTickLabels(!empty);
        a->grid()->setVisible(!empty);
    }
}

}  // namespace moat::ui
