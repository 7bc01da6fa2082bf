#pragma once
// The spawn helper's wire format (SpawnHelper <-> moat-init --spawn-helper):
// internal to moat_sandbox, seen by its tests.
#include <cstddef>
#include <cstdint>

namespace moat::sandbox::helper_wire {

// One request and one answer per message on the helper's SOCK_SEQPACKET
// socketpair. The fds that come with a request, in this order: the job's
// stdio (3), the plan, the status pipe's write end, the go pipe's read end,
// the v2 group (kReqV2Group), the network namespace to join (kReqJoinNet),
// the v1 tasks files (n_join), the client's mount trees (n_trees).
//
// kReqAhead (alone, no fds, no counts) asks for an init made ahead: the
// helper clones it once it has been idle for kAheadIdleMs, and answers
// (ahead = 1) with the init's pid and, as the message's one fd, moatd's end
// of a socketpair the init waits on. moatd later sends that init a job's
// request in the same form as the helper's (with kReqNewNetIpc, without
// kReqJoinNet or kReqV2Group: the init's network and ipc namespaces are
// made, and it joins its cgroup itself). Answers to kReqAhead may come
// before or after the answer to a job's request sent later.
constexpr size_t kMaxJoin = 16;  // spawn.cpp's kMaxSelfJoin
constexpr uint32_t kHelperMagic = 0x4d544832;  // "MTH2", also the protocol's version
constexpr uint32_t kReqNewNetIpc = 1, kReqJoinNet = 2, kReqV2Group = 4, kReqAllCpus = 8, kReqLoopback = 16,
                   kReqAhead = 32, kReqKnown = 63;
// The most inits moatd keeps made ahead (SpawnHelper::kMaxInitsAhead), and
// how long the helper must have had no request before it makes one.
constexpr size_t kInitsAhead = 8;
constexpr int kAheadIdleMs = 1;
// Network namespaces the helper keeps made ahead (SpawnHelper in spawn.h).
constexpr size_t kNetPool = 2;
// How long the helper must have had no request before it makes one, and
// how long it waits before trying again after the kernel refused one.
constexpr int kNetPoolIdleMs = 1;
constexpr int64_t kNetPoolRetryNs = 1'000'000'000;
constexpr size_t kJoinPathBytes = 192;
constexpr uint32_t kMaxRequestTrees = 64;
constexpr size_t kFixedRequestFds = 6;
constexpr size_t kMaxRequestFds = kFixedRequestFds + 2 + kMaxJoin + kMaxRequestTrees;
static_assert(kMaxRequestFds <= 253, "the kernel passes at most SCM_MAX_FD (253) fds in one message");

struct HelperRequest {
    uint32_t magic;
    uint32_t flags;
    uint32_t n_join;
    uint32_t n_trees;
    char join_paths[kMaxJoin][kJoinPathBytes];  // only name a failed join
};

struct HelperReply {
    uint32_t magic;
    int32_t pid;             // > 0: the init (moatd's child); -1: failed (err, what). First message: the helper's pid
    int32_t err;             // errno of the failed step
    uint32_t born_in_group;  // clone3(CLONE_INTO_CGROUP) put it in the v2 group
    uint32_t clone_failed;   // 1: the clone itself failed (moatd names it as its own); 2: ... into the v2 group
    uint32_t net_made_ahead; // the init entered a network namespace from the helper's pool
    uint32_t ahead;          // answers a kReqAhead request (pid > 0: the init, with its socket as the one fd)
    char what[228];          // otherwise the failed step
};

}  // namespace moat::sandbox::helper_wire
