#!/bin/bash
# Writes moatctl's bash completion from moatctl's own --help, and that of
# each of its commands: the commands, options and option values are written
# once, in app/moatctl/main.cpp (docs/packaging.md, "Man pages and
# completion"). Run by the build (cmake/Packaging.cmake).
#   gen-bash-completion.sh MOATCTL OUT
# The script it writes needs nothing from the bash-completion package
# (bash's own compgen), so a test can drive it without that package.
set -euo pipefail
prog=$1 out=$2
. "$(dirname "${BASH_SOURCE[0]}")/cli11-help.sh"


spec_cases=() choice_cases=()
while read -r path; do
    # shellcheck disable=SC2086  # the path is words
    help=$("$prog" $path --help)
    subs=$(cli11_subcommands <<<"$help" | tr '\n' ' ')
    opts='' vals='' pos=''
    while IFS=$'\037' read -r names type _ _; do
        for n in ${names//,/ }; do
            opts+="$n "
            # An option with a type takes a value.
            [ -n "$type" ] && vals+="$n "
            case $type in
                *:\{*\}*)
                    choices=${type#*:\{}
                    choices=${choices%%\}*}
                    choice_cases+=("        '$path $n') echo '${choices//,/ }' ;;")
                    ;;
            esac
        done
    done < <(cli11_options <<<"$help")
    # What a positional is: a TEXT one is a file or a program (completed as
    # files), a number (a job id) is not completed.
    while IFS=$'\037' read -r _ type _ _; do
        case $type in TEXT*) pos=file ;; esac
    done < <(cli11_positionals <<<"$help")
    spec_cases+=("        '$path') subs='${subs% }' opts='${opts% }' vals='${vals% }' pos='$pos' ;;")
done < <(echo; cli11_command_paths "$prog")

{
    cat <<'EOF'
# bash completion for moatctl. Generated from `moatctl --help` and each
# command's --help by packaging/gen-bash-completion.sh: do not edit.

# The command path's subcommands, options, options that take a value, and
# whether its positionals are files.
_moatctl_spec() {
    case $1 in
EOF
    printf '%s\n' "${spec_cases[@]}"
    cat <<'EOF'
        *) subs='' opts='' vals='' pos='' ;;
    esac
}

# The values an option takes when they are a fixed set.
_moatctl_choices() {
    case "$1 $2" in
EOF
    printf '%s\n' "${choice_cases[@]}"
    cat <<'EOF'
    esac
}

_moatctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local path='' subs opts vals pos i w
    COMPREPLY=()
    _moatctl_spec ''
    # Walk the words before the cursor: options (and the value of those that
    # take one) are skipped, a subcommand of the current path descends.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == -- ]]; then
            # The program of `run`, then its arguments.
            if ((COMP_CWORD == i + 1)); then
                mapfile -t COMPREPLY < <(compgen -c -- "$cur" | sort -u)
            else
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            fi
            return 0
        fi
        if [[ $w == -* ]]; then
            # --opt VALUE, or --opt=VALUE (bash splits it at "=")
            if [[ " $vals " == *" $w "* ]]; then
                if [[ ${COMP_WORDS[i + 1]} == = ]]; then ((i += 2)); else ((i++)); fi
            fi
            continue
        fi
        if [[ " $subs " == *" $w "* ]]; then
            path=${path:+$path }$w
            _moatctl_spec "$path"
        fi
    done
    # After "--opt=", the option is the word before the "=".
    if [[ $cur == = ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 1]} cur=''
    elif [[ $prev == = ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    if [[ $prev == -* && " $vals " == *" $prev "* ]]; then
        local choices
        choices=$(_moatctl_choices "$path" "$prev")
        if [[ -n $choices ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$cur")
        else
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    elif [[ -n $subs ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
    elif [[ $pos == file ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}
complete -F _moatctl moatctl
EOF
} >"$out.tmp"
bash -n "$out.tmp"
mv "$out.tmp" "$out"
