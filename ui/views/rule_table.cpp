#include "views/rule_table.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QPushButton>
#include <QStyledItemDelegate>
#include <QTableWidget>
#include <QVBoxLayout>

namespace moat::ui {

namespace {

// A combo box editor for a column with a fixed vocabulary (still editable, so
// a value the parser will reject can be typed and is reported there).
class ChoiceDelegate final : public QStyledItemDelegate {
public:
    ChoiceDelegate(QStringList items, QObject* parent) : QStyledItemDelegate(parent), m_items(std::move(items)) {}
    QWidget* createEditor(QWidget* parent, const QStyleOptionViewItem&, const QModelIndex&) const override {
        auto* c = new QComboBox(parent);
        c->addItems(m_items);
        c->setEditable(true);
        return c;
    }
    void setEditorData(QWidget* editor, const QModelIndex& index) const override {
        static_cast<QComboBox*>(editor)->setCurrentText(index.data(Qt::EditRole).toString());
    }
    void setModelData(QWidget* editor, QAbstractItemModel* model, const QModelIndex& index) const override {
        model->setData(index, static_cast<QComboBox*>(editor)->currentText(), Qt::EditRole);
    }

private:
    QStringList m_items;
};

QString cell(const QTableWidget* t, int row, int col) {
    const QTableWidgetItem* it = t->item(row, col);
    return it ? it->text().trimmed() : QString();
}

}  // namespace

RuleTable::RuleTable(QWidget* parent) : QWidget(parent) {
    m_table = new QTableWidget(0, ColumnCount);
    m_table->setObjectName(QStringLiteral("ruleTable"));
    m_table->setHorizontalHeaderLabels({tr("rule"), tr("syscall"), tr("index"), tr("op"), tr("value"), tr("mask"), tr("action")});
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 8);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setMinimumHeight(fontMetrics().height() * 7);
    const int m = fontMetrics().horizontalAdvance(QStringLiteral("M"));
    for (auto [c, w] : {std::pair{RuleNo, 4}, {Syscall, 11}, {Index, 4}, {Op, 8}, {Value, 12}, {Mask, 8}, {Action, 10}})
        m_table->setColumnWidth(c, m * w);
    m_table->setItemDelegateForColumn(Index, new ChoiceDelegate({"0", "1", "2", "3", "4", "5"}, this));
    m_table->setItemDelegateForColumn(Op, new ChoiceDelegate({"eq", "ne", "lt", "le", "gt", "ge", "masked_eq"}, this));
    m_table->setItemDelegateForColumn(
        Action, new ChoiceDelegate({"allow", "errno:EPERM", "errno:EACCES", "errno:ENOSYS", "kill-process", "kill-thread", "trap", "log"}, this));
    m_table->horizontalHeaderItem(RuleNo)->setToolTip(tr("Rows with the same number form one rule: all its conditions must hold"));
    m_table->horizontalHeaderItem(Value)->setToolTip(tr("A number (3, 0x80000) or constants (AF_UNIX, O_WRONLY|O_CREAT)"));
    m_table->horizontalHeaderItem(Mask)->setToolTip(tr("masked_eq only: (arg & mask) == value"));

    m_add = new QPushButton(tr("Add rule"));
    m_addCond = new QPushButton(tr("Add condition"));
    m_remove = new QPushButton(tr("Remove row"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_add);
    buttons->addWidget(m_addCond);
    buttons->addWidget(m_remove);
    buttons->addStretch();
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_table, 1);
    layout->addLayout(buttons);

    connect(m_add, &QPushButton::clicked, this, &RuleTable::addRule);
    connect(m_addCond, &QPushButton::clicked, this, [this] { addCondition(m_table->currentRow()); });
    connect(m_remove, &QPushButton::clicked, this, [this] { removeRow(m_table->currentRow()); });
    connect(m_table, &QTableWidget::itemChanged, this, [this] {
        if (!m_filling) emit changed();
    });
}

void RuleTable::appendRow(int ruleNo, const PolicyDraft::Rule& r, const PolicyDraft::Arg* a) {
    const int row = m_table->rowCount();
    m_table->insertRow(row);
    auto set = [&](int col, const std::string& v) { m_table->setItem(row, col, new QTableWidgetItem(QString::fromStdString(v))); };
    auto* no = new QTableWidgetItem(QString::number(ruleNo));
    no->setTextAlignment(Qt::AlignCenter);
    m_table->setItem(row, RuleNo, no);
    set(Syscall, r.syscall);
    set(Action, r.action);
    set(Index, a ? a->index : "");
    set(Op, a ? a->op : "");
    set(Value, a ? a->value : "");
    set(Mask, a ? a->mask : "");
}

void RuleTable::setRules(const std::vector<PolicyDraft::Rule>& rules) {
    if (rules == this->rules()) return;
    m_filling = true;
    m_table->setRowCount(0);
    int n = 1;
    for (const auto& r : rules) {
        if (r.args.empty()) appendRow(n, r, nullptr);
        for (const auto& a : r.args) appendRow(n, r, &a);
        ++n;
    }
    m_filling = false;
}

std::vector<PolicyDraft::Rule> RuleTable::rules() const {
    std::vector<PolicyDraft::Rule> out;
    QString lastNo;
    for (int row = 0; row < m_table->rowCount(); ++row) {
        const QString no = cell(m_table, row, RuleNo);
        if (out.empty() || no != lastNo) {
            PolicyDraft::Rule r;
            r.syscall = cell(m_table, row, Syscall).toStdString();
            r.action = cell(m_table, row, Action).toStdString();
            out.push_back(std::move(r));
            lastNo = no;
        }
        PolicyDraft::Arg a;
        a.index = cell(m_table, row, Index).toStdString();
        a.op = cell(m_table, row, Op).toStdString();
        a.value = cell(m_table, row, Value).toStdString();
        a.mask = cell(m_table, row, Mask).toStdString();
        if (!(a.index.empty() && a.op.empty() && a.value.empty() && a.mask.empty())) out.back().args.push_back(std::move(a));
    }
    return out;
}

void RuleTable::addRule() {
    auto r = rules();
    r.push_back({"", "allow", {}});
    m_filling = true;
    m_table->setRowCount(0);
    m_filling = false;
    setRules(r);
    m_table->setCurrentCell(m_table->rowCount() - 1, Syscall);
    emit changed();
}

void RuleTable::addCondition(int row) {
    if (row < 0 || row >= m_table->rowCount()) return;
    const QString no = cell(m_table, row, RuleNo);
    int last = row;
    while (last + 1 < m_table->rowCount() && cell(m_table, last + 1, RuleNo) == no) ++last;
    m_filling = true;
    m_table->insertRow(last + 1);
    auto* n = new QTableWidgetItem(no);
    n->setTextAlignment(Qt::AlignCenter);
    m_table->setItem(last + 1, RuleNo, n);
    m_table->setItem(last + 1, Syscall, new QTableWidgetItem(cell(m_table, row, Syscall)));
    m_table->setItem(last + 1, Action, new QTableWidgetItem(cell(m_table, row, Action)));
    m_table->setItem(last + 1, Index, new QTableWidgetItem(QStringLiteral("0")));
    m_table->setItem(last + 1, Op, new QTableWidgetItem(QStringLiteral("eq")));
    m_table->setItem(last + 1, Value, new QTableWidgetItem);
    m_table->setItem(last + 1, Mask, new QTableWidgetItem);
    m_filling = false;
    m_table->setCurrentCell(last + 1, Value);
    emit changed();
}

void RuleTable::removeRow(int row) {
    if (row < 0 || row >= m_table->rowCount()) return;
    m_table->removeRow(row);
    emit changed();
}

void RuleTable::setReadOnly(bool ro) {
    m_table->setEditTriggers(ro ? QAbstractItemView::NoEditTriggers : QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed | QAbstractItemView::AnyKeyPressed | QAbstractItemView::SelectedClicked);
    m_add->setEnabled(!ro);
    m_addCond->setEnabled(!ro);
    m_remove->setEnabled(!ro);
}

}  // namespace moat::ui
