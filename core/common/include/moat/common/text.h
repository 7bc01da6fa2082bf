#pragma once
// Job- and client-controlled text made safe to show: every string Moat shows a
// human (a terminal, the console) went through one of these two functions.
#include <string>
#include <string_view>

namespace moat {

// Escapes what a terminal or a text renderer would act on instead of showing:
//   - C0 controls (U+0000..U+001F, including newline and ESC) and DEL -> \xNN
//   - C1 controls U+0080..U+009F (CSI is U+009B)                     -> \u0080..\u009f
//   - bidirectional controls U+061C, U+200E, U+200F, U+202A..U+202E,
//     U+2066..U+2069 (they reorder the rest of the line)             -> \u202e ...
//   - bytes that are not well-formed UTF-8 (overlong forms, surrogates,
//     > U+10FFFF, truncated sequences, stray continuation bytes; a raw C1
//     byte such as 0x9b is one of these)                             -> \xNN each
// Everything else (printable ASCII, other valid UTF-8) is kept as is.
//
// printable() also doubles backslashes, so its output is unambiguous: this is
// the form strings from a job's memory are stored in. for_terminal() leaves
// backslashes alone, which makes it idempotent: applying it to text that is
// already printable() (or already for_terminal()) changes nothing, so display
// code can apply it to every string it prints without double escaping.
std::string printable(std::string_view s);
// Well-formed UTF-8 in the sense above (what JSON text can carry unchanged).
bool valid_utf8(std::string_view s);
std::string for_terminal(std::string_view s);

}  // namespace moat
