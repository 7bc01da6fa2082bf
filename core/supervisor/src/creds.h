#pragma once
// A client's identity on one of moatd's threads (see ClientCreds), to look a
// path up or open it with the client's rights, never moatd's.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "moat/common/error.h"
#include "moat/supervisor/supervisor.h"

namespace moat::supervisor {

// The calling thread's identity, switched to a client's and back.
// Credentials are per thread in the kernel. The raw syscalls change this
// thread alone (glibc's wrappers would change all of moatd's threads). Only
// the effective ids change: with a non-zero effective uid no capability of
// moatd's is effective, so DAC, ACLs and LSMs judge every open as they would
// the client's; the saved uid stays moatd's, which is what lets back() return.
class ThreadCreds final {
public:
    ThreadCreds() : m_uid(geteuid()), m_gid(getegid()) {
        int n = getgroups(0, nullptr);
        m_groups.resize(size_t(std::max(n, 0)));
        if (n > 0) m_groups.resize(size_t(std::max(getgroups(n, m_groups.data()), 0)));
    }
    ~ThreadCreds() { (void)back(); }
    ThreadCreds(const ThreadCreds&) = delete;
    ThreadCreds& operator=(const ThreadCreds&) = delete;

    Result<void> take(const ClientCreds& who) {
        m_taken = true;
        if (syscall(SYS_setgroups, who.groups.size(), who.groups.data()) < 0 ||
            syscall(SYS_setresgid, -1, who.gid, -1) < 0 || syscall(SYS_setresuid, -1, who.uid, -1) < 0)
            return fail_sys("taking the identity of uid " + std::to_string(who.uid), errno);
        return {};
    }
    // moatd's own identity again (the uid first: it brings back the
    // capabilities that changing the gid and groups needs).
    Result<void> back() {
        if (!m_taken) return {};
        if (syscall(SYS_setresuid, -1, m_uid, -1) < 0 || syscall(SYS_setresgid, -1, m_gid, -1) < 0 ||
            syscall(SYS_setgroups, m_groups.size(), m_groups.data()) < 0)
            return fail_sys("taking moatd's identity back", errno);
        m_taken = false;
        return {};
    }

private:
    uid_t m_uid;
    gid_t m_gid;
    std::vector<gid_t> m_groups;
    bool m_taken = false;
};

}  // namespace moat::supervisor
