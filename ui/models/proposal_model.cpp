#include "models/proposal_model.h"

#include <algorithm>

#include "models/status_color.h"

namespace moat::ui {

ProposalModel::ProposalModel(QObject* parent) : QAbstractTableModel(parent) {}

int ProposalModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : int(m_additions.size());
}

int ProposalModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant ProposalModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() >= rowCount()) return {};
    const auto& a = m_additions[size_t(index.row())];
    switch (role) {
        case Qt::DisplayRole:
            switch (index.column()) {
                case Entry: return QString::fromStdString(a.entry);
                case Risk: return a.risk.empty() ? tr("none known") : QString::fromStdString(a.risk);
                case Evidence: return QString::fromStdString(a.evidence);
            }
            return {};
        case Qt::CheckStateRole:
            if (index.column() == Entry) return m_checked[size_t(index.row())] ? Qt::Checked : Qt::Unchecked;
            return {};
        case Qt::ToolTipRole: {
            QString t = QString::fromStdString(a.entry);
            if (a.group || a.syscalls.size() > 1) {
                QStringList names;
                for (const auto& s : a.syscalls) names << QString::fromStdString(s);
                t += tr("\nlets through: %1").arg(names.join(QStringLiteral(", ")));
            }
            t += tr("\nevidence: %1").arg(QString::fromStdString(a.evidence));
            if (!a.risk.empty()) t += tr("\nrisk: %1").arg(QString::fromStdString(a.risk));
            return t;
        }
        case Qt::ForegroundRole:
            if (index.column() == Risk && !a.risk.empty()) return statusColor(Status::Warn);
            return {};
    }
    return {};
}

bool ProposalModel::setData(const QModelIndex& index, const QVariant& value, int role) {
    if (role != Qt::CheckStateRole || !index.isValid() || index.column() != Entry || index.row() >= rowCount())
        return false;
    setChecked(index.row(), value.toInt() == Qt::Checked);
    return true;
}

Qt::ItemFlags ProposalModel::flags(const QModelIndex& index) const {
    if (!index.isValid()) return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
    if (index.column() == Entry) f |= Qt::ItemIsUserCheckable;
    return f;
}

QVariant ProposalModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
        case Entry: return tr("Addition");
        case Risk: return tr("Risk");
        case Evidence: return tr("Evidence");
    }
    return {};
}

void ProposalModel::setAdditions(std::vector<moat::learn::Addition> additions) {
    beginResetModel();
    m_additions = std::move(additions);
    m_checked.assign(m_additions.size(), true);
    endResetModel();
    emit checkedChanged();
}

bool ProposalModel::isChecked(int row) const { return row >= 0 && row < rowCount() && m_checked[size_t(row)]; }

void ProposalModel::setChecked(int row, bool on) {
    if (row < 0 || row >= rowCount() || m_checked[size_t(row)] == on) return;
    m_checked[size_t(row)] = on;
    const QModelIndex i = index(row, Entry);
    emit dataChanged(i, i, {Qt::CheckStateRole});
    emit checkedChanged();
}

std::vector<moat::learn::Addition> ProposalModel::checkedAdditions() const {
    std::vector<moat::learn::Addition> out;
    for (size_t i = 0; i < m_additions.size(); ++i)
        if (m_checked[i]) out.push_back(m_additions[i]);
    return out;
}

int ProposalModel::checkedCount() const { return int(std::count(m_checked.begin(), m_checked.end(), true)); }

}  // namespace moat::ui
