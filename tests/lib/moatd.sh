# Sourced by the shell tests that start a moatd of their own
# (tests/client/front_test.sh, tests/runtime/podman_test.sh) or leave its
# cgroup parent behind (tests/packaging/deb_test.sh).

# moat_start_moatd MOATD SOCK STATE CGPARENT UID_BASE LOG [MOATD ARGS...]
# Starts MOATD in the background and waits for its socket; sets moatd_pid.
# Tests run in parallel and moatd refuses a job uid range another moatd
# holds ("give each moatd its own"): up to five ranges are tried, UID_BASE
# plus a multiple of 1024 picked from this shell's pid (the scenario tests use
# 800000.., the demo 12000000.., the benchmarks 14000000.., the package test
# 30000000..). Returns 1 (after printing moatd's log) when none came up.
moat_start_moatd() {
    local bin=$1 sock=$2 state=$3 cgparent=$4 base=$5 log=$6 attempt uid_base
    shift 6
    moatd_pid=
    for attempt in 1 2 3 4 5; do
        uid_base=$((base + (($$ + attempt) % 4096) * 1024))
        "$bin" --state-dir "$state" --socket "$sock" --cgroup-parent "$cgparent" --uid-base $uid_base \
            --uid-count 1024 "$@" >"$log" 2>&1 &
        moatd_pid=$!
        for _ in $(seq 100); do [ -S "$sock" ] && break; kill -0 $moatd_pid 2>/dev/null || break; sleep 0.1; done
        [ -S "$sock" ] && return 0
        wait $moatd_pid 2>/dev/null
        moatd_pid=
        grep -q "give each moatd its own" "$log" || break
    done
    cat "$log"
    echo "FAIL: moatd did not start"
    return 1
}

# moat_remove_cgparent CGPARENT: moatd's cgroup parent in every hierarchy
# (v1) or at the root (v2), deepest first, then moatd's hold on that name (a
# file it leaves in --uid-lock-dir), once no process holds it (moatd's orphan
# reaper may, for a moment, after moatd exits). Its uid range file is not a
# name of the test's own: the next moatd to start removes it, as it does
# every stale one.
moat_remove_cgparent() {
    [ -n "$1" ] || return 0  # not chosen yet: never /sys/fs/cgroup itself
    local d f=/run/moat/uid-ranges/cgroup-$1
    for d in /sys/fs/cgroup/"$1" /sys/fs/cgroup/*/"$1"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    [ -f "$f" ] && flock -w 5 "$f" rm -f "$f"
    return 0
}
