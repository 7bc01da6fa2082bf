#pragma once
// Wire format: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
// File descriptors (a job's stdio and inputs) ride along as SCM_RIGHTS on the first byte.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moat/common/wire.h"
#include "moat/common/error.h"
#include "moat/common/fd.h"

namespace moat::ipc {

inline constexpr uint32_t kMaxRequestBytes = MOAT_MAX_REQUEST_BYTES;  // a policy is at most 1 MiB; argv/env the rest
inline constexpr uint32_t kMaxResponseBytes = MOAT_MAX_RESPONSE_BYTES;
// `run` carries the job's stdio, one fd per --input the client opened, and
// the mount trees of a root filesystem from the client (its root and binds).
inline constexpr size_t kMaxInputs = 64;
inline constexpr size_t kMaxClientBinds = 32;
inline constexpr size_t kMaxFdsPerFrame = 3 + kMaxInputs + 1 + kMaxClientBinds;
// A `run_brief` (a `run` in every other way) is answered with two text
// frames instead of JSON (docs/protocol.md, "Brief runs"): kBriefJob and the job's id in
// decimal, once the job exists; kBriefEnd, the client's exit status in
// decimal, '\n', then what the client says on stderr (moat/ipc/run_end.h).
// app/moatctl/front.c reads them.
inline constexpr char kBriefJob = MOAT_BRIEF_JOB;
inline constexpr char kBriefEnd = MOAT_BRIEF_END;

// Incremental decoder for the server: feed bytes, take complete frames.
class FrameDecoder final {
public:
    explicit FrameDecoder(uint32_t max) : m_max(max) {}
    // Appends; returns an error when a header announces more than max.
    Result<void> feed(const char* data, size_t n);
    std::optional<std::string> next();
    size_t buffered() const { return m_buf.size(); }
    bool mid_frame() const { return !m_buf.empty(); }

private:
    uint32_t m_max;
    std::string m_buf;
};

std::string encode_frame(const std::string& payload);

// A connected Unix stream socket (close-on-exec; non-blocking when asked: a
// Unix connect() completes or fails at once). The error names the path.
Result<UniqueFd> connect_unix(const std::string& path, bool nonblocking = false);

// One sendmsg() of data with fds as SCM_RIGHTS on its first byte (none when
// nfds is 0), MSG_NOSIGNAL added to flags. Returns sendmsg's result; errno
// as it left it.
ssize_t send_with_fds(int sock, const char* data, size_t len, const int* fds, size_t nfds, int flags);

// Blocking helpers for clients.
Result<void> send_frame(int fd, const std::string& payload, const std::vector<int>& fds = {});
Result<std::string> recv_frame(int fd, uint32_t max = kMaxResponseBytes);

}  // namespace moat::ipc
