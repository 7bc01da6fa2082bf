#pragma once
// The policy editor's form: one input per policy key, each showing its
// documented default. setDraft() fills it without emitting changed(); every
// edit by the operator emits changed() so the TOML tab can follow.
#include <QWidget>

#include "models/policy_draft.h"

class QComboBox;
class QLineEdit;
class QPlainTextEdit;
class QLabel;
class QFormLayout;
class QGroupBox;
class QScrollArea;
class QSplitter;

namespace moat::ui {

class RuleTable;
class SyscallChecklist;

class PolicyForm final : public QWidget {
    Q_OBJECT
public:
    explicit PolicyForm(QWidget* parent = nullptr);

    void setDraft(const PolicyDraft& d);
    PolicyDraft draft() const;
    void setReadOnly(bool ro);
    SyscallChecklist* checklist() const { return m_checklist; }
    QSplitter* splitter() const { return m_split; }
    RuleTable* ruleTable() const { return m_ruleTable; }
    // Shows the syscall checklist (widening its pane if it was dragged small) and filters it ("" shows all).
    void showSyscalls(const QString& filter);

signals:
    void changed();

private:
    QLineEdit* addLine(QFormLayout* form, const QString& label, const QString& placeholder, const QString& tip);
    QPlainTextEdit* addList(QFormLayout* form, const QString& label, const QString& placeholder, const QString& tip);
    QComboBox* addCombo(QFormLayout* form, const QString& label, const QStringList& items, bool editable,
                        const QString& tip);

    void syncChecklist();

    bool m_filling = false;
    PolicyDraft m_loaded;  // keeps the "written even when empty" flags

    QLineEdit* m_name;
    QLineEdit* m_description;
    QComboBox* m_tier;
    QLineEdit* m_wall;
    QLineEdit* m_cpu;
    QLineEdit* m_memory;
    QLineEdit* m_pids;
    QLineEdit* m_fileSize;
    QLineEdit* m_openFiles;
    QLineEdit* m_stack;
    QLineEdit* m_core;
    QPlainTextEdit* m_readOnly;
    QPlainTextEdit* m_readWrite;
    QPlainTextEdit* m_tmpfs;
    QLineEdit* m_tmpfsSize;
    QComboBox* m_landlock;
    QComboBox* m_network;
    QLineEdit* m_envPass;
    QPlainTextEdit* m_envSet;
    QComboBox* m_defaultAction;
    QPlainTextEdit* m_allow;
    RuleTable* m_ruleTable;
    QSplitter* m_split;
    QLineEdit* m_sample;
    SyscallChecklist* m_checklist;
    QList<QWidget*> m_inputs;
};

}  // namespace moat::ui
