"""The learning benchmark's workloads (issue 14, item 7): real programs from
Debian packages on inputs the harness generates (nothing is downloaded).

Each workload is run the same way on the host (under strace, for the
baseline) and in the sandbox: the same argv, the same input paths (each input
is passed with `moatctl run --input HOST`, so it sits at the same path inside),
cwd `/` and the environment the default policy lets through. Its stdout is
compared byte for byte, so "passes" means "did the same work", not only
"exit 0".

Fields:
  name      short id, used in file names and the report
  argv      the command; {in} is the input directory, {nproc} the machine's
            CPU count (the workloads that size their threads by it)
  inputs    file names under {in} the job is given (made by make_inputs)
  package   the Debian package the program comes from (packaging/debian-packages.txt)
  short     part of CI's short mode (run.sh --short)
  compare   "bytes" (default) or "sorted-lines": how stdout is compared with the host run's
  why       what the workload exercises
"""
import json
import os
import random
import subprocess

WORKLOADS = [
    {"name": "sha256sum", "argv": ["/usr/bin/sha256sum", "{in}/data.bin"], "inputs": ["data.bin"],
     "package": "coreutils", "short": True, "why": "the smallest useful program: read, hash, write"},
    {"name": "sort", "argv": ["/usr/bin/sort", "-n", "--parallel={nproc}", "-S", "256K", "{in}/numbers.txt"],
     "inputs": ["numbers.txt"], "package": "coreutils", "short": True,
     "why": "threads, one per CPU (--parallel), and temporary files in /tmp (the 256 KiB buffer is smaller than the input)"},
    {"name": "awk", "argv": ["/usr/bin/awk", "{s += $1; n++} END {printf \"%.0f %d\\n\", s, n}", "{in}/numbers.txt"],
     "inputs": ["numbers.txt"], "package": "mawk", "short": True,
     "why": "reached through /etc/alternatives/awk (-> /usr/bin/mawk): a path outside the default view"},
    {"name": "which", "argv": ["/usr/bin/which", "sort", "tar"], "inputs": [], "package": "debianutils",
     "short": False,
     "why": "/etc/alternatives/which (-> which.debianutils), a /bin/sh script: the shell, PATH search"},
    {"name": "gzip", "argv": ["/usr/bin/gzip", "-c", "-n", "-6", "{in}/data.bin"], "inputs": ["data.bin"],
     "package": "gzip", "short": False, "why": "a compressor writing binary output"},
    {"name": "xz", "argv": ["/usr/bin/xz", "-T{nproc}", "--block-size=128KiB", "-c", "-3", "{in}/data.bin"],
     "inputs": ["data.bin"], "package": "xz-utils", "short": False,
     "why": "multithreaded compression (one thread per CPU): threads the CPU count decides"},
    {"name": "tar-gz", "argv": ["/usr/bin/tar", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
                                "--mode=0644", "-czf", "-", "{in}/tree/a.txt", "{in}/tree/b.txt",
                                "{in}/tree/sub/c.txt"],
     "inputs": ["tree/a.txt", "tree/b.txt", "tree/sub/c.txt"], "package": "tar", "short": False,
     "why": "forks and execs gzip (found on PATH) and pipes to it"},
    {"name": "grep-r", "argv": ["/usr/bin/grep", "-r", "-n", "needle", "{in}/tree"],
     "inputs": ["tree/a.txt", "tree/b.txt", "tree/sub/c.txt"], "package": "grep", "short": False,
     "compare": "sorted-lines",
     "why": "directory walk (getdents64, openat of each file); the order of a directory differs between the "
            "host's file system and the sandbox's, so its lines are compared sorted"},
    {"name": "jq", "argv": ["/usr/bin/jq", "-c", "([.items[] | select(.v > 500) | .v] | add), (.items | length)",
                            "{in}/data.json"],
     "inputs": ["data.json"], "package": "jq", "short": False, "why": "a JSON filter (libjq, oniguruma)"},
    {"name": "python3", "argv": ["/usr/bin/python3", "{in}/summarise.py", "{in}/data.json"],
     "inputs": ["summarise.py", "data.json"], "package": "python3", "short": False,
     "why": "Debian's interpreter (not a pyenv shim): its stdlib under /usr/lib/python3.11, encodings, json"},
    {"name": "sqlite3", "argv": ["/usr/bin/sqlite3", "-readonly", "{in}/items.db",
                                 "SELECT tag, count(*), sum(v) FROM items GROUP BY tag ORDER BY tag"],
     "inputs": ["items.db"], "package": "sqlite3", "short": False,
     "why": "a database engine: locking (fcntl), pread, its temporary-file probing"},
]

SUMMARISE_PY = '''\
import collections, json, sys
items = json.load(open(sys.argv[1]))["items"]
by_tag = collections.defaultdict(list)
for it in items:
    by_tag[it["tag"]].append(it["v"])
print(json.dumps({t: {"n": len(v), "sum": sum(v), "max": max(v)} for t, v in sorted(by_tag.items())}, indent=1))
'''

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def make_inputs(d):
    """Writes every input file under directory d, deterministically."""
    rnd = random.Random(14)
    os.makedirs(os.path.join(d, "tree", "sub"), exist_ok=True)
    with open(os.path.join(d, "numbers.txt"), "w") as f:
        for _ in range(60000):
            f.write(f"{rnd.randint(-10**9, 10**9)}\n")
    # Compressible but not trivial: words with random numbers, 1 MiB.
    with open(os.path.join(d, "data.bin"), "wb") as f:
        n = 0
        while n < 1 << 20:
            line = f"{rnd.choice(WORDS)} {rnd.randint(0, 99999)} {rnd.choice(WORDS)}\n".encode()
            f.write(line)
            n += len(line)
    items = [{"id": i, "v": rnd.randint(0, 1000), "tag": rnd.choice(WORDS)} for i in range(5000)]
    with open(os.path.join(d, "data.json"), "w") as f:
        json.dump({"items": items}, f)
    with open(os.path.join(d, "summarise.py"), "w") as f:
        f.write(SUMMARISE_PY)
    db = os.path.join(d, "items.db")
    if os.path.exists(db):
        os.unlink(db)
    # The sqlite3 program, not Python's module (a pyenv Python may lack it).
    sql = ["CREATE TABLE items(id INTEGER PRIMARY KEY, v INTEGER, tag TEXT);", "BEGIN;"]
    sql += [f"INSERT INTO items VALUES ({i['id']}, {i['v']}, '{i['tag']}');" for i in items]
    sql.append("COMMIT;")
    subprocess.run(["sqlite3", db], input="\n".join(sql), text=True, check=True)
    for name, lines in (("tree/a.txt", 2000), ("tree/b.txt", 500), ("tree/sub/c.txt", 3000)):
        with open(os.path.join(d, name), "w") as f:
            for i in range(lines):
                w = "needle" if i % 97 == 13 else rnd.choice(WORDS)
                f.write(f"{i} {w} {rnd.choice(WORDS)}\n")
    for root, dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for x in files:
            os.chmod(os.path.join(root, x), 0o644)
