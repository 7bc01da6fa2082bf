#include "models/job_filter_proxy.h"

#include "models/job_table_model.h"

namespace moat::ui {

JobFilterProxy::JobFilterProxy(JobTableModel* source, QObject* parent) : QSortFilterProxyModel(parent), m_jobs(source) {
    setSourceModel(source);
    // Rows change every poll (durations, live samples): re-check them.
    setDynamicSortFilter(true);
}

void JobFilterProxy::setText(const QString& text) {
    m_words = text.simplified().split(u' ', Qt::SkipEmptyParts);
    invalidateFilter();
}

void JobFilterProxy::setState(State s) {
    m_state = s;
    invalidateFilter();
}

bool JobFilterProxy::filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const {
    if (sourceParent.isValid()) return false;
    const JobRow* j = m_jobs->job(sourceRow);
    if (!j) return false;
    switch (m_state) {
        case State::Any: break;
        case State::Running:
            if (!j->running()) return false;
            break;
        case State::Finished:
            if (j->running()) return false;
            break;
        case State::Problems:
            if (j->running() || (j->cause == "exited" && j->exitCode.value_or(1) == 0)) return false;
            break;
    }
    if (m_words.isEmpty()) return true;
    const QString hay = QStringLiteral("%1\n%2 v%3\n%4\n%5\n%6")
                            .arg(j->id)
                            .arg(QString::fromStdString(j->policyName))
                            .arg(j->policyVersion)
                            .arg(j->commandFull(), QString::fromStdString(j->cause), QString::fromStdString(j->detail));
    for (const QString& w : m_words)
        if (!hay.contains(w, Qt::CaseInsensitive)) return false;
    return true;
}

}  // namespace moat::ui
