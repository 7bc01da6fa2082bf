#include "views/test_run_panel.h"

#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTextBrowser>
#include <QVBoxLayout>

#include "models/status_color.h"
#include "backend/backend.h"
#include "backend/test_run.h"
#include "models/shell_words.h"
#include "models/syscall_args.h"

namespace moat::ui {

using nlohmann::json;

namespace {
QString esc(const std::string& s) { return QString::fromStdString(s).toHtmlEscaped(); }
QString esc(const QByteArray& s) { return QString::fromUtf8(s).toHtmlEscaped(); }
}  // namespace

TestRunPanel::TestRunPanel(Backend* backend, std::function<std::string()> policyText, QWidget* parent)
    : QWidget(parent), m_backend(backend), m_policyText(std::move(policyText)), m_run(new TestRun(this)) {
    m_command = new QLineEdit(QStringLiteral("/bin/sh -c 'id; mkdir /tmp/moat-test-run'"));
    m_command->setObjectName(QStringLiteral("testRunCommand"));
    m_command->setToolTip(tr("Command and arguments, shell-style quoting; run under the edited policy with stdin from /dev/null"));
    m_command->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_runBtn = new QPushButton(tr("Test run"));
    m_runBtn->setToolTip(tr("Run the command under this policy text (op run, on a separate connection); Ctrl+R"));
    m_cancelBtn = new QPushButton(tr("Cancel"));
    m_argvLabel = new QLabel;
    m_argvLabel->setObjectName(QStringLiteral("testRunArgv"));
    m_argvLabel->setTextFormat(Qt::RichText);
    m_argvLabel->setWordWrap(true);
    m_argvLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_status = new QLabel;
    m_status->setWordWrap(true);
    m_result = new QTextBrowser;
    m_result->setPlaceholderText(tr("Run a command to see its result, output and denials here. "
                                    "moatd stores the policy text as a version when it runs it."));
    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Command:")));
    bar->addWidget(m_command, 1);
    bar->addWidget(m_runBtn);
    bar->addWidget(m_cancelBtn);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(bar);
    layout->addWidget(m_argvLabel);
    layout->addWidget(m_status);
    layout->addWidget(m_result, 1);

    connect(m_runBtn, &QPushButton::clicked, this, &TestRunPanel::run);
    connect(m_command, &QLineEdit::returnPressed, this, &TestRunPanel::run);
    connect(m_command, &QLineEdit::textChanged, this, &TestRunPanel::parseCommand);
    connect(m_cancelBtn, &QPushButton::clicked, this, &TestRunPanel::cancel);
    connect(m_run, &TestRun::started, this, [this](qint64 job) {
        m_status->setText(tr("Job %1 running…").arg(job));
    });
    connect(m_run, &TestRun::outputChanged, this, &TestRunPanel::render);
    connect(m_run, &TestRun::failed, this, [this](const QString& why) {
        m_error = why;
        m_status->setText(tr("Test run failed"));
        render();
        updateButtons();
        emit done();
    });
    connect(m_run, &TestRun::finished, this, [this](const json& job) {
        m_job = job;
        m_denials = json();
        m_status->setText(tr("Job %1 finished; loading its denials…").arg(m_run->job()));
        render();
        updateButtons();
        m_backend->request({{"op", "events"}, {"job", m_run->job()}, {"kind", "denial"}, {"limit", 200}}, this,
                           [this](const json& a) {
                               m_denials = a.value("ok", false) ? a.value("events", json::array()) : json::array();
                               if (!a.value("ok", false)) m_error = tr("could not load denials: %1").arg(Backend::errorText(a));
                               m_status->setText(tr("Job %1 finished").arg(m_run->job()));
                               render();
                               emit done();
                           });
    });
    parseCommand();
    updateButtons();
}

void TestRunPanel::parseCommand() {
    const QByteArray text = m_command->text().toUtf8();
    auto words = splitShellWords(std::string_view(text.constData(), size_t(text.size())));
    m_parsed.clear();
    m_parseError.clear();
    if (!words) {
        // The offset is in UTF-8 bytes; the operator counts characters.
        const qsizetype column = QString::fromUtf8(text.left(qsizetype(words.error().offset))).size() + 1;
        m_parseError = tr("%1 (column %2)").arg(QString::fromStdString(words.error().message)).arg(column);
        m_argvLabel->setText(QStringLiteral("<span style='color:%1'>%2</span>")
                                 .arg(statusColor(Status::Bad).name(), m_parseError.toHtmlEscaped()));
    } else {
        for (const auto& w : *words) m_parsed << QString::fromStdString(w);
        // Each word in its own box, so spaces inside a word and empty words show.
        QStringList shown;
        for (const QString& w : m_parsed)
            shown << QStringLiteral("<tt>[%1]</tt>").arg(w.toHtmlEscaped().replace(u' ', QStringLiteral("&nbsp;")));
        m_argvLabel->setText(m_parsed.isEmpty() ? tr("argv: (empty)")
                                                : tr("argv (%1): %2").arg(m_parsed.size()).arg(shown.join(u' ')));
    }
    updateButtons();
}

QStringList TestRunPanel::argv() const { return m_parsed; }

void TestRunPanel::setSocketPath(const QString& path) {
    m_socket = path;
    updateButtons();
}

void TestRunPanel::setCommand(const QString& command) { m_command->setText(command); }

bool TestRunPanel::running() const { return m_run->running(); }

void TestRunPanel::updateButtons() {
    m_runBtn->setEnabled(!m_socket.isEmpty() && !m_run->running() && m_parseError.isEmpty() && !m_parsed.isEmpty());
    m_cancelBtn->setEnabled(m_run->running());
    // The note is the status line's text only while there is no socket: the
    // panel is built before the main window hands it one.
    const QString note = tr("Test runs need a connection to moatd (not an offline database).");
    if (m_socket.isEmpty()) m_status->setText(note);
    else if (m_status->text() == note) m_status->clear();
}

void TestRunPanel::run() {
    if (m_run->running() || m_socket.isEmpty()) return;
    if (!m_parseError.isEmpty()) {
        emit message(tr("Not run: %1").arg(m_parseError), 8000);
        return;
    }
    if (m_parsed.isEmpty()) {
        emit message(tr("Type a command to run"), 5000);
        return;
    }
    m_argv = m_parsed;
    m_job = json();
    m_denials = json();
    m_error.clear();
    m_status->setText(tr("Starting…"));
    m_run->start(m_socket, m_policyText(), m_argv);
    render();
    updateButtons();
}

void TestRunPanel::cancel() { m_run->cancel(); }

void TestRunPanel::render() {
    QString h;
    QStringList quoted;
    for (const QString& w : m_argv) quoted << QStringLiteral("[%1]").arg(w.toHtmlEscaped());
    h += QStringLiteral("<p><b>argv</b> <tt>%1</tt></p>").arg(quoted.join(u' '));
    if (!m_error.isEmpty())
        h += QStringLiteral("<p style='color:%1'><b>%2</b></p>").arg(statusColor(Status::Bad).name(), m_error.toHtmlEscaped().replace(u'\n', QStringLiteral("<br>")));
    if (m_job.is_object()) {
        const json term = m_job.value("termination", json::object());
        const std::string cause = term.value("cause", json()).is_string() ? term["cause"].get<std::string>() : "";
        const std::string detail = term.value("detail", json()).is_string() ? term["detail"].get<std::string>() : "";
        const bool clean = cause == "exited" && m_job.value("exit_code", json()) == json(0);
        h += QStringLiteral("<p><b>Job %1:</b> <span style='color:%2'><b>%3</b></span> %4</p>")
                 .arg(m_job.value("id", int64_t(0)))
                 .arg(statusColor(clean ? Status::Good : Status::Bad).name())
                 .arg(esc(cause.empty() ? std::string("finished") : cause), esc(detail));
    }
    auto stream = [&](const char* title, const QByteArray& data) {
        if (data.isEmpty()) return;
        h += QStringLiteral("<p><b>%1</b></p><pre>%2</pre>").arg(QLatin1String(title), esc(data));
    };
    stream("stdout", m_run->out());
    stream("stderr", m_run->err());
    if (m_denials.is_array()) {
        if (m_denials.empty()) {
            h += QStringLiteral("<p><b>Denials:</b> none</p>");
        } else {
            h += QStringLiteral("<p><b>Denials (%1)</b></p><table cellspacing='4'>"
                                "<tr><th align='left'>syscall</th><th align='left'>action</th>"
                                "<th align='left'>path / address</th><th align='left'>count</th></tr>")
                     .arg(m_denials.size());
            for (const auto& e : m_denials) {
                const std::string action = e.value("action", std::string());
                const std::string errnoDesc = errnoText(action);
                h += QStringLiteral("<tr><td><tt>%1</tt></td><td>%2</td><td><tt>%3</tt></td><td>%4</td></tr>")
                         .arg(esc(e.value("syscall", std::string("?"))),
                              esc(errnoDesc.empty() ? action : errnoDesc),
                              e.value("decoded", json()).is_string() ? esc(e["decoded"].get<std::string>()) : QString(),
                              QString::number(e.value("count", 1)));
            }
            h += QStringLiteral("</table>");
        }
    } else if (m_job.is_object()) {
        h += QStringLiteral("<p><i>loading denials…</i></p>");
    }
    m_result->setHtml(h);
}

QString TestRunPanel::resultText() const { return m_result->toPlainText(); }

QString TestRunPanel::statusText() const { return m_status->text(); }

}  // namespace moat::ui
