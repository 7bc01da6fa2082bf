#include "moat/common/signals.h"

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <string>

namespace moat {

static_assert(SIGKILL == 9 && SIGTERM == 15 && SIGINT == 2 && SIGHUP == 1 && SIGQUIT == 3 && SIGUSR1 == 10 &&
              SIGUSR2 == 12 && SIGWINCH == 28);

bool job_signal(int sig) { return std::find(std::begin(kJobSignals), std::end(kJobSignals), sig) != std::end(kJobSignals); }

int parse_signal(std::string_view name) {
    std::string n(name);
    if (n.rfind("SIG", 0) == 0) n = n.substr(3);
    if (!n.empty() && n.size() < 3 && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        const int v = std::stoi(n);
        return v >= 1 && v <= 64 ? v : 0;
    }
    for (int k = 1; k < 65; ++k)
        if (const char* a = sigabbrev_np(k); a && n == a) return k;
    return 0;
}

}  // namespace moat
