#pragma once
// Stored policy versions (moatd's `policies` op): name, version, sha256, created.
#include <QAbstractTableModel>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moat::ui {

class Backend;

struct PolicyVersionRow {
    int64_t id = 0;
    std::string name;
    int version = 0;
    std::string sha256;
    int64_t createdNs = 0;
};

class PolicyListModel final : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Version, Sha, Created, ColumnCount };
    static constexpr int kIdRole = Qt::UserRole + 1;

    explicit PolicyListModel(Backend* backend, QObject* parent = nullptr);
    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

    void refresh();
    void applyPolicies(const nlohmann::json& policies);  // public for tests
    // A pushed list (moatd's `watch`): applied as a refresh's answer would be.
    void applyPushed(const nlohmann::json& policies) {
        applyPolicies(policies);
        emit refreshed();
    }
    const PolicyVersionRow* policy(int row) const;
    int rowOf(const std::string& name, int version) const;  // -1 when absent
    int latestRowOf(const std::string& name) const;

signals:
    void refreshed();
    void failed(const QString& message);

private:
    Backend* m_backend;
    std::vector<PolicyVersionRow> m_rows;
    bool m_inFlight = false;
};

}  // namespace moat::ui
