#!/bin/bash
# Writes the /etc/moat/moatd.toml the package ships, from `moatd --help`:
# every option as a key, commented out, with moatd's default and the option's
# own description, so the file can neither name an option moatd does not
# have nor show a default it does not use (docs/packaging.md). Run by the
# build (cmake/Packaging.cmake).
#   gen-moatd-toml.sh MOATD OUT
set -euo pipefail
prog=$1 out=$2
. "$(dirname "${BASH_SOURCE[0]}")/cli11-help.sh"

{
    cat <<'HEAD'
# moatd's config file, read at every start when it exists (moatd(8),
# docs/cli.md "The config file"). Each key is one of moatd's long options
# without the dashes; the command line wins over this file. Durations and
# sizes are strings ("5m", "4GiB"); flags are true or false. A key that is
# not an option stops moatd with an error.
#
# As installed every key is commented out, with moatd's default: uncomment
# and change what you need. The file must stay owned by root and writable
# by root alone (moatd refuses it otherwise): it sets what moatd does as
# root.
HEAD
    help=$("$prog" --help)
    while IFS=$'\037' read -r names type dflt desc; do
        key=${names##*--}
        case $key in help | version | config) continue ;; esac
        echo
        [ -n "$desc" ] && fold -s -w 76 <<<"$desc" | sed 's/ *$//; s/^/# /'
        case $type in
            "") value=false ;;                    # a flag
            TEXT*) value="\"$dflt\"" ;;           # a string: quoted, empty when there is no default
            *) value=$dflt ;;                     # a number
        esac
        [ -n "$value" ] || { echo "gen-moatd-toml.sh: --$key ($type) has no default to show" >&2; exit 1; }
        echo "#$key = $value"
    done < <(cli11_options <<<"$help")
} >"$out.tmp"
mv "$out.tmp" "$out"
