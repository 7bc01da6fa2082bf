#include "views/replay_panel.h"

#include <QFontDatabase>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSplitter>
#include <QTableView>
#include <QTextBrowser>
#include <QTextDocumentFragment>
#include <QUrl>
#include <QVBoxLayout>

#include "backend/backend.h"
#include "backend/job_stream.h"
#include "models/format.h"
#include "models/proposal_model.h"
#include "models/status_color.h"
#include "moat/policy/parser.h"

namespace moat::ui {

using nlohmann::json;

namespace {

QString esc(const std::string& s) { return QString::fromStdString(s).toHtmlEscaped(); }

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

QString policyOf(const json& job) {
    const json p = job.value("policy", json::object());
    return QStringLiteral("%1 v%2").arg(QString::fromStdString(str(p, "name"))).arg(p.value("version", 0));
}

QString causeOf(const json& job) {
    const json t = job.value("termination", json::object());
    QString s = QString::fromStdString(str(t, "cause"));
    if (const std::string d = str(t, "detail"); !d.empty()) s += QStringLiteral(": ") + QString::fromStdString(d);
    return s;
}

QString exitOf(const moat::learn::Outcome& o) {
    if (o.exit_code) return QObject::tr("exit code %1").arg(*o.exit_code);
    if (o.signal) return QObject::tr("signal %1").arg(*o.signal);
    return QObject::tr("none");
}

QString deniedOf(const moat::learn::Outcome& o) {
    QStringList names;
    for (const auto& d : o.denied) names << QString::fromStdString(d);
    return names.isEmpty() ? QObject::tr("none") : names.join(QStringLiteral(", "));
}

QString colour(Status s) { return statusColor(s).name(); }

}  // namespace

ReplayPanel::ReplayPanel(Backend* backend, QString socketPath, int64_t job, bool learn, QWidget* parent)
    : QWidget(parent, Qt::Window),
      m_backend(backend),
      m_socket(std::move(socketPath)),
      m_job(job),
      m_learn(learn),
      m_run(new JobStream(this)),
      m_verifyRun(new JobStream(this)) {
    setObjectName(learn ? QStringLiteral("learnPanel") : QStringLiteral("replayPanel"));
    setWindowTitle(learn ? tr("Learn a policy from job %1").arg(job) : tr("Replay job %1").arg(job));
    m_title = new QLabel(windowTitle());
    QFont tf = m_title->font();
    tf.setBold(true);
    tf.setPointSizeF(tf.pointSizeF() * 1.2);
    m_title->setFont(tf);
    m_status = new QLabel;
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_retry = new QPushButton(tr("Retry in the container tier"));
    m_retry->setToolTip(tr("Learn with the job in its own namespaces (op replay, tier container)"));
    m_retry->hide();
    m_retryVm = new QPushButton(tr("Retry in the vm tier"));
    m_retryVm->setObjectName(QStringLiteral("retryInVm"));
    m_retryVm->setToolTip(tr("Learn with the job in a QEMU guest of its own (op replay, tier vm; the first boot "
                             "and root image take a while, longer without KVM)"));
    m_retryVm->hide();
    m_cancel = new QPushButton(tr("Cancel"));
    m_cancel->setToolTip(tr("Close the replay's connection; moatd stops the job"));
    auto* head = new QHBoxLayout;
    head->addWidget(m_title, 1);
    head->addWidget(m_retry);
    head->addWidget(m_retryVm);
    head->addWidget(m_cancel);

    m_comparison = new QTextBrowser;
    m_comparison->setObjectName(QStringLiteral("replayComparison"));
    m_comparison->setOpenLinks(false);
    m_comparison->setPlaceholderText(tr("The comparison of the original and the replay appears here when the replay ends."));

    m_proposal = new ProposalModel(this);
    m_proposalTable = new QTableView;
    m_proposalTable->setObjectName(QStringLiteral("proposalTable"));
    m_proposalTable->setModel(m_proposal);
    m_proposalTable->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_proposalTable->setWordWrap(true);
    m_proposalTable->verticalHeader()->hide();
    m_proposalTable->horizontalHeader()->setStretchLastSection(true);
    m_proposalTable->setColumnWidth(ProposalModel::Entry, fontMetrics().horizontalAdvance(QStringLiteral("allow socket when arg0 == AF_UNIX")) + 40);
    m_proposalTable->setColumnWidth(ProposalModel::Risk, fontMetrics().horizontalAdvance(QStringLiteral("reaches every driver's ioctl handler")));
    // Wrapped cells need their rows re-fitted whenever a column's width changes.
    connect(m_proposalTable->horizontalHeader(), &QHeaderView::sectionResized, m_proposalTable,
            [t = m_proposalTable] { t->resizeRowsToContents(); });
    m_notes = new QLabel;
    m_notes->setWordWrap(true);
    m_notes->hide();
    m_fragment = new QPlainTextEdit;
    m_fragment->setObjectName(QStringLiteral("proposalFragment"));
    m_fragment->setReadOnly(true);
    m_fragment->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    // Wrapped: the comment line of each addition carries its evidence.
    m_fragment->setLineWrapMode(QPlainTextEdit::WidgetWidth);
    m_fragment->setPlaceholderText(tr("The TOML change for the checked additions."));
    m_apply = new QPushButton(tr("Apply as new version"));
    m_apply->setToolTip(tr("Store the policy with the checked additions as a new version (op policy_put)"));
    m_verify = new QPushButton(tr("Verify"));
    m_verify->setToolTip(tr("Replay the original job under the applied version, enforced; "
                            "it passes when it exits 0 without denials"));
    m_result = new QLabel;
    m_result->setWordWrap(true);
    m_result->setTextInteractionFlags(Qt::TextBrowserInteraction);

    auto* list = new QWidget;
    auto* ll = new QVBoxLayout(list);
    ll->setContentsMargins(0, 0, 0, 0);
    ll->addWidget(new QLabel(tr("Additions (uncheck what the new version should not get):")));
    ll->addWidget(m_proposalTable, 1);
    ll->addWidget(m_notes);
    auto* frag = new QWidget;
    auto* fl = new QVBoxLayout(frag);
    fl->setContentsMargins(0, 0, 0, 0);
    fl->addWidget(new QLabel(tr("Change to the policy:")));
    fl->addWidget(m_fragment, 1);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(list);
    split->addWidget(frag);
    split->setStretchFactor(0, 1);
    split->setStretchFactor(1, 1);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_result, 1);
    buttons->addWidget(m_apply);
    buttons->addWidget(m_verify);
    m_proposalBox = new QGroupBox(tr("Proposal"));
    auto* pl = new QVBoxLayout(m_proposalBox);
    pl->setContentsMargins(4, 4, 4, 4);
    pl->addWidget(split, 1);
    pl->addLayout(buttons);
    m_proposalBox->setVisible(learn);

    auto* body = new QSplitter(Qt::Vertical);
    body->addWidget(m_comparison);
    body->addWidget(m_proposalBox);
    const int line = fontMetrics().height();
    body->setSizes({line * 16, line * 30});
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(head);
    layout->addWidget(m_status);
    layout->addWidget(body, 1);

    connect(m_run, &JobStream::started, this, [this](qint64 id) {
        m_replayJob = id;
        setStatus(tr("Job %1 is replaying job %2%3…")
                      .arg(id)
                      .arg(m_job)
                      .arg(m_learn ? tr(" in learn mode (denied calls continue and are recorded)") : QString()));
    });
    connect(m_run, &JobStream::finished, this, &ReplayPanel::onReplayFinished);
    connect(m_run, &JobStream::failed, this, &ReplayPanel::onFailed);
    connect(m_verifyRun, &JobStream::started, this, [this](qint64 id) {
        m_result->setText(tr("Verifying: job %1 replays job %2 under %3 v%4…").arg(id).arg(m_job).arg(m_appliedName).arg(m_appliedVersion));
    });
    connect(m_verifyRun, &JobStream::finished, this, &ReplayPanel::onVerifyFinished);
    connect(m_verifyRun, &JobStream::failed, this, [this](const QString&, const QString& why) {
        m_result->setText(QStringLiteral("<span style='color:%1'>%2</span>").arg(colour(Status::Bad), tr("Verify failed: %1").arg(why).toHtmlEscaped()));
        emit message(tr("Verify failed: %1").arg(why), 10000);
        updateButtons();
    });
    connect(m_retry, &QPushButton::clicked, this, &ReplayPanel::retryInContainer);
    connect(m_retryVm, &QPushButton::clicked, this, &ReplayPanel::retryInVm);
    connect(m_cancel, &QPushButton::clicked, this, [this] {
        if (m_run->running()) m_run->cancel();
        if (m_verifyRun->running()) m_verifyRun->cancel();
        updateButtons();
    });
    connect(m_apply, &QPushButton::clicked, this, &ReplayPanel::apply);
    connect(m_verify, &QPushButton::clicked, this, &ReplayPanel::verify);
    connect(m_proposal, &ProposalModel::checkedChanged, this, [this] {
        if (!m_appliedToml.isEmpty()) {
            // What Verify would test is no longer what is checked.
            m_appliedToml.clear();
            m_verifyPassed.reset();
            m_result->setText(tr("The selection changed: apply it to store and verify it."));
        }
        updateFragment();
        updateButtons();
    });
    connect(m_result, &QLabel::linkActivated, this, [this](const QString& link) {
        const QStringList parts = link.split(u':');  // "policy:NAME:VERSION"
        if (parts.size() == 3) emit policyLinkActivated(parts[1], parts[2].toInt());
    });
    connect(m_backend, &Backend::stateChanged, this, &ReplayPanel::updateButtons);
    resize(fontMetrics().horizontalAdvance(QLatin1Char('x')) * 170, line * 50);
    updateButtons();
}

ReplayPanel::~ReplayPanel() = default;

bool ReplayPanel::busy() const { return m_run->running() || m_verifyRun->running() || m_applying; }

QString ReplayPanel::statusText() const { return m_status->text(); }
QString ReplayPanel::comparisonText() const { return m_comparison->toPlainText(); }
QString ReplayPanel::fragmentText() const { return m_fragment->toPlainText(); }
QString ReplayPanel::verifyText() const { return QTextDocumentFragment::fromHtml(m_result->text()).toPlainText(); }

void ReplayPanel::setStatus(const QString& text, bool error) {
    m_status->setText(error ? QStringLiteral("<span style='color:%1'>%2</span>").arg(colour(Status::Bad), text.toHtmlEscaped())
                            : text.toHtmlEscaped());
}

void ReplayPanel::start(const QString& tier) {
    ++m_generation;
    m_tier = tier;
    m_replayJob = 0;
    m_reproduced.reset();
    m_errorCode.clear();
    m_base.reset();
    m_replayDenials.clear();
    m_appliedToml.clear();
    m_verifyPassed.reset();
    m_proposal->setAdditions({});
    m_comparison->clear();
    m_notes->hide();
    m_result->clear();
    m_retry->hide();
    m_retryVm->hide();
    if (!tier.isEmpty()) {
        setWindowTitle(m_learn ? tr("Learn a policy from job %1 (%2 tier)").arg(m_job).arg(tier)
                               : tr("Replay job %1 (%2 tier)").arg(m_job).arg(tier));
        m_title->setText(windowTitle());
    }
    json req = {{"op", "replay"}, {"job", m_job}, {"learn", m_learn}};
    if (!tier.isEmpty()) req["tier"] = tier.toStdString();
    setStatus(tr("Asking moatd to replay job %1…").arg(m_job));
    m_run->start(m_socket, req);
    updateButtons();
}

void ReplayPanel::retryInContainer() { start(QStringLiteral("container")); }
void ReplayPanel::retryInVm() { start(QStringLiteral("vm")); }

void ReplayPanel::onFailed(const QString& code, const QString& why) {
    m_errorCode = code;
    QString text = code == u"refused" || code.isEmpty() || code == u"disconnected" || code == u"cancelled"
                       ? why
                       : QStringLiteral("%1: %2").arg(code, why);
    setStatus(tr("Replay of job %1 failed: %2").arg(m_job).arg(text), true);
    // Learning is refused only in the seccomp tier: both tiers with namespaces are offered.
    if (code == u"refused" && m_learn) {
        m_retry->setVisible(m_tier != u"container");
        m_retryVm->setVisible(m_tier != u"vm");
    }
    emit message(tr("Replay of job %1 failed: %2").arg(m_job).arg(text), 10000);
    updateButtons();
    emit resultShown();
}

void ReplayPanel::fetchJob(int64_t job, FetchDone done) {
    const unsigned gen = m_generation;
    m_backend->request({{"op", "show"}, {"job", job}}, this, [this, job, gen, done](const json& a) {
        if (gen != m_generation) return;
        if (!a.value("ok", false)) return done(std::nullopt, tr("job %1: %2").arg(job).arg(Backend::errorText(a)));
        auto acc = std::make_shared<Fetched>();
        acc->job = a.value("job", json::object());
        fetchDenials(job, 0, acc, done);
    });
}

void ReplayPanel::fetchDenials(int64_t job, int64_t after, std::shared_ptr<Fetched> acc, FetchDone done) {
    const unsigned gen = m_generation;
    m_backend->request({{"op", "events"}, {"job", job}, {"kind", "denial"}, {"after", after}, {"limit", 5000}}, this,
                       [this, job, gen, acc, done](const json& a) {
                           if (gen != m_generation) return;
                           if (!a.value("ok", false))
                               return done(std::nullopt, tr("denials of job %1: %2").arg(job).arg(Backend::errorText(a)));
                           for (const auto& e : a.value("events", json::array())) acc->denials.push_back(e);
                           if (auto n = a.find("next"); n != a.end() && n->is_number_integer())
                               return fetchDenials(job, n->get<int64_t>(), acc, done);
                           done(*acc, {});
                       });
}

void ReplayPanel::onReplayFinished(const json& job) {
    m_replayJob = job.value("id", m_replayJob);
    setStatus(tr("Replay job %1 finished; loading both jobs' records…").arg(m_replayJob));
    updateButtons();
    fetchJob(m_job, [this](std::optional<Fetched> orig, const QString& err) {
        if (!orig) return onFailed(QStringLiteral("store"), err);
        fetchJob(m_replayJob, [this, orig](std::optional<Fetched> rep, const QString& err2) {
            if (!rep) return onFailed(QStringLiteral("store"), err2);
            showComparison(*orig, *rep);
            const std::string cause = str(rep->job.value("termination", json::object()), "cause");
            if (cause == "setup-failed") {
                setStatus(tr("Replay job %1 could not be set up: %2")
                              .arg(m_replayJob)
                              .arg(QString::fromStdString(str(rep->job["termination"], "detail"))),
                          true);
                emit resultShown();
                return;
            }
            if (m_learn) {
                const json p = rep->job.value("policy", json::object());
                loadBasePolicy(p.value("id", int64_t(0)));
            } else {
                setStatus(tr("Replay job %1 finished").arg(m_replayJob));
                emit resultShown();
            }
        });
    });
}

void ReplayPanel::showComparison(const Fetched& orig, const Fetched& rep) {
    using moat::learn::Outcome;
    const Outcome a = moat::learn::outcome_of(orig.job, orig.denials);
    const Outcome b = moat::learn::outcome_of(rep.job, rep.denials);
    const moat::learn::Comparison cmp = moat::learn::compare(a, b, orig.job);
    m_replayDenials = rep.denials;
    m_replayOutcome = b;
    // The console replays under the recorded policy: a job that passed under it needs no change.
    m_learnContext = {};
    m_learnContext.original_job = m_job;
    m_learnContext.original_passed = a.cause == "exited" && a.exit_code == 0;
    m_learnContext.replay_job = rep.job;
    m_learnContext.original = orig.job;
    m_learnContext.original_denials = orig.denials;
    m_learnContext.original = orig.job;
    if (!m_learn) m_reproduced = cmp.reproduced;

    // A cell of the replay column is marked when it differs from the original.
    auto row = [](const QString& k, const QString& x, const QString& y, std::optional<Status> mark = std::nullopt) {
        const QString style = mark ? QStringLiteral(" style='color:%1; font-weight:bold'").arg(colour(*mark)) : QString();
        return QStringLiteral("<tr><td style='padding-right:12px; white-space:nowrap'><b>%1</b></td><td style='padding-right:12px'>%2</td>"
                              "<td%4>%3</td></tr>")
            .arg(k, x.toHtmlEscaped(), y.toHtmlEscaped(), style);
    };
    const Status diff = m_learn ? Status::Warn : Status::Bad;
    auto differs = [&](bool d, Status s) { return d ? std::optional<Status>(s) : std::nullopt; };
    QString h = QStringLiteral("<table cellspacing='2'>");
    h += QStringLiteral("<tr><th></th><th align='left'>%1</th><th align='left'>%2</th></tr>")
             .arg(tr("Original — job %1").arg(m_job),
                  m_learn ? tr("Learn replay — job %1 (default action not enforced)").arg(m_replayJob) : tr("Replay — job %1").arg(m_replayJob));
    h += row(tr("Policy"), policyOf(orig.job), policyOf(rep.job));
    h += row(tr("Tier"), QString::fromStdString(str(orig.job, "tier")), QString::fromStdString(str(rep.job, "tier")),
             differs(str(orig.job, "tier") != str(rep.job, "tier"), Status::Warn));
    h += row(tr("Cause"), causeOf(orig.job), causeOf(rep.job), differs(a.cause != b.cause, diff));
    h += row(tr("Exit code / signal"), exitOf(a), exitOf(b), differs(a.exit_code != b.exit_code || a.signal != b.signal, diff));
    h += row(tr("Denied syscalls"), deniedOf(a), deniedOf(b), differs(a.denied != b.denied, diff));
    h += row(tr("Denials"), QString::number(a.denial_count), QString::number(b.denial_count),
             differs(a.denial_count != b.denial_count, Status::Warn));
    h += row(tr("stdout"), tr("%1 bytes").arg(a.stdout_bytes), tr("%1 bytes").arg(b.stdout_bytes),
             differs(a.stdout_bytes != b.stdout_bytes, Status::Warn));
    h += row(tr("stderr"), tr("%1 bytes").arg(a.stderr_bytes), tr("%1 bytes").arg(b.stderr_bytes),
             differs(a.stderr_bytes != b.stderr_bytes, Status::Warn));
    h += QStringLiteral("</table>");
    if (m_learn) {
        h += QStringLiteral("<p><b>%1</b></p>")
                 .arg(tr("Learn mode: calls the policy denies by default were recorded and let through (your explicit "
                         "deny rules still applied), and the paths the job lacked were noted, so its result shows what "
                         "the job does when the policy lets it; the proposal below covers those calls and paths."));
    } else if (cmp.reproduced) {
        h += QStringLiteral("<p style='color:%1'><b>%2</b> %3</p>")
                 .arg(colour(Status::Good), tr("Reproduced: yes"), tr("(same cause, exit code and denied syscalls)"));
    } else {
        h += QStringLiteral("<p style='color:%1'><b>%2</b></p>").arg(colour(Status::Bad), tr("Reproduced: no"));
    }
    auto list = [](const QString& title, const std::vector<std::string>& items) {
        if (items.empty()) return QString();
        QString s = QStringLiteral("<p><b>%1</b></p><ul>").arg(title);
        for (const auto& i : items) s += QStringLiteral("<li>%1</li>").arg(esc(i));
        return s + QStringLiteral("</ul>");
    };
    h += list(tr("Differences"), cmp.differences);
    h += list(tr("Notes"), cmp.notes);
    m_comparison->setHtml(h);
}

void ReplayPanel::loadBasePolicy(int64_t policyId) {
    setStatus(tr("Replay job %1 finished; loading the policy it ran under…").arg(m_replayJob));
    const unsigned gen = m_generation;
    m_backend->request({{"op", "policy"}, {"id", policyId}}, this, [this, gen](const json& a) {
        if (gen != m_generation) return;
        if (!a.value("ok", false)) return onFailed(QStringLiteral("store"), tr("the replay's policy: %1").arg(Backend::errorText(a)));
        const std::string source = str(a, "name") + " v" + std::to_string(a.value("version", 0));
        auto parsed = moat::policy::parse_policy(str(a, "toml"), source);
        if (!parsed.policy)
            return onFailed(QStringLiteral("bad-policy"), tr("the replay's policy %1 does not parse any more")
                                                               .arg(QString::fromStdString(source)));
        m_base = std::move(*parsed.policy);
        const moat::learn::Proposal p = moat::learn::propose(*m_base, m_replayDenials, m_replayOutcome, m_learnContext);
        m_proposal->setAdditions(p.additions);
        m_proposalTable->resizeRowsToContents();
        QStringList notes;
        if (p.empty() && p.notes.empty()) notes << tr("Nothing was denied: the policy needs no change.");
        for (const auto& n : p.notes) notes << QString::fromStdString(n);
        m_notes->setText(notes.join(u'\n'));
        m_notes->setVisible(!notes.isEmpty());
        updateFragment();
        setStatus(tr("Learn replay job %1 finished: %2 proposed addition(s) to %3")
                      .arg(m_replayJob)
                      .arg(p.additions.size())
                      .arg(QString::fromStdString(source)));
        updateButtons();
        emit resultShown();
    });
}

void ReplayPanel::updateFragment() {
    if (!m_base) {
        m_fragment->clear();
        return;
    }
    m_fragment->setPlainText(QString::fromStdString(moat::learn::fragment(*m_base, m_proposal->checkedAdditions())));
}

void ReplayPanel::updateButtons() {
    const bool running = m_run->running() || m_verifyRun->running();
    m_cancel->setVisible(running);
    m_apply->setEnabled(m_base && m_proposal->checkedCount() > 0 && !m_applying && m_backend->canWrite());
    m_verify->setEnabled(!m_appliedToml.isEmpty() && !m_verifyRun->running() && !m_socket.isEmpty());
}

void ReplayPanel::apply() {
    if (!m_base || m_proposal->checkedCount() == 0) {
        emit message(tr("Nothing to apply: check at least one addition"), 6000);
        return;
    }
    if (!m_backend->canWrite()) {
        emit message(tr("Saving needs a connection to moatd with the admin role"), 8000);
        return;
    }
    const std::string text = moat::learn::apply(*m_base, m_proposal->checkedAdditions());
    m_applying = true;
    updateButtons();
    m_backend->request({{"op", "policy_put"}, {"policy_toml", text}, {"policy_source", "moat-console learn from job " + std::to_string(m_job)}},
                       this, [this, text](const json& a) {
                           m_applying = false;
                           if (!a.value("ok", false)) {
                               const QString why = tr("Not saved: %1").arg(Backend::errorText(a));
                               m_result->setText(QStringLiteral("<span style='color:%1'>%2</span>").arg(colour(Status::Bad), why.toHtmlEscaped()));
                               emit message(why, 15000);
                               updateButtons();
                               return;
                           }
                           m_appliedToml = QString::fromStdString(text);
                           m_appliedName = QString::fromStdString(str(a, "name"));
                           m_appliedVersion = a.value("version", 0);
                           m_verifyPassed.reset();
                           m_result->setText(tr("Saved <a href=\"policy:%1:%2\">%1 v%2</a>. <b>Verify</b> replays job %3 under it.")
                                                 .arg(m_appliedName.toHtmlEscaped())
                                                 .arg(m_appliedVersion)
                                                 .arg(m_job));
                           emit message(tr("Saved %1 v%2").arg(m_appliedName).arg(m_appliedVersion), 8000);
                           updateButtons();
                           emit appliedVersionSaved(m_appliedName, m_appliedVersion);
                       });
}

void ReplayPanel::verify() {
    if (m_appliedToml.isEmpty()) {
        emit message(tr("Apply the proposal first"), 6000);
        return;
    }
    // The original's tier (no override): the version is verified where the job runs.
    const json req = {{"op", "replay"},
                      {"job", m_job},
                      {"policy_toml", m_appliedToml.toStdString()},
                      {"policy_source", QStringLiteral("%1 v%2").arg(m_appliedName).arg(m_appliedVersion).toStdString()}};
    m_verifyPassed.reset();
    m_result->setText(tr("Verifying %1 v%2 on job %3…").arg(m_appliedName.toHtmlEscaped()).arg(m_appliedVersion).arg(m_job));
    m_verifyRun->start(m_socket, req);
    updateButtons();
}

void ReplayPanel::onVerifyFinished(const json& job) {
    const int64_t id = job.value("id", m_verifyRun->job());
    updateButtons();
    fetchJob(id, [this, id](std::optional<Fetched> f, const QString& err) {
        if (!f) {
            m_result->setText(QStringLiteral("<span style='color:%1'>%2</span>").arg(colour(Status::Bad), tr("Verify: %1").arg(err).toHtmlEscaped()));
            return;
        }
        const moat::learn::Outcome o = moat::learn::outcome_of(f->job, f->denials);
        m_verifyPassed = o.passed();
        const QString version = QStringLiteral("<a href=\"policy:%1:%2\">%1 v%2</a>").arg(m_appliedName.toHtmlEscaped()).arg(m_appliedVersion);
        if (o.passed())
            m_result->setText(QStringLiteral("<span style='color:%1'><b>%2</b></span> %3")
                                  .arg(colour(Status::Good), tr("Verify: pass"),
                                       tr("job %1 replayed job %2 under %3: exited 0, no denials").arg(id).arg(m_job).arg(version)));
        else
            m_result->setText(QStringLiteral("<span style='color:%1'><b>%2</b></span> %3")
                                  .arg(colour(Status::Bad), tr("Verify: fail"),
                                       tr("job %1 replayed job %2 under %3: %4")
                                           .arg(id)
                                           .arg(m_job)
                                           .arg(version, QString::fromStdString(o.describe()).toHtmlEscaped())));
        updateButtons();
        emit verifyDone(o.passed());
    });
}

}  // namespace moat::ui
