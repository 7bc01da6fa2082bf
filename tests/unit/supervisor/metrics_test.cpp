// moatd's metrics page (docs/metrics.md): what render_metrics writes from the
// supervisor's counters, and the bound on denial series a job could grow.
#include <string>

#include <gtest/gtest.h>

#include "moat/supervisor/supervisor.h"

namespace {

using moat::supervisor::count_denials_into;
using moat::supervisor::Metrics;
using moat::supervisor::render_metrics;
using moat::supervisor::StoreFigures;

bool has_line(const std::string& page, const std::string& line) {
    return page.starts_with(line + "\n") || page.find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, RendersEveryFamilyWithCumulativeBuckets) {
    Metrics m;
    Metrics::PerTier& c = m.tiers["container"];
    c.running = 2;
    c.created = 7;
    c.ended["exited"] = 4;
    c.ended["setup-failed"] = 1;
    c.start_buckets[1] = 3;  // (0.005, 0.01]
    c.start_buckets[3] = 1;  // (0.025, 0.05]
    c.start_count = 5;       // one past the last bucket: only in +Inf
    c.start_sum_s = 31.5;
    count_denials_into(m, "conv", "ptrace", 3);
    count_denials_into(m, "conv", "ptrace", 2);
    StoreFigures s;
    s.stats.queued = 9;
    s.stats.dropped = 4;
    s.db_bytes = 4096;
    moat::EventLoop::SpinStats spin;
    spin.spins = 10;
    spin.hits = 7;
    spin.refused = 2;
    spin.spun_ns = 1'500'000'000;
    spin.wasted_ns = 250'000'000;
    const std::string p = render_metrics(m, s, spin);
    for (const char* line : {
             "moat_jobs_running{tier=\"container\"} 2",
             "moat_jobs_created_total{tier=\"container\"} 7",
             "moat_jobs_ended_total{tier=\"container\",cause=\"exited\"} 4",
             "moat_jobs_ended_total{tier=\"container\",cause=\"setup-failed\"} 1",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"0.005\"} 0",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"0.01\"} 3",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"0.025\"} 3",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"0.05\"} 4",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"30\"} 4",
             "moat_job_start_seconds_bucket{tier=\"container\",le=\"+Inf\"} 5",
             "moat_job_start_seconds_sum{tier=\"container\"} 31.5",
             "moat_job_start_seconds_count{tier=\"container\"} 5",
             "moat_denials_total{policy=\"conv\",syscall=\"ptrace\"} 5",
             "moat_store_queue_events 9",
             "moat_store_events_dropped_total 4",
             "moat_store_bytes{file=\"db\"} 4096",
             "moat_loop_spins_total{result=\"hit\"} 7",
             "moat_loop_spins_total{result=\"miss\"} 3",
             "moat_loop_spins_total{result=\"refused\"} 2",
             "moat_loop_spin_seconds_total{result=\"hit\"} 1.25",
             "moat_loop_spin_seconds_total{result=\"miss\"} 0.25",
             "# TYPE moat_job_start_seconds histogram",
             "# TYPE moat_denials_total counter",
         })
        EXPECT_TRUE(has_line(p, line)) << line << "\n---\n" << p;
    EXPECT_TRUE(p.ends_with("\n"));
}

TEST(Metrics, LabelValuesAreEscaped) {
    Metrics m;
    count_denials_into(m, "a\"b\\c\nd", "x", 1);
    const std::string p = render_metrics(m, {});
    EXPECT_TRUE(has_line(p, R"(moat_denials_total{policy="a\"b\\c\nd",syscall="x"} 1)")) << p;
}

TEST(Metrics, DenialSeriesAreBoundedAndNoCountIsLost) {
    Metrics m;
    uint64_t total = 0;
    for (size_t i = 0; i < Metrics::kMaxDenialSeries + 500; ++i) {
        count_denials_into(m, "p" + std::to_string(i % 3), "syscall_" + std::to_string(i), 2);
        total += 2;
    }
    EXPECT_LE(m.denials.size(), Metrics::kMaxDenialSeries + 1);
    uint64_t sum = 0;
    for (const auto& [k, n] : m.denials) sum += n;
    EXPECT_EQ(sum, total);
    EXPECT_GT((m.denials[{"_other", "_other"}]), 0u);
    // A series made before the bound keeps counting in place.
    const uint64_t before = m.denials[{"p0", "syscall_0"}];
    count_denials_into(m, "p0", "syscall_0", 5);
    EXPECT_EQ((m.denials[{"p0", "syscall_0"}]), before + 5);
    // And its counter is the same object (the supervisor caches it per job).
    uint64_t* slot = &moat::supervisor::denial_slot(m, "p0", "syscall_0");
    EXPECT_EQ(slot, (&m.denials[{"p0", "syscall_0"}]));
}

}  // namespace
