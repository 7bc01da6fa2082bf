#pragma once
// Status colours (denied, warning, running/ok) that stay readable on the
// current palette: the usual Material 800 shades on a light base, lighter
// 300 shades on a dark one. Looked up at display time, so a palette change
// applies at the next repaint.
#include <QColor>
#include <QGuiApplication>
#include <QPalette>

namespace moat::ui {

enum class Status { Bad, Warn, Good, Limit };

inline bool darkPalette() { return QGuiApplication::palette().color(QPalette::Base).lightness() < 128; }

inline QColor statusColor(Status s) {
    const bool dark = darkPalette();
    switch (s) {
        case Status::Bad: return dark ? QColor(0xef, 0x9a, 0x9a) : QColor(0xc6, 0x28, 0x28);
        case Status::Warn: return dark ? QColor(0xff, 0xcc, 0x80) : QColor(0xb2, 0x6a, 0x00);
        case Status::Good: return dark ? QColor(0xa5, 0xd6, 0xa7) : QColor(0x2e, 0x7d, 0x32);
        case Status::Limit: return dark ? QColor(0xff, 0xab, 0x91) : QColor(0xe6, 0x51, 0x00);
    }
    return {};
}

}  // namespace moat::ui
