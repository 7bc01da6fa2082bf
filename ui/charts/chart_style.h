#pragma once
// Shared look of the console's QCustomPlot charts: colours from the widget's
// palette so the charts read well in light and dark themes.
#include <QColor>
#include <QHash>
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

// One colour per syscall name, the same in both charts and under every filter.
// The name's hash (FNV-1a with a final mix; qHash is seeded per process)
// picks a preferred slot in an 18-colour palette (Tableau 20 without its
// greys: grey means "other"); a name whose slot another name already took
// in this session probes to the next free one, so the syscalls an operator
// compares side by side do not share a colour. Assignments last for the
// process. GUI thread only (charts live there).
inline QColor syscallColor(const QString& name) {
    static const QColor kPalette[] = {
        QColor(0x1f, 0x77, 0xb4), QColor(0xff, 0x7f, 0x0e), QColor(0x2c, 0xa0, 0x2c), QColor(0xd6, 0x27, 0x28),
        QColor(0x94, 0x67, 0xbd), QColor(0x8c, 0x56, 0x4b), QColor(0xe3, 0x77, 0xc2), QColor(0xbc, 0xbd, 0x22),
        QColor(0x17, 0xbe, 0xcf), QColor(0xae, 0xc7, 0xe8), QColor(0xff, 0xbb, 0x78), QColor(0x98, 0xdf, 0x8a),
        QColor(0xff, 0x98, 0x96), QColor(0xc5, 0xb0, 0xd5), QColor(0xc4, 0x9c, 0x94), QColor(0xf7, 0xb6, 0xd2),
        QColor(0xdb, 0xdb, 0x8d), QColor(0x9e, 0xda, 0xe5)};
    constexpr int kN = int(sizeof kPalette / sizeof kPalette[0]);
    static QHash<QString, int> assigned;
    static int used[kN] = {};
    if (auto it = assigned.constFind(name); it != assigned.constEnd()) return kPalette[*it];
    uint32_t h = 2166136261u;
    for (const QChar c : name) {
        h ^= c.unicode();
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    const int preferred = int(h % uint32_t(kN));
    int slot = preferred;
    for (int i = 0; i < kN; ++i) {
        const int s = (preferred + i) % kN;
        if (used[s] == 0) {
            slot = s;
            break;
        }
    }
    ++used[slot];
    assigned.insert(name, slot);
    return kPalette[slot];
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
