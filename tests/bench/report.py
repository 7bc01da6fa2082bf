#!/usr/bin/env python3
"""Turns the results file of tests/bench/run.sh (key<TAB>value lines) into the
table printed on stdout and docs/performance.md. Re-render without measuring:
    tests/bench/report.py BUILD/bench-results.txt docs/performance.md
(the machine description comes from the environment run.sh exports)."""
import math
import os
import sys

res_path, out_path = sys.argv[1], sys.argv[2]
R = {}
for line in open(res_path):
    if "\t" in line:
        k, v = line.rstrip("\n").split("\t", 1)
        R[k] = v


def num(k):
    try:
        x = float(R[k])
        return None if math.isnan(x) else x
    except (KeyError, ValueError):
        return None


def f(x, unit="", nd=2):
    if x is None:
        return "—"
    if abs(x) >= 1000 and nd <= 2:
        return f"{x:,.0f}{unit}"
    return f"{x:.{nd}f}{unit}"


rows = []  # (id, target, measured, baseline, ratio, met: True/False/None)


def row(tid, target, measured, baseline, ratio, met):
    rows.append((tid, target, measured, baseline, ratio, met))


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


# 1. job start
bare, bwrap, crun, crunw = num("start_bare"), num("start_bwrap"), num("start_crun"), num("start_crun_wrapper")
sec, con = num("start_moat_seccomp"), num("start_moat_container")
row("1a", "job start, seccomp tier ≤ 1.0× bwrap", f(sec, " ms"), f"bwrap {f(bwrap, ' ms')}", f(ratio(sec, bwrap), "×"),
    None if sec is None or bwrap is None else sec <= bwrap)
row("1b", "job start, container tier ≤ 1.2× bwrap", f(con, " ms"), f"bwrap {f(bwrap, ' ms')}", f(ratio(con, bwrap), "×"),
    None if con is None or bwrap is None else con <= 1.2 * bwrap)
row("1c", "job start, container tier < 0.5× crun", f(con, " ms"),
    f"crun {f(crun, ' ms')} (its unshare wrapper alone {f(crunw, ' ms')})", f(ratio(con, crun), "×"),
    None if con is None or crun is None else con < 0.5 * crun)
row("1·", "(reference) bare /bin/true", f(bare, " ms"), "—", f"seccomp {f(ratio(sec, bare), '×', 1)}", None)
sp, bf = num("gb_BM_SpawnSeccompTrue_us"), num("gb_BM_BareForkExec_us")
d = None if sp is None or bf is None else sp - bf
row("1d", "spawn-to-exec in moatd ≤ bare fork+exec + 0.3 ms", f(sp, " µs", 0), f"fork+exec {f(bf, ' µs', 0)}",
    f"{f(ratio(sp, bf), '×')} (+{f(d, ' µs', 0)})", None if d is None else d <= 300)

# 2. syscall cost
for key, label, limit, bkey in (("loop_job_getpid", "getpid, allowlisted", 40, "loop_bare_getpid"),
                                ("loop_job_read", "read(1 B), allowlisted", 40, "loop_bare_read"),
                                ("loop_argrule_read", "read(1 B), argument rule", 70, "loop_bare_read")):
    m, b = num(key), num(bkey)
    dd = None if m is None or b is None else m - b
    row("2", f"{label}: ≤ +{limit} ns/call", f(m, " ns"), f"no filter {f(b, ' ns')}",
        f"{f(ratio(m, b), '×')} ({'+' if dd is not None and dd >= 0 else ''}{f(dd, ' ns', 1)})",
        None if dd is None else dd <= limit)

# 3. denials
dj, db_ = num("deny_job_per_s"), num("deny_bare_per_s")
calls, stored, eperm = num("deny_calls"), num("deny_stored"), num("deny_job_eperm")
row("3a", "denials answered and recorded ≥ 50k/s", f(dj, "/s"), f"bare rmdir (ENOENT) {f(db_, '/s')}",
    f(ratio(dj, db_), "×", 4), None if dj is None else dj >= 50000)
exact = None if calls is None or stored is None else (stored == calls and eperm == calls)
row("3b", "exact total stored", f"{f(stored, '', 0)} stored, {f(eperm, '', 0)} EPERM seen, {R.get('deny_rows', '—')} rows",
    f"{f(calls, '', 0)} calls", "—", exact)

# 4. store
ing, raw = num("sb_BM_StoreIngest_per_s"), num("sb_BM_RawSqliteIngest_per_s")
row("4a", "ingest ≥ 200k events/s", f(ing, "/s"), f"raw SQLite {f(raw, '/s')}", f(ratio(ing, raw), "×"),
    None if ing is None else ing >= 200000)
size = R.get("store_size", "?")
try:
    size_s = f"{int(size):,}"
except ValueError:
    size_s = size
for key, label in (("BM_QueryJobDenials", "a job's denials (1st page)"),
                   ("BM_QueryDenialsBySyscallInTimeRange", "denials by syscall in a time range"),
                   ("BM_TopSyscallsAllJobs", "top syscalls, all jobs"),
                   ("BM_TopSyscallsOneJob", "top syscalls, one job"),
                   ("BM_CountDenials", "count_denials")):
    m = num(f"sb_{key}_ms")
    scope = f"{size_s} events" if size_s == "10,000,000" else f"{size_s} events; target is 10M"
    row("4b", f"{label} < 50 ms ({scope})", f(m, " ms", 3), "—", "—",
        None if m is None else m < 50)

# 5. monitoring
c100, c1s, cid = num("mon_100ms_cpu"), num("mon_1s_cpu"), num("mon_idle_cpu")
n100 = R.get("mon_100ms_running", "?")
row("5", f"moatd CPU, {n100} jobs sampled every 100 ms < 5 %", f(c100, " %"),
    f"1 s interval {f(c1s, ' %')}, idle {f(cid, ' %')}", f(ratio(c100, c1s), "× of 1 s"),
    None if c100 is None else c100 < 5 and str(n100) == "100")

# 6. console
# Measured by a separate offscreen Qt benchmark (needs the GUI build): run
#   QT_QPA_PLATFORM=offscreen BUILD/tests/ui/console_bench [--events N]
# and copy its figures into rows 6a-6c of docs/performance.md (see the note).
row("6", "console: 1M-event view opens < 300 ms, page < 16 ms, charts < 20 %",
    "see rows 6a-6c (tests/ui/console_bench)", "—", "—", None)

# 7. memory
rj, ri, re_ = num("rss_jobs_kib"), num("rss_idle_kib"), num("rss_after_events_kib")
seeded = R.get("seed_events", "?")
row("7", f"moatd RSS, {n100} jobs + {seeded} stored events < 64 MiB", f(None if rj is None else rj / 1024, " MiB", 1),
    f"idle after start {f(None if ri is None else ri / 1024, ' MiB', 1)}; after reading the events {f(None if re_ is None else re_ / 1024, ' MiB', 1)}",
    f(ratio(rj, ri), "×"), None if rj is None else rj < 64 * 1024 and str(n100) == "100")


def met_s(m):
    return "n/a" if m is None else ("yes" if m else "**no**")


hdr = ("#", "target", "measured (median)", "baseline (same run)", "ratio", "target met?")
lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
for r in rows:
    lines.append("| " + " | ".join(list(r[:5]) + [met_s(r[5])]) + " |")
table = "\n".join(lines)
print(table)

E = os.environ.get
short = E("SHORT") == "1"
missed = {r[0] for r in rows if r[5] is False}

notes_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
notes = open(notes_path).read() if os.path.exists(notes_path) else ""

raw_lines = "\n".join(f"    {k} = {v}" for k, v in R.items())
doc = f"""# Performance

Measured by `tests/bench/run.sh{' --short' if short else ''}` (issue 7). Every figure is a median, and
its baseline was measured in the same run on the same machine; the machine is
shared (2 vCPU, other builds and tests running), so compare ratios, not
absolute times, between runs. {"**This is a --short run: too few iterations to mean anything; it only shows the suite still works.**" if short else ""}

## Machine

| | |
|---|---|
| CPU | {E('MACHINE_CPU', '?')} |
| cores (`nproc`) | {E('MACHINE_NPROC', '?')} |
| memory | {E('MACHINE_MEM', '?')} |
| kernel | {E('MACHINE_KERNEL', '?')} |
| cgroups | {E('CGV', '?')} |
| load average at the end | {E('MACHINE_LOAD', '?')} |
| date (UTC) | {E('MACHINE_DATE', '?')} |
| tools | {E('TOOL_VERSIONS', '?')} |

Run sizes: job start {E('RUNS', '?')} runs per command (hyperfine, after warm-up);
syscall loops {E('LOOP_N', '?')} calls × {E('LOOP_REPS', '?')} runs; spawn_bench
{E('SPAWN_REPS', '?')} repetitions; denial loop {R.get('deny_calls', '?')} calls;
store queries on {size_s} events; monitoring over {R.get('mon_secs', '?')} s.

## Results

{table}

Missed targets this run: {', '.join(sorted(missed)) if missed else 'none'}.

{notes}

## Raw values of this run

{raw_lines}
"""
with open(out_path, "w") as fh:
    fh.write(doc)
