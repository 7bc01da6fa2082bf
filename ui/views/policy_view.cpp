#include "views/policy_view.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSplitter>
#include <QTableView>
#include <QTabWidget>
#include <QTextBlock>
#include <QVBoxLayout>

#include "models/status_color.h"
#include "backend/backend.h"
#include "models/denial_allow.h"
#include "models/policy_draft.h"
#include "models/policy_list_model.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "views/policy_form.h"
#include "views/policy_history.h"
#include "views/test_run_panel.h"

namespace moat::ui {

using nlohmann::json;
using moat::policy::Diagnostic;

namespace {
const char* kNewPolicy =
    "name = \"new-policy\"\n"
    "description = \"\"\n"
    "tier = \"seccomp\"\n\n"
    "[limits]\nwall_time = \"30s\"\nmemory = \"256MiB\"\npids = 64\n\n"
    "[filesystem]\nread_only = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc/ld.so.cache\"]\ntmpfs = []\n\n"
    "[seccomp]\ndefault_action = \"errno:EPERM\"\nallow = [\"@default\"]\n";

QListWidgetItem* diagItem(const Diagnostic& d) {
    auto* item = new QListWidgetItem(QString::fromStdString(d.str()));
    const bool err = d.severity == Diagnostic::Severity::Error;
    const bool warn = d.severity == Diagnostic::Severity::Warning;
    item->setForeground(err ? statusColor(Status::Bad) : warn ? statusColor(Status::Warn) : QColor());
    item->setData(Qt::UserRole, d.line);
    item->setData(Qt::UserRole + 1, d.column);
    return item;
}
}  // namespace

PolicyView::PolicyView(Backend* backend, QWidget* parent) : QWidget(parent), m_backend(backend) {
    m_model = new PolicyListModel(backend, this);
    m_list = new QTableView;
    m_list->setModel(m_model);
    m_list->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_list->setSelectionMode(QAbstractItemView::SingleSelection);
    m_list->verticalHeader()->hide();
    m_list->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    m_list->setAlternatingRowColors(true);
    // A narrow pane: the name gets the room; the store time is in the tooltip.
    m_list->horizontalHeader()->setStretchLastSection(false);
    m_list->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_list->horizontalHeader()->setSectionResizeMode(PolicyListModel::Name, QHeaderView::Stretch);
    m_list->hideColumn(PolicyListModel::Created);
    auto* newBtn = new QPushButton(tr("New"));
    auto* refreshBtn = new QPushButton(tr("Refresh"));
    auto* left = new QWidget;
    auto* ll = new QVBoxLayout(left);
    ll->setContentsMargins(0, 0, 0, 0);
    ll->addWidget(new QLabel(tr("<b>Stored policy versions</b>")));
    ll->addWidget(m_list, 1);
    auto* lb = new QHBoxLayout;
    lb->addWidget(newBtn);
    lb->addWidget(refreshBtn);
    lb->addStretch();
    ll->addLayout(lb);

    m_title = new QLabel;
    m_save = new QPushButton(tr("Save as new version"));
    m_save->setToolTip(tr("Validate and store in moatd (op policy_put); Ctrl+S"));
    auto* head = new QHBoxLayout;
    head->addWidget(m_title, 1);
    head->addWidget(m_save);

    m_form = new PolicyForm;
    m_text = new QPlainTextEdit;
    m_text->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_text->setLineWrapMode(QPlainTextEdit::NoWrap);
    m_tabs = new QTabWidget;
    m_tabs->addTab(m_form, tr("Form"));
    m_tabs->addTab(m_text, tr("TOML"));
    m_history = new PolicyHistory(backend, m_model);
    m_tabs->addTab(m_history, tr("History"));
    connect(m_history, &PolicyHistory::message, this, &PolicyView::message);

    m_diags = new QListWidget;
    m_lint = new QListWidget;
    // Lint's reasons are sentences: wrap them to the pane instead of hiding
    // their ends past a horizontal scroll bar. Adjust re-lays the items out
    // when the pane is resized, so the wrap follows the width.
    for (QListWidget* l : {m_diags, m_lint}) {
        l->setWordWrap(true);
        l->setResizeMode(QListView::Adjust);
        l->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
        l->setTextElideMode(Qt::ElideNone);
    }
    m_problemTabs = new QTabWidget;
    m_problemTabs->addTab(m_diags, tr("Problems"));
    m_problemTabs->addTab(m_lint, tr("Lint"));
    m_testRun = new TestRunPanel(backend, [this] { return m_text->toPlainText().toStdString(); });
    m_problemTabs->addTab(m_testRun, tr("Test run"));
    connect(m_testRun, &TestRunPanel::message, this, &PolicyView::message);

    auto* editorSplit = m_editorSplit = new QSplitter(Qt::Vertical);
    editorSplit->addWidget(m_tabs);
    editorSplit->addWidget(m_problemTabs);
    editorSplit->setStretchFactor(0, 4);
    editorSplit->setStretchFactor(1, 1);
    auto* right = new QWidget;
    auto* rl = new QVBoxLayout(right);
    rl->setContentsMargins(0, 0, 0, 0);
    rl->addLayout(head);
    rl->addWidget(editorSplit, 1);

    m_split = new QSplitter(Qt::Horizontal);
    m_split->setObjectName(QStringLiteral("policySplitter"));
    m_split->addWidget(left);
    m_split->addWidget(right);
    m_split->setStretchFactor(0, 1);
    m_split->setStretchFactor(1, 4);
    m_split->setSizes({fontMetrics().horizontalAdvance(QStringLiteral("M")) * 30, 1000});
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_split);

    m_validateTimer.setSingleShot(true);
    m_validateTimer.setInterval(250);
    m_formTimer.setSingleShot(true);
    m_formTimer.setInterval(150);
    connect(&m_validateTimer, &QTimer::timeout, this, &PolicyView::validateNow);
    connect(&m_formTimer, &QTimer::timeout, this, &PolicyView::regenerateFromForm);
    connect(m_text, &QPlainTextEdit::textChanged, this, [this] {
        if (!m_settingText) m_validateTimer.start();
    });
    connect(m_form, &PolicyForm::changed, this, [this] { m_formTimer.start(); });
    connect(newBtn, &QPushButton::clicked, this, &PolicyView::newPolicy);
    connect(refreshBtn, &QPushButton::clicked, this, &PolicyView::refresh);
    connect(m_save, &QPushButton::clicked, this, &PolicyView::save);
    connect(m_list->selectionModel(), &QItemSelectionModel::selectionChanged, this, &PolicyView::loadSelected);
    connect(m_model, &PolicyListModel::failed, this, [this](const QString& m) { emit message(m, 8000); });
    connect(m_model, &PolicyListModel::refreshed, this, [this] {
        if (m_pendingName.isEmpty()) return;
        const int row = m_pendingVersion ? m_model->rowOf(m_pendingName.toStdString(), m_pendingVersion)
                                         : m_model->latestRowOf(m_pendingName.toStdString());
        if (row >= 0) {
            m_pendingName.clear();
            const auto sel = m_list->selectionModel()->selectedRows();
            const bool already = !sel.isEmpty() && sel.first().row() == row;
            m_list->selectRow(row);
            m_list->scrollTo(m_model->index(row, 0));
            // Selecting the row that is already selected changes nothing, so
            // loadSelected() would not run and a pending allow would wait
            // forever: load it again (the operator asked for that version with
            // the denial allowed on top).
            if (already && !m_pendingAllowName.isEmpty()) loadSelected();
        }
    });
    auto jump = [this](QListWidgetItem* item) {
        const int line = item->data(Qt::UserRole).toInt();
        if (line <= 0) return;
        m_tabs->setCurrentWidget(m_text);
        QTextCursor c(m_text->document()->findBlockByNumber(line - 1));
        c.movePosition(QTextCursor::Right, QTextCursor::MoveAnchor, std::max(0, item->data(Qt::UserRole + 1).toInt() - 1));
        m_text->setTextCursor(c);
        m_text->setFocus();
    };
    connect(m_diags, &QListWidget::itemActivated, this, jump);
    connect(m_lint, &QListWidget::itemActivated, this, jump);
    connect(m_backend, &Backend::stateChanged, this, &PolicyView::updateActions);

    m_title->setWordWrap(true);
    newPolicy();
    updateActions();
}

QString PolicyView::tomlText() const { return m_text->toPlainText(); }

void PolicyView::setTomlText(const QString& text) {
    m_settingText = true;
    m_text->setPlainText(text);
    m_settingText = false;
    validateNow();
}

void PolicyView::regenerateFromForm() {
    // Form -> TOML: the text is regenerated from the form, then validated
    // without pushing the result back into the form the operator is typing in.
    m_formTimer.stop();
    m_settingText = true;
    m_text->setPlainText(QString::fromStdString(m_form->draft().toToml()));
    m_settingText = false;
    m_fromForm = true;
    validateNow();
    m_fromForm = false;
}

void PolicyView::allowDenial(const QString& name, int version, const QString& eventJson) {
    m_pendingAllowName = name;
    m_pendingAllowEvent = eventJson;
    showFormTab();
    selectPolicy(name, version);
}

void PolicyView::applyPendingAllow() {
    const auto event = nlohmann::json::parse(m_pendingAllowEvent.toStdString(), nullptr, false);
    m_pendingAllowName.clear();
    m_pendingAllowEvent.clear();
    const DenialAllow a = proposeAllow(event);
    if (a.syscall.empty()) return;
    m_form->setDraft(applyAllow(m_form->draft(), a));
    regenerateFromForm();
    m_form->showSyscalls(QString::fromStdString(a.syscall));
    m_titleNote = tr(" + <b>%1</b> — review, then <i>Save as new version</i>")
                      .arg(QString::fromStdString(a.summary).toHtmlEscaped());
    updateTitle();
    emit message(tr("Proposed: %1 (not saved yet)").arg(QString::fromStdString(a.summary)), 8000);
}

void PolicyView::showFormTab() { m_tabs->setCurrentWidget(m_form); }
void PolicyView::showTomlTab() { m_tabs->setCurrentWidget(m_text); }
void PolicyView::showTestRunTab() {
    m_problemTabs->setCurrentWidget(m_testRun);
    // The result needs room: give the lower pane at least 40% of the height.
    const QList<int> s = m_editorSplit->sizes();
    const int total = s.value(0) + s.value(1);
    if (total > 0 && s.value(1) < total * 2 / 5) m_editorSplit->setSizes({total * 3 / 5, total * 2 / 5});
}
void PolicyView::showHistoryTab() { m_tabs->setCurrentWidget(m_history); }

void PolicyView::refresh() { m_model->refresh(); }

void PolicyView::selectPolicy(const QString& name, int version) {
    m_pendingName = name;
    m_pendingVersion = version;
    refresh();
}

void PolicyView::newPolicy() {
    m_list->clearSelection();
    m_loadedLabel.clear();
    m_loadedName.clear();
    m_loadedSha.clear();
    m_titleNote.clear();
    m_baseText = QString::fromLatin1(kNewPolicy);
    setTomlText(m_baseText);
}

QString PolicyView::titleText() const { return m_title->text(); }

bool PolicyView::isModified() const { return m_text->toPlainText() != m_baseText; }

void PolicyView::updateTitle() {
    // The name comes from the text being edited, so a new policy is called
    // what the operator typed, and a loaded version whose name was changed
    // says under which name Save will store it.
    const QString name = QString::fromStdString(m_form->draft().name).trimmed();
    QString t;
    if (m_loadedLabel.isEmpty()) {
        t = tr("<b>%1</b> — new, not stored").arg(name.isEmpty() ? tr("New policy") : name.toHtmlEscaped());
    } else {
        t = tr("<b>%1</b> &nbsp; sha256 %2 — edits are saved as a new version")
                .arg(m_loadedLabel.toHtmlEscaped(), m_loadedSha.toHtmlEscaped());
        if (!name.isEmpty() && name != m_loadedName) t += tr(" of <b>%1</b>").arg(name.toHtmlEscaped());
    }
    t += m_titleNote;
    const bool modified = isModified();
    if (modified)
        t += QStringLiteral(" &nbsp;<span style='color:%1'><b>• %2</b></span>")
                 .arg(statusColor(Status::Warn).name(), tr("modified, not saved"));
    m_title->setText(t);
    if (modified != m_lastModified) {
        m_lastModified = modified;
        emit modifiedChanged(modified);
    }
}

void PolicyView::loadSelected() {
    const auto rows = m_list->selectionModel()->selectedRows();
    if (rows.isEmpty()) return;
    const PolicyVersionRow* p = m_model->policy(rows.first().row());
    if (!p) return;
    m_history->showVersion(p->id);
    const uint64_t gen = ++m_loadGeneration;
    const QString label = QStringLiteral("%1 v%2").arg(QString::fromStdString(p->name)).arg(p->version);
    m_title->setText(tr("<b>%1</b> — loading…").arg(label.toHtmlEscaped()));
    m_backend->request({{"op", "policy"}, {"id", p->id}}, this, [this, gen, label](const json& a) {
        if (gen != m_loadGeneration) return;
        if (!a.value("ok", false)) {
            m_title->setText(tr("<b>%1</b> — could not load: %2").arg(label.toHtmlEscaped(), Backend::errorText(a).toHtmlEscaped()));
            return;
        }
        m_loadedLabel = label;
        m_loadedName = QString::fromStdString(a.value("name", std::string()));
        m_loadedSha = QString::fromStdString(a.value("sha256", std::string()).substr(0, 12));
        m_titleNote.clear();
        m_baseText = QString::fromStdString(a.value("toml", std::string()));
        setTomlText(m_baseText);
        if (!m_pendingAllowName.isEmpty() && label.startsWith(m_pendingAllowName + u' ')) applyPendingAllow();
    });
}

void PolicyView::validateNow() {
    m_validateTimer.stop();
    const std::string text = m_text->toPlainText().toStdString();
    auto parsed = moat::policy::parse_policy(text, "policy.toml");
    m_diags->clear();
    m_lint->clear();
    m_errors = 0;
    std::vector<Diagnostic> all = parsed.diagnostics;
    for (const auto& d : parsed.diagnostics) {
        m_diags->addItem(diagItem(d));
        m_errors += d.severity == Diagnostic::Severity::Error;
    }
    int lintErrors = 0, lintCount = 0;
    if (parsed.policy) {
        for (const auto& d : moat::policy::lint(*parsed.policy)) {
            ++lintCount;
            m_lint->addItem(diagItem(d));
            lintErrors += d.severity == Diagnostic::Severity::Error;
            all.push_back(d);
        }
        if (!m_fromForm) m_form->setDraft(PolicyDraft::fromPolicy(*parsed.policy));
    }
    m_errors += lintErrors;
    m_valid = parsed.policy && lintErrors == 0;
    if (m_diags->count() == 0) m_diags->addItem(tr("No problems: the policy parses and validates."));
    if (m_lint->count() == 0 && parsed.policy) m_lint->addItem(tr("Lint has nothing to say."));
    m_problemTabs->setTabText(0, tr("Problems (%1)").arg(parsed.diagnostics.size()));
    m_problemTabs->setTabText(1, parsed.policy ? tr("Lint (%1)").arg(lintCount) : tr("Lint (needs a valid policy)"));
    markLines(all);
    updateActions();
    updateTitle();
}

void PolicyView::markLines(const std::vector<Diagnostic>& diags) {
    QList<QTextEdit::ExtraSelection> marks;
    for (const auto& d : diags) {
        if (d.line <= 0 || d.severity == Diagnostic::Severity::Note) continue;
        QTextEdit::ExtraSelection sel;
        const bool err = d.severity == Diagnostic::Severity::Error;
        sel.format.setBackground(err ? QColor(255, 0, 0, 50) : QColor(255, 170, 0, 45));
        sel.format.setProperty(QTextFormat::FullWidthSelection, true);
        sel.format.setToolTip(QString::fromStdString(d.message));
        sel.cursor = QTextCursor(m_text->document()->findBlockByNumber(d.line - 1));
        sel.cursor.clearSelection();
        marks << sel;
    }
    m_text->setExtraSelections(marks);
}

void PolicyView::updateActions() {
    m_save->setEnabled(m_valid && m_backend->canWrite());
    m_form->setReadOnly(false);
    if (!m_backend->canWrite())
        m_save->setToolTip(tr("Saving needs a connection to moatd with the admin role"));
    else
        m_save->setToolTip(tr("Validate and store in moatd (op policy_put); Ctrl+S"));
}

void PolicyView::save() {
    if (!m_valid) {
        emit message(tr("The policy has errors; see Problems and Lint"), 8000);
        return;
    }
    if (!m_backend->canWrite()) {
        emit message(tr("Saving needs a connection to moatd with the admin role"), 8000);
        return;
    }
    m_save->setEnabled(false);
    m_backend->request({{"op", "policy_put"}, {"policy_toml", m_text->toPlainText().toStdString()},
                        {"policy_source", "moat-console"}},
                       this, [this](const json& a) {
                           updateActions();
                           if (!a.value("ok", false)) {
                               emit message(tr("Not saved: %1").arg(Backend::errorText(a)), 15000);
                               return;
                           }
                           const QString name = QString::fromStdString(a.value("name", std::string()));
                           const int version = a.value("version", 0);
                           emit message(tr("Saved %1 v%2").arg(name).arg(version), 8000);
                           selectPolicy(name, version);
                       });
}

}  // namespace moat::ui
