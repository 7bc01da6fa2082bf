#!/bin/bash
# Renders moat-console's main views against a real moatd with demo jobs and
# saves docs/screenshots/*.png: jobs, investigate, policy (form), policy-toml,
# policy-diff (history), policy-test-run, allow-denial, learn (the learn
# window with a proposal), vm-job (a vm-tier job's detail: accelerator, boot,
# guest kernel, root image), container-job (a podman container run through
# moat-runtime, with its denial), and two checks of the look: dark.png (Fusion,
# dark palette) and hidpi.png (QT_SCALE_FACTOR=2).
#
#   sudo packaging/screenshots.sh [BUILD_DIR]     (default: build-gui next to the repo)
#   sudo SHOTS="vm-job.png jobs.png" packaging/screenshots.sh BUILD_DIR   (only these)
#
# Needs root (moatd), a build with -DMOAT_BUILD_GUI=ON, and xvfb-run (xvfb, xauth).
# vm-job.png also needs the vm tier: QEMU, the guest kernel kit
# (packaging/moat.sh guest-kernel) and the static helpers built next to moatd
# (targets moat-agent, moat-vm-probe-init); without them
# moatd says why the tier is unavailable and that screenshot is skipped.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$REPO/../build-gui}
BUILD=$(cd "$BUILD" && pwd)
MOATD=$BUILD/app/moatd/moatd
MOATCTL=$BUILD/app/moatctl/moatctl
CONSOLE=$BUILD/ui/moat-console
OUT=$REPO/docs/screenshots
for b in "$MOATD" "$MOATCTL" "$CONSOLE"; do
    [[ -x $b ]] || { echo "screenshots.sh: $b is missing; build with -DMOAT_BUILD_GUI=ON" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "screenshots.sh: needs root (moatd)" >&2; exit 1; }
command -v xvfb-run >/dev/null || { echo "screenshots.sh: needs xvfb-run (apt-get install xvfb xauth)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/moat-shots-XXXXXX)
chmod 0755 "$TMP"
SOCK=$TMP/moatd.sock
MOATD_PID=
BG_PIDS=()
cleanup() {
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n $MOATD_PID ]]; then kill -TERM "$MOATD_PID" 2>/dev/null || true; wait "$MOATD_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# A job uid range of its own: moatd refuses a range another running moatd holds.
"$MOATD" --state-dir "$TMP/state" --socket "$SOCK" --cgroup-parent "moat-shots-$$" \
    --uid-base 16000000 --uid-count 2048 2>"$TMP/moatd.log" &
MOATD_PID=$!
for _ in $(seq 1 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { cat "$TMP/moatd.log" >&2; exit 1; }
ctl() { "$MOATCTL" --socket "$SOCK" "$@"; }

# Policies for the demo jobs.
cat >"$TMP/noisy.toml" <<'TOML'
# A job that keeps trying things it may not do: mkdir and uname are refused
# by rules, symlink falls to the default action.
name = "demo-noisy"
description = "shell loop with refused mkdir, uname and ln -s"
[limits]
wall_time = "60s"
memory = "128MiB"
pids = 16
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
tmpfs = []
[seccomp]
default_action = "errno:EPERM"
allow = ["@default"]
[[seccomp.rule]]
syscall = "mkdir"
action = "errno:EACCES"
[[seccomp.rule]]
syscall = "uname"
action = "errno:EPERM"
TOML
cat >"$TMP/busy.toml" <<'TOML'
# A longer job that burns CPU and grows its memory, for the live charts.
name = "demo-busy"
description = "CPU bursts while a shell variable doubles"
[limits]
wall_time = "120s"
cpu_time = "60s"
memory = "96MiB"
pids = 8
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
tmpfs = []
[seccomp]
allow = ["@default"]
[monitor]
sample_interval = "250ms"
TOML
cat >"$TMP/kill.toml" <<'TOML'
name = "demo-kill"
description = "any refused syscall kills the job"
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
tmpfs = []
[seccomp]
default_action = "kill-process"
allow = ["@default"]
[[seccomp.rule]]
syscall = "mkdir"
action = "kill-process"
TOML

echo "==> demo jobs"
ctl run --policy "$REPO/resources/policies/demo-mkdir.toml" -- mkdir /tmp/moat-demo || true
ctl run --policy "$TMP/kill.toml" -- mkdir /tmp/moat-killed || true
ctl run --policy "$TMP/noisy.toml" --id-file "$TMP/noisy.id" -- /bin/sh -c \
    'for i in $(seq 1 24); do mkdir /tmp/d$i; uname -a; ln -s /x /tmp/l$i; [ $((i % 3)) -eq 0 ] && mkdir /tmp/e$i; sleep 0.4; done' \
    >/dev/null 2>&1 || true
# One job at a time: two jobs starting in the same instant have been seen to
# stall the second one's start (reported; see the report of this script's author).
ctl run --policy "$TMP/busy.toml" --id-file "$TMP/stopped.id" -- /bin/sleep 30 >/dev/null 2>&1 &
BG_PIDS+=($!)
for _ in $(seq 1 50); do [[ -s $TMP/stopped.id ]] && break; sleep 0.1; done
sleep 1
ctl stop "$(cat "$TMP/stopped.id")" || true
ctl run --policy "$TMP/busy.toml" --id-file "$TMP/busy.id" -- /bin/sh -c \
    'x=a; n=0; while :; do i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; if [ $n -lt 25 ]; then x="$x$x"; n=$((n+1)); fi; sleep 0.5; done' \
    >/dev/null 2>&1 &
BG_PIDS+=($!)
for _ in $(seq 1 50); do [[ -s $TMP/busy.id ]] && break; sleep 0.1; done
BUSY=$(cat "$TMP/busy.id")
NOISY=$(cat "$TMP/noisy.id")
echo "busy job $BUSY, noisy job $NOISY"
# A second version of demo-noisy for the history / diff screenshot: uname
# allowed, more memory, one more read-only path.
cat >"$TMP/noisy2.toml" <<'TOML'
name = "demo-noisy"
description = "shell loop with refused mkdir and ln -s; uname allowed"
[limits]
wall_time = "60s"
memory = "256MiB"
pids = 16
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/opt"]
tmpfs = []
[seccomp]
default_action = "errno:EPERM"
allow = ["@default", "uname"]
[[seccomp.rule]]
syscall = "mkdir"
action = "errno:EACCES"
TOML
ctl run --policy "$TMP/noisy2.toml" -- /bin/true >/dev/null 2>&1 || true
# A container-tier job whose policy is too narrow, for the learn window
# (learning is refused in the seccomp tier).
cat >"$TMP/convert.toml" <<'TOML'
# A converter that stages its work in /tmp: renaming, linking, touching and
# cleaning up there is more than the allowlist covers.
name = "demo-convert"
description = "document converter staging files in /tmp"
tier = "container"
[limits]
wall_time = "30s"
memory = "128MiB"
pids = 16
[filesystem]
read_only = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
tmpfs = ["/tmp"]
[seccomp]
default_action = "errno:EPERM"
allow = ["@default"]
TOML
printf 'page 1\npage 2\n' >"$TMP/convert.in"
ctl run --policy "$TMP/convert.toml" --id-file "$TMP/convert.id" -- /bin/sh -c \
    'set -e; echo converting; mkdir -p /tmp/work; cat >/tmp/work/doc.txt; mv /tmp/work/doc.txt /tmp/work/doc.pdf;
     ln -s /tmp/work/doc.pdf /tmp/latest.pdf; chmod 600 /tmp/work/doc.pdf; touch -d 2026-01-01 /tmp/work/doc.pdf;
     rm -r /tmp/work; echo done' <"$TMP/convert.in" >/dev/null 2>&1 || true
CONVERT=$(cat "$TMP/convert.id")
# Two vm-tier jobs (docs/vm.md): the first boots its guest (cold), the second
# takes the guest the pool booted meanwhile (warm). The guest's root image
# holds exactly the read_only paths, so they are narrow: the whole of /usr
# would make a multi-GiB image.
VM=
if grep -q "tier vm unavailable" "$TMP/moatd.log"; then
    echo "screenshots.sh: no vm-job.png: $(grep -o 'tier vm unavailable.*' "$TMP/moatd.log")" >&2
else
    cat >"$TMP/vm.toml" <<'TOML'
# A shell in a QEMU microvm guest of its own; mkdir is refused by a rule.
name = "demo-vm"
description = "a shell in a QEMU microvm guest"
tier = "vm"
[limits]
wall_time = "120s"
memory = "128MiB"
pids = 16
[filesystem]
read_only = ["/usr/bin/sh", "/usr/bin/dash", "/usr/bin/uname", "/usr/bin/mkdir", "/bin", "/lib", "/lib64",
             "/usr/lib64", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
             "/usr/lib/x86_64-linux-gnu/libselinux.so.1", "/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0",
             "/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2"]
tmpfs = ["/tmp"]
[seccomp]
default_action = "errno:EPERM"
allow = ["@default", "@signal", "capget", "prctl"]
[[seccomp.rule]]
syscall = "mkdir"
action = "errno:EACCES"
TOML
    ctl run --policy "$TMP/vm.toml" --id-file "$TMP/vm.id" -- /bin/sh -c \
        'echo "guest kernel $(uname -r)"; mkdir /tmp/work || echo "mkdir refused"' >/dev/null 2>&1 || true
    VM=$(cat "$TMP/vm.id" 2>/dev/null || true)
    sleep 5   # the pool boots a guest for the next job
    ctl run --policy "$TMP/vm.toml" -- /bin/sh -c 'uname -r' >/dev/null 2>&1 || true
    [[ -n $VM ]] && ctl show "$VM" || true
fi
# A podman container run through moat-runtime (docs/fleet.md), with a denial
# inside: needs podman and busybox-static (packaging/debian-packages.txt).
CTR=
RUNTIME=$BUILD/app/moat-runtime/moat-runtime
if command -v podman >/dev/null && command -v busybox >/dev/null && [[ -x $RUNTIME ]]; then
    mkdir -p "$TMP/rootfs/bin" "$TMP/rootfs/etc"
    cp "$(command -v busybox)" "$TMP/rootfs/bin/"
    for a in sh echo swapon id; do ln -s busybox "$TMP/rootfs/bin/$a"; done
    tar -C "$TMP/rootfs" -cf "$TMP/rootfs.tar" .
    pod() {
        unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh podman --root "$TMP/storage" \
            --runroot "$TMP/runroot" --cgroup-manager=cgroupfs --runtime "$RUNTIME" --runtime-flag "moat-socket=$SOCK" "$@"
    }
    pod import "$TMP/rootfs.tar" localhost/moat-shots:1 >/dev/null 2>&1 &&
        pod run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/moat-shots:1 \
            sh -c 'echo "converting as uid $(id -u)"; swapon /bin/busybox || echo "swapon refused"' >/dev/null 2>&1 || true
    CTR=$(ctl jobs --json | python3 -c 'import json,sys; j=[x for x in json.load(sys.stdin) if x["policy"]["name"].startswith("oci-")]; print(j[0]["id"] if j else "")')
    pod rmi -af >/dev/null 2>&1 || true
    umount -R "$TMP/storage" 2>/dev/null || true
else
    echo "screenshots.sh: no container-job.png: needs podman, busybox-static and moat-runtime" >&2
fi
sleep 16   # let the busy job collect samples

# A fresh settings dir so a developer's saved layout does not leak in.
export XDG_CONFIG_HOME=$TMP/config
export QT_QPA_PLATFORM=xcb
shot() {  # FILE ARGS...
    local file=$1; shift
    if [[ -n ${SHOTS:-} && " $SHOTS " != *" $file "* ]]; then return 0; fi
    xvfb-run -a -s "-screen 0 1400x900x24" "$CONSOLE" --socket "$SOCK" --screenshot "$OUT/$file" \
        --screenshot-delay 5000 "$@"
}
mkdir -p "$OUT"
echo "==> screenshots"
shot jobs.png --show-view jobs --select-job "$BUSY"
shot investigate.png --show-view investigate --filter "kind=denial" --select-event-row 0
shot policy.png --show-view policies --select-policy demo-noisy:1
shot policy-syscalls.png --show-view policies --select-policy demo-noisy:1 --show-syscalls "file"
shot policy-toml.png --show-view policies --select-policy demo-noisy:1 --toml-tab
shot policy-diff.png --show-view policies --select-policy demo-noisy --history-tab
shot policy-test-run.png --show-view policies --select-policy demo-mkdir --test-run "mkdir /tmp/moat-test-run"
shot allow-denial.png --show-view investigate --filter "kind=denial and syscall=mkdir and policy=demo-mkdir" \
    --allow-event-row 0
# The learn window: its replay runs when the console starts, so give it time.
shot learn.png --show-view jobs --select-job "$CONVERT" --learn-job "$CONVERT"
[[ -n $VM ]] && shot vm-job.png --show-view jobs --select-job "$VM"
[[ -n $CTR ]] && shot container-job.png --show-view jobs --select-job "$CTR"
shot dark.png --show-view investigate --filter "kind=denial" --select-event-row 0 --dark-palette
[[ -z ${SHOTS:-} || " $SHOTS " == *" hidpi.png "* ]] && QT_SCALE_FACTOR=2 xvfb-run -a -s "-screen 0 2800x1800x24" "$CONSOLE" --socket "$SOCK" --screenshot "$OUT/hidpi.png" \
    --screenshot-delay 5000 --show-view policies --select-policy demo-noisy:1
ls -l "$OUT"
