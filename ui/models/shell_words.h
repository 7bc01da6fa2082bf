#pragma once
// POSIX shell word splitting for the Test run command line, and nothing more:
// quoting (shell command language, 2.2) and field separation by blanks, with
// no parameter, command or arithmetic expansion, no globbing, no tilde, no
// operators and no comments. `$HOME`, `*`, `;` and `#` are ordinary characters
// in a word; the panel shows the resulting argv before it runs.
#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace moat::ui {

struct ShellWordsError {
    std::string message;  // "unterminated single quote"
    size_t offset = 0;    // byte offset in the input where the problem starts
};

// "/bin/sh -c 'id; mkdir /tmp/x'" -> {"/bin/sh", "-c", "id; mkdir /tmp/x"}.
// Single quotes keep everything literally; inside double quotes a backslash
// escapes only $ ` " \ and newline (which it removes); outside quotes a
// backslash keeps the next character literally (backslash-newline is removed).
// '' and "" make an empty word. An unbalanced quote, a trailing backslash and
// a NUL byte (which no argv string can hold) are errors.
std::expected<std::vector<std::string>, ShellWordsError> splitShellWords(std::string_view text);

// The inverse, for showing an argv as one command line: a word made only of
// characters no shell treats specially stays as it is, any other (and an
// empty one) is single-quoted with ' written as '\''. splitShellWords of the
// result gives the argv back.
std::string joinShellWords(const std::vector<std::string>& argv);

}  // namespace moat::ui
