#!/usr/bin/env bash
# Moat's one entry point for a fresh Debian 12 machine (run as root):
#   packaging/moat.sh demo    build, start moatd on a fresh state dir, run a job that is denied, investigate it
#   packaging/moat.sh test    build from scratch, run the whole test suite through CTest, a short fuzz run,
#                             the sanitizer runs and the benchmarks' short mode
#   packaging/moat.sh sanitize  only the sanitizer runs (ASan+UBSan: every test; TSan: moatd's threaded parts)
#   packaging/moat.sh build   install missing packages, configure and build (./build)
#   packaging/moat.sh deps    install missing Debian packages only
# Environment: MOAT_BUILD_DIR (default ./build), MOAT_JOBS (default nproc),
#   MOAT_SANITIZERS=0 / MOAT_BENCH=0 skip those stages of `test` (for a quick local run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOAT_BUILD_DIR:-$ROOT/build}"
JOBS="${MOAT_JOBS:-$(nproc)}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "moat.sh: run as root (moatd needs cgroups, job uids and seccomp notification; deps need apt-get)" >&2
        exit 1
    fi
}

deps() {
    local wanted missing=()
    wanted=$(grep -v '^\s*#' "$ROOT/packaging/debian-packages.txt" | grep -v '^\s*$')
    for p in $wanted; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        need_root
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build() {
    deps
    say "configuring ($BUILD)"
    # The console is built by default; MOAT_GUI=OFF builds and tests the daemon alone.
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOAT_BUILD_GUI="${MOAT_GUI:-ON}" \
        ${MOAT_CMAKE_ARGS:-} >/dev/null
    say "building with $JOBS jobs"
    cmake --build "$BUILD" -j "$JOBS"
}

run_tests() {
    need_root
    build
    say "running the test suite"
    (cd "$BUILD" && ctest --output-on-failure -j "$JOBS" --timeout 300)
    say "fuzzing each parser of untrusted bytes for ${MOAT_FUZZ_SECONDS:-20}s (tests/fuzz/run.sh)"
    MOAT_FUZZ_BUILD_DIR="$BUILD-fuzz" bash "$ROOT/tests/fuzz/run.sh" "${MOAT_FUZZ_SECONDS:-20}"
    if [ "${MOAT_SANITIZERS:-1}" != 0 ]; then sanitize; fi
    if [ "${MOAT_BENCH:-1}" != 0 ]; then
        # Catches breakage of the benchmarks, not regressions (figures vary here).
        say "benchmarks, short mode (tests/bench/run.sh --short; full figures: docs/performance.md)"
        bash "$ROOT/tests/bench/run.sh" --short --build-dir "$BUILD" --no-build --out "$BUILD/performance-short.md"
    fi
}

# Issue 6, item 3 (docs/testing.md#sanitizers): the whole suite under ASan +
# UBSan, and moatd's threaded parts (store writer, query worker, event loop,
# stdio relays) under ThreadSanitizer. Without the console: Qt is not ours.
sanitize() {
    need_root
    deps
    local asan="$BUILD-asan" tsan="$BUILD-tsan"
    say "ASan + UBSan build ($asan)"
    cmake -S "$ROOT" -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON -DMOAT_BUILD_GUI=OFF \
        -DMOAT_BUILD_BENCH=OFF >/dev/null
    cmake --build "$asan" -j "$JOBS"
    say "the whole suite under ASan + UBSan"
    (cd "$asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j "$JOBS" --timeout 600)
    say "ThreadSanitizer build ($tsan)"
    cmake -S "$ROOT" -B "$tsan" -DCMAKE_BUILD_TYPE=Debug -DMOAT_TSAN=ON -DMOAT_BUILD_GUI=OFF \
        -DMOAT_BUILD_BENCH=OFF >/dev/null
    cmake --build "$tsan" -j "$JOBS" --target store_test ipc_test supervisor_test scenario_test \
        reliability_test moatd moatctl moat-init moat-testprog
    say "moatd's threaded parts under ThreadSanitizer"
    local t
    for t in unit/store/store_test unit/ipc/ipc_test unit/supervisor/supervisor_test scenario/scenario_test; do
        TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 "$tsan/tests/$t" --gtest_brief=1
    done
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 "$tsan/tests/reliability/reliability_test" --gtest_brief=1 \
        --gtest_filter='Rel.FiftyClients*:Rel.DenialStorm*:Rel.Malformed*:CrashRecovery.*'
}

demo() {
    need_root
    build
    local state sock id
    state="$(mktemp -d /tmp/moat-demo-state.XXXXXX)"
    sock="$state/moatd.sock"
    export MOAT_SOCKET="$sock"
    say "starting moatd (state in $state)"
    # A job uid range of its own: moatd refuses a range another moatd holds.
    "$BUILD/app/moatd/moatd" --state-dir "$state/db" --socket "$sock" --cgroup-parent "moat-demo-$$" \
        --uid-base $((12000000 + ($$ % 1024) * 2048)) --uid-count 2048 >"$state/moatd.log" 2>&1 &
    MOATD_PID=$!
    trap 'kill -TERM $MOATD_PID 2>/dev/null; wait $MOATD_PID 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    [ -S "$sock" ] || { cat "$state/moatd.log" >&2; exit 1; }
    local ctl="$BUILD/app/moatctl/moatctl"
    local pol="$ROOT/resources/policies/demo-mkdir.toml"

    say "policy check: $pol"
    "$ctl" policy check "$pol" && echo "valid"
    say "running: mkdir /tmp/moat-demo  (the policy allows what mkdir needs, except mkdir)"
    set +e
    "$ctl" run --policy "$pol" --id-file "$state/job.id" -- mkdir /tmp/moat-demo
    echo "exit status: $?"
    set -e
    id="$(cat "$state/job.id")"
    say "moatctl show $id"
    "$ctl" show "$id"
    say "moatctl events $id"
    "$ctl" events "$id"
    say "moatctl events $id --json --kind denial"
    "$ctl" events "$id" --json --kind denial
    say "moatctl jobs"
    "$ctl" jobs
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$BUILD/ui/moat-console" ]; then
        say "opening moat-console on this moatd (close the window to stop moatd)"
        "$BUILD/ui/moat-console" --socket "$sock" || true
    else
        say "no display here: on a desktop this command opens moat-console; see docs/screenshots/"
    fi
    say "done: moatd log in $state/moatd.log"
}

case "${1:-}" in
    deps) deps ;;
    build) build ;;
    test) run_tests ;;
    sanitize) sanitize ;;
    demo) demo ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
