#pragma once
// The policy editor's "Test run" tab: a command line, Run / Cancel, and the
// result inline — job id, exit code or termination cause, the captured
// stdout/stderr, and the job's denials (op `events`, kind denial) once moatd
// sends the `finished` answer. The run uses its own connection (TestRun).
// moatd stores the policy text as a version when it runs it, like any `run`.
#include <QStringList>
#include <QWidget>

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

class QLabel;
class QLineEdit;
class QPushButton;
class QTextBrowser;

namespace moat::ui {

class Backend;
class TestRun;

class TestRunPanel final : public QWidget {
    Q_OBJECT
public:
    TestRunPanel(Backend* backend, std::function<std::string()> policyText, QWidget* parent = nullptr);

    void setSocketPath(const QString& path);
    void setCommand(const QString& command);
    void run();
    void cancel();
    bool running() const;
    QString resultText() const;  // the result pane as plain text
    // The command's words as it will run them (empty when it does not parse).
    QStringList argv() const;
    QString commandError() const { return m_parseError; }
    QString statusText() const;
    QLabel* argvLabel() const { return m_argvLabel; }
    QTextBrowser* result() const { return m_result; }

signals:
    void message(const QString& text, int timeoutMs);
    void done();  // the result (and its denials) is shown

private:
    void render();
    void parseCommand();
    void updateButtons();

    Backend* m_backend;
    std::function<std::string()> m_policyText;
    QString m_socket;
    TestRun* m_run;
    QLineEdit* m_command;
    QPushButton* m_runBtn;
    QPushButton* m_cancelBtn;
    QLabel* m_argvLabel;
    QLabel* m_status;
    QTextBrowser* m_result;
    nlohmann::json m_job;      // the finished job, or null
    nlohmann::json m_denials;  // array, or null while loading
    QString m_error;
    QStringList m_argv;        // what the last run ran
    QStringList m_parsed;      // the command field's words now
    QString m_parseError;      // why the command field does not parse, or empty
};

}  // namespace moat::ui
