#include "models/shell_words.h"

namespace moat::ui {

// Written here rather than taken from a library: wordexp(3) always expands
// variables and globs (WRDE_NOCMD only refuses command substitution), and
// QProcess::splitCommand knows double quotes only, so it split the panel's
// own `sh -c '...'` example into "'id;", "mkdir", ... .
std::expected<std::vector<std::string>, ShellWordsError> splitShellWords(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    bool inWord = false;  // a word has started, even if it is empty so far ('')
    size_t i = 0;
    auto fail = [](std::string message, size_t at) {
        return std::unexpected(ShellWordsError{std::move(message), at});
    };
    while (i < text.size()) {
        const char c = text[i];
        if (c == '\0') return fail("NUL byte in the command", i);
        if (c == ' ' || c == '\t' || c == '\n') {
            if (inWord) words.push_back(std::move(word));
            word.clear();
            inWord = false;
            ++i;
        } else if (c == '\\') {
            if (i + 1 >= text.size()) return fail("the command ends with a backslash", i);
            if (text[i + 1] == '\0') return fail("NUL byte in the command", i + 1);
            if (text[i + 1] != '\n') {
                word += text[i + 1];
                inWord = true;
            }
            i += 2;
        } else if (c == '\'') {
            const size_t end = text.find('\'', i + 1);
            if (end == std::string_view::npos) return fail("unterminated single quote", i);
            const std::string_view body = text.substr(i + 1, end - i - 1);
            if (body.find('\0') != std::string_view::npos) return fail("NUL byte in the command", i + 1 + body.find('\0'));
            word += body;
            inWord = true;
            i = end + 1;
        } else if (c == '"') {
            const size_t open = i++;
            inWord = true;
            for (;;) {
                if (i >= text.size()) return fail("unterminated double quote", open);
                const char d = text[i];
                if (d == '\0') return fail("NUL byte in the command", i);
                if (d == '"') {
                    ++i;
                    break;
                }
                if (d == '\\' && i + 1 < text.size()) {
                    const char e = text[i + 1];
                    if (e == '$' || e == '`' || e == '"' || e == '\\') {
                        word += e;
                        i += 2;
                        continue;
                    }
                    if (e == '\n') {
                        i += 2;
                        continue;
                    }
                }
                word += d;
                ++i;
            }
        } else {
            word += c;
            inWord = true;
            ++i;
        }
    }
    if (inWord) words.push_back(std::move(word));
    return words;
}

std::string joinShellWords(const std::vector<std::string>& argv) {
    auto plain = [](unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               std::string_view("_./:=@%+,-").find(char(c)) != std::string_view::npos;
    };
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        bool quote = a.empty();
        for (unsigned char c : a) quote = quote || !plain(c);
        if (!quote) {
            out += a;
            continue;
        }
        out += '\'';
        for (char c : a) {
            if (c == '\'') out += "'\\''";
            else out += c;
        }
        out += '\'';
    }
    return out;
}

}  // namespace moat::ui
