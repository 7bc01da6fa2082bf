#pragma once
// A learn replay's proposal (moat::learn::Proposal) as a checklist: one row
// per addition, checked by default; the operator unchecks what the new policy
// version should not get. Strings are built in data() at display time.
#include <QAbstractTableModel>

#include <vector>

#include "moat/learn/replay.h"

namespace moat::ui {

class ProposalModel final : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Entry, Risk, Evidence, ColumnCount };

    explicit ProposalModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
    Qt::ItemFlags flags(const QModelIndex& index) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

    // Replaces the list; every addition starts checked.
    void setAdditions(std::vector<moat::learn::Addition> additions);
    const std::vector<moat::learn::Addition>& additions() const { return m_additions; }
    bool isChecked(int row) const;
    void setChecked(int row, bool on);
    std::vector<moat::learn::Addition> checkedAdditions() const;
    int checkedCount() const;

signals:
    void checkedChanged();

private:
    std::vector<moat::learn::Addition> m_additions;
    std::vector<bool> m_checked;
};

}  // namespace moat::ui
