# Reads the --help text CLI11 prints (moatd, moatctl), for the generators
# that make the man pages, moatctl's bash completion and the shipped
# /etc/moat/moatd.toml from the programs themselves (docs/packaging.md): a
# command, option or default is written once, in app/*/main.cpp.
# Sourced by packaging/gen-*.sh. CLI11's layout: section headers at the left
# margin ending in ':' ("Options:", "Subcommands:", "Positionals:"), entries
# indented two spaces, the entry's name column padded to 30 characters and
# the description after it on the same line (or on the next one, indented,
# when the name column is longer).

# The subcommands listed in the help text on stdin, one a line.
cli11_subcommands() {
    awk '/^[^ ].*:$/ { in_subs = ($0 == "Subcommands:"); next }
         in_subs && /^  [a-z]/ { print $1 }'
}

# The options in the help text on stdin, one a line, the fields separated by
# the unit separator \037 (not a tab: bash's read would merge empty fields):
#   NAMES  TYPE  DEFAULT  DESCRIPTION
# NAMES is comma-separated (-o,--output); TYPE is empty for a flag, else
# CLI11's type (TEXT, INT, UINT, ...), with ":{a,b}" when the value must be
# one of those (and a range check's text after ":", as CLI11 prints it);
# DEFAULT is what CLI11 shows after "=" (empty when none).
cli11_options() {
    cli11_entries options
}

# The positionals in the help text on stdin, in the same form (NAMES is the
# positional's name, TYPE its type: "job INT REQUIRED" is job, INT).
cli11_positionals() {
    cli11_entries positionals
}

cli11_entries() {
    awk -v want="$1" 'function flush() {
             if (names != "") printf "%s\037%s\037%s\037%s\n", names, type, dflt, desc
             names = ""
         }
         /^[^ ].*:$/ {
             flush()
             in_opts = want == "positionals" ? $0 == "Positionals:" : ($0 != "Subcommands:" && $0 != "Positionals:")
             next
         }
         !in_opts { next }
         /^  [^ ]/ {
             flush()
             line = substr($0, 3)
             # The name column ends at the first run of two spaces.
             split_at = index(line, "  ")
             spec = split_at ? substr(line, 1, split_at - 1) : line
             desc = split_at ? substr(line, split_at) : ""
             sub(/^ +/, "", desc)
             sp = index(spec, " ")
             names = sp ? substr(spec, 1, sp - 1) : spec
             type = sp ? substr(spec, sp + 1) : ""
             dflt = ""
             sub(/ REQUIRED$/, "", type); sub(/ \.\.\.$/, "", type)
             # A Range check puts its text in the type ("UINT:UINT in [1 - 64]=1"):
             # the default follows the last "=".
             if (match(type, /=[^=]*$/)) { dflt = substr(type, RSTART + 1); type = substr(type, 1, RSTART - 1) }
             next
         }
         # A description on its own line (the name column was too long).
         /^   +[^ ]/ && names != "" && desc == "" { desc = $0; sub(/^ +/, "", desc); next }
         END { flush() }'
}

# Every command path under PROG, depth first: "run", "policy",
# "policy check", ... (PROG is run with each path's --help).
cli11_command_paths() {
    local prog=$1 sub
    shift
    local prefix=("$@")
    for sub in $("$prog" "${prefix[@]}" --help | cli11_subcommands); do
        echo "${prefix[*]}${prefix[*]:+ }$sub"
        cli11_command_paths "$prog" "${prefix[@]}" "$sub"
    done
}
