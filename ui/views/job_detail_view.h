#pragma once
// The selected job: what ran, under which policy version, how it ended, its
// sandbox, live resource charts (rolling window), its denials (a bounded,
// tailing event model) and, once it has finished, the recorded tail of its
// stdout and stderr (op `output`). Replay and Learn ask the main window for a
// ReplayPanel on the job.
#include <QWidget>
#include <QTimer>

#include <nlohmann/json.hpp>

class QLabel;
class QPlainTextEdit;
class QPushButton;
class QTableView;
class QTextBrowser;

namespace moat::ui {

class Backend;
class EventTableModel;
class ResourceChart;
struct JobRow;

class JobDetailView final : public QWidget {
    Q_OBJECT
public:
    explicit JobDetailView(Backend* backend, QWidget* parent = nullptr);

    // nullptr: nothing selected. Called on every refresh of the job list; the
    // charts restart only when the job changes.
    void showJob(const JobRow* job);
    int64_t jobId() const { return m_jobId; }
    EventTableModel* denialModel() const { return m_denials; }
    ResourceChart* cpuChart() const { return m_cpu; }
    ResourceChart* pidsChart() const { return m_pids; }
    void updateActions();
    // The recorded output shown for the job ("" while not loaded).
    QString outputText(bool stderrStream) const;
    QString outputInfo(bool stderrStream) const;
    QString infoText() const;  // the job pane as plain text

signals:
    void message(const QString& text, int timeoutMs);
    void policyLinkActivated(const QString& name, int version);
    void investigateJob(qint64 job);
    void jobLinkActivated(qint64 job);
    void replayRequested(qint64 job, bool learn);
    // Both streams of a finished job are loaded (or could not be).
    void outputLoaded(qint64 job);

private:
    void pollResources();
    void applySamples(const nlohmann::json& events);
    void loadOutput();
    void clearOutput(const QString& why);

    Backend* m_backend;
    int64_t m_jobId = 0;
    int64_t m_startedNs = 0;
    bool m_running = false;
    bool m_clientRoot = false;  // ran on a root its client passed (not snapshotted: not replayable)
    bool m_vm = false;  // a vm-tier job: the charts' limits are the guest's
    int64_t m_resCursor = 0;
    bool m_resInFlight = false;
    bool m_resDone = false;
    QTimer m_resTimer;

    QLabel* m_title;
    QTextBrowser* m_info;
    QPushButton* m_stop;
    QPushButton* m_investigate;
    QPushButton* m_replay;
    QPushButton* m_learn;
    ResourceChart* m_cpu;
    ResourceChart* m_memory;
    ResourceChart* m_pids;
    EventTableModel* m_denials;
    QTableView* m_denialTable;
    struct Stream {
        QLabel* info;
        QPlainTextEdit* text;
    };
    Stream m_output[2];        // stdout, stderr
    // A running job on a live daemon: its events and output are pushed (op
    // `watch`), so its charts, denials and output move as moatd stores them.
    class Watcher* m_live = nullptr;
    int64_t m_liveJob = 0;
    uint64_t m_liveBytes[2] = {0, 0};
    void startLive(int64_t id);
    void onLivePush(const nlohmann::json& f);
    int64_t m_outputJob = 0;   // whose output is shown or being loaded
    int m_outputPending = 0;
};

}  // namespace moat::ui
