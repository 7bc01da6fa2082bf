#pragma once
// The job list (newest first): pushed by moatd (op `watch`, applyJobs for a
// snapshot, applyJobUpdates for changes) on a live daemon, else polled from
// the `jobs` op. Updates are merged row by row (insert/remove/dataChanged),
// never reset, so the selection and scroll position survive them. Live
// figures of running jobs come with the pushed rows (`sample`), or, when
// polling, from the `resource` events the model tails.
#include <QAbstractTableModel>
#include <QString>
#include <QTimer>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moat::ui {

class Backend;

struct JobRow {
    int64_t id = 0;
    std::string tier;
    std::vector<std::string> argv;
    std::string policyName;
    int policyVersion = 0;
    std::string policySha;
    std::string state;
    int64_t startedNs = 0;
    std::optional<int64_t> endedNs;
    std::optional<int> exitCode;
    std::optional<int> signal;
    std::string cause;
    std::string detail;
    uint64_t cpuTimeNs = 0;
    uint64_t peakMemory = 0;
    uint64_t peakPids = 0;
    uint64_t denials = 0;
    nlohmann::json object;  // the whole job object, for the detail pane

    // Latest resource sample (running jobs).
    bool hasSample = false;
    double cpuPercent = 0;
    uint64_t memory = 0;
    uint64_t memoryLimit = 0;
    uint64_t pids = 0;
    uint64_t pidsLimit = 0;

    static JobRow fromJson(const nlohmann::json& j);
    // From a `resource` event's fields (or a pushed row's `sample`).
    void setSample(const nlohmann::json& e);
    bool running() const { return state == "running"; }
    // The sandbox was never built, so the program never ran: its usage figures
    // are moatd's own set-up work, not the job's.
    bool neverRan() const { return !running() && cause == "setup-failed"; }
    // argv as one shell command line (joinShellWords, built once in fromJson),
    // and the same with newlines shown as ⏎ for a one-line cell.
    QString command;
    QString commandLine() const;
    QString commandFull() const { return command; }
    bool sameData(const JobRow& o) const { return object == o.object; }
};

class JobTableModel final : public QAbstractTableModel {
    Q_OBJECT
public:
    // Host is last so a single host's views keep their columns (it is hidden
    // there); the console's all-hosts table shows it first.
    enum Column { Id, Policy, Tier, State, Started, Duration, Cpu, Memory, Pids, Denials, Result, Command, Host, ColumnCount };
    static constexpr int kIdRole = Qt::UserRole + 1;
    // A value that sorts like the column (Started: nanoseconds; others: the display value).
    static constexpr int kSortRole = Qt::UserRole + 2;

    explicit JobTableModel(Backend* backend, QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

    // The host the rows come from (the Host column); "" on a single host.
    void setHost(const QString& host) { m_host = host; }
    const QString& host() const { return m_host; }

    // Polls every intervalMs; 0 stops polling.
    void setPollInterval(int intervalMs);
    void refresh();
    // Merges a `jobs` answer (newest first). Public for tests.
    void applyJobs(const nlohmann::json& jobs);
    // Merges pushed jobs (moatd's `watch`): each one updated in place or
    // inserted where its id belongs; no other row is touched.
    void applyJobUpdates(const nlohmann::json& jobs);
    // The job rows arrive by push (with their live figures): refresh() then
    // requests nothing.
    void setJobsPushed(bool pushed) { m_jobsPushed = pushed; }
    // Merges a `live` push: running jobs' denial count, usage and last sample.
    void applyLive(const nlohmann::json& figures);
    void applyResourceEvents(const nlohmann::json& events);

    const JobRow* job(int row) const;
    const JobRow* jobById(int64_t id) const;
    int rowOfId(int64_t id) const;
    // For the event filter's `policy=` term.
    QString policyOfJob(int64_t id) const;

signals:
    void refreshed();
    void failed(const QString& message);

private:
    void pollResources();
    QString resultText(const JobRow& j) const;

    Backend* m_backend;
    QString m_host;
    std::vector<JobRow> m_rows;  // newest first, ids strictly decreasing
    QTimer m_timer;
    bool m_jobsInFlight = false;
    bool m_jobsPushed = false;
    bool m_resInFlight = false;
    int64_t m_resCursor = 0;  // last resource event id seen
    int m_limit = 500;
};

}  // namespace moat::ui
