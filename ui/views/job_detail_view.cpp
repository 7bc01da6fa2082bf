#include "views/job_detail_view.h"

#include <QFontDatabase>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollBar>
#include <QTextBrowser>
#include <QUrl>
#include <QSplitter>
#include <QTabWidget>
#include <QTextCursor>
#include <QTextDocument>
#include <QTableView>
#include <QVBoxLayout>

#include "backend/backend.h"
#include "backend/daemon_client.h"
#include "backend/watcher.h"
#include "charts/resource_chart.h"
#include "models/event_table_model.h"
#include "models/format.h"
#include "models/job_table_model.h"
#include "moat/common/base64.h"

namespace moat::ui {

using nlohmann::json;

namespace {
QString text(const json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? QString::fromStdString(it->get<std::string>()) : QString();
}

// A vm-tier job's guest (docs/vm.md): which accelerator and why, how long the
// boot took and whether the guest came warm from the pool, the guest kernel
// and memory, the root image. Every value is escaped: the kernel release the
// guest reported is the guest's word, and the rest is shown the same way.
// Fields the record does not have yet (the guest is still booting, or never
// booted) say so instead of showing nothing.
template <class Row>
QString vmRows(const JobRow& job, const Row& row) {
    const json sb = job.object.value("sandbox", json::object());
    QString h;
    QString accel = text(sb, "accelerator");
    if (accel.isEmpty()) accel = text(job.object, "accelerator");
    QString a = accel.isEmpty() ? JobDetailView::tr("not chosen yet") : QStringLiteral("<b>%1</b>").arg(accel.toHtmlEscaped());
    if (const QString why = text(sb, "accelerator_reason"); !why.isEmpty()) a += QStringLiteral(" — ") + why.toHtmlEscaped();
    h += row(JobDetailView::tr("Accelerator"), a);

    QString boot;
    if (auto ms = sb.find("boot_ms"); ms != sb.end() && ms->is_number()) {
        boot = formatDurationNs(ms->get<int64_t>() * 1'000'000);
        if (auto w = sb.find("warm"); w != sb.end() && w->is_boolean())
            boot += w->get<bool>() ? JobDetailView::tr(", warm (a booted guest from the pool)")
                                   : JobDetailView::tr(", cold (booted for this job)");
    } else {
        boot = job.running() ? JobDetailView::tr("booting…") : JobDetailView::tr("the guest did not boot");
    }
    h += row(JobDetailView::tr("Boot"), boot.toHtmlEscaped());

    // One row for the guest: kernel and memory.
    QString guest = text(sb, "guest_kernel");
    guest = JobDetailView::tr("kernel %1").arg(guest.isEmpty() ? QStringLiteral("-") : guest);
    if (const QString pkg = text(sb, "guest_kernel_package"); !pkg.isEmpty())
        guest += JobDetailView::tr(" (package %1)").arg(pkg);
    if (const QString rep = text(sb, "guest_kernel_reported"); !rep.isEmpty() && rep != text(sb, "guest_kernel"))
        guest += JobDetailView::tr("; the guest reports %1").arg(rep);
    if (auto m = sb.find("guest_memory_bytes"); m != sb.end() && m->is_number_integer())
        guest += JobDetailView::tr(", memory %1").arg(formatBytes(m->get<uint64_t>()));
    h += row(JobDetailView::tr("Guest"), guest.toHtmlEscaped());

    if (auto img = sb.find("root_image"); img != sb.end() && img->is_object()) {
        QStringList r;
        if (auto b = img->find("bytes"); b != img->end() && b->is_number_integer()) r << formatBytes(b->get<uint64_t>());
        if (auto e = img->find("entries"); e != img->end() && e->is_number_integer())
            r << JobDetailView::tr("%1 entries").arg(e->get<uint64_t>());
        r << (img->value("cached", false) ? JobDetailView::tr("cached") : JobDetailView::tr("built for this job"));
        if (const QString sha = text(*img, "sha256"); !sha.isEmpty()) r << QStringLiteral("sha256 ") + sha.left(12);
        h += row(JobDetailView::tr("Root image"), r.join(QStringLiteral(", ")).toHtmlEscaped());
    }
    return h;
}
}  // namespace

JobDetailView::JobDetailView(Backend* backend, QWidget* parent) : QWidget(parent), m_backend(backend) {
    m_title = new QLabel(tr("No job selected"));
    QFont tf = m_title->font();
    tf.setBold(true);
    tf.setPointSizeF(tf.pointSizeF() * 1.2);
    m_title->setFont(tf);
    m_stop = new QPushButton(tr("Stop job"));
    m_stop->setToolTip(tr("SIGKILL the job (op stop; needs the admin role)"));
    m_investigate = new QPushButton(tr("Investigate"));
    m_investigate->setToolTip(tr("Show this job's events in the Investigate view"));
    m_replay = new QPushButton(tr("Replay"));
    m_replay->setToolTip(tr("Run the finished job again from its recording and compare the outcomes (op replay)"));
    m_learn = new QPushButton(tr("Learn…"));
    m_learn->setToolTip(tr("Replay the job with denied calls let through and recorded, and propose the policy change "
                           "that lets it pass (op replay, learn)"));
    auto* head = new QHBoxLayout;
    head->addWidget(m_title, 1);
    head->addWidget(m_replay);
    head->addWidget(m_learn);
    head->addWidget(m_investigate);
    head->addWidget(m_stop);

    auto* info = new QGroupBox(tr("Job"));
    auto* il = new QVBoxLayout(info);
    il->setContentsMargins(4, 4, 4, 4);
    m_info = new QTextBrowser;
    m_info->setOpenLinks(false);
    m_info->setFrameShape(QFrame::NoFrame);
    il->addWidget(m_info);

    m_denials = new EventTableModel(backend, this);
    m_denials->setCapacity(2000);
    m_denialTable = new QTableView;
    m_denialTable->setModel(m_denials);
    m_denialTable->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_denialTable->verticalHeader()->hide();
    m_denialTable->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
    m_denialTable->horizontalHeader()->setStretchLastSection(true);
    for (int c : {EventTableModel::Id, EventTableModel::Job, EventTableModel::Kind}) m_denialTable->hideColumn(c);
    auto width = [this](const char* sample) { return fontMetrics().horizontalAdvance(QString::fromLatin1(sample)) + 24; };
    m_denialTable->setColumnWidth(EventTableModel::Time, width("2026-11-29 17:07:23.938"));
    m_denialTable->setColumnWidth(EventTableModel::Count, width("Count"));
    m_denialTable->setColumnWidth(EventTableModel::What, width("Syscall / event"));
    m_denialTable->setColumnWidth(EventTableModel::Action, width("errno:EACCES"));
    m_denialTable->setColumnWidth(EventTableModel::Module, width("libc.so.6+0x11f0a"));
    // The path takes the spare width; Module is short.
    m_denialTable->horizontalHeader()->setStretchLastSection(false);
    m_denialTable->horizontalHeader()->setSectionResizeMode(EventTableModel::Target, QHeaderView::Stretch);
    auto* denialBox = new QGroupBox(tr("Denials"));
    auto* dl = new QVBoxLayout(denialBox);
    dl->setContentsMargins(4, 4, 4, 4);
    dl->addWidget(m_denialTable);

    // The recorded output tails: monospace, read-only; bytes that are not
    // UTF-8 are shown as U+FFFD (QString::fromUtf8 replaces them).
    auto* outputTabs = new QTabWidget;
    outputTabs->setObjectName(QStringLiteral("jobOutputTabs"));
    outputTabs->setDocumentMode(true);
    for (int i = 0; i < 2; ++i) {
        auto* page = new QWidget;
        auto* pl = new QVBoxLayout(page);
        pl->setContentsMargins(0, 2, 0, 0);
        m_output[i].info = new QLabel;
        m_output[i].text = new QPlainTextEdit;
        m_output[i].text->setReadOnly(true);
        m_output[i].text->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
        m_output[i].text->setLineWrapMode(QPlainTextEdit::NoWrap);
        pl->addWidget(m_output[i].info);
        pl->addWidget(m_output[i].text, 1);
        outputTabs->addTab(page, i == 0 ? QStringLiteral("stdout") : QStringLiteral("stderr"));
    }
    auto* outputBox = new QGroupBox(tr("Output"));
    auto* ol = new QVBoxLayout(outputBox);
    ol->setContentsMargins(4, 4, 4, 4);
    ol->addWidget(outputTabs);

    auto* left = new QSplitter(Qt::Vertical);
    left->setObjectName(QStringLiteral("jobDetailLeftSplitter"));
    left->addWidget(info);
    left->addWidget(denialBox);
    left->addWidget(outputBox);
    left->setStretchFactor(0, 2);
    left->setStretchFactor(1, 3);
    left->setStretchFactor(2, 2);

    m_cpu = new ResourceChart(tr("CPU"), tr("%"), 1.0);
    m_memory = new ResourceChart(tr("Memory"), tr("MiB"), 1024.0 * 1024.0);
    m_pids = new ResourceChart(tr("Processes and threads"), tr("pids"), 1.0);
    m_pids->setIntegerValues(true);
    auto* charts = new QWidget;
    auto* cl = new QVBoxLayout(charts);
    cl->setContentsMargins(0, 0, 0, 0);
    cl->addWidget(m_cpu);
    cl->addWidget(m_memory);
    cl->addWidget(m_pids);

    auto* body = new QSplitter(Qt::Horizontal);
    body->setObjectName(QStringLiteral("jobDetailSplitter"));
    body->addWidget(left);
    body->addWidget(charts);
    body->setStretchFactor(0, 1);
    body->setStretchFactor(1, 1);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 4, 0, 0);
    layout->addLayout(head);
    layout->addWidget(body, 1);

    connect(m_info, &QTextBrowser::anchorClicked, this, [this](const QUrl& url) {
        // "policy:NAME:VERSION" or "job:ID"
        const QStringList parts = url.toString().split(u':');
        if (parts.size() == 3 && parts[0] == u"policy") emit policyLinkActivated(parts[1], parts[2].toInt());
        if (parts.size() == 2 && parts[0] == u"job") emit jobLinkActivated(parts[1].toLongLong());
    });
    connect(m_replay, &QPushButton::clicked, this, [this] {
        if (m_jobId && !m_running) emit replayRequested(m_jobId, false);
    });
    connect(m_learn, &QPushButton::clicked, this, [this] {
        if (m_jobId && !m_running) emit replayRequested(m_jobId, true);
    });
    connect(m_investigate, &QPushButton::clicked, this, [this] {
        if (m_jobId) emit investigateJob(m_jobId);
    });
    connect(m_stop, &QPushButton::clicked, this, [this] {
        const int64_t id = m_jobId;
        if (!id) return;
        m_stop->setEnabled(false);
        m_backend->request({{"op", "stop"}, {"job", id}}, this, [this, id](const json& a) {
            if (a.value("ok", false)) emit message(tr("Stopped job %1").arg(id), 5000);
            else emit message(tr("Could not stop job %1: %2").arg(id).arg(Backend::errorText(a)), 10000);
            updateActions();
        });
    });
    connect(m_denials, &EventTableModel::failed, this, [this](const QString& m) { emit message(m, 8000); });
    connect(&m_resTimer, &QTimer::timeout, this, &JobDetailView::pollResources);
    if (auto* client = qobject_cast<DaemonClient*>(m_backend)) {
        m_live = new Watcher(this);
        m_live->setProperty("socket", client->socketPath());
        connect(m_live, &Watcher::pushed, this, &JobDetailView::onLivePush);
    }
    connect(m_backend, &Backend::stateChanged, this, &JobDetailView::updateActions);
    showJob(nullptr);
}

void JobDetailView::updateActions() {
    m_stop->setEnabled(m_jobId && m_running && m_backend->canWrite());
    m_investigate->setEnabled(m_jobId != 0);
    const bool replayable = m_jobId && !m_running && m_backend->canWrite() && !m_clientRoot;
    m_replay->setEnabled(replayable);
    m_learn->setEnabled(replayable);
    const QString why = !m_backend->canWrite() ? tr("Replaying needs a connection to moatd with the admin role")
                        : m_running             ? tr("The job is still running; it can be replayed when it ends")
                        : m_clientRoot ? tr("The job ran on a root filesystem its client passed (a container run by "
                                            "moat-runtime, or moatctl run --rootfs), which is not snapshotted: run it "
                                            "again through its client")
                                       : QString();
    m_replay->setToolTip(why.isEmpty() ? tr("Run the finished job again from its recording and compare the outcomes (op replay)") : why);
    m_learn->setToolTip(why.isEmpty() ? tr("Replay the job with denied calls let through and recorded, and propose the "
                                           "policy change that lets it pass (op replay, learn)")
                                      : why);
}

QString JobDetailView::outputText(bool err) const { return m_output[err ? 1 : 0].text->toPlainText(); }
QString JobDetailView::outputInfo(bool err) const { return m_output[err ? 1 : 0].info->text(); }
QString JobDetailView::infoText() const { return m_info->toPlainText(); }

void JobDetailView::clearOutput(const QString& why) {
    for (auto& s : m_output) {
        s.text->clear();
        s.info->setText(why);
    }
}

void JobDetailView::loadOutput() {
    const int64_t id = m_jobId;
    m_outputJob = id;
    m_outputPending = 2;
    clearOutput(tr("loading…"));
    for (int i = 0; i < 2; ++i) {
        const char* stream = i == 0 ? "stdout" : "stderr";
        m_backend->request({{"op", "output"}, {"job", id}, {"stream", stream}}, this, [this, id, i, stream](const json& a) {
            if (id != m_outputJob) return;
            Stream& s = m_output[i];
            if (!a.value("ok", false)) {
                s.info->setText(tr("%1 not available: %2").arg(QLatin1String(stream), Backend::errorText(a)));
            } else if (auto data = moat::base64_decode(a.value("data_b64", std::string())); !data) {
                s.info->setText(tr("%1: moatd sent malformed data").arg(QLatin1String(stream)));
            } else {
                const auto total = a.value("total_bytes", uint64_t(0));
                const auto tail = a.value("tail_bytes", uint64_t(data->size()));
                s.info->setText(a.value("truncated", false)
                                    ? tr("%1: last %2 of %3 bytes").arg(QLatin1String(stream)).arg(tail).arg(total)
                                    : tr("%1: %2 bytes").arg(QLatin1String(stream)).arg(total));
                s.text->setPlainText(QString::fromUtf8(data->data(), qsizetype(data->size())));
            }
            if (--m_outputPending == 0) emit outputLoaded(id);
        });
    }
}

void JobDetailView::showJob(const JobRow* job) {
    const int64_t id = job ? job->id : 0;
    const bool changed = id != m_jobId;
    m_jobId = id;
    m_running = job && job->running();
    m_clientRoot = false;
    if (job) {
        auto sb = job->object.find("sandbox");
        m_clientRoot = sb != job->object.end() && sb->is_object() && sb->contains("root");
    }
    m_vm = job && job->tier == "vm";
    if (changed) {
        m_cpu->clear();
        m_memory->clear();
        m_pids->clear();
        m_resCursor = 0;
        m_resDone = false;
        m_resInFlight = false;
        if (m_live) m_live->stop();
        m_liveJob = 0;
        if (id && m_live && m_running) {
            // Pushed: the stored events from the first (the charts' samples),
            // then each new one, and the output as it is relayed. No polling.
            m_denials->setQuery({{"job", id}, {"kind", "denial"}});
            m_denials->setTailInterval(0);
            m_resTimer.stop();
            startLive(id);
        } else if (id) {
            m_denials->setQuery({{"job", id}, {"kind", "denial"}});
            m_denials->setTailInterval(1000);
            m_resTimer.start(1000);
            pollResources();
        } else {
            m_denials->clear();
            m_denials->setTailInterval(0);
            m_resTimer.stop();
        }
    }
    updateActions();
    if (!job) {
        m_title->setText(tr("No job selected"));
        m_info->clear();
        m_outputJob = 0;
        clearOutput({});
        return;
    }
    // The output is recorded while the job runs and readable once it has ended.
    if (m_running) {
        if (changed || m_outputJob)
            clearOutput(m_liveJob == id ? tr("live, as moatd relays it") : tr("shown when the job ends"));
        m_outputJob = 0;
    } else if (m_outputJob != id) {
        if (m_liveJob == id && m_live) m_live->stop();  // ended: the recorded tail replaces the live text
        m_liveJob = 0;
        loadOutput();
    }
    m_startedNs = job->startedNs;
    // Why a chart may stay empty, said on the chart rather than left to look broken.
    QString noSamples;
    if (job->running()) noSamples = m_vm ? tr("no samples yet: the guest is booting") : tr("no samples yet");
    else if (job->neverRan()) noSamples = tr("no samples: the sandbox was never set up, so the program never ran");
    else if (m_vm) noSamples = tr("no samples: the job ended before its guest sent one\n(the vm tier samples inside the guest, after it boots)");
    else noSamples = tr("no samples: the job ended before the first sample\n(it ran %1; monitor.sample_interval sets the rate)")
                          .arg(formatDurationNs(job->endedNs.value_or(job->startedNs) - job->startedNs));
    for (ResourceChart* c : {m_cpu, m_memory, m_pids}) {
        c->setEmptyText(noSamples);
        if (c->sampleCount() == 0) c->refresh();
    }
    m_title->setText(tr("Job %1 — %2").arg(job->id).arg(QString::fromStdString(job->state)));
    auto row = [](const QString& k, const QString& v) {
        return QStringLiteral("<tr><td style='padding-right:10px; white-space:nowrap'><b>%1</b></td><td>%2</td></tr>").arg(k, v);
    };
    QString h = QStringLiteral("<table cellspacing='2'>");
    // A multi-line script argument keeps its lines: ⏎ marks each break.
    h += row(tr("Command"), QStringLiteral("<tt>%1</tt>")
                                .arg(job->command.toHtmlEscaped().replace(QLatin1Char('\n'), QStringLiteral("⏎<br>"))));
    h += row(tr("Policy"), QStringLiteral("<a href=\"policy:%1:%2\">%1 v%2</a> &nbsp; sha256 %3 &nbsp; tier %4")
                               .arg(QString::fromStdString(job->policyName).toHtmlEscaped())
                               .arg(job->policyVersion)
                               .arg(QString::fromStdString(job->policySha.substr(0, 12)))
                               .arg(QString::fromStdString(job->tier).toHtmlEscaped()));
    QString result;
    if (job->running()) {
        result = tr("running");
    } else {
        result = QStringLiteral("<b>%1</b>").arg(QString::fromStdString(job->cause).toHtmlEscaped());
        if (!job->detail.empty()) result += QStringLiteral(": ") + QString::fromStdString(job->detail).toHtmlEscaped();
        // moatd's detail often says it already ("exit code 0"): once is enough.
        const QString detail = QString::fromStdString(job->detail);
        if (job->exitCode && !detail.contains(tr("exit code %1").arg(*job->exitCode)))
            result += tr(" (exit code %1)").arg(*job->exitCode);
        if (job->signal && !detail.contains(tr("signal %1").arg(*job->signal))) result += tr(" (signal %1)").arg(*job->signal);
    }
    h += row(tr("Result"), result);
    // Right under the result, where the pane shows it without scrolling.
    if (job->tier == "vm") h += vmRows(*job, row);
    if (auto it = job->object.find("replay_of"); it != job->object.end() && it->is_number_integer()) {
        QString r = tr("replay of <a href=\"job:%1\">job %1</a>").arg(it->get<int64_t>());
        if (job->object.value("learn", false)) r += tr(" in learn mode (calls the default action denies continued and were recorded; explicit deny rules still applied unless the replay overrode them)");
        h += row(tr("Replay"), r);
    }
    if (auto rec = job->object.find("recording"); rec != job->object.end() && rec->is_object()) {
        QStringList r;
        if (auto in = rec->find("stdin"); in != rec->end() && in->is_object())
            r << (in->value("truncated", false) ? tr("stdin: first %1 bytes recorded (cut at the limit)")
                                                : tr("stdin: %1 bytes"))
                     .arg(in->value("bytes", uint64_t(0)));
        if (auto ins = rec->find("inputs"); ins != rec->end() && ins->is_array() && !ins->empty())
            r << tr("%n input snapshot(s)", nullptr, int(ins->size()));
        if (rec->contains("evicted")) r << tr("removed (%1)").arg(QString::fromStdString(rec->value("evicted", std::string())));
        if (!r.isEmpty()) h += row(tr("Recording"), r.join(QStringLiteral("; ")).toHtmlEscaped());
    }
    const int64_t end = job->endedNs.value_or(QDateTime::currentMSecsSinceEpoch() * 1'000'000);
    h += row(tr("Time"), tr("%1 → %2 (%3)")
                             .arg(formatTimeNs(job->startedNs, true),
                                  job->endedNs ? formatTimeNs(*job->endedNs, true) : tr("now"),
                                  formatDurationNs(end - job->startedNs)));
    if (job->running()) {
        // The record's totals are written when the job ends; show the live sample.
        h += row(tr("Usage"), job->hasSample ? tr("now: CPU %1 %, memory %2, pids %3; %4 denials so far")
                                                   .arg(job->cpuPercent, 0, 'f', 1)
                                                   .arg(formatBytes(job->memory))
                                                   .arg(job->pids)
                                                   .arg(job->denials)
                                             : tr("waiting for the first sample"));
    } else {
        h += row(tr("Usage"), tr("CPU time %1, peak memory %2, peak pids %3, %4 denials")
                                  .arg(formatDurationNs(int64_t(job->cpuTimeNs)), formatBytes(job->peakMemory))
                                  .arg(job->peakPids)
                                  .arg(job->denials));
    }
    const json sb = job->object.value("sandbox", json::object());
    QStringList parts;
    parts << tr("uid %1, pid %2").arg(job->object.value("uid", -1)).arg(job->object.value("pid", -1));
    if (auto it = sb.find("cgroup_version"); it != sb.end())
        parts << tr("cgroup %1").arg(QString::fromStdString(it->is_string() ? it->get<std::string>() : "v" + it->dump()));
    if (sb.contains("landlock")) {
        QString ll = tr("landlock %1").arg(QString::fromStdString(sb.value("landlock", std::string())));
        if (sb.contains("landlock_abi")) ll += tr(" (ABI %1)").arg(QString::fromStdString(sb["landlock_abi"].dump()));
        parts << ll;
    }
    if (sb.contains("program")) parts << tr("program %1").arg(QString::fromStdString(sb.value("program", std::string())));
    // A root filesystem from its client (a container run by moat-runtime,
    // moatctl run --rootfs): what it was, and that replay cannot bring it back.
    if (auto it = sb.find("root"); it != sb.end() && it->is_object()) {
        const json& r = *it;
        const QString origin = r.contains("origin") && r["origin"].is_string()
                                   ? QString::fromStdString(r["origin"].get<std::string>())
                                   : tr("no origin given");
        const bool ro = r.contains("read_only") && r["read_only"].is_boolean() && r["read_only"].get<bool>();
        const qsizetype binds = r.contains("binds") && r["binds"].is_array() ? qsizetype(r["binds"].size()) : 0;
        parts << tr("root from its client: %1 (%2, %n bind(s); not snapshotted, so not replayable)", nullptr, int(binds))
                     .arg(origin, ro ? tr("read-only") : tr("writable"));
    }
    if (auto it = sb.find("network"); it != sb.end() && it->is_string() && it->get<std::string>() == "engine")
        parts << tr("network: the namespace its container engine made");
    if (job->tier == "vm" && sb.contains("vmm_uid"))
        parts << tr("%1 as uid %2").arg(QString::fromStdString(sb.value("vmm", std::string("QEMU microvm"))),
                                        QString::fromStdString(sb["vmm_uid"].dump()));
    if (auto it = sb.find("notes"); it != sb.end() && it->is_array())
        for (const auto& n : *it)
            if (n.is_string()) parts << QString::fromStdString(n.get<std::string>());
    h += row(tr("Sandbox"), parts.join(QStringLiteral("; ")).toHtmlEscaped());
    // Keep the reader's scroll position across the once-a-second refresh.
    const int scroll = m_info->verticalScrollBar()->value();
    m_info->setHtml(h + QStringLiteral("</table>"));
    m_info->verticalScrollBar()->setValue(scroll);
}

void JobDetailView::startLive(int64_t id) {
    m_liveJob = id;
    m_liveBytes[0] = m_liveBytes[1] = 0;
    m_live->start(m_live->property("socket").toString(), {{"op", "watch"}, {"job", id}, {"output", true}});
}

void JobDetailView::onLivePush(const json& f) {
    const std::string push = f.value("push", std::string());
    if (push == "events" && f.value("job", int64_t(0)) == m_liveJob && m_liveJob == m_jobId) {
        json samples = json::array();
        bool denial = false;
        for (const auto& e : f.value("events", json::array())) {
            const std::string kind = e.value("kind", std::string());
            if (kind == "resource") samples.push_back(e);
            else if (kind == "denial") denial = true;
        }
        applySamples(samples);
        if (denial) m_denials->tailNow();
    } else if (push == "output" && f.value("job", int64_t(0)) == m_liveJob && m_liveJob == m_jobId) {
        const int i = f.value("stream", std::string()) == "stderr" ? 1 : 0;
        auto data = moat::base64_decode(f.value("data_b64", std::string()));
        if (!data) return;
        Stream& s = m_output[i];
        QTextCursor c(s.text->document());
        c.movePosition(QTextCursor::End);
        if (const uint64_t skipped = f.value("skipped", uint64_t(0)))
            c.insertText(tr("\n[… %1 bytes not shown: the console fell behind]\n").arg(skipped));
        c.insertText(QString::fromUtf8(data->data(), qsizetype(data->size())));
        // Bounded like the recorded tail: past 2 M characters the older half goes.
        if (const int n = s.text->document()->characterCount(); n > (2 << 20)) {
            QTextCursor head(s.text->document());
            head.movePosition(QTextCursor::NextCharacter, QTextCursor::KeepAnchor, n - (1 << 20));
            head.removeSelectedText();
        }
        m_liveBytes[i] = f.value("offset", uint64_t(0)) + data->size();
        s.info->setText(tr("%1: live, %2 bytes so far").arg(i ? QStringLiteral("stderr") : QStringLiteral("stdout")).arg(m_liveBytes[i]));
    } else if (push == "end") {
        m_live->stop();  // the job's row turns finished (pushed to the job list) and the recorded output loads
    }
}

void JobDetailView::pollResources() {
    if (!m_jobId || m_resInFlight || m_resDone) return;
    m_resInFlight = true;
    const int64_t id = m_jobId;
    m_backend->request({{"op", "events"}, {"job", id}, {"kind", "resource"}, {"after", m_resCursor}, {"limit", 5000}},
                       this, [this, id](const json& a) {
                           if (id != m_jobId) return;
                           m_resInFlight = false;
                           if (!a.value("ok", false)) return;  // the timer retries
                           applySamples(a.value("events", json::array()));
                           const bool more = !a.value("next", json()).is_null();
                           if (more) pollResources();
                           else if (!m_running) m_resDone = true;  // finished and fully read
                       });
}

void JobDetailView::applySamples(const json& events) {
    if (!events.is_array() || events.empty()) return;
    uint64_t memLimit = 0, pidsLimit = 0;
    for (const auto& e : events) {
        m_resCursor = std::max(m_resCursor, e.value("id", int64_t(0)));
        const double t = double(parseRfc3339Ns(e.value("time", std::string())).value_or(m_startedNs) - m_startedNs) / 1e9;
        memLimit = e.value("memory_limit_bytes", uint64_t(0));
        pidsLimit = e.value("pids_limit", uint64_t(0));
        m_cpu->addSample(t, e.value("cpu_percent", 0.0), 0);
        m_memory->addSample(t, double(e.value("memory_bytes", uint64_t(0))), double(memLimit));
        m_pids->addSample(t, double(e.value("pids", uint64_t(0))), double(pidsLimit));
    }
    if (m_vm) {
        // The limits hold the job inside its guest; until the guest's first
        // sample arrives (it is booting) moatd's figures are QEMU's on the host.
        m_memory->setTitle(tr("Memory in the guest (limit %1; 0 while it boots)").arg(formatBytes(memLimit)));
        m_pids->setTitle(tr("Processes and threads in the guest (limit %1; 0 while it boots)").arg(pidsLimit));
    } else {
        m_memory->setTitle(memLimit ? tr("Memory (limit %1)").arg(formatBytes(memLimit)) : tr("Memory"));
        m_pids->setTitle(pidsLimit ? tr("Processes and threads (limit %1)").arg(pidsLimit) : tr("Processes and threads"));
    }
    m_cpu->refresh();
    m_memory->refresh();
    m_pids->refresh();
}

}  // namespace moat::ui
