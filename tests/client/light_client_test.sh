#!/bin/bash
# moatctl's C++ builds (app/moatctl/CMakeLists.txt): `moatctl-light` must not
# load the policy, store or crypto libraries, and hands the commands that
# need them to moatctl-full; without moatctl-full it says so and fails
# cleanly. (The front, `moatctl`, is tests/client/front_test.sh's.)
#   light_client_test.sh MOATCTL_LIGHT MOATCTL_FULL
set -u
MOATCTL=$1
FULL=$2
fail=0
bad() { echo "FAIL: $*"; fail=1; }

needed=$(readelf -d "$MOATCTL" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
for lib in libcrypto libtomlplusplus libseccomp libsqlite3; do
    case " $needed" in *" $lib"*) bad "moatctl loads $lib (DT_NEEDED: $needed)" ;; esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'name = "t"\n[seccomp]\nallow = ["@default"]\n' >"$work/ok.toml"
printf 'name = "t"\n[seccomp]\nallow = ["no_such_call"]\n' >"$work/bad.toml"

# Through moatctl, the full build checks the policy: same exit codes.
"$MOATCTL" policy check "$work/ok.toml" >/dev/null 2>&1 || bad "policy check of a good policy failed through moatctl"
"$MOATCTL" policy check "$work/bad.toml" >"$work/out" 2>&1
rc=$?
[ "$rc" = 1 ] || bad "policy check of a bad policy: exit $rc, not 1"
grep -q "no_such_call" "$work/out" || bad "the diagnostic does not name the unknown syscall: $(cat "$work/out")"

# A light moatctl alone (no moatctl-full next to it or installed): a clear
# error, exit 2 (and 125 for replay, a set-up failure in the contract).
cp "$MOATCTL" "$work/moatctl"
if [ ! -x /usr/libexec/moat/moatctl-full ]; then
    "$work/moatctl" policy check "$work/ok.toml" >"$work/out" 2>&1
    rc=$?
    [ "$rc" = 2 ] || bad "policy check without moatctl-full: exit $rc, not 2"
    grep -q "needs moatctl-full" "$work/out" || bad "no clear error without moatctl-full: $(cat "$work/out")"
    "$work/moatctl" --socket /nonexistent replay 1 >"$work/out" 2>&1
    rc=$?
    [ "$rc" = 125 ] || bad "replay without moatctl-full: exit $rc, not 125"
    # Commands of its own still work (here: fail to connect, exit 1).
    "$work/moatctl" --socket "$work/none.sock" jobs >"$work/out" 2>&1
    rc=$?
    [ "$rc" = 1 ] || bad "jobs against no daemon: exit $rc, not 1"
    grep -q "needs moatctl-full" "$work/out" && bad "jobs went to moatctl-full"
fi
"$FULL" policy check "$work/ok.toml" >/dev/null 2>&1 || bad "moatctl-full itself failed"
[ $fail = 0 ] && echo "ok"
exit $fail
