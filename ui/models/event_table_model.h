#pragma once
// The event log over moatd's `events` op, modelled on a packet list: keyset
// paging (canFetchMore/fetchMore with `after`/`next`), rows kept as compact
// EventRows and display strings built in data(). When the end is reached the
// model tails new events (poll with `after` = the last id seen).
//
// With a capacity (the job view's live denial list) the model is a bounded ring:
// the oldest rows are removed, with proper remove signalling, as new ones arrive.
#include <QAbstractTableModel>
#include <QTimer>

#include <deque>

#include <nlohmann/json.hpp>

#include "models/event_filter.h"
#include "models/event_row.h"

namespace moat::ui {

class Backend;

class EventTableModel final : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Id, Time, Job, Kind, Count, What, Action, Target, Module, ColumnCount };
    static constexpr int kPageSize = 500;

    explicit EventTableModel(Backend* backend, QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;
    bool canFetchMore(const QModelIndex& parent) const override;
    void fetchMore(const QModelIndex& parent) override;

    // Fixed request fields (e.g. {"job":3,"kind":"denial"}) plus the filter;
    // resets the model and loads the first page.
    void setQuery(nlohmann::json base, EventFilter filter = {});
    void setPolicyLookup(EventFilter::PolicyLookup lookup) { m_policyOf = std::move(lookup); }
    void setCapacity(size_t rows) { m_capacity = rows; }
    // Tail interval once the end is reached; 0 = do not tail.
    void setTailInterval(int ms);
    // Fetches what was stored after the last row now (a push said there is
    // more), if the end was reached and nothing is in flight.
    void tailNow();
    void clear();

    const EventRow* event(int row) const;
    bool loading() const { return m_inFlight; }
    bool atEnd() const { return m_atEnd; }

signals:
    void failed(const QString& message);
    void pageLoaded();

private:
    void request(bool tail);
    void append(const nlohmann::json& events);

    Backend* m_backend;
    std::deque<EventRow> m_rows;
    nlohmann::json m_base = nlohmann::json::object();
    EventFilter m_filter;
    EventFilter::PolicyLookup m_policyOf;
    int64_t m_cursor = 0;       // last event id received (matching or not)
    bool m_atEnd = false;       // the last page was not full
    bool m_inFlight = false;
    bool m_started = false;
    uint64_t m_generation = 0;  // answers for an older query are dropped
    size_t m_capacity = 0;      // 0 = unbounded
    int m_emptyChain = 0;       // pages fetched in a row with no matching row
    QTimer m_tail;
};

}  // namespace moat::ui
