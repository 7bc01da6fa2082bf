#!/usr/bin/env bash
# Moat's one entry point for a fresh Debian 12 machine (run as root):
#   packaging/moat.sh demo    build, start moatd on a fresh state dir, run a job that is denied, investigate it
#   packaging/moat.sh test    build from scratch, run the whole test suite through CTest, then a short fuzz run
#   packaging/moat.sh build   install missing packages, configure and build (./build)
#   packaging/moat.sh deps    install missing Debian packages only
# Environment: MOAT_BUILD_DIR (default ./build), MOAT_JOBS (default nproc).
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
}

demo() {
    need_root
    build
    local state sock id
    state="$(mktemp -d /tmp/moat-demo-state.XXXXXX)"
    sock="$state/moatd.sock"
    export MOAT_SOCKET="$sock"
    say "starting moatd (state in $state)"
    "$BUILD/app/moatd/moatd" --state-dir "$state/db" --socket "$sock" --cgroup-parent "moat-demo-$$" \
        >"$state/moatd.log" 2>&1 &
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
    demo) demo ;;
    *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
