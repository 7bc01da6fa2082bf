#pragma once
// The replay / learn window for one finished job (non-modal, one per request).
//
// Replay runs op `replay` on the job (JobStream, its own connection), then
// compares the original with the replay side by side (moat::learn::compare):
// cause, exit code or signal, denied syscalls, denial counts, output sizes,
// "reproduced: yes/no" and the differences.
//
// Learn runs the replay with learn=true (denied calls continue and are
// recorded) and shows moat::learn::propose's additions as a checklist with
// the TOML fragment of the checked ones. Apply stores the base policy with the
// checked additions as a new version (op policy_put); Verify replays the
// original job under that text, enforced, and passes when it exits 0 without
// denials. moatd refuses to learn in the seccomp tier ("refused"); the panel
// says why and offers to retry in the container or the vm tier.
#include <QWidget>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/learn/replay.h"
#include "moat/policy/policy.h"

class QLabel;
class QGroupBox;
class QPlainTextEdit;
class QPushButton;
class QTableView;
class QTextBrowser;

namespace moat::ui {

class Backend;
class ProposalModel;
class JobStream;

class ReplayPanel final : public QWidget {
    Q_OBJECT
public:
    // `parent` is the window it belongs to; the panel is a window of its own.
    ReplayPanel(Backend* backend, QString socketPath, int64_t job, bool learn, QWidget* parent = nullptr);
    ~ReplayPanel() override;

    // Runs op replay; `tier` overrides the original's tier when not empty.
    void start(const QString& tier = {});
    // After a "refused" learn: the same replay in the container tier.
    void retryInContainer();
    // The same in the vm tier (a QEMU guest per job).
    void retryInVm();
    // Stores the base policy with the checked additions (op policy_put).
    void apply();
    // Replays the original job under the applied text, enforced.
    void verify();

    int64_t job() const { return m_job; }
    bool learn() const { return m_learn; }
    int64_t replayJob() const { return m_replayJob; }
    bool busy() const;
    // Set once the comparison is shown.
    std::optional<bool> reproduced() const { return m_reproduced; }
    // The daemon's error code of the last failure ("refused", ...), or "".
    QString errorCode() const { return m_errorCode; }
    QString statusText() const;
    QString comparisonText() const;  // the comparison as plain text
    ProposalModel* proposal() const { return m_proposal; }
    QString fragmentText() const;
    QPushButton* retryButton() const { return m_retry; }
    QPushButton* retryVmButton() const { return m_retryVm; }
    // The stored version Apply created ("" / 0 before).
    QString appliedName() const { return m_appliedName; }
    int appliedVersion() const { return m_appliedVersion; }
    std::optional<bool> verifyPassed() const { return m_verifyPassed; }
    QString verifyText() const;

signals:
    void message(const QString& text, int timeoutMs);
    void resultShown();  // comparison (and proposal) shown, or the replay failed
    void appliedVersionSaved(const QString& name, int version);
    void verifyDone(bool passed);
    void policyLinkActivated(const QString& name, int version);

private:
    struct Fetched {
        nlohmann::json job;
        std::vector<nlohmann::json> denials;
    };
    using FetchDone = std::function<void(std::optional<Fetched>, const QString& error)>;

    void onReplayFinished(const nlohmann::json& job);
    void onFailed(const QString& code, const QString& why);
    void fetchJob(int64_t job, FetchDone done);
    void fetchDenials(int64_t job, int64_t after, std::shared_ptr<Fetched> acc, FetchDone done);
    void showComparison(const Fetched& orig, const Fetched& replay);
    void loadBasePolicy(int64_t policyId);
    void updateFragment();
    void updateButtons();
    void setStatus(const QString& text, bool error = false);
    void onVerifyFinished(const nlohmann::json& job);

    Backend* m_backend;
    QString m_socket;
    int64_t m_job;
    bool m_learn;
    QString m_tier;
    int64_t m_replayJob = 0;
    unsigned m_generation = 0;  // answers for an older run are dropped
    std::optional<bool> m_reproduced;
    std::vector<nlohmann::json> m_replayDenials;
    moat::learn::Outcome m_replayOutcome;
    moat::learn::LearnContext m_learnContext;
    QString m_errorCode;
    std::optional<moat::policy::Policy> m_base;
    QString m_appliedToml, m_appliedName;
    int m_appliedVersion = 0;
    bool m_applying = false;
    std::optional<bool> m_verifyPassed;

    JobStream* m_run;
    JobStream* m_verifyRun;
    QLabel* m_title;
    QLabel* m_status;
    QPushButton* m_retry;
    QPushButton* m_retryVm;
    QPushButton* m_cancel;
    QTextBrowser* m_comparison;
    QGroupBox* m_proposalBox;
    ProposalModel* m_proposal;
    QTableView* m_proposalTable;
    QLabel* m_notes;
    QPlainTextEdit* m_fragment;
    QPushButton* m_apply;
    QPushButton* m_verify;
    QLabel* m_result;
};

}  // namespace moat::ui
