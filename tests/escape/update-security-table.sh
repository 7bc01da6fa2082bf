#!/bin/sh
# Runs the escape suite and splices its results table into docs/security.md,
# between the markers <!-- escape-table:begin --> and <!-- escape-table:end -->.
#
#   tests/escape/update-security-table.sh [BUILD_DIR]      (as root)
#
# BUILD_DIR defaults to ./build; it must hold a built escape_test (and moatd,
# moatctl, moat-init). The table is written even when cases fail (a failing
# case shows as ESCAPED or FAILED in its cell); the script then exits 1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
doc=$src/docs/security.md
bin=$build/tests/escape/escape_test
[ -x "$bin" ] || { echo "$0: no $bin; build the project first" >&2; exit 2; }
grep -q '<!-- escape-table:begin -->' "$doc" && grep -q '<!-- escape-table:end -->' "$doc" ||
    { echo "$0: $doc has no escape-table markers" >&2; exit 2; }

table=$(mktemp)
trap 'rm -f "$table" "$table.doc"' EXIT
status=0
MOAT_ESCAPE_TABLE=$table "$bin" --gtest_brief=1 || status=$?
[ -s "$table" ] || { echo "$0: the suite wrote no table (status $status)" >&2; exit 2; }

awk -v table="$table" '
    /<!-- escape-table:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
    /<!-- escape-table:end -->/   { skip = 0 }
    !skip { print }
' "$doc" > "$table.doc"
cat "$table.doc" > "$doc"
if [ "$status" -ne 0 ]; then
    echo "$0: the escape suite failed (status $status); the table shows which cases" >&2
    exit 1
fi
echo "$0: updated $doc"
