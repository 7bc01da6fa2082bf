#include "views/syscall_checklist.h"

#include <QCheckBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QStyle>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>

#include "models/allow_list.h"
#include "moat/policy/lint.h"
#include "moat/policy/syscalls.h"

namespace moat::ui {

namespace {
constexpr int kNameRole = Qt::UserRole;
constexpr int kGroupRole = Qt::UserRole + 1;
const QString kOther = QStringLiteral("(in no group)");
}  // namespace

SyscallChecklist::SyscallChecklist(QWidget* parent) : QWidget(parent) {
    m_search = new QLineEdit;
    m_search->setPlaceholderText(tr("Search syscall and group names…"));
    m_search->setClearButtonEnabled(true);
    m_search->setObjectName(QStringLiteral("syscallSearch"));
    m_riskyOnly = new QCheckBox(tr("Risky only"));
    m_summary = new QLabel;
    m_tree = new QTreeWidget;
    m_tree->setColumnCount(ColumnCount);
    m_tree->setHeaderLabels({tr("Syscall"), tr("Risk"), tr("Description")});
    m_tree->setUniformRowHeights(true);
    m_tree->setAlternatingRowColors(true);
    m_tree->header()->setStretchLastSection(true);
    m_tree->setColumnWidth(Name, fontMetrics().horizontalAdvance(QStringLiteral("M")) * 21);
    m_tree->setColumnWidth(Risk, fontMetrics().horizontalAdvance(QStringLiteral("M")) * 22);
    m_tree->setMinimumHeight(fontMetrics().height() * 8);

    auto* top = new QHBoxLayout;
    top->addWidget(m_search, 1);
    top->addWidget(m_riskyOnly);
    top->addWidget(m_summary);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addLayout(top);
    layout->addWidget(m_tree, 1);

    build();
    refresh();
    connect(m_search, &QLineEdit::textChanged, this, &SyscallChecklist::applyFilter);
    connect(m_riskyOnly, &QCheckBox::toggled, this, &SyscallChecklist::applyFilter);
    connect(m_tree, &QTreeWidget::itemChanged, this, &SyscallChecklist::onItemChanged);
}

void SyscallChecklist::build() {
    m_updating = true;
    const QIcon warn = style()->standardIcon(QStyle::SP_MessageBoxWarning);
    std::set<std::string> grouped;
    auto addSyscall = [&](QTreeWidgetItem* parent, const std::string& s, const std::string& fallbackDesc) {
        auto* item = new QTreeWidgetItem(parent);
        item->setText(Name, QString::fromStdString(s));
        item->setData(Name, kNameRole, QString::fromStdString(s));
        item->setData(Name, kGroupRole, false);
        item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemIsUserCheckable);
        // Qt draws no box (and takes no click or Space) until a check state is
        // stored: every row gets one when it is made.
        item->setCheckState(Name, Qt::Unchecked);
        std::string desc = syscallDescription(s);
        if (desc.empty()) desc = fallbackDesc;
        item->setText(Description, QString::fromStdString(desc));
        item->setToolTip(Description, QString::fromStdString(desc));
        if (auto nr = moat::policy::syscall_nr(s))
            item->setToolTip(Name, tr("%1 (x86_64 #%2)").arg(QString::fromStdString(s)).arg(*nr));
        const std::string risk = moat::policy::risk_of(s);
        if (!risk.empty()) {
            item->setIcon(Risk, warn);
            item->setText(Risk, QString::fromStdString(risk));
            item->setToolTip(Risk, tr("Lint warns when this is allowed: %1").arg(QString::fromStdString(risk)));
        }
    };
    // @default first (what most policies start from), then the others by name.
    std::vector<const moat::policy::SyscallGroup*> groups;
    for (const auto& [name, g] : moat::policy::syscall_groups()) groups.push_back(&g);
    std::stable_partition(groups.begin(), groups.end(), [](auto* g) { return g->name == "@default"; });
    for (const auto* g : groups) {
        auto* gi = new QTreeWidgetItem(m_tree);
        gi->setText(Name, QString::fromStdString(g->name));
        gi->setData(Name, kNameRole, QString::fromStdString(g->name));
        gi->setData(Name, kGroupRole, true);
        gi->setText(Description, QString::fromStdString(g->description));
        gi->setToolTip(Description, QString::fromStdString(g->description));
        gi->setFlags(Qt::ItemIsEnabled | Qt::ItemIsUserCheckable);
        gi->setCheckState(Name, Qt::Unchecked);
        QFont f = gi->font(Name);
        f.setBold(true);
        gi->setFont(Name, f);
        auto members = moat::policy::expand_group(g->name);
        std::sort(members.begin(), members.end());
        for (const auto& s : members) {
            addSyscall(gi, s, g->description);
            grouped.insert(s);
        }
    }
    auto* other = new QTreeWidgetItem(m_tree);
    other->setText(Name, kOther);
    other->setData(Name, kGroupRole, true);
    other->setText(Description, tr("Syscalls no group holds; allow them by name"));
    other->setFlags(Qt::ItemIsEnabled);
    for (const auto& s : moat::policy::all_syscalls())
        if (!grouped.contains(s)) addSyscall(other, s, tr("Not in any syscall group").toStdString());
    m_updating = false;
}

void SyscallChecklist::setEntries(const std::vector<std::string>& entries, const std::set<std::string>& ruled) {
    if (entries == m_entries && ruled == m_ruled) return;
    m_entries = entries;
    m_ruled = ruled;
    refresh();
}

void SyscallChecklist::refresh() {
    m_updating = true;
    const auto allowed = expandAllowList(m_entries);
    const QColor ruleColor = palette().color(QPalette::Link);
    for (int g = 0; g < m_tree->topLevelItemCount(); ++g) {
        QTreeWidgetItem* gi = m_tree->topLevelItem(g);
        int on = 0;
        for (int i = 0; i < gi->childCount(); ++i) {
            QTreeWidgetItem* it = gi->child(i);
            const std::string s = it->data(Name, kNameRole).toString().toStdString();
            const bool a = allowed.contains(s);
            on += a;
            const auto state = a ? Qt::Checked : Qt::Unchecked;
            if (it->checkState(Name) != state) it->setCheckState(Name, state);
            const bool ruled = m_ruled.contains(s);
            it->setText(Name, ruled ? QString::fromStdString(s) + tr(" (rule)") : QString::fromStdString(s));
            it->setForeground(Name, ruled ? QBrush(ruleColor) : QBrush());
        }
        if (gi->flags() & Qt::ItemIsUserCheckable) {
            const auto state = on == 0 ? Qt::Unchecked : on == gi->childCount() ? Qt::Checked : Qt::PartiallyChecked;
            if (gi->checkState(Name) != state) gi->setCheckState(Name, state);
        }
        const QString base = gi->data(Name, kNameRole).toString();
        gi->setText(Name, QStringLiteral("%1  %2/%3").arg(base.isEmpty() ? kOther : base).arg(on).arg(gi->childCount()));
    }
    m_summary->setText(tr("%1 allowed").arg(allowed.size()));
    m_updating = false;
}

void SyscallChecklist::onItemChanged(QTreeWidgetItem* item, int column) {
    if (m_updating || column != Name || m_readOnly) return;
    const std::string name = item->data(Name, kNameRole).toString().toStdString();
    if (name.empty()) return;
    toggle(name, item->checkState(Name) == Qt::Checked);
}

void SyscallChecklist::toggle(const std::string& name, bool checked) {
    const bool group = !name.empty() && name[0] == '@';
    auto next = group ? withGroup(m_entries, name, checked) : withSyscall(m_entries, name, checked);
    m_entries = std::move(next);
    refresh();  // also puts the box back when the list did not change
    emit entriesChanged(m_entries);
}

bool SyscallChecklist::isChecked(const std::string& syscall) const {
    return expandAllowList(m_entries).contains(syscall);
}

void SyscallChecklist::setFilter(const QString& text) { m_search->setText(text); }

int SyscallChecklist::visibleSyscallRows() const {
    int n = 0;
    for (int g = 0; g < m_tree->topLevelItemCount(); ++g) {
        const QTreeWidgetItem* gi = m_tree->topLevelItem(g);
        if (gi->isHidden()) continue;
        for (int i = 0; i < gi->childCount(); ++i) n += !gi->child(i)->isHidden();
    }
    return n;
}

void SyscallChecklist::applyFilter() {
    const QString needle = m_search->text().trimmed();
    const bool risky = m_riskyOnly->isChecked();
    const bool filtering = !needle.isEmpty() || risky;
    // Names only. A syscall's description is the description of the smallest
    // group that holds it, and group descriptions name other syscalls
    // (@default's says it was derived from straces of mkdir, ...), so matching
    // descriptions made "mkdir" list getrandom and every other @default-only
    // call. Risks are narrowed with "Risky only".
    auto matches = [&](const QTreeWidgetItem* it) {
        return needle.isEmpty() || it->data(Name, kNameRole).toString().contains(needle, Qt::CaseInsensitive);
    };
    for (int g = 0; g < m_tree->topLevelItemCount(); ++g) {
        QTreeWidgetItem* gi = m_tree->topLevelItem(g);
        // A group name ("@net") shows all its members.
        const bool groupMatches = !needle.isEmpty() && gi->data(Name, kNameRole).toString().contains(needle, Qt::CaseInsensitive);
        int shown = 0;
        for (int i = 0; i < gi->childCount(); ++i) {
            QTreeWidgetItem* it = gi->child(i);
            const bool show = (groupMatches || matches(it)) && (!risky || !it->text(Risk).isEmpty());
            it->setHidden(!show);
            shown += show;
        }
        gi->setHidden(filtering && shown == 0);
        gi->setExpanded(filtering && shown > 0);
    }
}

void SyscallChecklist::setReadOnly(bool ro) {
    m_readOnly = ro;
    m_tree->setEnabled(!ro);
}

}  // namespace moat::ui
