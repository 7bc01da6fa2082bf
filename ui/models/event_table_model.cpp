#include "models/event_table_model.h"

#include <QBrush>
#include <QColor>

#include "models/status_color.h"
#include "backend/backend.h"
#include "models/format.h"

namespace moat::ui {

using nlohmann::json;

namespace {
// A filter the daemon cannot push down may match nothing for many pages; keep
// fetching without the view asking, but only this many pages per fetchMore so
// a hopeless filter does not pull the whole database at once.
constexpr int kMaxEmptyPages = 20;
}  // namespace

EventTableModel::EventTableModel(Backend* backend, QObject* parent) : QAbstractTableModel(parent), m_backend(backend) {
    connect(&m_tail, &QTimer::timeout, this, [this] {
        if (m_started && m_atEnd && !m_inFlight) request(true);
    });
}

int EventTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(m_rows.size()); }
int EventTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant EventTableModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
    static const char* kNames[] = {"ID", "Time", "Job", "Kind", "Count", "Syscall / event", "Action", "Path / detail", "Module"};
    return section >= 0 && section < ColumnCount ? QString::fromLatin1(kNames[section]) : QVariant();
}

QVariant EventTableModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() >= int(m_rows.size())) return {};
    const EventRow& e = m_rows[size_t(index.row())];
    const int col = index.column();
    if (role == Qt::TextAlignmentRole)
        return int((col == Id || col == Job || col == Count ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignVCenter);
    if (role == Qt::ForegroundRole) {
        if (e.kind == "denial" && (col == What || col == Action)) return QBrush(statusColor(Status::Bad));
        if (e.kind == "limit" && (col == What || col == Action)) return QBrush(statusColor(Status::Limit));
        return {};
    }
    if (role == Qt::ToolTipRole && col == Target)
        return plainToolTip(QString::fromStdString(e.decoded.empty() ? e.detail : e.decoded));
    if (role != Qt::DisplayRole) return {};
    switch (col) {
        case Id: return QVariant::fromValue<qlonglong>(e.id);
        case Time: return formatTimeNs(e.timeNs, true);
        case Job: return QVariant::fromValue<qlonglong>(e.job);
        case Kind: return QString::fromStdString(e.kind);
        case Count: return QVariant::fromValue<qulonglong>(e.count);
        case What: return QString::fromStdString(e.kind == "denial" ? e.syscall : e.event);
        case Action: return QString::fromStdString(e.kind == "denial" ? e.action : e.outcome);
        case Target: return QString::fromStdString(e.decoded.empty() ? e.detail : e.decoded);
        case Module: return QString::fromStdString(e.module);
        default: return {};
    }
}

bool EventTableModel::canFetchMore(const QModelIndex& parent) const {
    return !parent.isValid() && m_started && !m_atEnd && !m_inFlight;
}

void EventTableModel::fetchMore(const QModelIndex& parent) {
    if (!canFetchMore(parent)) return;
    m_emptyChain = 0;
    request(false);
}

void EventTableModel::tailNow() {
    if (m_started && m_atEnd && !m_inFlight) request(true);
}

void EventTableModel::setTailInterval(int ms) {
    if (ms <= 0) m_tail.stop();
    else m_tail.start(ms);
}

void EventTableModel::clear() {
    ++m_generation;
    beginResetModel();
    m_rows.clear();
    m_cursor = 0;
    m_atEnd = false;
    m_inFlight = false;
    m_started = false;
    endResetModel();
}

void EventTableModel::setQuery(json base, EventFilter filter) {
    clear();
    m_base = base.is_object() ? std::move(base) : json::object();
    m_filter = std::move(filter);
    m_started = true;
    m_emptyChain = 0;
    request(false);
}

void EventTableModel::request(bool tail) {
    json req = m_filter.serverQuery();
    for (auto it = m_base.begin(); it != m_base.end(); ++it) req[it.key()] = it.value();  // fixed fields win
    req["op"] = "events";
    req["after"] = m_cursor;
    req["limit"] = kPageSize;
    m_inFlight = true;
    const uint64_t gen = m_generation;
    m_backend->request(std::move(req), this, [this, gen, tail](const json& a) {
        if (gen != m_generation) return;
        m_inFlight = false;
        if (!a.value("ok", false)) {
            m_atEnd = true;  // the tail timer retries
            emit failed(Backend::errorText(a));
            return;
        }
        const json& events = a.contains("events") ? a["events"] : json::array();
        const int before = rowCount();
        append(events);
        m_atEnd = !a.contains("next") || a["next"].is_null();
        if (!a.value("next", json()).is_null()) m_cursor = std::max<int64_t>(m_cursor, a["next"].get<int64_t>());
        emit pageLoaded();
        // Nothing matched but there is more: keep going (bounded), since the
        // view only asks for more when it shows the last row.
        if (!tail && !m_atEnd && rowCount() == before && ++m_emptyChain < kMaxEmptyPages) request(false);
    });
}

void EventTableModel::append(const json& events) {
    if (!events.is_array() || events.empty()) return;
    std::vector<EventRow> add;
    for (const auto& e : events) {
        EventRow r = EventRow::fromJson(e);
        m_cursor = std::max(m_cursor, r.id);
        if (m_filter.matches(r, m_policyOf)) add.push_back(std::move(r));
    }
    if (add.empty()) return;
    if (m_capacity > 0 && add.size() > m_capacity) add.erase(add.begin(), add.end() - std::ptrdiff_t(m_capacity));
    if (m_capacity > 0 && m_rows.size() + add.size() > m_capacity) {
        const size_t drop = std::min(m_rows.size(), m_rows.size() + add.size() - m_capacity);
        if (drop > 0) {
            beginRemoveRows({}, 0, int(drop) - 1);
            m_rows.erase(m_rows.begin(), m_rows.begin() + std::ptrdiff_t(drop));
            endRemoveRows();
        }
    }
    const int first = rowCount();
    beginInsertRows({}, first, first + int(add.size()) - 1);
    for (auto& r : add) m_rows.push_back(std::move(r));
    endInsertRows();
}

const EventRow* EventTableModel::event(int row) const {
    return row >= 0 && row < int(m_rows.size()) ? &m_rows[size_t(row)] : nullptr;
}

}  // namespace moat::ui
