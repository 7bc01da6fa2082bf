#include "models/job_table_model.h"

#include <QBrush>
#include <QColor>
#include <QDateTime>
#include <QFont>
#include <QStringList>

#include <chrono>

#include "models/status_color.h"
#include "backend/backend.h"
#include "models/format.h"
#include "models/shell_words.h"

namespace moat::ui {

using nlohmann::json;

namespace {
std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
template <class T>
std::optional<T> opt(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<T>();
}
int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}
}  // namespace

namespace {
// A pushed or polled row without a sample keeps the one the table had (a
// running job's figures do not blink to "…" between samples).
void keepSample(const JobRow& cur, JobRow& next) {
    if (next.hasSample) return;
    next.hasSample = cur.hasSample && next.running();
    next.cpuPercent = cur.cpuPercent;
    next.memory = cur.memory;
    next.memoryLimit = cur.memoryLimit;
    next.pids = cur.pids;
    next.pidsLimit = cur.pidsLimit;
}
}  // namespace

void JobRow::setSample(const json& e) {
    hasSample = true;
    cpuPercent = e.value("cpu_percent", 0.0);
    memory = e.value("memory_bytes", uint64_t(0));
    memoryLimit = e.value("memory_limit_bytes", uint64_t(0));
    pids = e.value("pids", uint64_t(0));
    pidsLimit = e.value("pids_limit", uint64_t(0));
}

JobRow JobRow::fromJson(const json& j) {
    JobRow r;
    r.object = j;
    r.id = j.value("id", int64_t(0));
    r.tier = str(j, "tier");
    if (auto it = j.find("argv"); it != j.end() && it->is_array())
        for (const auto& a : *it)
            if (a.is_string()) r.argv.push_back(a.get<std::string>());
    if (auto it = j.find("policy"); it != j.end() && it->is_object()) {
        r.policyName = str(*it, "name");
        r.policyVersion = opt<int>(*it, "version").value_or(0);
        r.policySha = str(*it, "sha256");
    }
    r.state = str(j, "state");
    r.startedNs = parseRfc3339Ns(str(j, "started_at")).value_or(0);
    r.endedNs = parseRfc3339Ns(str(j, "ended_at"));
    r.exitCode = opt<int>(j, "exit_code");
    r.signal = opt<int>(j, "signal");
    if (auto it = j.find("termination"); it != j.end() && it->is_object()) {
        r.cause = str(*it, "cause");
        r.detail = str(*it, "detail");
    }
    if (auto it = j.find("resources"); it != j.end() && it->is_object()) {
        r.cpuTimeNs = opt<uint64_t>(*it, "cpu_time_ns").value_or(0);
        r.peakMemory = opt<uint64_t>(*it, "peak_memory_bytes").value_or(0);
        r.peakPids = opt<uint64_t>(*it, "peak_pids").value_or(0);
    }
    r.denials = opt<uint64_t>(j, "denial_count").value_or(0);
    // moatd adds a running job's last sample to jobs it pushes (op watch).
    if (auto it = j.find("sample"); it != j.end() && it->is_object()) r.setSample(*it);
    r.command = QString::fromStdString(joinShellWords(r.argv));
    return r;
}

QString JobRow::commandLine() const {
    // One table row per job: a script's line breaks become visible marks
    // instead of being lost (the tooltip and the detail pane have the lines).
    return QString(command).replace(QLatin1Char('\n'), QStringLiteral("⏎"));
}

JobTableModel::JobTableModel(Backend* backend, QObject* parent) : QAbstractTableModel(parent), m_backend(backend) {
    connect(&m_timer, &QTimer::timeout, this, &JobTableModel::refresh);
}

int JobTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : int(m_rows.size()); }
int JobTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant JobTableModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
    static const char* kNames[] = {"ID", "Policy", "Tier", "State", "Started", "Duration",
                                   "CPU %", "Memory", "PIDs", "Denials", "Exit / cause", "Command", "Host"};
    return section >= 0 && section < ColumnCount ? QString::fromLatin1(kNames[section]) : QVariant();
}

QString JobTableModel::resultText(const JobRow& j) const {
    if (j.running()) return QStringLiteral("—");
    QString cause = QString::fromStdString(j.cause);
    if (j.cause == "exited" && j.exitCode) return QStringLiteral("exit %1").arg(*j.exitCode);
    if (j.signal) return QStringLiteral("%1 (signal %2)").arg(cause).arg(*j.signal);
    return cause;
}

QVariant JobTableModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() >= int(m_rows.size())) return {};
    const JobRow& j = m_rows[size_t(index.row())];
    const int col = index.column();
    if (role == kIdRole) return QVariant::fromValue<qlonglong>(j.id);
    if (role == kSortRole) {
        if (col == Started) return QVariant::fromValue<qlonglong>(j.startedNs);
        role = Qt::DisplayRole;
    }
    if (role == Qt::TextAlignmentRole) {
        if (col == Id || col == Cpu || col == Memory || col == Pids || col == Denials || col == Duration)
            return int(Qt::AlignRight | Qt::AlignVCenter);
        return int(Qt::AlignLeft | Qt::AlignVCenter);
    }
    if (role == Qt::ForegroundRole) {
        if (col == Denials && j.denials > 0) return QBrush(statusColor(Status::Bad));
        if (col == Result && !j.running() && j.cause != "exited") return QBrush(statusColor(Status::Bad));
        if (col == State && j.running()) return QBrush(statusColor(Status::Good));
        return {};
    }
    if (role == Qt::ToolTipRole) {
        if (col == Result) return plainToolTip(QString::fromStdString(j.detail));
        if (col == Policy) return QString::fromStdString("sha256 " + j.policySha);
        if ((col == Cpu || col == Memory || col == Pids) && j.neverRan())
            return tr("the sandbox could not be set up, so the program never ran");
        return plainToolTip(j.commandFull());
    }
    if (role != Qt::DisplayRole) return {};
    const int64_t end = j.endedNs.value_or(nowNs());
    switch (col) {
        case Id: return QVariant::fromValue<qlonglong>(j.id);
        case Policy: return QStringLiteral("%1 v%2").arg(QString::fromStdString(j.policyName)).arg(j.policyVersion);
        case Tier: return QString::fromStdString(j.tier);
        case State: return QString::fromStdString(j.state);
        case Started: return j.startedNs ? formatTimeNs(j.startedNs) : QString();
        case Duration: return formatDurationNs(end - j.startedNs);
        case Cpu: {
            if (j.neverRan()) return QStringLiteral("—");
            if (j.running()) return j.hasSample ? QString::number(j.cpuPercent, 'f', 1) : QStringLiteral("…");
            const int64_t wall = end - j.startedNs;
            return wall > 0 ? QString::number(100.0 * double(j.cpuTimeNs) / double(wall), 'f', 1) : QString();
        }
        case Memory:
            if (j.neverRan()) return QStringLiteral("—");
            if (j.running()) return j.hasSample ? formatBytes(j.memory) : QStringLiteral("…");
            return formatBytes(j.peakMemory);
        case Pids:
            if (j.neverRan()) return QStringLiteral("—");
            if (j.running()) return j.hasSample ? QString::number(j.pids) : QStringLiteral("…");
            return QString::number(j.peakPids);
        case Denials: return QVariant::fromValue<qulonglong>(j.denials);
        case Result: return resultText(j);
        case Command: return j.commandLine();
        case Host: return m_host;
        default: return {};
    }
}

void JobTableModel::setPollInterval(int intervalMs) {
    if (intervalMs <= 0) {
        m_timer.stop();
        return;
    }
    m_timer.start(intervalMs);
    refresh();
}

void JobTableModel::refresh() {
    if (!m_jobsInFlight && !m_jobsPushed) {
        m_jobsInFlight = true;
        m_backend->request({{"op", "jobs"}, {"limit", m_limit}}, this, [this](const json& a) {
            m_jobsInFlight = false;
            if (!a.value("ok", false)) {
                emit failed(Backend::errorText(a));
                return;
            }
            applyJobs(a.value("jobs", json::array()));
        });
    }
    pollResources();
}

void JobTableModel::pollResources() {
    if (m_jobsPushed) return;  // pushed job rows carry their last sample
    bool anyRunning = false;
    for (const auto& r : m_rows) anyRunning |= r.running();
    if (m_resInFlight || !anyRunning) return;  // samples only matter for running jobs
    json req = {{"op", "events"}, {"kind", "resource"}, {"limit", 2000}};
    if (m_resCursor > 0) req["after"] = m_resCursor;
    else req["since_ns"] = nowNs() - 10'000'000'000;  // first poll: only the recent past, not the whole history
    m_resInFlight = true;
    m_backend->request(std::move(req), this, [this](const json& a) {
        m_resInFlight = false;
        if (a.value("ok", false)) applyResourceEvents(a.value("events", json::array()));
    });
}

void JobTableModel::applyResourceEvents(const json& events) {
    if (!events.is_array()) return;
    std::map<int64_t, const json*> latest;
    for (const auto& e : events) {
        m_resCursor = std::max(m_resCursor, e.value("id", int64_t(0)));
        latest[e.value("job", int64_t(0))] = &e;
    }
    for (const auto& [job, e] : latest) {
        const int row = rowOfId(job);
        if (row < 0) continue;
        m_rows[size_t(row)].setSample(*e);
        emit dataChanged(index(row, Cpu), index(row, Pids), {Qt::DisplayRole});
    }
}

void JobTableModel::applyJobs(const json& jobs) {
    if (!jobs.is_array()) return;
    std::vector<JobRow> incoming;
    incoming.reserve(jobs.size());
    for (const auto& j : jobs) incoming.push_back(JobRow::fromJson(j));
    // Both lists are sorted by decreasing id: merge them in one walk, so each
    // change is signalled where it happens and persistent indexes stay valid.
    size_t i = 0, k = 0;
    while (k < incoming.size() || i < m_rows.size()) {
        if (k >= incoming.size() || (i < m_rows.size() && m_rows[i].id > incoming[k].id)) {
            beginRemoveRows({}, int(i), int(i));
            m_rows.erase(m_rows.begin() + std::ptrdiff_t(i));
            endRemoveRows();
            continue;
        }
        if (i >= m_rows.size() || incoming[k].id > m_rows[i].id) {
            // A run of new ids goes in as one block.
            size_t run = k;
            while (run < incoming.size() && (i >= m_rows.size() || incoming[run].id > m_rows[i].id)) ++run;
            beginInsertRows({}, int(i), int(i + (run - k) - 1));
            m_rows.insert(m_rows.begin() + std::ptrdiff_t(i), std::make_move_iterator(incoming.begin() + std::ptrdiff_t(k)),
                          std::make_move_iterator(incoming.begin() + std::ptrdiff_t(run)));
            endInsertRows();
            i += run - k;
            k = run;
            continue;
        }
        // Same id: keep the live sample, update the record.
        JobRow& cur = m_rows[i];
        JobRow& next = incoming[k];
        const bool changed = !cur.sameData(next);
        if (changed) {
            keepSample(cur, next);
            cur = std::move(next);
        }
        if (changed || cur.running()) emit dataChanged(index(int(i), 0), index(int(i), ColumnCount - 1));
        ++i;
        ++k;
    }
    emit refreshed();
}

void JobTableModel::applyJobUpdates(const json& jobs) {
    if (!jobs.is_array()) return;
    for (const auto& j : jobs) {
        JobRow next = JobRow::fromJson(j);
        if (next.id <= 0) continue;
        const int row = rowOfId(next.id);
        if (row >= 0) {
            JobRow& cur = m_rows[size_t(row)];
            if (cur.sameData(next)) continue;
            keepSample(cur, next);
            cur = std::move(next);
            emit dataChanged(index(row, 0), index(row, ColumnCount - 1));
            continue;
        }
        // ids are decreasing down the table: the first row with a smaller id.
        auto it = std::lower_bound(m_rows.begin(), m_rows.end(), next.id,
                                   [](const JobRow& r, int64_t v) { return r.id > v; });
        const int at = int(it - m_rows.begin());
        beginInsertRows({}, at, at);
        m_rows.insert(it, std::move(next));
        endInsertRows();
    }
    // As many rows as a `jobs` request asks for: the oldest go.
    if (m_rows.size() > size_t(m_limit)) {
        beginRemoveRows({}, m_limit, int(m_rows.size()) - 1);
        m_rows.resize(size_t(m_limit));
        endRemoveRows();
    }
    emit refreshed();
}

void JobTableModel::applyLive(const json& figures) {
    if (!figures.is_array()) return;
    for (const auto& f : figures) {
        const int row = rowOfId(f.value("id", int64_t(0)));
        if (row < 0 || !f.is_object()) continue;
        JobRow& r = m_rows[size_t(row)];
        if (!r.running()) continue;  // a finished row's figures are final
        json merged = r.object;
        merged.update(f);
        JobRow next = JobRow::fromJson(merged);
        keepSample(r, next);
        r = std::move(next);
        emit dataChanged(index(row, 0), index(row, ColumnCount - 1));
    }
}

const JobRow* JobTableModel::job(int row) const {
    return row >= 0 && row < int(m_rows.size()) ? &m_rows[size_t(row)] : nullptr;
}

int JobTableModel::rowOfId(int64_t id) const {
    // ids are strictly decreasing: binary search.
    auto it = std::lower_bound(m_rows.begin(), m_rows.end(), id,
                               [](const JobRow& r, int64_t v) { return r.id > v; });
    return it != m_rows.end() && it->id == id ? int(it - m_rows.begin()) : -1;
}

const JobRow* JobTableModel::jobById(int64_t id) const { return job(rowOfId(id)); }

QString JobTableModel::policyOfJob(int64_t id) const {
    const JobRow* j = jobById(id);
    return j ? QString::fromStdString(j->policyName) : QString();
}

}  // namespace moat::ui
