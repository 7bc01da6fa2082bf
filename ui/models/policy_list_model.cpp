#include "models/policy_list_model.h"

#include "backend/backend.h"
#include "models/format.h"

namespace moat::ui {

using nlohmann::json;

PolicyListModel::PolicyListModel(Backend* backend, QObject* parent) : QAbstractTableModel(parent), m_backend(backend) {}

int PolicyListModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(m_rows.size()); }
int PolicyListModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant PolicyListModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
    static const char* kNames[] = {"Policy", "Version", "sha256", "Stored"};
    return section >= 0 && section < ColumnCount ? QString::fromLatin1(kNames[section]) : QVariant();
}

QVariant PolicyListModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() >= int(m_rows.size())) return {};
    const auto& p = m_rows[size_t(index.row())];
    if (role == kIdRole) return QVariant::fromValue<qlonglong>(p.id);
    if (role == Qt::ToolTipRole)
        return QStringLiteral("sha256 %1\nstored %2").arg(QString::fromStdString(p.sha256), formatTimeNs(p.createdNs));
    if (role != Qt::DisplayRole) return {};
    switch (index.column()) {
        case Name: return QString::fromStdString(p.name);
        case Version: return QStringLiteral("v%1").arg(p.version);
        case Sha: return QString::fromStdString(p.sha256.substr(0, 12));
        case Created: return p.createdNs ? formatTimeNs(p.createdNs) : QString();
        default: return {};
    }
}

void PolicyListModel::refresh() {
    if (m_inFlight) return;
    m_inFlight = true;
    m_backend->request({{"op", "policies"}}, this, [this](const json& a) {
        m_inFlight = false;
        if (!a.value("ok", false)) {
            emit failed(Backend::errorText(a));
            return;
        }
        applyPolicies(a.value("policies", json::array()));
        emit refreshed();
    });
}

void PolicyListModel::applyPolicies(const json& policies) {
    std::vector<PolicyVersionRow> rows;
    if (policies.is_array()) {
        for (const auto& p : policies) {
            PolicyVersionRow r;
            r.id = p.value("id", int64_t(0));
            r.name = p.value("name", std::string());
            r.version = p.value("version", 0);
            r.sha256 = p.value("sha256", std::string());
            r.createdNs = parseRfc3339Ns(p.value("created_at", std::string())).value_or(0);
            rows.push_back(std::move(r));
        }
    }
    // Policy versions are only ever added; when the known ids are a prefix-free
    // subset, insert the new rows where they belong, else reset (rare).
    bool sameShape = rows.size() >= m_rows.size();
    for (size_t i = 0, k = 0; sameShape && i < m_rows.size(); ++i) {
        while (k < rows.size() && rows[k].id != m_rows[i].id) ++k;
        sameShape = k < rows.size();
    }
    if (!sameShape) {
        beginResetModel();
        m_rows = std::move(rows);
        endResetModel();
        return;
    }
    for (size_t k = 0; k < rows.size(); ++k) {
        if (k < m_rows.size() && m_rows[k].id == rows[k].id) continue;
        beginInsertRows({}, int(k), int(k));
        m_rows.insert(m_rows.begin() + std::ptrdiff_t(k), rows[k]);
        endInsertRows();
    }
}

const PolicyVersionRow* PolicyListModel::policy(int row) const {
    return row >= 0 && row < int(m_rows.size()) ? &m_rows[size_t(row)] : nullptr;
}

int PolicyListModel::rowOf(const std::string& name, int version) const {
    for (size_t i = 0; i < m_rows.size(); ++i)
        if (m_rows[i].name == name && m_rows[i].version == version) return int(i);
    return -1;
}

int PolicyListModel::latestRowOf(const std::string& name) const {
    int best = -1;
    for (size_t i = 0; i < m_rows.size(); ++i)
        if (m_rows[i].name == name && (best < 0 || m_rows[i].version > m_rows[size_t(best)].version)) best = int(i);
    return best;
}

}  // namespace moat::ui
