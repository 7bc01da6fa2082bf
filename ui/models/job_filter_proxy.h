#pragma once
// The Jobs view's quick filter over JobTableModel: words that must all occur
// (case-insensitive) in the job's id, policy, command, cause or its detail,
// and a state: any, running, finished, or "problems" (finished other than
// exit code 0). Sorting stays the source's (newest first).
#include <QSortFilterProxyModel>

namespace moat::ui {

class JobTableModel;

class JobFilterProxy final : public QSortFilterProxyModel {
    Q_OBJECT
public:
    enum class State { Any, Running, Finished, Problems };

    explicit JobFilterProxy(JobTableModel* source, QObject* parent = nullptr);

    void setText(const QString& text);
    void setState(State s);
    bool active() const { return !m_words.isEmpty() || m_state != State::Any; }

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;

private:
    JobTableModel* m_jobs;
    QStringList m_words;
    State m_state = State::Any;
};

}  // namespace moat::ui
