#pragma once
// Operator signals to a job (the `signal` request: moatctl signal,
// moat-runtime kill): one list and one spelling for every program.
#include <string_view>

namespace moat {

// What a job may be sent: SIGKILL (a stop) and the catchable signals its
// program is passed (in the container tier through moat-init).
inline constexpr int kJobSignals[] = {9 /*KILL*/, 15 /*TERM*/, 2 /*INT*/, 1 /*HUP*/, 3 /*QUIT*/,
                                      10 /*USR1*/, 12 /*USR2*/, 28 /*WINCH*/};
bool job_signal(int sig);
// "TERM", "SIGTERM" or "15" -> 15; 0 when it names no signal (1-64).
int parse_signal(std::string_view name);

}  // namespace moat
