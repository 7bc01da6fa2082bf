#pragma once
// The console with several moatd connections (docs/remote.md), the way
// virt-manager lists libvirt connections: the local daemon and each ssh://
// host in a list on the left; "All hosts" shows every host's jobs in one table
// with a Host column; each host has its own page (a whole MainWindow: jobs,
// its own investigation, policies). The ssh:// connections are kept in
// QSettings ("connections"); the investigation filter is kept per host.
#include <QMainWindow>

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

class QConcatenateTablesProxyModel;
class QLabel;
class QListWidget;
class QListWidgetItem;
class QSortFilterProxyModel;
class QStackedWidget;
class QTableView;

namespace moat::ui {

class DaemonClient;
class MainWindow;

class FleetWindow final : public QMainWindow {
    Q_OBJECT
public:
    // localSocket first (shown as "local"), then each ssh:// address.
    FleetWindow(const QString& localSocket, const QStringList& remotes, QWidget* parent = nullptr);
    ~FleetWindow() override;

    static QStringList savedConnections();

    int hostCount() const { return int(m_hosts.size()); }
    MainWindow* hostWindow(int i) const;
    QString hostName(int i) const;
    int indexOf(const QString& target) const;  // -1 when not listed
    void showAllHosts();
    void showHost(int i);
    QTableView* allJobsTable() const { return m_table; }
    // Adds an ssh:// connection and saves it; false with *why when the
    // address is malformed or already listed.
    bool addConnection(const QString& uri, QString* why);
    // Removes a saved ssh:// connection (the local one stays).
    void removeConnection(int i);
    void restoreLayout();
    // What the window shows, as JSON (for tests and bug reports): each host
    // with its connection state and role, and the all-hosts table's rows.
    nlohmann::json describe() const;

protected:
    void closeEvent(class QCloseEvent* e) override;

private:
    struct Host;
    void addHost(const QString& target, const QString& name);
    void updateHostItem(Host& h);
    void updateSummary();
    void openJob(const QModelIndex& index);
    void saveConnections() const;
    void buildMenus();

    std::vector<std::unique_ptr<Host>> m_hosts;
    QListWidget* m_list;
    QStackedWidget* m_stack;
    QWidget* m_allPage;
    QLabel* m_summary;
    QTableView* m_table;
    QConcatenateTablesProxyModel* m_concat;
    QSortFilterProxyModel* m_sorted;
};

}  // namespace moat::ui
