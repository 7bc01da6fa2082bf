#!/usr/bin/env python3
"""Starts N copies of a command at the same instant and times them (issue 15,
item 3: concurrent job starts against the same batch of bwrap).

    batch.py N command [args...]

Every copy is forked first and waits at a gate (a pipe's read end); closing
the write end lets all of them exec at once, so the time it takes Python to
fork N processes is not in the figures. Prints one JSON line: the batch's
wall time (gate open -> the last copy exited), the median and slowest copy,
and how many exited non-zero. Output of the copies goes to /dev/null."""
import json
import os
import statistics
import sys
import time


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: batch.py N command [args...]")
    n, cmd = int(sys.argv[1]), sys.argv[2:]
    r, w = os.pipe()
    children = set()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.read(r, 1)  # EOF once the parent closes the gate
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execvp(cmd[0], cmd)
            finally:
                os._exit(127)
        children.add(pid)
    os.close(r)
    time.sleep(0.3)  # every copy has reached the gate
    t0 = time.monotonic_ns()
    os.close(w)
    lat, fails = [], 0
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue
        children.discard(pid)
        lat.append((time.monotonic_ns() - t0) / 1e6)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            fails += 1
    print(json.dumps({"n": n, "batch_ms": round(max(lat), 3), "median_ms": round(statistics.median(lat), 3),
                      "fails": fails}))


if __name__ == "__main__":
    main()
