#include "views/denial_detail.h"

#include "models/shell_words.h"

#include <QRegularExpression>
#include <QStringList>

#include <cstring>

#include "models/status_color.h"
#include "models/event_summary.h"
#include "models/format.h"
#include "models/syscall_args.h"
#include "moat/common/error.h"
#include "moat/policy/lint.h"

namespace moat::ui {

using nlohmann::json;

namespace {

QString esc(const std::string& s) { return QString::fromStdString(s).toHtmlEscaped(); }

QString valueText(const json& v) {
    if (v.is_null()) return QStringLiteral("<i>null</i>");
    if (v.is_string()) return esc(v.get<std::string>());
    return esc(v.dump());
}

QString row(const QString& key, const QString& value) {
    return QStringLiteral("<tr><td style='padding-right:12px; white-space:nowrap'><b>%1</b></td><td>%2</td></tr>").arg(key, value);
}

QString actionText(const std::string& action) {
    QString t = esc(action);
    if (action.rfind("errno:", 0) == 0) {
        if (moat::errno_from_name(action.substr(6)) > 0)
            t += QStringLiteral(" — the call failed with %1").arg(esc(errnoText(action)));
    } else if (action == "kill-process" || action == "kill-thread") {
        t += QStringLiteral(" — the job was killed");
    } else if (action == "log") {
        t += QStringLiteral(" — recorded, and the call ran");
    }
    return t;
}

// The job's command as one line (joinShellWords), newlines shown as ⏎ so a
// multi-line script reads as one command.
QString commandText(const std::vector<std::string>& argv) {
    return QString::fromStdString(joinShellWords(argv)).replace(QLatin1Char('\n'), QStringLiteral("⏎"));
}

QString jobRow(const EventJobContext* job) {
    if (!job) return {};
    return row(QStringLiteral("Job's policy"), QStringLiteral("%1 v%2").arg(esc(job->policyName)).arg(job->policyVersion)) +
           row(QStringLiteral("Command"), QStringLiteral("<tt>%1</tt>").arg(commandText(job->argv).toHtmlEscaped()));
}

}  // namespace

QString eventDetailHtml(const json& e, const EventJobContext* job) {
    if (!e.is_object()) return {};
    const std::string kind = e.value("kind", std::string());
    QString h = QStringLiteral("<table cellspacing='2'>");
    const QString when = formatTimeNs(parseRfc3339Ns(e.value("time", std::string())).value_or(0), true);
    if (kind == "denial") {
        const std::string sc = e.value("syscall", std::string("?"));
        h = QStringLiteral("<h3 style='margin:0'>Denied %1</h3>").arg(esc(sc)) + h;
        h += row(QStringLiteral("Event"), QStringLiteral("#%1, job %2, %3").arg(e.value("id", int64_t(0))).arg(e.value("job", int64_t(0))).arg(when));
        h += jobRow(job);
        h += row(QStringLiteral("Syscall"), QStringLiteral("%1 (nr %2, %3)")
                                               .arg(esc(sc))
                                               .arg(e.value("nr", -1))
                                               .arg(esc(e.value("arch", std::string()))));
        h += row(QStringLiteral("Action"), actionText(e.value("action", std::string())));
        h += row(QStringLiteral("Rule"), esc(e.value("rule", std::string())));
        if (e.contains("decoded") && !e["decoded"].is_null())
            h += row(QStringLiteral("Decoded"),
                     QStringLiteral("<tt>%1</tt><br><small><i>as moatd read it from the job's memory; another thread "
                                    "of the job can change it before or after the kernel reads it</i></small>")
                         .arg(valueText(e["decoded"])));
        h += row(QStringLiteral("Module"), e.contains("module") && !e["module"].is_null()
                                                ? QStringLiteral("<tt>%1</tt>").arg(valueText(e["module"]))
                                                : QStringLiteral("<i>unknown</i>"));
        h += row(QStringLiteral("IP"), QStringLiteral("<tt>%1</tt>").arg(valueText(e.value("ip", json()))));
        h += row(QStringLiteral("PID"), QString::number(e.value("pid", int64_t(-1))));
        if (auto it = e.find("args"); it != e.end() && it->is_array()) {
            std::vector<uint64_t> values;
            for (const auto& a : *it)
                values.push_back(a.is_number_unsigned() ? a.get<uint64_t>()
                                 : a.is_number_integer() ? uint64_t(a.get<int64_t>())
                                                         : 0);
            // Only the arguments the syscall has: the registers past them hold
            // whatever the caller left there and mean nothing.
            const auto names = argNames(sc);
            const size_t shown = names ? std::min(names->size(), values.size()) : values.size();
            QStringList args;
            for (unsigned i = 0; i < shown; ++i) {
                const uint64_t v = values[i];
                QString line = QStringLiteral("arg%1%4 = 0x%2 (%3)")
                                   .arg(i)
                                   .arg(v, 0, 16)
                                   .arg(v)
                                   .arg(names ? QStringLiteral(" %1").arg(esc((*names)[i])) : QString());
                const std::string meaning = argMeaning(sc, i, v, values);
                if (!meaning.empty()) line += QStringLiteral(" <b>%1</b>").arg(esc(meaning));
                args << line;
            }
            QString note;
            if (!names) note = QStringLiteral("<br><small><i>the console does not know how many arguments %1 takes: all six registers are shown</i></small>").arg(esc(sc));
            else if (names->empty()) args << QStringLiteral("none (%1 takes no arguments)").arg(esc(sc));
            h += row(QStringLiteral("Arguments"), QStringLiteral("<tt>%1</tt>%2").arg(args.join(QStringLiteral("<br>")), note));
        }
        if (e.value("count", 1) > 1)
            h += row(QStringLiteral("Count"), QStringLiteral("%1 identical denials coalesced").arg(e.value("count", 1)));
        if (e.contains("reason")) h += row(QStringLiteral("Reason"), valueText(e["reason"]));
        const std::string risk = moat::policy::risk_of(sc);
        h += row(QStringLiteral("Risk"), risk.empty() ? QStringLiteral("not on lint's list of risky syscalls")
                                                      : QStringLiteral("<span style='color:%1'>%2</span>").arg(statusColor(Status::Bad).name(), esc(risk)));
    } else {
        const EventSummary sum = summarizeEvent(e);
        const QString title = kind == "limit" ? sum.what : kind == "resource" ? QStringLiteral("Resource sample") : QStringLiteral("%1 event").arg(QString::fromStdString(kind));
        h = QStringLiteral("<h3 style='margin:0'>%1</h3>").arg(title.toHtmlEscaped()) + h;
        h += row(QStringLiteral("Event"), QStringLiteral("#%1, job %2, %3").arg(e.value("id", int64_t(0))).arg(e.value("job", int64_t(0))).arg(when));
        h += jobRow(job);
        if (!sum.target.isEmpty()) h += row(kind == "limit" ? QStringLiteral("What happened") : QStringLiteral("Summary"), sum.target.toHtmlEscaped());
        for (auto it = e.begin(); it != e.end(); ++it) {
            const std::string& k = it.key();
            if (k == "id" || k == "job" || k == "time" || k == "kind") continue;
            QString v = fieldValueText(k, it.value()).toHtmlEscaped();
            // The limit's value carries the unit of the limit it names.
            if (k == "value" && e.value("limit", std::string()) == "memory" && it.value().is_number())
                v = formatBytes(it.value().get<uint64_t>());
            if (it.value().is_number() && (k.ends_with("_ns") || k.ends_with("_bytes") ||
                                           (k == "value" && e.value("limit", std::string()) == "memory")))
                v += QStringLiteral(" <small>(%1)</small>").arg(esc(it.value().dump()));
            if (k == "path" && e.value("event", std::string()) == "exec" && it.value().is_string())
                v += QStringLiteral("<br><small><i>as moatd read it from the job's memory when the exec was held; "
                                    "the kernel may have run another path</i></small>");
            h += row(esc(k), v);
        }
    }
    return h + QStringLiteral("</table>");
}

}  // namespace moat::ui
