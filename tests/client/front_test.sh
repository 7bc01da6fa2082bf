#!/bin/bash
# Client.FrontRunsAJobAsTheCppClientDoes (app/moatctl/front.c): `moatctl`'s C
# front serves the plain `run` itself (brief answers from moatd) and hands
# every other form to moatctl-light. Each case runs through the front and
# through moatctl-light directly against one moatd of the test's own, and
# must give the same exit status, the same stdout and the same stderr (job
# ids aside). Then: the front alone (no moatctl-light beside it) still runs
# the plain form, which shows it served it itself, and says clearly that it
# needs moatctl-light for the rest; --help and --version are the light's.
#   front_test.sh FRONT LIGHT MOATD musl|cc
# Exit 77 (skipped, with the reason) when not root.
set -u
front=$(realpath "$1") light=$(realpath "$2") moatd=$(realpath "$3") linked=$4
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (moatd)"
fail=0
bad() { echo "FAIL: $*"; fail=1; }

tmp=$(mktemp -d /tmp/moat-front-test.XXXXXX)
chmod 755 "$tmp"
moatd_pid=
cgparent=moat-front-test-$$
. "$(dirname "$0")/../lib/moatd.sh"
cleanup() {
    [ -n "$moatd_pid" ] && kill "$moatd_pid" 2>/dev/null && wait "$moatd_pid" 2>/dev/null
    moat_remove_cgparent "$cgparent"
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the front's own build ----------------------------------------------------
if [ "$linked" = musl ]; then
    readelf -lW "$front" | grep -q INTERP && bad "the front asks for a dynamic loader: $(readelf -lW "$front" | grep -A1 INTERP)"
    needed=$(readelf -dW "$front" | grep NEEDED)
    [ -z "$needed" ] || bad "the front needs shared libraries: $needed"
    readelf -hW "$front" | grep -q "DYN (" || bad "the front is not position-independent (static-pie)"
fi

# ---- a moatd of the test's own --------------------------------------------------
sock=$tmp/moatd.sock
moat_start_moatd "$moatd" "$sock" "$tmp/state" "$cgparent" 41000000 "$tmp/moatd.log" --vm-off || exit 1

cat >"$tmp/p.toml" <<'EOF'
name = "front-test"
[limits]
wall_time = "2s"
[seccomp]
allow = ["@default"]
EOF
sed 's/wall_time = "2s"/wall_time = "60s"/' "$tmp/p.toml" >"$tmp/long.toml"
printf 'name = "broken"\n[seccomp]\nallow = ["no_such_call"]\n' >"$tmp/bad.toml"
echo "an input" >"$tmp/input.txt"

# Runs one case through both clients (same arguments after the program name)
# and compares. stdin is $in (default /dev/null).
n=0
same() {
    n=$((n + 1))
    local name=$1
    shift
    local in=${IN:-/dev/null} rc_f rc_l
    "$front" "$@" <"$in" >"$tmp/f.out" 2>"$tmp/f.err"
    rc_f=$?
    "$light" "$@" <"$in" >"$tmp/l.out" 2>"$tmp/l.err"
    rc_l=$?
    # Job ids differ between the two runs.
    sed -i -E 's/job [0-9]+/job N/g; s/(replay|output) [0-9]+/\1 N/g' "$tmp/f.err" "$tmp/l.err"
    [ "$rc_f" = "$rc_l" ] || bad "$name: the front exited $rc_f, moatctl-light $rc_l ($(cat "$tmp/f.err"))"
    cmp -s "$tmp/f.out" "$tmp/l.out" || bad "$name: stdout differs: front '$(head -c 300 "$tmp/f.out")' light '$(head -c 300 "$tmp/l.out")'"
    cmp -s "$tmp/f.err" "$tmp/l.err" || bad "$name: stderr differs: front '$(head -c 300 "$tmp/f.err")' light '$(head -c 300 "$tmp/l.err")'"
    [ -z "${WANT:-}" ] || [ "$rc_f" = "$WANT" ] || bad "$name: exit $rc_f, not $WANT"
}
ctl=(--socket "$sock")
WANT=0 same "exit 0" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/true
WANT=7 same "exit 7 with output" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/sh -c 'echo out; echo err >&2; exit 7'
WANT=7 same "--policy=FILE, --tier" "${ctl[@]}" run --policy="$tmp/p.toml" --tier seccomp -- /bin/sh -c 'exit 7'
WANT=143 same "its own signal" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/sh -c 'kill -TERM $$'
WANT=137 same "killed at its wall time" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/sleep 10
WANT=125 same "not set up" "${ctl[@]}" run --policy "$tmp/p.toml" -- /nonexistent/program
WANT=125 same "refused policy" "${ctl[@]}" run --policy "$tmp/bad.toml" -- /bin/true
WANT=125 same "no policy file" "${ctl[@]}" run --policy "$tmp/none.toml" -- /bin/true
WANT=125 same "no moatd" --socket "$tmp/none.sock" run --policy "$tmp/p.toml" -- /bin/true
WANT=0 IN=$tmp/input.txt same "stdin relayed" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/cat
grep -qx "an input" "$tmp/f.out" || bad "stdin did not reach the job through the front: '$(cat "$tmp/f.out")'"
# A job's arguments are its own, brackets too (CLI11 would split "[a,b]").
WANT=0 same "brackets" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/echo '[a,b]' '[abc]' '[]' '[ -f x ]'
[ "$(cat "$tmp/f.out")" = "[a,b] [abc] [] [ -f x ]" ] || bad "brackets reached the job as '$(cat "$tmp/f.out")'"
# Refused when moatd accepts the connection (neither root nor in its
# groups): moatd answers in JSON before any job; the front hands over.
if command -v setpriv >/dev/null; then
    nobody=(setpriv --reuid 65534 --regid 65534 --clear-groups)
    "${nobody[@]}" "$front" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/true >/dev/null 2>"$tmp/f.err"
    rc_f=$?
    "${nobody[@]}" "$light" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/true >/dev/null 2>"$tmp/l.err"
    rc_l=$?
    [ "$rc_f $(cat "$tmp/f.err")" = "$rc_l $(cat "$tmp/l.err")" ] ||
        bad "refused user: the front gave '$rc_f $(cat "$tmp/f.err")', moatctl-light '$rc_l $(cat "$tmp/l.err")'"
    grep -q "permission denied\|not root" "$tmp/f.err" || bad "refused user: no clear refusal: $(cat "$tmp/f.err")"
fi
# A policy from a FIFO: the front must not open it (its writer's data would
# be lost to the C++ client, which would then wait forever).
mkfifo "$tmp/fifo.toml"
cat "$tmp/p.toml" >"$tmp/fifo.toml" &
writer=$!
timeout 20 "$front" "${ctl[@]}" run --policy "$tmp/fifo.toml" -- /bin/sh -c 'exit 4'
rc=$?
[ $rc = 4 ] || bad "a policy from a FIFO: exit $rc, not 4"
kill $writer 2>/dev/null

# Forms the front hands over: same results.
WANT=0 same "a non-ASCII argument" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/echo "h$(printf '\xc3\xa9')llo"
WANT=0 same "--input" "${ctl[@]}" run --policy "$tmp/p.toml" --input "$tmp/input.txt" -- /bin/cat "$tmp/input.txt"
grep -qx "an input" "$tmp/f.out" || bad "--input through the front: '$(cat "$tmp/f.out")'"
MOAT_SOCKET=$sock "$front" run --policy "$tmp/p.toml" -- /bin/true || bad "MOAT_SOCKET is not used by the front"
WANT=125 same "an unknown option" "${ctl[@]}" run --policy "$tmp/p.toml" --no-such-option -- /bin/true
same "a bad tier" "${ctl[@]}" run --policy "$tmp/p.toml" --tier nope -- /bin/true

# --id-file: the job's id, as `jobs` lists it.
"$front" "${ctl[@]}" run --policy "$tmp/p.toml" --id-file "$tmp/id" -- /bin/true || bad "run with --id-file failed"
listed=$("$light" "${ctl[@]}" jobs --limit 1 | awk 'NR == 2 { print $1 }')
[ "$(cat "$tmp/id" 2>/dev/null)" = "$listed" ] || bad "--id-file holds '$(cat "$tmp/id" 2>/dev/null)', jobs lists $listed"

# Ctrl-C: the job is stopped and its end reported, as moatctl-light does.
interrupt() {
    local prog=$1 rc
    rm -f "$tmp/id"
    "$prog" "${ctl[@]}" run --policy "$tmp/long.toml" --id-file "$tmp/id" -- /bin/sleep 30 >/dev/null 2>"$tmp/int.err" &
    local pid=$!
    for _ in $(seq 100); do [ -s "$tmp/id" ] && break; sleep 0.05; done
    sleep 0.2
    kill -INT $pid
    local t0=$SECONDS
    wait $pid
    rc=$?
    [ $((SECONDS - t0)) -le 5 ] || bad "$prog: the interrupted run took $((SECONDS - t0)) s to end"
    echo "$rc $(sed -E 's/job [0-9]+/job N/g' "$tmp/int.err")"
}
a=$(interrupt "$front")
b=$(interrupt "$light")
[ "$a" = "$b" ] || bad "Ctrl-C: the front gave '$a', moatctl-light '$b'"
case "$a" in 137*stopped*) ;; *) bad "Ctrl-C: '$a', not 137 with the job stopped" ;; esac

# --help and --version: the light client's words (argv[0] as called).
h1=$(bash -c 'exec -a moatctl "$0" --help' "$front")
h2=$(bash -c 'exec -a moatctl "$0" --help' "$light")
[ "$h1" = "$h2" ] || bad "--help differs: $(diff <(echo "$h1") <(echo "$h2") | head -5)"
[ "$("$front" --version)" = "$("$light" --version)" ] || bad "--version differs"

# A moatd without run_brief (older than this moatctl), played by
# old_moatd.py: it refuses the op before any job exists, the front hands the
# command over, and moatctl-light's plain run is the only job (none twice).
python3 "$(dirname "$0")/old_moatd.py" "$tmp/old.sock" "$tmp/old.log" &
old=$!
for _ in $(seq 100); do [ -S "$tmp/old.sock" ] && break; sleep 0.05; done
timeout 20 "$front" --socket "$tmp/old.sock" run --policy "$tmp/p.toml" -- /bin/true
rc=$?
wait $old
[ $rc = 3 ] || bad "against a moatd without run_brief: exit $rc, not 3 (moatctl-light's run)"
[ "$(tr '\n' ' ' <"$tmp/old.log")" = "run_brief run " ] || bad "against a moatd without run_brief, it was asked: $(cat "$tmp/old.log")"

# ---- the front alone ----------------------------------------------------------
mkdir "$tmp/alone"
cp "$front" "$tmp/alone/moatctl"
if [ ! -x /usr/libexec/moat/moatctl-light ]; then
    "$tmp/alone/moatctl" "${ctl[@]}" run --policy "$tmp/p.toml" -- /bin/sh -c 'exit 3'
    rc=$?
    [ $rc = 3 ] || bad "the front alone did not run the plain form itself (exit $rc)"
    "$tmp/alone/moatctl" "${ctl[@]}" jobs >"$tmp/out" 2>&1
    rc=$?
    [ $rc = 2 ] || bad "jobs through the front alone: exit $rc, not 2"
    grep -q "needs moatctl-light" "$tmp/out" || bad "no clear error without moatctl-light: $(cat "$tmp/out")"
    "$tmp/alone/moatctl" "${ctl[@]}" run --policy "$tmp/p.toml" --input "$tmp/input.txt" -- /bin/true >"$tmp/out" 2>&1
    rc=$?
    [ $rc = 125 ] || bad "run --input through the front alone: exit $rc, not 125"
fi
# moatd gone mid-run (last: it is not restarted): both say so and exit 125.
"$front" "${ctl[@]}" run --policy "$tmp/long.toml" -- /bin/sleep 30 >/dev/null 2>"$tmp/f.err" &
fpid=$!
"$light" "${ctl[@]}" run --policy "$tmp/long.toml" -- /bin/sleep 30 >/dev/null 2>"$tmp/l.err" &
lpid=$!
for _ in $(seq 100); do
    [ "$("$light" "${ctl[@]}" jobs --json 2>/dev/null | grep -o '"state":"running"' | wc -l)" -ge 2 ] && break
    sleep 0.05
done
kill -9 "$moatd_pid"
wait "$moatd_pid" 2>/dev/null
moatd_pid=
wait $fpid
rc_f=$?
wait $lpid
rc_l=$?
[ "$rc_f $(cat "$tmp/f.err")" = "$rc_l $(cat "$tmp/l.err")" ] ||
    bad "moatd gone: the front gave '$rc_f $(cat "$tmp/f.err")', moatctl-light '$rc_l $(cat "$tmp/l.err")'"
[ "$rc_f" = 125 ] || bad "moatd gone: exit $rc_f, not 125"

[ $fail = 0 ] && echo "ok ($n compared cases)"
exit $fail
