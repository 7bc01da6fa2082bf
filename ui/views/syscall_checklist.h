#pragma once
// The policy form's syscall checklist: every syscall libseccomp knows, under
// each syscall group that holds it (and "other" for the rest), with a one-line
// description and lint's risk reason. Checking or unchecking a syscall or a
// group edits the allow list (names and @groups, as written) and emits
// entriesChanged(); setEntries() follows the list without emitting.
#include <QWidget>

#include <set>
#include <string>
#include <vector>

class QLabel;
class QLineEdit;
class QCheckBox;
class QTreeWidget;
class QTreeWidgetItem;

namespace moat::ui {

class SyscallChecklist final : public QWidget {
    Q_OBJECT
public:
    enum Column { Name, Risk, Description, ColumnCount };

    explicit SyscallChecklist(QWidget* parent = nullptr);

    // The allow list as written, and the syscalls that have argument rules.
    void setEntries(const std::vector<std::string>& entries, const std::set<std::string>& ruled = {});
    const std::vector<std::string>& entries() const { return m_entries; }
    // As if the operator clicked the box of a syscall ("mkdir") or group ("@aio").
    void toggle(const std::string& name, bool checked);
    bool isChecked(const std::string& syscall) const;
    void setFilter(const QString& text);
    // Rows visible under the filter (syscall rows, counted once per group).
    int visibleSyscallRows() const;
    QTreeWidget* tree() const { return m_tree; }
    void setReadOnly(bool ro);

signals:
    void entriesChanged(const std::vector<std::string>& entries);

private:
    void build();
    void refresh();
    void applyFilter();
    void onItemChanged(QTreeWidgetItem* item, int column);

    QLineEdit* m_search;
    QCheckBox* m_riskyOnly;
    QLabel* m_summary;
    QTreeWidget* m_tree;
    std::vector<std::string> m_entries;
    std::set<std::string> m_ruled;
    bool m_updating = false;
    bool m_readOnly = false;
};

}  // namespace moat::ui
