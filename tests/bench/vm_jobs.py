#!/usr/bin/env python3
"""The vm tier's job figures for tests/bench/run.sh (section 8). Prints
key<TAB>value lines (medians; per-run values in *_all keys) for report.py.

  vm_jobs.py cold --moatctl M --socket S --policy P --runs N --bare-cmd FILE --prefix vm_cold
      Each run: first the baseline, one bare boot (FILE: tests/bench/vm_bench's
      command line, one argument a line), then
      `moatctl run --tier vm -- /usr/bin/true` against a moatd whose pool is
      off: client wall time (request -> recorded result; moatctl returns once
      the job has ended), the record's sandbox.boot_ms (QEMU launched -> the
      agent's Hello), and the lifecycle events' host times (created, started
      = moatd answering the job's exec notice, finished).
  vm_jobs.py warm --moatctl M --socket S --policy P --runs N --prog FIRST_BYTE
                  --cgroup-parent NAME --prefix vm_warm
      against a moatd with a warm pool: before each run, waits until the
      pool's guest is booted and idle (refill is never in a run's time), then
      times request -> the first byte of the job's stdout on the client side
      (FIRST_BYTE writes one byte as its first system call), and reads
      created -> started from the events. Runs whose record says warm=false
      are reported apart (vm_warm_missed), not mixed in.
  vm_jobs.py mem --cgroup-parent NAME --guest-bytes B --tier-argv OUT --prefix vm_mem
      RSS/PSS of the idle warm QEMU and its cgroup's memory usage; its
      command line goes to OUT.
  vm_jobs.py flags --tier-argv FILE --bare-argv FILE --prefix vm
      whether the tier's QEMU command line equals the bare boot's (vm_bench's
      argv line) but for the initramfs and the port's name.

All times are host clocks: time.monotonic_ns() in this script, and moatd's
CLOCK_REALTIME in the events (both ends of a difference come from moatd)."""
import argparse
import calendar
import glob
import json
import os
import statistics
import subprocess
import sys
import time


def put(k, v):
    print(f"{k}\t{v}", flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def ev_ns(t):
    base, _, frac = t.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 10**9 + (int((frac + "0" * 9)[:9]) if frac else 0)


class Ctl:
    def __init__(self, moatctl, sock):
        self.base = [moatctl, "--socket", sock]

    def show(self, jid):
        return json.loads(subprocess.run(self.base + ["show", str(jid), "--json"], capture_output=True, text=True,
                                         check=True).stdout)

    def lifecycle(self, jid):
        out = subprocess.run(self.base + ["events", str(jid), "--json", "--kind", "lifecycle"], capture_output=True,
                             text=True, check=True).stdout
        first = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            name = e.get("event")
            if name and name not in first:
                first[name] = ev_ns(e["time"])
        return first


def job_id(path):
    with open(path) as f:
        return int(f.read().strip())


def bare_boot(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("boot "):
            f = dict(kv.split("=") for kv in line.split()[1:])
            return float(f["ready_ms"]), float(f["exit_ms"]), float(f["run_ms"]) if "run_ms" in f else None
    put("vm_bare_error", (out.stdout + out.stderr).strip().replace("\n", " ")[-300:])
    return None


def cold(a):
    c = Ctl(a.moatctl, a.socket)
    total, boot, c2s, s2f, f2r, fails = [], [], [], [], [], 0
    bready, bexit, brun = [], [], []
    bare_cmd = open(a.bare_cmd).read().split("\n")[:-1]
    idf = a.work + "/vm-cold.id"
    for _ in range(a.runs):
        b = bare_boot(bare_cmd)
        if b:
            bready.append(b[0])
            bexit.append(b[1])
            if b[2] is not None:
                brun.append(b[2])
        t0 = time.monotonic_ns()
        p = subprocess.run(c.base + ["run", "--policy", a.policy, "--tier", "vm", "--id-file", idf, "--", "/usr/bin/true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t1 = time.monotonic_ns()
        if p.returncode != 0:
            fails += 1
            put(f"{a.prefix}_error", p.stderr.strip().replace("\n", " ")[:300])
            continue
        jid = job_id(idf)
        rec = c.show(jid)
        sb = rec.get("sandbox", {})
        if sb.get("warm"):
            put(f"{a.prefix}_error", f"job {jid} found a warm guest: the pool is not off")
            fails += 1
            continue
        ev = c.lifecycle(jid)
        total.append((t1 - t0) / 1e6)
        boot.append(float(sb.get("boot_ms", "nan")))
        if "created" in ev and "started" in ev:
            c2s.append((ev["started"] - ev["created"]) / 1e6)
        if "started" in ev and "finished" in ev:
            s2f.append((ev["finished"] - ev["started"]) / 1e6)
        if "created" in ev and "finished" in ev:
            f2r.append((t1 - t0) / 1e6 - (ev["finished"] - ev["created"]) / 1e6)
    put("vm_bare_n", len(bready))
    put("vm_bare_ready_ms", f"{med(bready):.1f}")
    put("vm_bare_ready_all", " ".join(f"{x:.0f}" for x in bready))
    put("vm_bare_exit_ms", f"{med(bexit):.1f}")
    put("vm_bare_exit_all", " ".join(f"{x:.0f}" for x in bexit))
    if brun:
        # The bare cycle ran the cold job's program (vm_bench --run): exit_ms
        # includes that run.
        put("vm_bare_ran", "/usr/bin/true")
        put("vm_bare_run_ms", f"{med(brun):.1f}")
    put(f"{a.prefix}_n", len(total))
    put(f"{a.prefix}_fail", fails)
    put(f"{a.prefix}_ms", f"{med(total):.1f}")
    put(f"{a.prefix}_all", " ".join(f"{x:.0f}" for x in total))
    put(f"{a.prefix}_boot_ms", f"{med(boot):.1f}")
    put(f"{a.prefix}_boot_all", " ".join(f"{x:.0f}" for x in boot))
    put(f"{a.prefix}_created_started_ms", f"{med(c2s):.1f}")
    put(f"{a.prefix}_started_finished_ms", f"{med(s2f):.1f}")
    put(f"{a.prefix}_client_outside_ms", f"{med(f2r):.1f}")
    return 0 if total else 1


def warm_qemus(parent):
    """pid -> cgroup dir of QEMU processes in the pool's cgroups (vm-warm-N)."""
    found = {}
    for d in glob.glob(f"/sys/fs/cgroup/*/{parent}/vm-warm-*") + glob.glob(f"/sys/fs/cgroup/{parent}/vm-warm-*"):
        try:
            pids = open(d + "/cgroup.procs").read().split()
        except OSError:
            continue
        for pid in pids:
            try:
                if open(f"/proc/{pid}/comm").read().startswith("qemu-system"):
                    found.setdefault(int(pid), []).append(d)
            except OSError:
                pass
    return found


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_pool(parent, timeout_s, settle_s=0.3):
    """Waits for one pool QEMU that has stopped computing (booted, idle): its
    CPU time grew by at most 2 ticks over settle_s, twice in a row."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        q = warm_qemus(parent)
        if len(q) != 1:
            quiet = 0
            time.sleep(0.1)
            continue
        pid = next(iter(q))
        try:
            a = cpu_ticks(pid)
            time.sleep(settle_s)
            b = cpu_ticks(pid)
        except OSError:
            quiet = 0
            continue
        quiet = quiet + 1 if b - a <= 2 else 0
        if quiet >= 2:
            return pid
    return None


def warm(a):
    c = Ctl(a.moatctl, a.socket)
    first, c2s, done, missed, fails, waits = [], [], [], 0, 0, []
    r2c, s2b = [], []  # request -> created, started -> first byte (wall clock, moatd's event times)
    idf = a.work + "/vm-warm.id"
    for _ in range(a.runs):
        w0 = time.monotonic()
        if wait_pool(a.cgroup_parent, 60) is None:
            put(f"{a.prefix}_error", "no idle warm guest appeared within 60 s")
            fails += 1
            continue
        waits.append(time.monotonic() - w0)
        w0 = time.time_ns()
        t0 = time.monotonic_ns()
        p = subprocess.Popen(c.base + ["run", "--policy", a.policy, "--tier", "vm", "--id-file", idf, "--", a.prog],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        b = p.stdout.read(1)
        t1 = time.monotonic_ns()
        rest, err = p.communicate()
        t2 = time.monotonic_ns()
        if p.returncode != 0 or b != b"x":
            fails += 1
            put(f"{a.prefix}_error", f"rc {p.returncode}, first byte {b!r}: {err.decode(errors='replace').strip()[:300]}")
            continue
        jid = job_id(idf)
        if not c.show(jid).get("sandbox", {}).get("warm"):
            missed += 1
            continue
        ev = c.lifecycle(jid)
        first.append((t1 - t0) / 1e6)
        done.append((t2 - t0) / 1e6)
        if "created" in ev and "started" in ev:
            c2s.append((ev["started"] - ev["created"]) / 1e6)
            r2c.append((ev["created"] - w0) / 1e6)
            s2b.append((w0 + (t1 - t0) - ev["started"]) / 1e6)
    put(f"{a.prefix}_n", len(first))
    put(f"{a.prefix}_missed", missed)
    put(f"{a.prefix}_fail", fails)
    put(f"{a.prefix}_first_byte_ms", f"{med(first):.1f}")
    put(f"{a.prefix}_first_byte_all", " ".join(f"{x:.0f}" for x in first))
    put(f"{a.prefix}_first_byte_max_ms", f"{max(first):.1f}" if first else "nan")
    put(f"{a.prefix}_created_started_ms", f"{med(c2s):.1f}")
    put(f"{a.prefix}_created_started_all", " ".join(f"{x:.0f}" for x in c2s))
    put(f"{a.prefix}_request_created_ms", f"{med(r2c):.1f}")
    put(f"{a.prefix}_started_first_byte_ms", f"{med(s2b):.1f}")
    put(f"{a.prefix}_total_ms", f"{med(done):.1f}")
    put(f"{a.prefix}_refill_wait_s", f"{med(waits):.2f}")
    return 0 if first else 1


def mem(a):
    pid = wait_pool(a.cgroup_parent, 60)
    if pid is None:
        put(f"{a.prefix}_error", "no idle warm guest to measure")
        return 1
    time.sleep(1)  # idle for a while: what a waiting guest holds
    roll = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            roll[parts[0].rstrip(":")] = int(parts[1])
    # Split as tests/vm/vm_boot_test.cpp does: the guest RAM mapping (exactly
    # the guest's size), clean file pages (vmlinux, QEMU and its libraries:
    # page cache, shared), the rest is this QEMU's own.
    guest_kb = file_kb = 0
    in_guest = file_backed = False
    for line in open(f"/proc/{pid}/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            in_guest = hi - lo == a.guest_bytes
            file_backed = len(head) >= 6 and head[5].startswith("/")
            continue
        if head[0] == "Rss:" and in_guest:
            guest_kb += int(head[1])
        if file_backed and not in_guest and head[0] in ("Shared_Clean:", "Private_Clean:"):
            file_kb += int(head[1])
    cgdirs = warm_qemus(a.cgroup_parent).get(pid, [])
    usage = None
    for d in cgdirs:
        for f in ("memory.usage_in_bytes", "memory.current"):
            if os.path.exists(f"{d}/{f}"):
                usage = int(open(f"{d}/{f}").read())
                stat = dict(l.split() for l in open(f"{d}/memory.stat"))
                put(f"{a.prefix}_cg_anon_kib", int(stat.get("total_rss", stat.get("anon", 0))) // 1024)
                put(f"{a.prefix}_cg_file_kib", int(stat.get("total_cache", stat.get("file", 0))) // 1024)
    put(f"{a.prefix}_rss_kib", roll.get("Rss", "nan"))
    put(f"{a.prefix}_pss_kib", roll.get("Pss", "nan"))
    put(f"{a.prefix}_anon_kib", roll.get("Anonymous", "nan"))
    put(f"{a.prefix}_guest_touched_kib", guest_kb)
    put(f"{a.prefix}_file_clean_kib", file_kb)
    put(f"{a.prefix}_cg_usage_kib", "nan" if usage is None else usage // 1024)
    put(f"{a.prefix}_guest_bytes", a.guest_bytes)
    put(f"{a.prefix}_threads", len(os.listdir(f"/proc/{pid}/task")))
    tier = open(f"/proc/{pid}/cmdline").read().split("\0")[:-1]
    if a.tier_argv:
        with open(a.tier_argv, "w") as fh:
            fh.write("\t".join(tier) + "\n")
    put("vm_tier_argv", " ".join(tier))
    return 0


def flags(a):
    """The tier's QEMU command line equals the baseline's, but for the
    initramfs (the agent's vs the test init's) and the port's name."""
    tier = open(a.tier_argv).read().rstrip("\n").split("\t")
    bare = open(a.bare_argv).read().rstrip("\n").split("\t")[1:]
    norm = lambda v: [("INITRD" if i and v[i - 1] == "-initrd" else x.replace("name=moat.ctl", "name=PORT")
                       .replace("name=moat-test", "name=PORT")) for i, x in enumerate(v)]
    nt, nb = norm(tier), norm(bare)
    diff = [f"{x} | {y}" for x, y in zip(nt, nb) if x != y] + ([f"lengths {len(nt)} | {len(nb)}"] if len(nt) != len(nb) else [])
    put("vm_flags_same", "yes" if not diff else "no: " + "; ".join(diff)[:400])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["cold", "warm", "mem", "flags"])
    ap.add_argument("--moatctl")
    ap.add_argument("--socket")
    ap.add_argument("--policy")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prog")
    ap.add_argument("--cgroup-parent")
    ap.add_argument("--guest-bytes", type=int, default=0)
    ap.add_argument("--work", default="/tmp")
    ap.add_argument("--bare-cmd")
    ap.add_argument("--bare-argv")
    ap.add_argument("--tier-argv")
    ap.add_argument("--prefix", required=True)
    a = ap.parse_args()
    return {"cold": cold, "warm": warm, "mem": mem, "flags": flags}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
