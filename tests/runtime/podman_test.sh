#!/bin/bash
# moat-runtime under a real engine (issue 16, item 4; docs/fleet.md): podman
# runs containers of a rootfs imported offline from a tarball through
# moat-runtime and a moatd of the test's own. Checked: the container's output
# and exit status, a denied syscall inside recorded in moatd's store (with its
# path), podman kill/stop/rm ending it cleanly (cause, exit status, no state
# or shim left), what moat-runtime refuses, and replay's refusal. Also the
# client side of the same mechanism without an engine: moatctl run --rootfs
# and moatctl signal.
#
# podman runs as Debian's podman 4.3 needs on this hybrid cgroup host: in a
# private mount namespace with /sys/fs/cgroup/unified unmounted, with
# --cgroup-manager=cgroupfs and rlimits under the host's hard ones. moatd runs
# outside that namespace, as in production: the rootfs reaches it as a mount
# tree over its socket, never by path.
#   podman_test.sh MOATD MOATCTL MOAT_RUNTIME
set -uo pipefail
moatd=$(realpath "$1") moatctl=$(realpath "$2") runtime=$(realpath "$3")

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (moatd, podman)"
command -v podman >/dev/null || skip "podman is not installed (packaging/debian-packages.txt)"
busybox=$(command -v busybox) || skip "busybox is not installed (busybox-static)"
{ ldd "$busybox" 2>&1 || true; } | grep -q "not a dynamic" || skip "$busybox is not static (busybox-static)"

tmp=$(mktemp -d /tmp/moat-podman.XXXXXX)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
moatd_pid= cgparent= netns=
. "$(dirname "$0")/../lib/moatd.sh"
cleanup() {
    umount -R "$tmp/shared" 2>/dev/null
    [ -n "$netns" ] && ip netns del "$netns" 2>/dev/null
    pod rm -af >/dev/null 2>&1
    pod rmi -af >/dev/null 2>&1
    [ -n "$moatd_pid" ] && kill "$moatd_pid" 2>/dev/null && wait "$moatd_pid" 2>/dev/null
    moat_remove_cgparent "$cgparent"
    rm -rf "$tmp" 2>/dev/null || { umount -R "$tmp"/storage/* 2>/dev/null; rm -rf "$tmp"; }
}
trap cleanup EXIT

sock=$tmp/moatd.sock
ctl() { "$moatctl" --socket "$sock" "$@"; }
# podman with the test's own storage, and moat-runtime's log where the test
# can read it. moat-runtime keeps its default state directory: podman's
# cleanup after `run --rm` calls `delete` without the --runtime-flag options.
pod() {
    unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh \
        podman --root "$tmp/storage" --runroot "$tmp/runroot" --cgroup-manager=cgroupfs \
        --runtime "$runtime" --runtime-flag "moat-socket=$sock" \
        --runtime-flag "log=$tmp/runtime.log" "$@"
}
limits=(--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# A cgroup parent and a job uid range of its own (tests/lib/moatd.sh).
cgparent=moat-podman-test-$$
moat_start_moatd "$moatd" "$sock" "$tmp/state" "$cgparent" 40000000 "$tmp/moatd.log" --vm-off \
    --client-idle-timeout 2s || exit 1

# ---- the image: busybox, imported from a tarball (no registry here) ----------
# No /run, /proc or /dev in it: moat-runtime makes the mount points the job needs.
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for a in sh echo cat sleep swapon id ls readlink; do ln -s busybox "$root/bin/$a"; done
tar -C "$root" -cf "$tmp/rootfs.tar" .
pod import "$tmp/rootfs.tar" localhost/moat-podman-test:1 >/dev/null 2>"$tmp/import.err" ||
    { cat "$tmp/import.err"; echo "FAIL: podman import"; exit 1; }
img=localhost/moat-podman-test:1

newest_job() { ctl jobs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- 1. output, and a denial inside recorded with its path -------------------
out=$(pod run --rm "${limits[@]}" "$img" sh -c 'echo hello-from-moat; id -u; swapon /bin/busybox; echo swapon=$?' \
    2>"$tmp/run1.err")
rc=$?
[ $rc = 0 ] || fail "podman run exited $rc: $(cat "$tmp/run1.err")"
grep -qx hello-from-moat <<<"$out" || fail "the container's output is missing: $out"
grep -qx 1000 <<<"$out" || fail "the job does not run as uid 1000 inside: $out"
grep -qx swapon=1 <<<"$out" || fail "swapon was not refused: $out"
grep -q "Operation not permitted" "$tmp/run1.err" || fail "swapon's EPERM is not on stderr: $(cat "$tmp/run1.err")"
job=$(newest_job)
show=$(ctl show "$job" --json)
[ "$(field 'd["tier"]' <<<"$show")" = container ] || fail "job $job is not a container-tier job"
field 'd["sandbox"]["root"]["origin"]' <<<"$show" | grep -q "^oci container " ||
    fail "job $job does not say it is an OCI container: $show"
field 'd["policy"]["name"]' <<<"$show" | grep -q "^oci-" || fail "job $job's policy is not the bundle's"
den=$(ctl events "$job" --json --kind denial)
python3 - "$den" <<'EOF' || fail "the swapon denial is not in the store: $den"
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert any(r["syscall"] == "swapon" and r["action"] == "errno:EPERM" and r["decoded"] == "/bin/busybox" for r in rows), rows
EOF
rt=/run/moat-runtime
ids=()
for _ in $(seq 50); do [ -z "$(pod ps -aq)" ] && break; sleep 0.1; done
[ -z "$(pod ps -aq)" ] || fail "podman run --rm left a container: $(pod ps -a)"

# ---- 2. the exit status is the job's ------------------------------------------
pod run --rm "${limits[@]}" "$img" sh -c 'exit 7' 2>/dev/null
rc=$?
[ $rc = 7 ] || fail "a container exiting 7 made podman exit $rc"

# ---- 2b. a network namespace podman was given is the job's ------------------------
netns=moat-podman-test-$$
if ip netns add "$netns"; then
    want="net:[$(stat -L -c %i "/run/netns/$netns")]"
    out=$(pod run --rm --network "ns:/run/netns/$netns" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$img" \
        readlink /proc/self/ns/net 2>"$tmp/ns.err")
    [ "$out" = "$want" ] || fail "--network ns:PATH: the job's network namespace is $out, not $want: $(cat "$tmp/ns.err")"
    show=$(ctl show "$(newest_job)" --json)
    [ "$(field 'd["sandbox"]["network"]' <<<"$show")" = engine ] || fail "--network ns:PATH: the job's network is not engine"
    ip netns del "$netns"
else
    fail "ip netns add $netns"
fi
netns=

# ---- 3. podman kill: SIGKILL stops the job through moatd ------------------------
id=$(pod run -d "${limits[@]}" "$img" sleep 100)
sleep 1
pod ps --format '{{.ID}} {{.Status}}' | grep -q "^${id:0:12} Up" || fail "podman ps does not show ${id:0:12} up"
ids+=("$id")
state=$("$runtime" state "$id")
[ "$(field 'd["status"]' <<<"$state")" = running ] || fail "moat-runtime state: $state"
pod kill "$id" >/dev/null || fail "podman kill failed"
for _ in $(seq 50); do [ "$(pod inspect "$id" --format '{{.State.Status}}')" = exited ] && break; sleep 0.1; done
[ "$(pod inspect "$id" --format '{{.State.ExitCode}}')" = 137 ] || fail "podman kill: exit code $(pod inspect "$id" --format '{{.State.ExitCode}}'), not 137"
job=$(newest_job)
show=$(ctl show "$job" --json)
[ "$(field 'd["termination"]["cause"]' <<<"$show")" = stopped ] || fail "podman kill: job $job: $show"
field 'd["termination"]["detail"]' <<<"$show" | grep -q SIGKILL || fail "podman kill: the detail does not say SIGKILL"
pod rm "$id" >/dev/null || fail "podman rm failed"
[ ! -e "$rt/$id" ] || fail "podman rm left $rt/$id"

# ---- 4. podman stop: SIGTERM reaches the program ---------------------------------
id=$(pod run -d "${limits[@]}" "$img" sleep 100)
ids+=("$id")
sleep 1
pod stop -t 20 "$id" >/dev/null || fail "podman stop failed"
[ "$(pod inspect "$id" --format '{{.State.ExitCode}}')" = 143 ] || fail "podman stop: exit code $(pod inspect "$id" --format '{{.State.ExitCode}}'), not 143"
job=$(newest_job)
show=$(ctl show "$job" --json)
field 'd["termination"]["detail"]' <<<"$show" | grep -q "SIGTERM sent by" || fail "podman stop: job $job: $show"
pod rm "$id" >/dev/null
# A replay cannot put an engine's rootfs back: it says so.
if ctl replay "$job" >"$tmp/replay.out" 2>&1; then fail "replay of a container job was accepted"; fi
grep -q "does not snapshot" "$tmp/replay.out" || fail "replay's refusal does not say why: $(cat "$tmp/replay.out")"

# ---- 5. what moat-runtime refuses, in words ------------------------------------------
if pod run --rm -t "${limits[@]}" "$img" true >/dev/null 2>"$tmp/tty.err"; then fail "podman run -t was accepted"; fi
grep -q "terminal" "$tmp/tty.err" "$tmp/runtime.log" || fail "the refusal of -t does not name the terminal"
if pod run --rm --network none --security-opt seccomp=unconfined "$img" true >/dev/null 2>"$tmp/unconf.err"; then
    fail "a container without a seccomp profile was accepted"
fi
grep -q "no seccomp profile" "$tmp/unconf.err" "$tmp/runtime.log" || fail "the refusal of seccomp=unconfined does not say why"

# ---- 6. no shim, no state left ---------------------------------------------------------
sleep 0.5
pgrep -f "^$runtime " >/dev/null && fail "a moat-runtime shim is still running: $(pgrep -af "^$runtime ")"
for id in "${ids[@]}"; do [ ! -e "$rt/$id" ] || fail "state left in $rt/$id"; done
[ -z "$(pod ps -aq)" ] || fail "containers left: $(pod ps -a)"

# ---- 7. the same mechanism from moatctl: --rootfs and signal ----------------------------
cat >"$tmp/p.toml" <<'EOF'
name = "rootfs-test"
tier = "container"
[filesystem]
read_only = []
tmpfs = ["/tmp"]
[seccomp]
default_action = "errno:EPERM"
allow = ["@default", "@file-system", "@process", "ioctl", "prctl", "uname"]
EOF
mkdir -p "$root/proc" "$root/dev"
# stdout only: the shell's own complaint about the redirect goes to stderr,
# which moatd relays on its own pipe, so 2>&1 here interleaves the two
# streams at random ("sh: ro-root\ncan't create ..." was seen).
out=$(ctl run --policy "$tmp/p.toml" --rootfs "$root" -- sh -c 'ls /; echo x > /bin/new 2>/dev/null || echo ro-root' 2>"$tmp/ro.err")
grep -qx ro-root <<<"$out" || fail "moatctl run --rootfs: the root is not read-only: $out $(cat "$tmp/ro.err")"
grep -qx bin <<<"$out" || fail "moatctl run --rootfs does not show the rootfs: $out $(cat "$tmp/ro.err")"
ctl run --policy "$tmp/p.toml" --rootfs "$root" --id-file "$tmp/id" -- sleep 100 >/dev/null 2>&1 &
runner=$!
for _ in $(seq 50); do [ -s "$tmp/id" ] && break; sleep 0.1; done
sleep 0.5
ctl signal "$(cat "$tmp/id")" TERM || fail "moatctl signal failed"
wait $runner
rc=$?
[ $rc = 143 ] || fail "moatctl run of a job sent SIGTERM exited $rc, not 143"
show=$(ctl show "$(cat "$tmp/id")" --json)
[ "$(field 'd["termination"]["cause"]' <<<"$show")" = stopped ] || fail "moatctl signal: $show"
if ctl signal "$(cat "$tmp/id")" STOP 2>/dev/null; then fail "SIGSTOP to an ended job was accepted"; fi

# ---- 8. moat-runtime without an engine: shared mounts, nesting, a slow start ---------
# A bind source on a shared mount (as on any systemd host; the podman runs
# above are in private namespaces), a tmpfs and a bind nested below it: what
# the job mounts there must not appear on the host, and the mount points
# below the bind are made in its source. create and start 3 s apart, past
# moatd's idle timeout (2 s here): the shim connects at start.
fixture=$(dirname "$0")/../unit/runtime/podman-4.3-config.json
shared=$tmp/shared
mkdir -p "$shared/data" "$tmp/other" "$tmp/bundle"
mount --bind "$shared" "$shared" && mount --make-shared "$shared" || fail "cannot make a shared mount"
echo nested >"$tmp/other/file"
python3 - "$fixture" "$root" "$shared/data" "$tmp/other" >"$tmp/bundle/config.json" <<'EOF2'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"] = {"path": sys.argv[2], "readonly": True}
c["process"]["args"] = ["sh", "-c", "cat /data/sub/file; ls /data; echo ok-direct"]
c["mounts"] = [m for m in c["mounts"] if m["type"] in ("proc", "tmpfs") and m["destination"] == "/proc" or m["destination"] == "/dev"]
c["mounts"] += [{"destination": "/data", "type": "bind", "source": sys.argv[3], "options": ["rbind"]},
                {"destination": "/data/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
                {"destination": "/data/sub", "type": "bind", "source": sys.argv[4], "options": ["rbind", "ro"]}]
print(json.dumps(c))
EOF2
rtroot=$tmp/rt-direct
rtc() { "$runtime" --root "$rtroot" --moat-socket "$sock" --log "$tmp/direct.log" "$@"; }
rtc create --bundle "$tmp/bundle" --pid-file "$tmp/direct.pid" direct-1 >"$tmp/direct.out" 2>&1 ||
    fail "moat-runtime create: $(cat "$tmp/direct.out")"
[ "$(rtc state direct-1 | field 'd["status"]')" = created ] || fail "state after create: $(rtc state direct-1)"
sleep 3
rtc start direct-1 2>>"$tmp/direct.out" || fail "moat-runtime start after 3 s: $(cat "$tmp/direct.out")"
for _ in $(seq 100); do [ "$(rtc state direct-1 | field 'd["status"]')" = stopped ] && break; sleep 0.1; done
grep -q "^nested$" "$tmp/direct.out" && grep -q "^ok-direct$" "$tmp/direct.out" ||
    fail "the direct container's output: $(cat "$tmp/direct.out")"
[ -d "$shared/data/scratch" ] && [ -d "$shared/data/sub" ] || fail "the nested mount points are not in the bind's source"
if grep -q "$shared/data/" /proc/self/mountinfo; then
    fail "a job's mount appeared on the host: $(grep "$shared/data/" /proc/self/mountinfo)"
fi
rtc delete direct-1 || fail "moat-runtime delete of a stopped container"
[ ! -e "$rtroot/direct-1" ] || fail "delete left $rtroot/direct-1"
# An engine that names the host's own network namespace gets a refusal, not the host network.
python3 - "$tmp/bundle/config.json" <<'EOF2' >"$tmp/bundle/c2.json" && mv "$tmp/bundle/c2.json" "$tmp/bundle/config.json"
import json, sys
c = json.load(open(sys.argv[1]))
c["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network", "path": "/proc/self/ns/net"}
                            for n in c["linux"]["namespaces"]]
print(json.dumps(c))
EOF2
rtc create --bundle "$tmp/bundle" direct-2 >"$tmp/direct2.out" 2>&1 || fail "create direct-2: $(cat "$tmp/direct2.out")"
if rtc start direct-2 >>"$tmp/direct2.out" 2>&1; then fail "a container joining the host's network namespace started"; fi
grep -q "moatd's own (the host's) network namespace" "$tmp/direct2.out" ||
    fail "the refusal of the host's network namespace does not say why: $(cat "$tmp/direct2.out")"
rtc delete --force direct-2 >/dev/null 2>&1
[ ! -e "$rtroot/direct-2" ] || fail "delete --force left $rtroot/direct-2"
umount "$shared"

if [ $failures -gt 0 ]; then
    echo "--- moat-runtime log"; tail -20 "$tmp/runtime.log" 2>/dev/null
    echo "--- moatd log"; tail -20 "$tmp/moatd.log"
    echo "$failures check(s) failed"
    exit 1
fi
echo "PASS: podman ran containers through moat-runtime; denials, kill, stop, rm, refusals and --rootfs checked"
