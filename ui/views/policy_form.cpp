#include "views/policy_form.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QScrollArea>
#include <QSplitter>
#include <QVBoxLayout>

#include <set>
#include <tuple>

#include "moat/common/units.h"
#include "views/rule_table.h"
#include "views/syscall_checklist.h"

namespace moat::ui {

namespace {

QStringList toList(const std::vector<std::string>& v) {
    QStringList l;
    for (const auto& s : v) l << QString::fromStdString(s);
    return l;
}

std::vector<std::string> linesOf(const QPlainTextEdit* e) {
    std::vector<std::string> out;
    for (const QString& line : e->toPlainText().split(u'\n')) {
        const QString t = line.trimmed();
        if (!t.isEmpty()) out.push_back(t.toStdString());
    }
    return out;
}

std::string text(const QLineEdit* e) { return e->text().trimmed().toStdString(); }
std::string text(const QComboBox* c) { return c->currentText().trimmed().toStdString(); }

}  // namespace

PolicyForm::PolicyForm(QWidget* parent) : QWidget(parent) {
    auto* content = new QWidget;
    auto* grid = new QGridLayout(content);

    auto group = [&](const QString& title, int row, int col, int rowSpan = 1) {
        auto* g = new QGroupBox(title);
        auto* f = new QFormLayout(g);
        f->setFieldGrowthPolicy(QFormLayout::ExpandingFieldsGrow);
        f->setFormAlignment(Qt::AlignLeft | Qt::AlignTop);
        grid->addWidget(g, row, col, rowSpan, 1);
        return f;
    };

    auto* general = group(tr("General"), 0, 0);
    m_name = addLine(general, tr("name"), tr("required"), tr("1 to 64 characters from A-Z a-z 0-9 . _ -"));
    m_description = addLine(general, tr("description"), QString(), tr("Free text for operators."));
    m_tier = addCombo(general, tr("tier"), {QStringLiteral("seccomp"), QStringLiteral("container"), QStringLiteral("vm")},
                      false, tr("How the job is contained (default seccomp): seccomp (filter and Landlock on the host kernel), "
                         "container (namespaces and a root of its own), vm (a QEMU microvm guest per job; "
                         "its root image holds exactly read_only, so list narrow paths)."));
    m_network = addCombo(general, tr("network.mode"),
                         {QStringLiteral("none"), QStringLiteral("loopback"), QStringLiteral("host"), QStringLiteral("engine")}, false,
                         tr("none (default): no network; loopback: only lo; host: lint warns; engine: the network "
                            "namespace a container engine made, through moat-runtime (container tier)."));
    m_sample = addLine(general, tr("monitor.sample_interval"), QStringLiteral("1s"), tr("Resource sampling period, 50ms … 1h."));

    auto* limits = group(tr("Limits"), 1, 0);
    m_wall = addLine(limits, tr("wall_time"), QStringLiteral("60s"), tr("Duration (ms, s, m, h); the whole job's real time."));
    m_cpu = addLine(limits, tr("cpu_time"), QStringLiteral("30s"), tr("Duration; CPU time of all the job's processes."));
    m_memory = addLine(limits, tr("memory"), QStringLiteral("512MiB"), tr("Size (B, KiB, MiB, GiB); cgroup memory limit, ≥ 1MiB."));
    m_pids = addLine(limits, tr("pids"), QStringLiteral("128"), tr("Integer; processes and threads."));
    m_fileSize = addLine(limits, tr("file_size"), QStringLiteral("1GiB"), tr("Size; RLIMIT_FSIZE."));
    m_openFiles = addLine(limits, tr("open_files"), QStringLiteral("1024"), tr("Integer; RLIMIT_NOFILE."));
    m_stack = addLine(limits, tr("stack"), QStringLiteral("8MiB"), tr("Size; RLIMIT_STACK, 64KiB … 4GiB."));
    m_core = addLine(limits, tr("core"), QStringLiteral("0B"), tr("Size; RLIMIT_CORE (0: no core dumps)."));

    auto* fs = group(tr("Filesystem (one path per line)"), 0, 1, 2);
    m_readOnly = addList(fs, tr("read_only"), QStringLiteral("/usr\n/lib\n/lib64\n/bin\n/sbin\n/etc/ld.so.cache"),
                         tr("Visible, read-only. In the vm tier the guest's root image holds exactly these paths."));
    m_readWrite = addList(fs, tr("read_write"), QString(), tr("Visible and writable."));
    m_tmpfs = addList(fs, tr("tmpfs"), QStringLiteral("/tmp"), tr("Fresh tmpfs per job (container and vm tiers)."));
    m_tmpfsSize = addLine(fs, tr("tmpfs_size"), QStringLiteral("64MiB"), tr("Size of each tmpfs mount."));
    m_landlock = addCombo(fs, tr("landlock"),
                          {QStringLiteral("required"), QStringLiteral("best-effort"), QStringLiteral("off")}, false,
                          tr("Seccomp tier: how read_only/read_write are enforced."));
    m_envPass = addLine(fs, tr("environment.pass"), QStringLiteral("LANG, LC_ALL, TZ"),
                        tr("Names copied from the client's environment, comma-separated."));
    m_envSet = addList(fs, tr("environment.set"), QStringLiteral("PATH=/usr/local/bin:/usr/bin:/bin"),
                       tr("NAME=value, one per line."));

    auto* sc = group(tr("Seccomp"), 0, 2, 2);
    m_defaultAction = addCombo(sc, tr("default_action"),
                               {QStringLiteral("errno:EPERM"), QStringLiteral("errno:ENOSYS"), QStringLiteral("errno:EACCES"),
                                QStringLiteral("kill-process"), QStringLiteral("kill-thread"), QStringLiteral("trap"),
                                QStringLiteral("log")},
                               true, tr("What happens to every syscall the policy does not allow."));
    m_allow = addList(sc, tr("allow"), QStringLiteral("@default"), tr("Syscall names and @groups, one per line."));

    m_allow->setMaximumHeight(QWIDGETSIZE_MAX);  // fills the Seccomp box
    auto* checks = new QGroupBox(tr("Syscalls: check to allow (edits the allow list above)"));
    auto* cl = new QVBoxLayout(checks);
    m_checklist = new SyscallChecklist;
    cl->addWidget(m_checklist);
    connect(m_checklist, &SyscallChecklist::entriesChanged, this, [this](const std::vector<std::string>& entries) {
        m_allow->setPlainText(toList(entries).join(u'\n'));  // textChanged -> changed()
    });
    connect(m_allow, &QPlainTextEdit::textChanged, this, &PolicyForm::syncChecklist);
    auto* rulesBox = new QGroupBox(tr("Argument rules ([[seccomp.rule]]): a syscall with rules is decided by them"));
    auto* rl = new QVBoxLayout(rulesBox);
    m_ruleTable = new RuleTable;
    rl->addWidget(m_ruleTable);
    grid->addWidget(rulesBox, 2, 0, 1, 3);
    connect(m_ruleTable, &RuleTable::changed, this, [this] {
        syncChecklist();
        if (!m_filling) emit changed();
    });

    grid->setColumnStretch(0, 3);
    grid->setColumnStretch(1, 3);
    grid->setColumnStretch(2, 3);
    grid->setRowStretch(3, 1);

    auto* scroll = new QScrollArea;
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setWidget(content);
    // The checklist is a list of some 370 rows: inside the scrolling form it
    // got a fixed slice of the page. In a pane of its own below the fields it
    // scrolls by itself and takes whatever height the splitter gives it.
    m_split = new QSplitter(Qt::Vertical);
    m_split->setObjectName(QStringLiteral("policyFormSplitter"));
    m_split->setChildrenCollapsible(false);
    m_split->addWidget(scroll);
    m_split->addWidget(checks);
    m_split->setStretchFactor(0, 2);
    m_split->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_split);
}

QLineEdit* PolicyForm::addLine(QFormLayout* form, const QString& label, const QString& placeholder, const QString& tip) {
    auto* e = new QLineEdit;
    e->setPlaceholderText(placeholder.isEmpty() ? QString() : tr("default: %1").arg(placeholder));
    e->setToolTip(tip);
    form->addRow(label, e);
    connect(e, &QLineEdit::textEdited, this, [this] {
        if (!m_filling) emit changed();
    });
    m_inputs << e;
    return e;
}

QPlainTextEdit* PolicyForm::addList(QFormLayout* form, const QString& label, const QString& placeholder, const QString& tip) {
    auto* e = new QPlainTextEdit;
    e->setPlaceholderText(placeholder.isEmpty() ? tr("(empty)") : tr("default:\n%1").arg(placeholder));
    e->setToolTip(tip);
    e->setTabChangesFocus(true);
    e->setMinimumHeight(fontMetrics().height() * 3);
    e->setMaximumHeight(fontMetrics().height() * 6);
    e->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    form->addRow(label, e);
    connect(e, &QPlainTextEdit::textChanged, this, [this] {
        if (!m_filling) emit changed();
    });
    m_inputs << e;
    return e;
}

QComboBox* PolicyForm::addCombo(QFormLayout* form, const QString& label, const QStringList& items, bool editable,
                                const QString& tip) {
    auto* c = new QComboBox;
    c->addItems(items);
    c->setEditable(editable);
    c->setToolTip(tip);
    form->addRow(label, c);
    connect(c, &QComboBox::currentTextChanged, this, [this] {
        if (!m_filling) emit changed();
    });
    m_inputs << c;
    return c;
}

void PolicyForm::setReadOnly(bool ro) {
    for (QWidget* w : m_inputs) {
        if (auto* e = qobject_cast<QLineEdit*>(w)) e->setReadOnly(ro);
        else if (auto* p = qobject_cast<QPlainTextEdit*>(w)) p->setReadOnly(ro);
        else w->setEnabled(!ro);
    }
    m_checklist->setReadOnly(ro);
    m_ruleTable->setReadOnly(ro);
}

void PolicyForm::setDraft(const PolicyDraft& d) {
    m_filling = true;
    m_loaded = d;
    auto setLine = [](QLineEdit* e, const std::string& v) {
        const QString q = QString::fromStdString(v);
        if (e->text() != q) e->setText(q);
    };
    auto setList = [](QPlainTextEdit* e, const QStringList& l) {
        const QString q = l.join(u'\n');
        if (e->toPlainText() != q) e->setPlainText(q);
    };
    auto setCombo = [](QComboBox* c, const std::string& v) {
        const QString q = QString::fromStdString(v);
        int i = c->findText(q);
        if (i < 0 && !q.isEmpty()) {
            c->addItem(q);
            i = c->count() - 1;
        }
        if (c->isEditable()) c->setEditText(q);
        else if (i >= 0) c->setCurrentIndex(i);
    };
    setLine(m_name, d.name);
    setLine(m_description, d.description);
    setCombo(m_tier, d.tier.empty() ? "seccomp" : d.tier);
    setCombo(m_network, d.network.empty() ? "none" : d.network);
    setLine(m_sample, d.sampleInterval);
    setLine(m_wall, d.wallTime);
    setLine(m_cpu, d.cpuTime);
    setLine(m_memory, d.memory);
    setLine(m_pids, d.pids);
    setLine(m_fileSize, d.fileSize);
    setLine(m_openFiles, d.openFiles);
    setLine(m_stack, d.stack);
    setLine(m_core, d.core);
    // A list written empty means "nothing", not "the default": say so.
    for (auto [edit, set, def] : {std::tuple{m_readOnly, d.readOnlySet, "/usr\n/lib\n/lib64\n/bin\n/sbin\n/etc/ld.so.cache"},
                                  std::tuple{m_readWrite, d.readWriteSet, ""}, std::tuple{m_tmpfs, d.tmpfsSet, "/tmp"},
                                  std::tuple{m_envSet, d.envSetSet, "PATH=/usr/local/bin:/usr/bin:/bin"},
                                  std::tuple{m_allow, d.allowSet, "@default"}}) {
        edit->setPlaceholderText(set || !*def ? tr("(empty list)") : tr("default:\n%1").arg(QLatin1String(def)));
    }
    setList(m_readOnly, toList(d.readOnly));
    setList(m_readWrite, toList(d.readWrite));
    setList(m_tmpfs, toList(d.tmpfs));
    setLine(m_tmpfsSize, d.tmpfsSize);
    setCombo(m_landlock, d.landlock.empty() ? "required" : d.landlock);
    setLine(m_envPass, toList(d.envPass).join(QStringLiteral(", ")).toStdString());
    QStringList env;
    for (const auto& [k, v] : d.envSet) env << QString::fromStdString(k + "=" + v);
    setList(m_envSet, env);
    setCombo(m_defaultAction, d.defaultAction.empty() ? "errno:EPERM" : d.defaultAction);
    setList(m_allow, toList(d.allow));
    m_ruleTable->setRules(d.rules);
    syncChecklist();
    m_filling = false;
}

void PolicyForm::showSyscalls(const QString& filter) {
    m_checklist->setFilter(filter);
    // Give the checklist at least half of the form when it was dragged small.
    const QList<int> sz = m_split->sizes();
    const int total = sz.value(0) + sz.value(1);
    if (total > 0 && sz.value(1) < total / 2) m_split->setSizes({total / 2, total - total / 2});
}

void PolicyForm::syncChecklist() {
    std::set<std::string> ruled;
    for (const auto& r : m_ruleTable->rules()) ruled.insert(r.syscall);
    m_checklist->setEntries(linesOf(m_allow), ruled);
}

PolicyDraft PolicyForm::draft() const {
    PolicyDraft d;
    d.name = text(m_name);
    d.description = m_description->text().toStdString();
    d.tier = text(m_tier);
    d.network = text(m_network);
    d.sampleInterval = text(m_sample);
    d.wallTime = text(m_wall);
    d.cpuTime = text(m_cpu);
    d.memory = text(m_memory);
    d.pids = text(m_pids);
    d.fileSize = text(m_fileSize);
    d.openFiles = text(m_openFiles);
    d.stack = text(m_stack);
    d.core = text(m_core);
    d.readOnly = linesOf(m_readOnly);
    d.readWrite = linesOf(m_readWrite);
    d.tmpfs = linesOf(m_tmpfs);
    // A list the loaded policy wrote (even empty) stays written: an empty
    // read_only means "nothing", not "the default".
    d.readOnlySet = m_loaded.readOnlySet || !d.readOnly.empty();
    d.readWriteSet = m_loaded.readWriteSet || !d.readWrite.empty();
    d.tmpfsSet = m_loaded.tmpfsSet || !d.tmpfs.empty();
    d.tmpfsSize = text(m_tmpfsSize);
    d.landlock = text(m_landlock);
    for (const QString& p : m_envPass->text().split(u',', Qt::SkipEmptyParts))
        if (!p.trimmed().isEmpty()) d.envPass.push_back(p.trimmed().toStdString());
    d.envPassSet = m_loaded.envPassSet || !d.envPass.empty();
    for (const auto& line : linesOf(m_envSet)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) d.envSet.emplace_back(line, "");
        else d.envSet.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    }
    d.envSetSet = m_loaded.envSetSet || !d.envSet.empty();
    d.defaultAction = text(m_defaultAction);
    d.allow = linesOf(m_allow);
    d.allowSet = m_loaded.allowSet || !d.allow.empty();
    d.rules = m_ruleTable->rules();
    return d;
}

}  // namespace moat::ui
