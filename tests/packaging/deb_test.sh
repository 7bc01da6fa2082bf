#!/bin/bash
# Packaging.DebBuildsPassesLintianInstallsAndRunsAJob (docs/packaging.md):
# builds the .deb with cpack from the build tree, checks its file list and
# control files, runs lintian (any E: fails), installs it with dpkg -i,
# starts the installed moatd on a private state dir and socket, runs a job
# that is denied with the installed moatctl, and purges the package.
#   deb_test.sh CPACK BUILD_DIR SOURCE_DIR gui|nogui plain|sanitized
# Exit 77 (skipped, with the reason) when not root, on a sanitizer build,
# when a moat package is already installed, or when the package's paths are
# already taken by files no package owns (the purge would remove them).
set -euo pipefail
cpack=$1 build=$2 src=$3 gui=$4 flavour=$5

skip() {
    echo "skipped: $*"
    exit 77
}
fail() {
    echo "FAIL: $*"
    exit 1
}
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i, and moatd runs jobs as root)"
[ "$flavour" = plain ] || skip "a sanitizer or fuzz build is not what a package ships"
for tool in dpkg dpkg-deb dpkg-shlibdeps lintian; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (bash packaging/moat.sh deps)"
done
# One run at a time on a machine (two build trees' suites): the checks below
# and the install-run-purge happen under this lock.
exec 9>/run/lock/moat-deb-test.lock
flock -w 240 9 || skip "another run of this test held /run/lock/moat-deb-test.lock for 240 s"
status=$(dpkg-query -W -f='${Status}' moat 2>/dev/null || true)
if [ -n "$status" ] && [[ $status != *not-installed ]]; then
    skip "a moat package is on this machine ($(dpkg-query -W -f='${Version}: ${Status}' moat)); this test installs and purges its own"
fi
for p in /usr/bin/moatd /usr/bin/moatctl /usr/libexec/moat /etc/moat /var/lib/moat; do
    [ -e "$p" ] && skip "$p exists and no moat package owns it: installing and purging would replace or remove it"
done

tmp=$(mktemp -d /tmp/moat-deb-test.XXXXXX)
chmod 0755 "$tmp"
moatd_pid=
installed=0
cgparent="moat-deb-test-$$"
. "$(dirname "$0")/../lib/moatd.sh"
cleanup() {
    local rc=$?
    if [ -n "$moatd_pid" ]; then
        kill -KILL "$moatd_pid" 2>/dev/null || true
        wait "$moatd_pid" 2>/dev/null || true
    fi
    if [ $installed = 1 ] && dpkg-query -W -f='${Status}' moat 2>/dev/null | grep -qv not-installed; then
        echo "cleanup: dpkg --purge moat"
        dpkg --purge moat >/dev/null || rc=1
    fi
    moat_remove_cgparent "$cgparent"
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive

# ---- build -----------------------------------------------------------------
start=$SECONDS
"$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 || {
    cat "$tmp/cpack.log"
    fail "cpack failed"
}
debs=("$tmp"/out/moat_*.deb)
[ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || fail "cpack made ${debs[*]}, not one moat_*.deb"
deb=${debs[0]}
echo "built $(basename "$deb") in $((SECONDS - start)) s"

# ---- file list: exactly what the package is for -----------------------------
{
    printf '%s\n' ./etc/moat/moatd.toml \
        ./lib/systemd/system/moatd.service ./lib/systemd/system/moatd.socket \
        ./usr/bin/moatd ./usr/bin/moatctl ./usr/bin/moat-runtime ./usr/share/man/man8/moat-runtime.8.gz \
        ./usr/libexec/moat/moatctl-light ./usr/libexec/moat/moatctl-full ./usr/libexec/moat/moat-init ./usr/libexec/moat/moat-agent \
        ./usr/libexec/moat/moat-vm-probe-init \
        ./usr/share/moat/syscall-groups.toml \
        ./usr/share/bash-completion/completions/moatctl \
        ./usr/share/man/man8/moatd.8.gz ./usr/share/man/man1/moatctl.1.gz \
        ./usr/share/doc/moat/copyright ./usr/share/doc/moat/changelog.Debian.gz \
        ./usr/share/lintian/overrides/moat
    for p in "$src"/resources/policies/*.toml; do echo "./usr/share/moat/policies/$(basename "$p")"; done
    if [ "$gui" = gui ]; then
        printf '%s\n' ./usr/bin/moat-console ./usr/share/man/man1/moat-console.1.gz \
            ./usr/share/applications/moat-console.desktop \
            ./usr/share/icons/hicolor/scalable/apps/moat-console.svg
    fi
} | sort >"$tmp/want"
dpkg-deb -c "$deb" >"$tmp/contents"
awk '$1 !~ /^d/ { print $6 }' "$tmp/contents" | sort >"$tmp/have"
if ! diff -u "$tmp/want" "$tmp/have" >"$tmp/files.diff"; then
    cat "$tmp/files.diff"
    fail "the package's files are not the expected ones (- missing, + unexpected)"
fi
# Owned by root, nothing writable by group or others, no setuid (a symlink's
# own mode means nothing).
awk '$2 != "root/root" || ($1 !~ /^l/ && (substr($1, 6, 1) == "w" || substr($1, 9, 1) == "w" || $1 ~ /[sS]/))' \
    "$tmp/contents" >"$tmp/bad-modes"
[ ! -s "$tmp/bad-modes" ] || { cat "$tmp/bad-modes"; fail "files not root's or writable by others"; }
echo "file list: $(wc -l <"$tmp/have") files, as expected ($gui)"

dpkg-deb -e "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles")" = /etc/moat/moatd.toml ] || fail "conffiles: $(cat "$tmp/control/conffiles")"
for s in postinst prerm postrm; do [ -x "$tmp/control/$s" ] || fail "no executable $s"; done
depends=$(dpkg-deb -f "$deb" Depends)
for d in adduser libc6 libseccomp2 libsqlite3-0; do
    [[ ", $depends," == *", $d "* || ", $depends," == *", $d,"* ]] || fail "Depends lacks $d: $depends"
done
echo "control: Depends: $depends"

# ---- lintian ------------------------------------------------------------------
start=$SECONDS
lintian --show-overrides "$deb" >"$tmp/lintian.out" 2>"$tmp/lintian.err" || true
grep -v "running with root privileges" "$tmp/lintian.err" || true
cat "$tmp/lintian.out"
if grep -q '^E:' "$tmp/lintian.out"; then
    fail "lintian reports errors"
fi
echo "lintian: $(grep -c '^E:' "$tmp/lintian.out" || true) errors, $(grep -c '^W:' "$tmp/lintian.out" || true) warnings," \
    "$(grep -c '^O:' "$tmp/lintian.out" || true) overridden, in $((SECONDS - start)) s"

# ---- install ------------------------------------------------------------------
had_groups=$(getent group moat-admin moat-viewer | cut -d: -f1 | tr '\n' ' ' || true)
installed=1
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i failed"; }
[ "$(dpkg-query -W -f='${Status}' moat)" = "install ok installed" ] || fail "moat is not installed after dpkg -i"
dpkg-query -W -f='${Conffiles}' moat | grep -q '^ /etc/moat/moatd.toml ' || fail "dpkg did not register the conffile"
for g in moat-admin moat-viewer; do
    getent group "$g" >/dev/null || fail "group $g does not exist after the install"
done
echo "groups moat-admin and moat-viewer exist (before the install: ${had_groups:-neither})"
# Where the groups existed already, the install did not show that postinst
# makes them: run its configure again in a private mount namespace, over a
# copy of /etc without them (and a scratch /var/lib), so the host's groups
# are never touched.
mkdir "$tmp/ns" "$tmp/ns/varlib"
cp -a /etc "$tmp/ns/etc"
cp "$tmp/control/postinst" "$tmp/ns/postinst"
unshare -m bash -c '
    set -e
    mount --make-rprivate /
    mount --bind "$1/etc" /etc
    mount --bind "$1/varlib" /var/lib
    for g in moat-admin moat-viewer; do if getent group $g >/dev/null; then groupdel $g; fi; done
    if getent group moat-admin || getent group moat-viewer; then exit 1; fi
    DPKG_MAINTSCRIPT_PACKAGE=moat DPKG_MAINTSCRIPT_NAME=postinst "$1/postinst" configure \
        >"$1/postinst.log" 2>&1 || true
    getent group moat-admin && getent group moat-viewer
    [ "$(stat -c "%a %U" /var/lib/moat)" = "700 root" ]
' _ "$tmp/ns" >"$tmp/ns/groups" 2>&1 || {
    cat "$tmp/ns/groups" "$tmp/ns/postinst.log" 2>/dev/null
    fail "postinst configure did not make the groups and /var/lib/moat where they were missing"
}
echo "postinst, on a copy of /etc without them, made: $(cut -d: -f1,3 "$tmp/ns/groups" | tr '\n' ' ')"
[ "$(stat -c '%a %U %G' /var/lib/moat)" = "700 root root" ] || fail "/var/lib/moat is $(stat -c '%a %U %G' /var/lib/moat)"
[ "$(/usr/bin/moatd --version)" = "moatd $(dpkg-query -W -f='${Version}' moat | cut -d- -f1)" ] ||
    fail "moatd --version says $(/usr/bin/moatd --version), the package is $(dpkg-query -W -f='${Version}' moat)"

# ---- a job through the installed programs --------------------------------------
# The shipped config with every key uncommented: moatd refuses a key that is
# not an option, so this checks the file names only real ones. The command
# line wins over it for what must be this test's own.
sed -E 's/^#([a-z][a-z0-9-]*) = /\1 = /' /etc/moat/moatd.toml >"$tmp/moatd.toml"
keys=$(grep -cE '^[a-z][a-z0-9-]* = ' "$tmp/moatd.toml")
[ "$keys" -ge 20 ] || fail "/etc/moat/moatd.toml has only $keys keys"
sock=$tmp/moatd.sock
for attempt in 1 2 3 4 5; do
    # A job uid range of its own (the scenario tests use 800000.., the demo
    # 12000000.., the benchmarks 14000000..): moatd refuses one in use.
    uid_base=$((30000000 + (($$ + attempt) % 4096) * 1024))
    /usr/bin/moatd --config "$tmp/moatd.toml" --state-dir "$tmp/state" --socket "$sock" \
        --cgroup-parent "$cgparent" --uid-base $uid_base --uid-count 1024 --vm-off >"$tmp/moatd.log" 2>&1 &
    moatd_pid=$!
    for _ in $(seq 200); do
        [ -S "$sock" ] && break
        kill -0 $moatd_pid 2>/dev/null || break
        sleep 0.05
    done
    [ -S "$sock" ] && break
    wait $moatd_pid 2>/dev/null || true
    moatd_pid=
    grep -q "give each moatd its own" "$tmp/moatd.log" || break
done
[ -S "$sock" ] || { cat "$tmp/moatd.log"; fail "the installed moatd did not start"; }
if grep -q "moat-init not found" "$tmp/moatd.log"; then
    cat "$tmp/moatd.log"
    fail "the installed moatd did not find /usr/libexec/moat/moat-init"
fi

ctl=(/usr/bin/moatctl --socket "$sock")
target=/tmp/moat-deb-test-$$-dir
set +e
"${ctl[@]}" run --policy /usr/share/moat/policies/demo-mkdir.toml --id-file "$tmp/job.id" -- /bin/mkdir "$target" \
    >"$tmp/run.out" 2>&1
rc=$?
set -e
cat "$tmp/run.out"
[ $rc = 1 ] || { cat "$tmp/moatd.log"; fail "moatctl run exited $rc, not 1 (mkdir denied)"; }
[ ! -e "$target" ] || fail "$target was created: the denial did not hold"
id=$(cat "$tmp/job.id")
"${ctl[@]}" events "$id" --json --kind denial >"$tmp/denials"
grep -qE '"syscall":"mkdir(at)?"' "$tmp/denials" || { cat "$tmp/denials"; fail "job $id has no recorded mkdir denial"; }
echo "job $id: exit 1, denial recorded: $(grep -oE '"syscall":"[a-z]+"' "$tmp/denials" | head -1)"
# The container tier runs /usr/libexec/moat/moat-init, which the installed
# moatd found from its own directory.
set +e
"${ctl[@]}" run --tier container --policy /usr/share/moat/policies/demo-mkdir.toml --id-file "$tmp/job2.id" \
    -- /bin/mkdir "$target" >"$tmp/run2.out" 2>&1
rc=$?
set -e
cat "$tmp/run2.out"
id2=$(cat "$tmp/job2.id")
[ $rc = 1 ] || { cat "$tmp/moatd.log"; fail "the container-tier job exited $rc, not 1"; }
"${ctl[@]}" events "$id2" --json --kind denial | grep -qE '"syscall":"mkdir(at)?"' ||
    fail "container-tier job $id2 has no recorded mkdir denial"
echo "job $id2 (container tier): exit 1, denial recorded"
"${ctl[@]}" jobs >"$tmp/jobs"
cat "$tmp/jobs"
grep -qE "^ *$id +seccomp " "$tmp/jobs" && grep -qE "^ *$id2 +container " "$tmp/jobs" ||
    fail "moatctl jobs does not list jobs $id and $id2"
# The policy tools run in /usr/libexec/moat/moatctl-full.
/usr/bin/moatctl policy check /usr/share/moat/policies/demo-mkdir.toml >/dev/null ||
    fail "moatctl policy check (moatctl-full) failed"

kill -TERM $moatd_pid
set +e
wait $moatd_pid
rc=$?
set -e
moatd_pid=
[ $rc = 0 ] || { cat "$tmp/moatd.log"; fail "moatd exited $rc after SIGTERM"; }
echo "moatd stopped by SIGTERM, exit 0"

# ---- completion and man pages as installed ----------------------------------------
completes() {
    bash -c '. /usr/share/bash-completion/completions/moatctl
             COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _moatctl; echo "${COMPREPLY[*]}"' _ "$@"
}
[ "$(completes moatctl run --tier '')" = "seccomp container vm" ] || fail "completion of run --tier: $(completes moatctl run --tier '')"
[ "$(completes moatctl policy '')" = "check import export diff" ] || fail "completion of policy: $(completes moatctl policy '')"
[[ " $(completes moatctl '') " == *" events "* ]] || fail "completion of moatctl: $(completes moatctl '')"
zcat /usr/share/man/man1/moatctl.1.gz | grep -q 'moatctl policy check' || fail "moatctl.1 has no COMMANDS section"
zcat /usr/share/man/man8/moatd.8.gz | grep -q 'state\\-dir' || fail "moatd.8 does not list --state-dir"
echo "completion and man pages: checked"

# ---- purge ----------------------------------------------------------------------
dpkg --purge moat >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg --purge failed"; }
installed=0
while read -r p; do
    [ ! -e "${p#.}" ] || fail "${p#.} is left after dpkg --purge"
done <"$tmp/have"
for p in /usr/libexec/moat /usr/share/moat /etc/moat /var/lib/moat \
    /var/lib/systemd/deb-systemd-helper-enabled/moatd.socket.dsh-also; do
    [ ! -e "$p" ] || fail "$p is left after dpkg --purge"
done
echo "purged: no moat files left (the groups stay, as Debian keeps system groups)"
