// The Prometheus text exposition of moatd's figures (docs/metrics.md).
#include <cinttypes>
#include <cstdio>
#include <string>

#include "moat/supervisor/supervisor.h"

namespace moat::supervisor {
namespace {

// A label value: backslash, double quote and newline escaped (format 0.0.4).
std::string label(const std::string& v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

void head(std::string& o, const char* name, const char* type, const char* help) {
    o += "# HELP ";
    o += name;
    o += ' ';
    o += help;
    o += "\n# TYPE ";
    o += name;
    o += ' ';
    o += type;
    o += '\n';
}

void num(std::string& o, uint64_t v) { o += std::to_string(v); }

void num(std::string& o, double v) {
    char b[64];
    snprintf(b, sizeof b, "%.9g", v);
    o += b;
}

}  // namespace

std::string render_metrics(const Metrics& m, const StoreFigures& s, const EventLoop::SpinStats& spin) {
    std::string o;
    o.reserve(4096 + m.denials.size() * 80);

    head(o, "moat_jobs_running", "gauge", "Jobs running now, by isolation tier.");
    for (const auto& [tier, t] : m.tiers) {
        o += "moat_jobs_running{tier=\"" + label(tier) + "\"} ";
        num(o, t.running);
        o += '\n';
    }
    head(o, "moat_jobs_created_total", "counter",
         "Jobs recorded since moatd started, by tier (including those that failed to set up).");
    for (const auto& [tier, t] : m.tiers) {
        o += "moat_jobs_created_total{tier=\"" + label(tier) + "\"} ";
        num(o, t.created);
        o += '\n';
    }
    head(o, "moat_jobs_ended_total", "counter", "Jobs ended since moatd started, by tier and termination cause.");
    for (const auto& [tier, t] : m.tiers)
        for (const auto& [cause, n] : t.ended) {
            o += "moat_jobs_ended_total{tier=\"" + label(tier) + "\",cause=\"" + label(cause) + "\"} ";
            num(o, n);
            o += '\n';
        }
    head(o, "moat_job_start_seconds", "histogram",
         "From moatd taking a run request to the job's clock starting (vm tier: the guest took the job), by tier.");
    for (const auto& [tier, t] : m.tiers) {
        const std::string tl = "tier=\"" + label(tier) + "\"";
        uint64_t cum = 0;
        for (size_t i = 0; i < std::size(Metrics::kStartBuckets); ++i) {
            cum += t.start_buckets[i];
            o += "moat_job_start_seconds_bucket{" + tl + ",le=\"";
            num(o, Metrics::kStartBuckets[i]);
            o += "\"} ";
            num(o, cum);
            o += '\n';
        }
        o += "moat_job_start_seconds_bucket{" + tl + ",le=\"+Inf\"} ";
        num(o, t.start_count);
        o += "\nmoat_job_start_seconds_sum{" + tl + "} ";
        num(o, t.start_sum_s);
        o += "\nmoat_job_start_seconds_count{" + tl + "} ";
        num(o, t.start_count);
        o += '\n';
    }
    head(o, "moat_denials_total", "counter",
         "Denied syscalls since moatd started, by policy name and syscall (running jobs included; past 2048 "
         "series, policy=\"_other\",syscall=\"_other\").");
    for (const auto& [key, n] : m.denials) {
        o += "moat_denials_total{policy=\"" + label(key.first) + "\",syscall=\"" + label(key.second) + "\"} ";
        num(o, n);
        o += '\n';
    }
    head(o, "moat_store_queue_events", "gauge", "Events waiting in the store's write queue.");
    o += "moat_store_queue_events ";
    num(o, s.stats.queued);
    head(o += '\n', "moat_store_queue_bytes", "gauge", "Approximate size of the queued events.");
    o += "moat_store_queue_bytes ";
    num(o, s.stats.queued_bytes);
    head(o += '\n', "moat_store_events_written_total", "counter", "Events committed to the store.");
    o += "moat_store_events_written_total ";
    num(o, s.stats.written);
    head(o += '\n', "moat_store_events_dropped_total", "counter",
         "Events lost (queue full, failed write); each loss is also a limit event of its job.");
    o += "moat_store_events_dropped_total ";
    num(o, s.stats.dropped);
    head(o += '\n', "moat_store_events_refused_total", "counter",
         "Denial rows a job offered past its fair share of the queue (folded into its aggregate counts, not lost).");
    o += "moat_store_events_refused_total ";
    num(o, s.stats.refused);
    head(o += '\n', "moat_store_bytes", "gauge", "Size of the state database on disk, by file.");
    o += "moat_store_bytes{file=\"db\"} ";
    num(o, s.db_bytes);
    o += "\nmoat_store_bytes{file=\"wal\"} ";
    num(o, s.wal_bytes);
    head(o += '\n', "moat_loop_spins_total", "counter",
         "Polls of moatd's event loop before sleeping, after answering a seccomp notification, by result.");
    o += "moat_loop_spins_total{result=\"hit\"} ";
    num(o, spin.hits);
    o += "\nmoat_loop_spins_total{result=\"miss\"} ";
    num(o, spin.spins - spin.hits);
    o += "\nmoat_loop_spins_total{result=\"refused\"} ";
    num(o, spin.refused);
    head(o += '\n', "moat_loop_spin_seconds_total", "counter",
         "Time moatd's event loop spent in those polls, by result (miss: found nothing, wasted).");
    o += "moat_loop_spin_seconds_total{result=\"hit\"} ";
    num(o, double(spin.spun_ns - spin.wasted_ns) / 1e9);
    o += "\nmoat_loop_spin_seconds_total{result=\"miss\"} ";
    num(o, double(spin.wasted_ns) / 1e9);
    o += '\n';
    return o;
}

}  // namespace moat::supervisor
