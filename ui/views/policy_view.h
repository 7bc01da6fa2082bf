#pragma once
// Policy authoring: stored versions on the left; on the right the editor with a
// form and a TOML tab kept in sync both ways, validated live (parse_policy's
// FILE:LINE:COL diagnostics, the offending line marked) and linted. Save stores
// a new version in moatd (op policy_put).
#include <QTimer>
#include <QWidget>

#include <optional>

#include "moat/policy/diagnostic.h"

class QLabel;
class QListWidget;
class QPlainTextEdit;
class QPushButton;
class QSplitter;
class QTableView;
class QTabWidget;

namespace moat::ui {

class Backend;
class PolicyForm;
class PolicyHistory;
class TestRunPanel;
class PolicyListModel;

class PolicyView final : public QWidget {
    Q_OBJECT
public:
    PolicyView(Backend* backend, QWidget* parent = nullptr);

    PolicyListModel* model() const { return m_model; }
    PolicyForm* form() const { return m_form; }
    QPlainTextEdit* editor() const { return m_text; }
    QSplitter* splitter() const { return m_split; }
    QString tomlText() const;
    void setTomlText(const QString& text);
    int errorCount() const { return m_errors; }
    void refresh();
    // Selects NAME vVERSION (latest when version is 0) once the list has it.
    void selectPolicy(const QString& name, int version = 0);
    void newPolicy();
    void save();
    void showFormTab();
    void showTomlTab();
    void showHistoryTab();
    void showTestRunTab();
    TestRunPanel* testRun() const { return m_testRun; }
    // Opens NAME vVERSION with the denial (event JSON) allowed, for review.
    void allowDenial(const QString& name, int version, const QString& eventJson);
    PolicyHistory* history() const { return m_history; }
    QListWidget* lintList() const { return m_lint; }
    // The text differs from the version loaded (or the new-policy template).
    bool isModified() const;
    QString titleText() const;

signals:
    void message(const QString& text, int timeoutMs);
    void modifiedChanged(bool modified);

private:
    void loadSelected();
    void validateNow();
    void regenerateFromForm();
    void applyPendingAllow();
    void formChanged();
    void markLines(const std::vector<moat::policy::Diagnostic>& diags);
    void updateActions();
    void updateTitle();

    Backend* m_backend;
    PolicyListModel* m_model;
    QTableView* m_list;
    QLabel* m_title;
    QTabWidget* m_tabs;
    PolicyForm* m_form;
    QPlainTextEdit* m_text;
    PolicyHistory* m_history;
    TestRunPanel* m_testRun;
    QTabWidget* m_problemTabs;
    QSplitter* m_editorSplit;
    QListWidget* m_diags;
    QListWidget* m_lint;
    QPushButton* m_save;
    QSplitter* m_split;
    QTimer m_validateTimer;
    QTimer m_formTimer;
    bool m_settingText = false;
    bool m_fromForm = false;
    int m_errors = 0;
    bool m_valid = false;
    QString m_pendingName;
    int m_pendingVersion = 0;
    QString m_pendingAllowName;
    QString m_pendingAllowEvent;
    uint64_t m_loadGeneration = 0;
    QString m_loadedLabel;  // "web v3", empty for a new policy
    QString m_loadedName;
    QString m_loadedSha;
    QString m_titleNote;    // e.g. the proposed allow
    QString m_baseText;     // the text as loaded, to tell whether it was edited
    bool m_lastModified = false;
};

}  // namespace moat::ui
