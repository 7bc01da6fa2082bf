// moat-agent: pid 1 of a vm-tier guest (see agent.h and docs/vm-protocol.md).
//   moat-agent                          in the guest (started by the kernel)
//   moat-agent --test-mode --ctl-fd N [--root-dir DIR] [--init PATH]
//              [--work-dir DIR] [--uid-base N] [--cgroup-parent NAME]
//                                       on a host, for the tests
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent.h"

namespace {
[[noreturn]] void usage(const char* why) {
    fprintf(stderr,
            "moat-agent: %s\n"
            "usage: moat-agent [--test-mode --ctl-fd N [--root-dir DIR] [--init PATH] [--work-dir DIR]\n"
            "                   [--uid-base N] [--cgroup-parent NAME]]\n",
            why);
    exit(2);
}
long number(const char* s, long min, long max) {
    char* end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < min || v > max) usage("bad number");
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    moat::agent::Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--test-mode") o.test_mode = true;
        else if (a == "--ctl-fd") o.ctl_fd = int(number(val(), 0, 1 << 20));
        else if (a == "--root-dir") o.root_dir = val();
        else if (a == "--init") o.init_path = val();
        else if (a == "--work-dir") o.work_dir = val();
        else if (a == "--uid-base") o.uid_base = uid_t(number(val(), 1, 0x7ffffff0));
        else if (a == "--cgroup-parent") o.cgroup_parent = val();
        else usage(("unknown option " + a).c_str());
    }
    if (o.test_mode && o.ctl_fd < 0) usage("--test-mode needs --ctl-fd");
    if (!o.test_mode && o.ctl_fd >= 0) usage("--ctl-fd is for --test-mode");
    if (!o.test_mode && getpid() != 1) usage("outside --test-mode, moat-agent runs only as pid 1 of a guest");
    return moat::agent::run(o);
}
