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

}  // namespace moat::ui
