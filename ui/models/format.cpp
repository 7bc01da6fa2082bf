#include "models/format.h"

#include <QTextDocument>

#include <QDateTime>

#include <charconv>
#include <ctime>

namespace moat::ui {

std::optional<int64_t> parseRfc3339Ns(std::string_view s) {
    // YYYY-MM-DDTHH:MM:SS[.fraction]Z, as moatd writes it (rfc3339_utc).
    if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return std::nullopt;
    auto num = [&](size_t pos, size_t len) -> std::optional<int> {
        int v = 0;
        auto r = std::from_chars(s.data() + pos, s.data() + pos + len, v);
        if (r.ec != std::errc() || r.ptr != s.data() + pos + len) return std::nullopt;
        return v;
    };
    auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), se = num(17, 2);
    if (!y || !mo || !d || !h || !mi || !se) return std::nullopt;
    size_t pos = 19;
    int64_t frac = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (digits < 9) {
                frac = frac * 10 + (s[pos] - '0');
                ++digits;
            }
            ++pos;
        }
        for (; digits < 9; ++digits) frac *= 10;
    }
    if (pos >= s.size() || s[pos] != 'Z') return std::nullopt;
    std::tm tm{};
    tm.tm_year = *y - 1900;
    tm.tm_mon = *mo - 1;
    tm.tm_mday = *d;
    tm.tm_hour = *h;
    tm.tm_min = *mi;
    tm.tm_sec = *se;
    const time_t t = timegm(&tm);
    return int64_t(t) * 1'000'000'000 + frac;
}

QString formatTimeNs(int64_t ns, bool withMillis) {
    const QDateTime dt = QDateTime::fromMSecsSinceEpoch(ns / 1'000'000);
    return dt.toString(withMillis ? QStringLiteral("yyyy-MM-dd HH:mm:ss.zzz") : QStringLiteral("yyyy-MM-dd HH:mm:ss"));
}

QString formatBytes(uint64_t b) {
    static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(b);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    if (u == 0) return QStringLiteral("%1 B").arg(b);
    return QStringLiteral("%1 %2").arg(v, 0, 'f', v < 10 ? 1 : 0).arg(QLatin1String(kUnits[u]));
}

QString formatDurationNs(int64_t ns) {
    if (ns < 0) ns = 0;
    if (ns < 1'000'000'000) return QStringLiteral("%1 ms").arg(ns / 1'000'000);
    const double s = double(ns) / 1e9;
    if (s < 60) return QStringLiteral("%1 s").arg(s, 0, 'f', 1);
    const int64_t secs = ns / 1'000'000'000;
    if (secs < 3600) return QStringLiteral("%1m %2s").arg(secs / 60).arg(secs % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1h %2m").arg(secs / 3600).arg((secs % 3600) / 60, 2, 10, QLatin1Char('0'));
}

QString plainToolTip(const QString& text) {
    if (!Qt::mightBeRichText(text)) return text;
    return QStringLiteral("<p style='white-space:pre-wrap'>") + text.toHtmlEscaped() + QStringLiteral("</p>");
}

}  // namespace moat::ui
