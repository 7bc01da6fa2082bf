#pragma once
// The policy form's [[seccomp.rule]] table: one row per argument condition
// (rule, syscall, index, op, value, mask, action). Rows with the same rule
// number form one rule (all conditions must hold); its syscall and action are
// the first row's. A rule without conditions is one row with empty argument
// cells. Edits emit changed(); setRules() does not.
#include <QWidget>

#include <vector>

#include "models/policy_draft.h"

class QTableWidget;
class QPushButton;

namespace moat::ui {

class RuleTable final : public QWidget {
    Q_OBJECT
public:
    enum Column { RuleNo, Syscall, Index, Op, Value, Mask, Action, ColumnCount };

    explicit RuleTable(QWidget* parent = nullptr);
    void setRules(const std::vector<PolicyDraft::Rule>& rules);
    std::vector<PolicyDraft::Rule> rules() const;
    void setReadOnly(bool ro);
    QTableWidget* table() const { return m_table; }
    // Appends a rule (syscall allow, no conditions) or a condition to the rule of `row`.
    void addRule();
    void addCondition(int row);
    void removeRow(int row);

signals:
    void changed();

private:
    void appendRow(int ruleNo, const PolicyDraft::Rule& r, const PolicyDraft::Arg* a);

    QTableWidget* m_table;
    QPushButton* m_add;
    QPushButton* m_addCond;
    QPushButton* m_remove;
    bool m_filling = false;
};

}  // namespace moat::ui
