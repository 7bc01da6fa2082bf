#!/bin/bash
# systemd-analyze verify of packaging/systemd/ (docs/systemd.md): unknown or
# misspelt directives, bad values and a missing ExecStart binary are errors.
# ExecStart is pointed at the built moatd. Exit 77 (skipped) without systemd.
set -euo pipefail
moatd=$1 units=$2
if ! command -v systemd-analyze >/dev/null; then
    echo "skipped: systemd-analyze is not installed (package systemd)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$units"/moatd.socket "$units"/moatd.service "$tmp/"
sed -i "s|^ExecStart=/usr/bin/moatd|ExecStart=$moatd|" "$tmp/moatd.service"
grep -qE "^ExecStart=$moatd( |$)" "$tmp/moatd.service"
out=$(cd "$tmp" && systemd-analyze verify --man=no ./moatd.socket ./moatd.service 2>&1) || {
    echo "$out"
    exit 1
}
# verify only warns about some mistakes (an unknown key): any output fails.
if [ -n "$out" ]; then
    echo "$out"
    exit 1
fi
echo "moatd.socket and moatd.service verified"
