#pragma once
// The console's window: three views (Jobs, Investigate, Policies) in tabs,
// menus with shortcuts, the connection and role in the status bar, layout and
// the last filter kept in QSettings. Errors go to the status bar, never to a
// modal dialog. Replay and learn results open in windows of their own
// (ReplayPanel), never modal.
#include <QMainWindow>
#include <QPointer>

class QLabel;
class QTabWidget;

namespace moat::ui {

class Backend;
class InvestigateView;
class JobTableModel;
class JobsView;
class PolicyView;
class ReplayPanel;

class MainWindow final : public QMainWindow {
    Q_OBJECT
public:
    enum class View { Jobs, Investigate, Policies };

    explicit MainWindow(Backend* backend, QWidget* parent = nullptr);
    ~MainWindow() override;

    void showView(View v);
    JobsView* jobsView() const { return m_jobs; }
    InvestigateView* investigateView() const { return m_investigate; }
    PolicyView* policyView() const { return m_policies; }
    JobTableModel* jobModel() const { return m_jobModel; }
    void restoreLayout();
    void saveLayout();
    // Inside the console's hosts window (FleetWindow): no window geometry of
    // its own, and its investigation (the filter) kept per host under
    // "hosts/<key>/" in QSettings.
    void setEmbedded(const QString& settingsKey);
    // Opens a non-modal replay (learn=false) or learn window on a finished job
    // and starts it; nullptr (and a status message) when replaying is not
    // possible (no live daemon, not admin).
    ReplayPanel* openReplay(int64_t job, bool learn);
    // The most recently opened replay window, if it is still open.
    ReplayPanel* lastReplay() const;

    static std::optional<View> viewFromName(const QString& name);

    // File > Save incident copy...: a consistent copy (SQLite online backup)
    // of the daemon's database, or of the open copy, made by the console with
    // the operator's own rights on a worker thread; incidentCopyDone reports.
    void saveIncidentCopy(const QString& dest);
    // The database a copy would be made of ("" when unknown).
    QString incidentSource() const;
    // The banner shown above the views when an offline copy cannot be opened.
    QString bannerText() const;

signals:
    void incidentCopyDone(bool ok, const QString& message);

protected:
    void closeEvent(QCloseEvent* e) override;

private:
    void buildMenus();
    void updateConnection();
    void showMessage(const QString& text, int timeoutMs);
    QString filterKey() const;

    Backend* m_backend;
    JobTableModel* m_jobModel;
    QTabWidget* m_tabs;
    JobsView* m_jobs;
    InvestigateView* m_investigate;
    PolicyView* m_policies;
    QLabel* m_connLabel;
    QLabel* m_banner;
    QLabel* m_roleLabel;
    QString m_socketPath;  // the live daemon's socket; replays use connections of their own
    class Watcher* m_watcher = nullptr;  // pushed jobs and policies (live daemon only)
    QPointer<ReplayPanel> m_lastReplay;
    bool m_embedded = false;
    QString m_settingsPrefix;  // "" or "hosts/<key>/"
};

}  // namespace moat::ui
