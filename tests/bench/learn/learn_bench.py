#!/usr/bin/env python3
"""Moat's learning benchmark (issue 14, item 7).

For each workload of workloads.py: a strace baseline (the set of syscalls the
program makes run directly on the host), then the learn loop from a bare
start policy, then reruns of the policy it reached, then a comparison of that
policy's syscall set with the baseline and with Docker's default profile.

    learn_bench.py --moatd BIN --moatctl BIN [--short] [--only a,b] [--rounds 6]
                   [--reruns 3] [--views empty,default] [--json OUT] [--md OUT]
                   [--docker-profile FILE] [--keep DIR]
    learn_bench.py --render docs/learning.json --md docs/learning.md   # re-render only

The learn loop, per workload and start view:
  round 0  `moatctl run` under the start policy: tier container,
           [seccomp] allow = ["execve", "exit_group"], and the filesystem view
           (`empty`: read_only = read_write = tmpfs = [], as the issue asks;
           `default`: the policy defaults, docs/policy.md#filesystem, which
           measures syscall learning alone).
  round k  `moatctl replay F --policy P(k-1) --learn --json -o P(k)`, then
           `moatctl replay J --policy P(k) --json` to verify. P(k) is exactly
           the proposal's -o file: the harness never edits a policy. F is the
           newest failure, as an operator would take it: J in round 1, then
           the previous round's verifying replay (a call that depends on
           timing may show only there, and learn proposes it from that
           job's own denial).
A policy passes when its job exits 0 with no denial and stdout equal, byte for
byte, to the host run's. The loop stops at a pass, after --rounds rounds, or
when a proposal changes nothing (`moatctl policy diff` finds no semantic
difference: the next round would be the same): then the
workload "did not converge" and the last proposal's notes say why.

Reruns: --reruns times, the machine's CPU count of fresh `moatctl run` jobs
of the reached policy at once (the workloads that size threads by the CPU
count were given it in their argv); a rerun passes when every job passes.

Exit status: 0 when every workload was measured (converged or not: this is a
benchmark, it reports), 2 on a harness error (moatd did not start, a workload
failed on the host, moatctl answered something unparsable...), with the
reason on stderr.
"""
import argparse
import ctypes
import ctypes.util
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import WORKLOADS, make_inputs  # noqa: E402

PATH = "/usr/local/bin:/usr/bin:/bin"
# What the job gets with the default [environment] (docs/policy.md): PATH is
# set by the policy, LANG passed from the client. The host run gets the same.
HOST_ENV = {"PATH": PATH, "LANG": "C.UTF-8"}
CLIENT_ENV = {"PATH": PATH, "LANG": "C.UTF-8"}
START_ALLOW = ["execve", "exit_group"]
# Never allowed by design (docs/replay.md#the-proposal): moatd answers clone3
# ENOSYS and glibc falls back to clone. A baseline that has it is not "missing" it.
BY_DESIGN = {"clone3"}

# Docker's default capability set (moby oci/caps/defaults.go, 20.10): the
# default seccomp profile's "includes.caps" entries apply when all of theirs
# are in it, "excludes.caps" ones when none is.
DOCKER_DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
}
DOCKER_DEB = "golang-github-docker-docker-dev"
DOCKER_DEB_PATH = "usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"


class HarnessError(Exception):
    pass


def log(msg):
    print(f"learn: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- syscall names
class SyscallTable:
    """Native x86_64 syscall names, from libseccomp (the library Moat compiles with)."""

    def __init__(self):
        path = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        self.lib = ctypes.CDLL(path)
        self.lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
        self.lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int

    def native(self, name):
        # AUDIT_ARCH_X86_64; negative numbers are libseccomp's pseudo-syscalls
        # (socketcall, ...) or unknown names.
        return self.lib.seccomp_syscall_resolve_name_arch(0xC000003E, name.encode()) >= 0


# ----------------------------------------------------------------- moatd / moatctl
class Moat:
    def __init__(self, moatd, moatctl, work):
        self.moatd, self.moatctl, self.work = moatd, moatctl, work
        self.sock = os.path.join(work, "moatd.sock")
        self.log_path = os.path.join(work, "moatd.log")
        self.proc = None
        self.cgparent = f"moat-learnbench-{os.getpid()}"

    def start(self):
        state = os.path.join(self.work, "state")
        # A uid range of its own (moatd refuses one another moatd holds), apart
        # from run.sh's 14000000 + ... ranges.
        uid_base = 15000000 + (os.getpid() % 1024) * 4096
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.moatd, "--state-dir", state, "--socket", self.sock, "--cgroup-parent", self.cgparent,
             "--uid-base", str(uid_base), "--uid-count", "4096", "--vm-off"],
            stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(self.sock):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise HarnessError(f"moatd did not start: {open(self.log_path).read()[-600:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for base in ("/sys/fs/cgroup", *[os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup")]):
            p = os.path.join(base, self.cgparent)
            if os.path.isdir(p):
                for sub in os.listdir(p):
                    if os.path.isdir(os.path.join(p, sub)):
                        try:
                            os.rmdir(os.path.join(p, sub))
                        except OSError:
                            pass
                try:
                    os.rmdir(p)
                except OSError:
                    pass

    def ctl(self, *args, timeout=300):
        try:
            r = subprocess.run([self.moatctl, "--socket", self.sock, *args], stdin=subprocess.DEVNULL,
                               capture_output=True, env=CLIENT_ENV, cwd="/", timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"moatctl {' '.join(args[:3])} did not answer in {timeout}s") from e
        # A crash must not pass for a refusal (which is a result): moatctl
        # reports a job's signal as 128+N, so a negative status is its own.
        if r.returncode < 0:
            raise HarnessError(f"moatctl {' '.join(args[:3])} died of signal {-r.returncode}")
        self.alive()
        return r

    def alive(self):
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise HarnessError(f"moatd is gone (exit status {code}): {open(self.log_path).read()[-600:]}")

    def local(self, *args):
        """moatctl subcommands that run without moatd (policy ...)."""
        return subprocess.run([self.moatctl, *args], stdin=subprocess.DEVNULL, capture_output=True, env=CLIENT_ENV)

    def show(self, job):
        r = self.ctl("show", str(job), "--json")
        if r.returncode != 0:
            raise HarnessError(f"moatctl show {job}: {r.stderr.decode(errors='replace').strip()}")
        return json.loads(r.stdout)

    def denied(self, job):
        r = self.ctl("events", str(job), "--json", "--kind", "denial")
        names = set()
        for line in r.stdout.decode(errors="replace").splitlines():
            if line.strip():
                e = json.loads(line)
                names.add(e.get("syscall") or f"nr{e.get('nr')}")
        return sorted(names)

    def stdout_of(self, job):
        r = self.ctl("output", str(job))
        return r.stdout


def same_output(a, b, how):
    if how == "sorted-lines":
        return sorted(a.splitlines()) == sorted(b.splitlines())
    return a == b


def job_outcome(moat, job, want):
    """want: (host stdout, comparison)."""
    s = moat.show(job)
    out = moat.stdout_of(job)
    term = s.get("termination") or {}
    o = {"job": job, "cause": term.get("cause"), "detail": term.get("detail"), "exit_code": s.get("exit_code"),
         "denials": s.get("denial_count", 0), "stdout_same": same_output(out, want[0], want[1])}
    o["denied"] = moat.denied(job) if o["denials"] else []
    o["passed"] = (o["cause"] == "exited" and o["exit_code"] == 0 and o["denials"] == 0 and o["stdout_same"])
    return o


def describe(o):
    if o["passed"]:
        return "passed"
    bits = [f"{o['cause']}" + (f" (exit {o['exit_code']})" if o["exit_code"] is not None else "")]
    if o["cause"] == "setup-failed" and o.get("detail"):
        bits.append(o["detail"])
    if o["denied"]:
        bits.append("denied: " + ", ".join(o["denied"]))
    if not o["stdout_same"]:
        bits.append("stdout differs from the host run")
    return "; ".join(bits)


# ----------------------------------------------------------------- policies
def start_policy(wl, view):
    fs = ""
    if view == "empty":
        fs = "[filesystem]\nread_only = []\nread_write = []\ntmpfs = []\n"
    return (f'name = "learn-{wl["name"]}"\n'
            f'description = "learning benchmark start policy ({view} view)"\n'
            'tier = "container"\n\n[limits]\nwall_time = "120s"\n\n'
            f"{fs}\n[seccomp]\nallow = [{', '.join(json.dumps(s) for s in START_ALLOW)}]\n")


def policy_syscalls(moat, path, work):
    """The native syscalls a policy lets run, groups expanded: what
    `moatctl policy export --to oci` writes as SCMP_ACT_ALLOW, with or without
    argument conditions (those are listed apart)."""
    out = os.path.join(work, "export.json")
    r = moat.local("policy", "export", "--to", "oci", path, "-o", out)
    if r.returncode != 0:
        raise HarnessError(f"policy export {path}: {r.stderr.decode(errors='replace').strip()}")
    prof = json.load(open(out))
    allowed, conditional = set(), set()
    for e in prof.get("syscalls", []):
        if e.get("action") != "SCMP_ACT_ALLOW":
            continue
        for n in e.get("names", []):
            (conditional if e.get("args") else allowed).add(n)
    return allowed | conditional, conditional - allowed


def policy_filesystem(path):
    """read_only/read_write/tmpfs of a policy file, for the report (a tiny TOML
    reader for the arrays the -o writer emits; tomllib is 3.11+)."""
    try:
        import tomllib
        with open(path, "rb") as f:
            fs = tomllib.load(f).get("filesystem", {})
        return {k: fs.get(k) for k in ("read_only", "read_write", "tmpfs") if k in fs}
    except Exception:  # noqa: BLE001 - informational only
        return None


# ----------------------------------------------------------------- baseline
def strace_baseline(wl, argv, work, table):
    trace = os.path.join(work, f"{wl['name']}.strace")
    r = subprocess.run(["strace", "-f", "-qq", "-o", trace, "--", *argv], stdin=subprocess.DEVNULL,
                       capture_output=True, env=HOST_ENV, cwd="/", timeout=300)
    if r.returncode != 0:
        raise HarnessError(f"{wl['name']}: the host run under strace failed (exit {r.returncode}): "
                           f"{r.stderr.decode(errors='replace')[-300:]}")
    plain = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=HOST_ENV, cwd="/", timeout=300)
    if plain.returncode != 0 or plain.stdout != r.stdout:
        raise HarnessError(f"{wl['name']}: the host run is not deterministic or fails (exit {plain.returncode})")
    first = {}  # syscall -> its first line, with the path of the last successful openat before it
    pat = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)")
    last_open = None
    for line in open(trace, errors="replace"):
        m = pat.match(line)
        if not m:
            continue
        n = m.group(1)
        call = re.sub(r"\s+", " ", line.split(None, 1)[1].strip())
        if n not in first:
            first[n] = call[:120] + (f" (after {last_open})" if last_open else "")
        o = re.match(r'openat\([^,]+, "([^"]+)".*\) = \d+$', call)
        if o:
            last_open = o.group(1)
    return {n: first[n] for n in first if table.native(n)}, r.stdout


# ----------------------------------------------------------------- Docker's default profile
def docker_profile(arg, cache_dir):
    """Docker's default seccomp profile as Debian ships it (in the Go source
    package golang-github-docker-docker-dev): fetched with apt-get download and
    unpacked with dpkg-deb (nothing installed), cached. None and a reason when
    that is not possible."""
    if arg:
        return arg, f"--docker-profile {arg}"
    cached = os.path.join(cache_dir, "docker-default.json")
    src = os.path.join(cache_dir, "docker-default.source")
    if os.path.exists(cached) and os.path.exists(src):
        return cached, open(src).read().strip()
    tmp = tempfile.mkdtemp(prefix="moat-docker-profile.")
    try:
        # apt-get download drops to _apt, which must be able to write here.
        shutil.chown(tmp, "_apt")
    except (LookupError, OSError):
        pass
    try:
        r = subprocess.run(["apt-get", "download", "-q", DOCKER_DEB], cwd=tmp, capture_output=True, timeout=300)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if r.returncode != 0 or not debs:
            return None, f"apt-get download {DOCKER_DEB} failed: {r.stderr.decode(errors='replace').strip()[-200:]}"
        deb = os.path.join(tmp, debs[0])
        x = os.path.join(tmp, "x")
        subprocess.run(["dpkg-deb", "-x", deb, x], check=True, capture_output=True)
        ver = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True).stdout.strip()
        os.makedirs(cache_dir, exist_ok=True)
        shutil.copy(os.path.join(x, DOCKER_DEB_PATH), cached)
        with open(src, "w") as f:
            f.write(f"Debian {DOCKER_DEB} {ver}, {DOCKER_DEB_PATH}\n")
        return cached, open(src).read().strip()
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"Docker's profile could not be unpacked: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def docker_allowed(path, table):
    """Syscalls Docker's default profile allows an x86_64 container with
    Docker's default capabilities on this kernel (with or without argument
    conditions), native names only."""
    prof = json.load(open(path))
    kernel = tuple(int(x) for x in re.findall(r"\d+", platform.release())[:2])
    names = set()
    for e in prof.get("syscalls", []):
        if e.get("action") != "SCMP_ACT_ALLOW":
            continue
        inc, exc = e.get("includes") or {}, e.get("excludes") or {}
        if inc.get("arches") and not {"amd64", "x86_64"} & set(inc["arches"]):
            continue
        if exc.get("arches") and {"amd64", "x86_64"} & set(exc["arches"]):
            continue
        if inc.get("caps") and not set(inc["caps"]) <= DOCKER_DEFAULT_CAPS:
            continue
        if exc.get("caps") and set(exc["caps"]) & DOCKER_DEFAULT_CAPS:
            continue
        mk = inc.get("minKernel")
        if mk and tuple(int(x) for x in re.findall(r"\d+", mk)[:2]) > kernel:
            continue
        names.update(n for n in e.get("names", []) if table.native(n))
    return names


# ----------------------------------------------------------------- the loop
def run_job(moat, policy, argv, inputs, tag, work):
    idf = os.path.join(work, f"{tag}.id")
    if os.path.exists(idf):
        os.unlink(idf)
    args = ["run", "--policy", policy, "--id-file", idf]
    for i in inputs:
        args += ["--input", i]
    r = moat.ctl(*args, "--", *argv)
    if not os.path.exists(idf) or not open(idf).read().strip():
        return None, r.stderr.decode(errors="replace").strip()
    return int(open(idf).read().strip()), r.stderr.decode(errors="replace").strip()


def replay(moat, job, policy, learn_out=None):
    args = ["replay", str(job), "--policy", policy, "--json"]
    if learn_out:
        args += ["--learn", "-o", learn_out]
    r = moat.ctl(*args)
    text = r.stdout.decode(errors="replace")
    lines = text.split("\n", 1)
    if not lines[0].strip().isdigit():
        return None, None, (r.stderr.decode(errors="replace").strip() or text.strip())[-400:]
    rid = int(lines[0])
    try:
        report = json.loads(lines[1]) if len(lines) > 1 and lines[1].strip() else {}
    except json.JSONDecodeError as e:
        raise HarnessError(f"replay {job}: the --json report does not parse: {e}: {lines[1][:200]}") from e
    return rid, report, r.stderr.decode(errors="replace").strip()


def learn_loop(moat, wl, view, argv, inputs, want, rounds, work):
    d = os.path.join(work, wl["name"], view)
    os.makedirs(d, exist_ok=True)
    p0 = os.path.join(d, "p0.toml")
    with open(p0, "w") as f:
        f.write(start_policy(wl, view))
    res = {"view": view, "rounds": [], "policy": p0}
    job, err = run_job(moat, p0, argv, inputs, f"{wl['name']}-{view}-0", d)
    if job is None:
        res.update(status="refused", note=f"the first run was refused: {err}")
        return res
    res["original_job"] = job
    o = job_outcome(moat, job, want)
    res["rounds"].append({"round": 0, "outcome": o})
    cur = p0
    last_notes = []
    failing = job  # the newest failure: what the next round learns from
    for k in range(1, rounds + 1):
        if o["passed"]:
            break
        nxt = os.path.join(d, f"p{k}.toml")
        lid, rep, err = replay(moat, failing, cur, learn_out=nxt)
        if lid is None:
            res.update(status="refused", note=f"round {k}: the learn replay was refused: {err}")
            return res
        prop = (rep or {}).get("proposal") or {}
        adds = prop.get("additions", [])
        last_notes = prop.get("notes", [])
        lo = (rep or {}).get("replay", {})
        entry = {"round": k, "learn_job": lid, "additions": [a.get("entry") for a in adds], "notes": last_notes,
                 "learn_outcome": lo.get("outcome"), "proposal": prop}
        res["rounds"].append(entry)
        if not os.path.exists(nxt):
            res.update(status="no-proposal", note=f"round {k}: no -o file was written ({err[-200:]})")
            return res
        # Progress is judged on the policies themselves, not on the proposal's
        # syscall additions: a proposal may change other keys (filesystem
        # paths, once learn proposes them).
        pd = moat.local("policy", "diff", cur, nxt)
        if pd.returncode not in (0, 1):
            raise HarnessError(f"policy diff {cur} {nxt}: {pd.stderr.decode(errors='replace').strip()}")
        entry["diff"] = pd.stdout.decode(errors="replace").splitlines() if pd.returncode == 1 else []
        if pd.returncode == 0:
            res.update(status="stuck", note=f"round {k}: the learn replay ({entry['learn_outcome']}) proposes "
                       f"no change (policy diff: none), but the policy still fails enforced: {describe(o)}"
                       + (f"; last note: {last_notes[-1]}" if last_notes else ""))
            return res
        cur = nxt
        res["policy"] = cur
        vid, _, err = replay(moat, job, cur)
        if vid is None:
            res.update(status="refused", note=f"round {k}: the verifying replay was refused: {err}")
            return res
        o = job_outcome(moat, vid, want)
        entry["outcome"] = o
        failing = vid
    if o["passed"]:
        res.update(status="passed", rounds_to_pass=len(res["rounds"]) - 1)
    else:
        res.update(status="rounds", note=f"not passing after {rounds} rounds: {describe(o)}"
                   + (f"; last note: {last_notes[-1]}" if last_notes else ""))
    return res


def reruns(moat, policy, argv, inputs, want, n, copies, work, tag):
    results = []
    for i in range(n):
        with ThreadPoolExecutor(copies) as ex:
            futs = [ex.submit(run_job, moat, policy, argv, inputs, f"{tag}-rerun{i}-{c}", work)
                    for c in range(copies)]
            jobs = [f.result() for f in futs]
        outs = []
        for job, err in jobs:
            outs.append(job_outcome(moat, job, want) if job is not None
                        else {"passed": False, "cause": "refused", "detail": err, "denied": [],
                              "exit_code": None, "stdout_same": False})
        failed = [job for (job, _), o in zip(jobs, outs) if not o["passed"] and job is not None]
        results.append({"passed": all(o["passed"] for o in outs),
                        "failures": [describe(o) for o in outs if not o["passed"]],
                        "failed_job": failed[0] if failed else None})
    return results


def learn_from_rerun(moat, job, policy, work, tag, k):
    """A rerun failed: learn from that job, as an operator learns from a
    production failure. Returns the new policy, or None when the proposal
    changes nothing."""
    nxt = os.path.join(work, f"{tag}-rerun-learn{k}.toml")
    lid, rep, err = replay(moat, job, policy, learn_out=nxt)
    if lid is None or not os.path.exists(nxt):
        return None
    pd = moat.local("policy", "diff", policy, nxt)
    return nxt if pd.returncode == 1 else None


# ----------------------------------------------------------------- report
def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def rerun_cell(rr):
    if not rr:
        return "—"
    n = sum(x["passed"] for x in rr)
    return f"{n}/{len(rr)}" + ("¹" if n < len(rr) else "")


def markdown(R):
    m = R["machine"]
    L = ["# Learning benchmark", "",
         "How far `moatctl replay JOB --learn` gets, applied round after round, from a bare",
         "policy to one that runs real programs (issue 14, item 7). Written by",
         "`tests/bench/learn/learn_bench.py` (through `tests/bench/run.sh`; see",
         "[performance.md](performance.md) for the other benchmarks); the method is in the",
         "script's docstring and summarised below.", ""]
    if R.get("preface"):
        L += [R["preface"], ""]
    L += [f"Measured {m['date']} on {m['cpu']} ({m['nproc']} CPUs), kernel {m['kernel']}, "
          f"{'short mode, ' if R['short'] else ''}at most {R['max_rounds']} rounds, "
          f"{R['reruns']} reruns of {m['nproc']} concurrent jobs.", "",
          "## Method", "",
          "- **Start policy**: tier `container`, `[seccomp] allow = [\"execve\", \"exit_group\"]`"
          " (default action `errno:EPERM`), and a filesystem view: **empty** (`read_only`, `read_write`"
          " and `tmpfs` all `[]`, the issue's criterion) or **default** (the policy defaults:"
          " `/usr`, `/lib`, `/lib64`, `/bin`, `/sbin`, `/etc/ld.so.cache` read-only, `/tmp` tmpfs),"
          " which measures syscall learning alone.",
          "- **A round**: `moatctl replay F --policy P --learn -o NEXT`, then `moatctl replay J --policy NEXT`; "
          "F is the newest failure (J, then the previous round's verifying replay). A rerun that fails "
          "is learned from the same way (one more round), and the reruns start again."
          " NEXT is the proposal's own file; nothing is edited by hand.",
          "- **Passes**: the job exits 0, with no denial, and its stdout is byte for byte the host run's.",
          "- **Baseline**: the native syscalls `strace -f` sees when the same argv runs on the host"
          " (same cwd `/`, same environment).",
          "- **Missing**: in the baseline, not allowed by the policy reached (`clone3` is not counted: Moat"
          " answers it ENOSYS by design and glibc falls back to `clone`). **Extra**: allowed, not in the"
          " baseline (groups expanded through `moatctl policy export --to oci`; argument-conditioned"
          " allows count as allowed). A passing policy that misses a baseline syscall shows that the"
          " program took another path in the sandbox than on the host.",
          f"- **Docker**: {R['docker']['count'] if R['docker']['count'] is not None else '—'} syscalls that"
          " Docker's default profile allows an x86_64 container with Docker's default capabilities on this"
          f" kernel ({R['docker']['source']}).",
          "- **Reruns**: fresh `moatctl run`s of the policy reached, the machine's CPU count of them at"
          " once; a rerun passes when all of them pass. Workloads that size their threads by the CPU count"
          " (`sort --parallel`, `xz -T`) are given the machine's.", ""]
    for view in R["views"]:
        L += [f"## From the {view} view", "",
              "| workload | program | rounds to pass | syscalls allowed | strace baseline | missing | extra |"
              " × baseline | × Docker | reruns passed |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        notes = []
        for w in R["workloads"]:
            v = w["views"].get(view)
            if v is None:
                continue
            prog = f"`{w['program']}`" + (" via /etc/alternatives" if w["alternatives"] else "")
            for lr in v.get("learned_from_reruns", []):
                notes.append(f"- **{w['name']}**: a rerun failed ({lr['failure']}); one more round learned from "
                             f"that job (counted in the rounds), and the reruns started again")
            rr = v.get("reruns")
            if rr and not all(x["passed"] for x in rr):
                fails = [f"rerun {i + 1}: " + " / ".join(sorted(set(x["failures"])))
                         for i, x in enumerate(rr) if not x["passed"]]
                notes.append(f"- **{w['name']}** passed learning, but not every rerun: " + "; ".join(fails))
            if v["status"] == "passed" and v.get("missing"):
                notes.append(f"- **{w['name']}** passes without " + "; ".join(
                    f"`{n}` (on the host: `{v.get('missing_first', {}).get(n, '?')}`)" for n in v["missing"]))
            if v["status"] == "passed":
                rp = str(v["rounds_to_pass"])
            else:
                rp = "did not converge¹"
                notes.append(f"- **{w['name']}**: {v.get('note', v['status'])}")
            n = v.get("allowed_count")
            miss = v.get("missing", [])
            L.append(f"| {w['name']} | {prog} | {rp} | {n if n is not None else '—'} | {w['strace_count']} |"
                     f" {len(miss)}{': ' + ', '.join(miss) if miss and len(miss) <= 6 else ''} |"
                     f" {v.get('extra_count', '—')} | {ratio(n, w['strace_count'])} |"
                     f" {ratio(n, R['docker']['count'])} |"
                     f" {rerun_cell(rr)} |")
        vs = [w["views"][view] for w in R["workloads"] if view in w["views"]]
        conv = [v for v in vs if v.get("status") == "passed"]
        solid = [v for v in conv if v.get("reruns") and all(x["passed"] for x in v["reruns"])]
        L += ["", f"{len(conv)} of {len(vs)} workloads converged; {len(solid)} of them passed every rerun"
              " (the issue's \"done\" needs both, for every workload, from the empty view).", ""]
        if notes:
            L += ["¹ Why (a workload that did not converge: in the last proposal's or replay's words), and"
                  " what a passing policy lacks from the baseline:", ""] + notes + [""]
        if any(w["views"].get(view, {}).get("status") != "passed" for w in R["workloads"]):
            L += ["For a workload that did not converge, the syscall columns describe the last policy it"
                  " reached.", ""]
    L += ["## Workloads", "", "| workload | package | argv | what it exercises |", "| --- | --- | --- | --- |"]
    for w in R["workloads"]:
        # shlex quoting, and | escaped: a pipe in a cell ends it, even inside backquotes.
        argv = shlex.join(x.replace("{in}", "IN").replace("{nproc}", "NPROC") for x in w["argv_template"])
        argv = argv.replace("|", "\\|")
        L.append(f"| {w['name']} | {w['package']} | `{argv}` | {w['why']} |")
    L += ["", "IN is the input directory, NPROC the machine's CPU count. Inputs are generated by `workloads.py` (a fixed seed; nothing is downloaded) and given to"
          " each job with `moatctl run --input`, at the same path as on the host.", "",
          "## Running it", "",
          "    sudo tests/bench/run.sh --only learn          # every workload, rewrites this page",
          "    sudo tests/bench/run.sh --short               # CI: the short workloads, into the build dir",
          "    sudo tests/bench/learn/learn_bench.py --moatd BUILD/app/moatd/moatd \\",
          "         --moatctl BUILD/app/moatctl/moatctl --only awk,sort --keep /tmp/lb   # by hand", "",
          "The results, round by round (each learn job, its additions and notes), are in"
          f" `{R['json_name']}` next to this page.", ""]
    return "\n".join(L)


# ----------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moatd")
    ap.add_argument("--moatctl")
    ap.add_argument("--render", metavar="JSON", help="only write the report (--md) from an earlier --json file")
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reruns", type=int, default=3)
    ap.add_argument("--views", default="empty,default")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--md")
    ap.add_argument("--preface", default="", help="a paragraph put at the top of the report")
    ap.add_argument("--docker-profile")
    ap.add_argument("--cache-dir", default="/var/cache/moat/bench")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    a = ap.parse_args()
    if a.render:
        md = markdown(json.load(open(a.render)))
        if a.md:
            with open(a.md, "w") as f:
                f.write(md)
        else:
            print(md)
        return 0
    if not a.moatd or not a.moatctl:
        ap.error("--moatd and --moatctl are required (unless --render)")
    if os.geteuid() != 0:
        print("learn_bench.py: must run as root (moatd needs it)", file=sys.stderr)
        return 2
    for tool in ("strace",):
        if not shutil.which(tool):
            print(f"learn_bench.py: {tool} is missing (packaging/moat.sh deps)", file=sys.stderr)
            return 2
    views = [v for v in a.views.split(",") if v]
    if not set(views) <= {"empty", "default"}:
        print("learn_bench.py: --views takes empty and default", file=sys.stderr)
        return 2
    wls = [w for w in WORKLOADS if (w["short"] or not a.short)]
    if a.only:
        want = a.only.split(",")
        unknown = set(want) - {w["name"] for w in WORKLOADS}
        if unknown:
            print(f"learn_bench.py: unknown workload(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        wls = [w for w in WORKLOADS if w["name"] in want]

    work = a.keep or tempfile.mkdtemp(prefix="moat-learnbench.")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    indir = os.path.join(work, "in")
    make_inputs(indir)
    nproc = os.cpu_count() or 1
    table = SyscallTable()
    moat = Moat(os.path.abspath(a.moatd), os.path.abspath(a.moatctl), work)
    dprof, dsrc = docker_profile(a.docker_profile, a.cache_dir)
    dcount = len(docker_allowed(dprof, table)) if dprof else None
    if dprof is None:
        log(f"Docker's profile: {dsrc}")
    R = {"short": a.short, "max_rounds": a.rounds, "reruns": a.reruns, "views": views, "preface": a.preface,
         "json_name": os.path.basename(a.json_out) if a.json_out else "learning.json",
         "docker": {"count": dcount, "source": dsrc},
         "machine": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                     "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                  if l.startswith("model name")), platform.machine()),
                     "nproc": nproc, "kernel": platform.release(),
                     "moat_commit": subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)),
                                                    "rev-parse", "--short", "HEAD"], capture_output=True,
                                                   text=True).stdout.strip()},
         "workloads": []}
    rc = 0
    try:
        moat.start()
        for wl in wls:
            argv = [x.replace("{in}", indir).replace("{nproc}", str(nproc)) for x in wl["argv"]]
            inputs = [os.path.join(indir, i) for i in wl["inputs"]]
            prog = argv[0]
            W = {"name": wl["name"], "package": wl["package"], "why": wl["why"], "argv_template": wl["argv"],
                 "program": prog, "resolved": os.path.realpath(prog),
                 "alternatives": "/etc/alternatives/" in " ".join(_link_chain(prog)), "views": {}}
            log(f"{wl['name']}: strace baseline")
            base, host_out = strace_baseline(wl, argv, work, table)
            want = (host_out, wl.get("compare", "bytes"))
            W["strace"] = sorted(base)
            W["strace_count"] = len(base)
            W["strace_first"] = base
            base = set(base)
            for view in views:
                t0 = time.monotonic()
                log(f"{wl['name']}: learning from the {view} view")
                v = learn_loop(moat, wl, view, argv, inputs, want, a.rounds, work)
                if v["status"] == "passed":
                    log(f"{wl['name']}: {view}: passed after {v['rounds_to_pass']} round(s); reruns")
                    v["reruns"] = reruns(moat, v["policy"], argv, inputs, want, a.reruns, nproc, work,
                                         f"{wl['name']}-{view}")
                    # A rerun that fails is learned from (at most twice), and
                    # counts as a round; the reruns then start again.
                    for k in range(1, 3):
                        bad = next((r["failed_job"] for r in v["reruns"] if r.get("failed_job")), None)
                        if bad is None:
                            break
                        nxt = learn_from_rerun(moat, bad, v["policy"], work, f"{wl['name']}-{view}", k)
                        if nxt is None:
                            break
                        v.setdefault("learned_from_reruns", []).append(
                            {"job": bad, "failure": next(r["failures"][0] for r in v["reruns"] if r["failures"])})
                        v["policy"] = nxt
                        v["rounds_to_pass"] += 1
                        log(f"{wl['name']}: {view}: a rerun failed; learned from job {bad}; reruns again")
                        v["reruns"] = reruns(moat, v["policy"], argv, inputs, want, a.reruns, nproc, work,
                                             f"{wl['name']}-{view}-{k}")
                else:
                    log(f"{wl['name']}: {view}: {v['status']}: {v.get('note', '')[:300]}")
                v["seconds"] = round(time.monotonic() - t0, 1)
                allowed, cond = policy_syscalls(moat, v["policy"], work)
                v["allowed"] = sorted(allowed)
                v["allowed_count"] = len(allowed)
                v["conditional"] = sorted(cond)
                v["missing"] = sorted(base - allowed - BY_DESIGN)
                v["missing_first"] = {n: W["strace_first"][n] for n in v["missing"]}
                v["extra"] = sorted(allowed - base)
                v["extra_count"] = len(v["extra"])
                v["filesystem"] = policy_filesystem(v["policy"])
                v["policy_text"] = open(v["policy"]).read()
                W["views"][view] = v
            R["workloads"].append(W)
    except HarnessError as e:
        print(f"learn_bench.py: {e}", file=sys.stderr)
        rc = 2
    finally:
        moat.stop()
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(R, f, indent=1, sort_keys=True)
            f.write("\n")
    md = markdown(R)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    else:
        print(md)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return rc


def _link_chain(path):
    """The symlinks a path goes through (/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk)."""
    chain, seen = [path], set()
    while os.path.islink(path) and path not in seen:
        seen.add(path)
        t = os.readlink(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), t))
        chain.append(path)
    return chain


if __name__ == "__main__":
    sys.exit(main())
