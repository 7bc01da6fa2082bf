#!/usr/bin/env bash
# Moat's one entry point for a fresh Debian 12 machine (run as root):
#   packaging/moat.sh demo    build, start moatd on a fresh state dir, run a job that is denied, investigate it
#   packaging/moat.sh test    build from scratch, run the whole test suite through CTest, a short fuzz run,
#                             the sanitizer runs and the benchmarks' short mode
#   packaging/moat.sh sanitize  only the sanitizer runs (ASan+UBSan: every test; TSan: moatd's threaded parts)
#   packaging/moat.sh build   install missing packages, configure and build (./build)
#   packaging/moat.sh deb     install missing packages, build, and make the Debian package in ./build/deb (docs/packaging.md)
#   packaging/moat.sh deps    install missing Debian packages only
#   packaging/moat.sh guest-kernel  fetch the vm tier's guest kernel kit (docs/vm.md); idempotent
# Environment: MOAT_BUILD_DIR (default ./build), MOAT_JOBS (default nproc),
#   MOAT_SANITIZERS=0 / MOAT_BENCH=0 skip those stages of `test` (for a quick local run),
#   MOAT_GUEST_DIR (default /var/cache/moat/guest) where the guest kernel kit lives.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOAT_BUILD_DIR:-$ROOT/build}"
JOBS="${MOAT_JOBS:-$(nproc)}"

# Each step says when it began (minutes since this script started): CI's
# stage times come from its log.
MOAT_T0=$(date +%s)
say() { printf '\033[1m==> [%dm%02ds] %s\033[0m\n' $((($(date +%s) - MOAT_T0) / 60)) $((($(date +%s) - MOAT_T0) % 60)) "$*" >&2; }

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
        # openssh-server is here for the remote-host test's own sshd (a
        # loopback one, started by the test). Installing it must not leave a
        # network daemon running or enabled on the machine: policy-rc.d stops
        # its start during the install, and the unit is disabled after.
        local new_sshd=0 own_policy=0
        case " ${missing[*]} " in *" openssh-server "*) new_sshd=1 ;; esac
        if [ $new_sshd = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
        if [ $new_sshd = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
            say "openssh-server installed for the tests; its ssh service is left disabled"
        fi
    fi
}

# ---- the vm tier's guest kernel (docs/vm.md#the-guest-kernel) -----------------
# Debian's cloud kernel, taken from the package archive and unpacked into a
# cache directory: the host's /boot and module tree are never touched, and the
# guest kernel does not change when the host's does. The kit is
#   $MOAT_GUEST_DIR/<release>/vmlinux            the uncompressed kernel (QEMU microvm boots it as PVH)
#   $MOAT_GUEST_DIR/<release>/modules/<name>.ko  the virtio drivers the guest needs (=m in this kernel)
#   $MOAT_GUEST_DIR/<release>/manifest           release, sha256 of every file, modules in load order
#   $MOAT_GUEST_DIR/current -> <release>
# moat::vm::GuestKernel (core/vm) reads and checks exactly this.
# Measured on the 2-core build machine (Debian mirror on the local network):
# first run 4.7 s (apt-get download of the 26 MB .deb, dpkg-deb -x of 106 MB,
# lz4 -d of the 53 MB vmlinux); a second run only re-checks the sha256s: 1.1 s.
# The kit is 52 MB: vmlinux 53 MB uncompressed + 0.3 MB of modules.
GUEST_KERNEL_META=linux-image-cloud-amd64
# What the guest loads, in any order: the load order comes from the modules' own
# depends= (their .modinfo section; the .deb has no modules.dep, depmod makes
# that at install time and we do not install the package).
GUEST_MODULES="virtio_ring virtio virtio_mmio virtio_console virtio_blk"

# A module's dependencies, from the NUL-separated strings of its .modinfo.
guest_module_deps() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '
}

# Verifies every sha256 the manifest names; prints nothing on success.
guest_kernel_verify() {
    local dir="$1" kind a b c d
    [ -f "$dir/manifest" ] || return 1
    while read -r kind a b c d; do
        case "$kind" in
            vmlinux) echo "$b  $dir/$a" ;;
            module) echo "$c  $dir/$b" ;;
        esac
    done <"$dir/manifest" | sha256sum --quiet -c -
}

guest_kernel() {
    local base="${MOAT_GUEST_DIR:-/var/cache/moat/guest}" pkg release dir
    pkg=$(apt-cache depends "$GUEST_KERNEL_META" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -1)
    if [ -z "$pkg" ]; then
        # No package lists (never ran apt-get update): keep an existing kit.
        if [ -L "$base/current" ] && guest_kernel_verify "$base/current"; then
            say "guest kernel: $(readlink "$base/current") (apt-cache cannot resolve $GUEST_KERNEL_META; kept the kit)"
            return 0
        fi
        echo "moat.sh: apt-cache cannot resolve $GUEST_KERNEL_META (run apt-get update)" >&2
        return 1
    fi
    release=${pkg#linux-image-}
    dir="$base/$release"
    local tool
    for tool in lz4 dpkg-deb sha256sum; do
        command -v "$tool" >/dev/null || { echo "moat.sh: $tool is missing (packaging/moat.sh deps)" >&2; return 1; }
    done
    if [ -f "$dir/manifest" ]; then
        if guest_kernel_verify "$dir"; then
            ln -sfn "$release" "$base/current"
            say "guest kernel: $dir (verified)"
            return 0
        fi
        say "guest kernel: $dir fails its manifest; fetching again"
    fi
    say "guest kernel: fetching $pkg into $dir"
    mkdir -p "$base"
    local tmp
    tmp=$(mktemp -d /tmp/moat-guest-kernel.XXXXXX)
    # apt-get download drops to the _apt user and warns ("unsandboxed as root")
    # when _apt cannot write the current directory: give it one it can write.
    chown _apt "$tmp" 2>/dev/null || true
    if ! (cd "$tmp" && apt-get download -q "$pkg" >/dev/null); then
        rm -rf "$tmp"
        echo "moat.sh: apt-get download $pkg failed" >&2
        return 1
    fi
    local deb
    deb=$(ls "$tmp"/*.deb)
    if ! dpkg-deb -x "$deb" "$tmp/x"; then
        rm -rf "$tmp"
        echo "moat.sh: dpkg-deb -x $deb failed" >&2
        return 1
    fi
    local new="$base/.$release.new"
    rm -rf "$new"
    mkdir -p "$new/modules"
    # /boot/vmlinuz is a bzImage whose payload is a legacy-format LZ4 stream
    # (magic 02 21 4c 18). QEMU's microvm boots the ELF vmlinux inside as PVH,
    # not the bzImage: find the first magic and decompress from there. lz4
    # stops with "Stream followed by undecodable data" at the bzImage's tail
    # and exits 1; the ELF check below is what says it worked.
    local vmlinuz off
    vmlinuz="$tmp/x/boot/vmlinuz-$release"
    off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1)
    if [ -z "$off" ]; then
        rm -rf "$tmp" "$new"
        echo "moat.sh: no LZ4 stream in $vmlinuz (did Debian change the kernel compression?)" >&2
        return 1
    fi
    tail -c +$((off + 1)) "$vmlinuz" | lz4 -dc >"$new/vmlinux" 2>/dev/null || true
    if [ "$(head -c 4 "$new/vmlinux" | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
        rm -rf "$tmp" "$new"
        echo "moat.sh: the LZ4 stream in $vmlinuz did not decompress to an ELF vmlinux" >&2
        return 1
    fi
    # Modules in load order: a module's dependencies before it.
    local order=() seen=" "
    add_module() {
        local name="$1" ko d
        case "$seen" in *" $name "*) return 0 ;; esac
        ko=$(find "$tmp/x/lib/modules/$release" -name "$name.ko" | head -1)
        if [ -z "$ko" ]; then
            echo "moat.sh: $name.ko is not in $pkg (built in, or compressed?)" >&2
            return 1
        fi
        seen="$seen$name "
        for d in $(guest_module_deps "$ko"); do add_module "$d" || return 1; done
        cp "$ko" "$new/modules/$name.ko"
        order+=("$name")
    }
    local m
    for m in $GUEST_MODULES; do
        add_module "$m" || { rm -rf "$tmp" "$new"; return 1; }
    done
    local version
    version=$(dpkg-deb -f "$deb" Version)
    {
        echo "# moat guest kernel kit, written by packaging/moat.sh guest-kernel; read by moat::vm::GuestKernel"
        echo "format 1"
        echo "release $release"
        echo "package $pkg $version"
        echo "vmlinux vmlinux $(sha256sum "$new/vmlinux" | cut -d' ' -f1) $(stat -c %s "$new/vmlinux")"
        for m in "${order[@]}"; do
            echo "module $m modules/$m.ko $(sha256sum "$new/modules/$m.ko" | cut -d' ' -f1)"
        done
    } >"$new/manifest"
    rm -rf "$tmp" "$dir"
    mv "$new" "$dir"
    ln -sfn "$release" "$base/current"
    say "guest kernel: $dir ($(du -sh "$dir" | cut -f1); modules: ${order[*]})"
}

# build/test/demo: the kit is needed only by the vm tier and its tests, which
# skip without it; a non-root build (cannot write /var/cache) goes on without.
guest_kernel_if_possible() {
    if [ "$(id -u)" -ne 0 ] && [ -z "${MOAT_GUEST_DIR:-}" ]; then
        say "guest kernel: not root, skipped (the vm tests will skip; run packaging/moat.sh guest-kernel as root)"
        return 0
    fi
    guest_kernel || say "guest kernel: not available (the vm tests will skip)"
}

build() {
    deps
    guest_kernel_if_possible
    configure_and_build
}

configure_and_build() {
    say "configuring ($BUILD)"
    # The console is built by default; MOAT_GUI=OFF builds and tests the daemon alone.
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOAT_BUILD_GUI="${MOAT_GUI:-ON}" \
        ${MOAT_CMAKE_ARGS:-} >/dev/null
    say "building with $JOBS jobs"
    cmake --build "$BUILD" -j "$JOBS"
}

# The .deb (docs/packaging.md). No guest kernel: the package holds none.
deb() {
    deps
    configure_and_build
    say "building the Debian package ($BUILD/deb)"
    rm -f "$BUILD"/deb/moat_*.deb
    cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$BUILD/deb" >"$BUILD/cpack.log" 2>&1 || {
        cat "$BUILD/cpack.log" >&2
        exit 1
    }
    ls "$BUILD"/deb/moat_*.deb
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
    # Less escape_test.vm: the same attacks run in the guest in the main stage,
    # and under ASan its ~35 serial TCG jobs would add minutes to CI for no
    # moatd code that vm_tier_test (kept here, hostile guests included) does
    # not already run.
    (cd "$asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j "$JOBS" --timeout 600 \
        -E '^escape_test\.vm$')
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
    guest-kernel) need_root; guest_kernel ;;
    build) build ;;
    deb) deb ;;
    test) run_tests ;;
    sanitize) sanitize ;;
    demo) demo ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
