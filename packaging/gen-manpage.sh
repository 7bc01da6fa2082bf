#!/bin/bash
# Writes one man page (gzip -9n) from the program's own --help and --version
# (help2man), plus packaging/man/NAME.h2m for what the help cannot say: the
# options and commands are written once, in app/*/main.cpp or ui/app/main.cpp
# (docs/packaging.md, "Man pages and completion"). Run by the build
# (cmake/Packaging.cmake).
#   gen-manpage.sh HELP2MAN PROGRAM SECTION INCLUDE OUT [--commands]
# --commands (moatctl): a COMMANDS section with each subcommand's --help,
# nested ones (policy check) included.
set -euo pipefail
help2man=$1 prog=$2 section=$3 include=$4 out=$5 commands=${6:-}
name=$(basename "$prog")
dir=$(cd "$(dirname "$prog")" && pwd)
# Run by name from PATH: CLI11 prints argv[0] in its usage line, which
# would otherwise be this build tree's path.
export PATH="$dir:$PATH"
. "$(dirname "${BASH_SOURCE[0]}")/cli11-help.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# moat-console is a Qt program: no display is needed to print its help, and
# a runtime dir of its own keeps Qt from warning about a missing one.
export QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="$tmp/xdg"
mkdir -m 0700 "$tmp/xdg"

# Text as roff: roff's escape and control characters quoted, and "-" as a
# minus sign (what a reader types).
roff_text() {
    sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

# One entry of cli11_options or cli11_positionals as a tagged paragraph.
roff_entries() {
    local names type dflt desc
    while IFS=$'\037' read -r names type dflt desc; do
        [ "$names" = "-h,--help" ] && continue
        echo ".TP"
        printf '\\fB%s\\fR%s%s\n' "$(roff_text <<<"${names//,/, }")" "${type:+ $(roff_text <<<"$type")}" \
            "${dflt:+ (default: $(roff_text <<<"$dflt"))}"
        if [ -n "$desc" ]; then roff_text <<<"$desc"; else echo "\\&"; fi
    done
}


includes=(--include="$include")
if [ "$commands" = --commands ]; then
    {
        echo "[COMMANDS]"
        cli11_command_paths "$name" | while read -r path; do
            # shellcheck disable=SC2086  # the path is words
            help=$("$name" $path --help)
            # The usage line names the command; the first line says what it does.
            echo ".SS \"$(sed -n 's/^Usage: //p' <<<"$help" | roff_text)\""
            head -1 <<<"$help" | roff_text
            cli11_positionals <<<"$help" | roff_entries
            cli11_options <<<"$help" | roff_entries
        done
    } >"$tmp/commands.h2m"
    includes+=(--include="$tmp/commands.h2m")
fi

"$help2man" --no-info --section="$section" "${includes[@]}" \
    --output="$tmp/$name.$section" "$name"
# help2man says nothing when a program's --help fails: check the page has options.
grep -q '^\.SH OPTIONS' "$tmp/$name.$section" || grep -q '^\.TP' "$tmp/$name.$section" || {
    echo "gen-manpage.sh: $name.$section has no options (did $name --help fail?)" >&2
    exit 1
}
gzip -9n -c "$tmp/$name.$section" >"$out.tmp"
mv "$out.tmp" "$out"
