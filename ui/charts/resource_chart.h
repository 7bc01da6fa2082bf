#pragma once
// One live resource series of a job (CPU %, memory, pids) against its limit,
// over a rolling window, fed from the job's `resource` events.
#include <QString>

#include <qcustomplot.h>

namespace moat::ui {

class ResourceChart final : public QCustomPlot {
    Q_OBJECT
public:
    // scale divides values for display (e.g. 1 MiB), unit labels the axis.
    ResourceChart(const QString& title, const QString& unit, double scale, QWidget* parent = nullptr);

    void clear();
    void setTitle(const QString& title) { m_title->setText(title); }
    // t: seconds since the job started. limit <= 0: no limit line.
    void addSample(double t, double value, double limit);
    // Redraws with the x-range following the newest sample.
    void refresh();
    void setWindowSeconds(double s) { m_window = s; }
    int sampleCount() const;
    // What the chart says while it has no sample ("no samples: ..."); counts
    // (pids) get integer ticks.
    void setEmptyText(const QString& text) { m_emptyMessage = text; }
    QString shownEmptyText() const;
    void setIntegerValues(bool on);
    // Full replots since construction (axes, grid, text and the curves), as
    // against redraws of the curves' layer alone (queued, one per pass of the
    // event loop): for tests and the bench.
    int fullReplots() const { return m_fullReplots; }
    int curveRedraws() const { return m_curveRedraws; }

protected:
    void showEvent(QShowEvent* e) override;

private:
    // The axes a refresh() decides on; while they stay the same, only the
    // curves' layer is redrawn.
    struct View {
        double lo = -1, hi = -1, top = -1;
        bool limit = false;
        QString empty;
        bool operator==(const View&) const = default;
    };
    QCPLayer* m_curves = nullptr;
    View m_shown;             // the axes as set
    bool m_needFull = true;   // the axes changed since the last full replot
    bool m_dirty = false;     // a refresh() came while hidden
    bool m_curvesQueued = false;  // a redraw of the curves' layer is queued
    int m_fullReplots = 0, m_curveRedraws = 0;
    QCPGraph* m_value = nullptr;
    QCPGraph* m_limit = nullptr;
    QCPTextElement* m_title = nullptr;
    QCPItemText* m_empty = nullptr;
    QString m_emptyMessage;
    bool m_integer = false;
    double m_scale;
    double m_window = 300;
    double m_lastT = 0;
    double m_maxValue = 0;
    double m_lastLimit = 0;
};

}  // namespace moat::ui
