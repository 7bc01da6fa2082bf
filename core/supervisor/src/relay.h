#pragma once
// The job's stdio relay (docs/replay.md, "Recording"). A job never holds the
// client's descriptors: it gets pipes, and one relay thread per job copies
// client stdin -> job, job stdout/stderr -> client, recording stdin (up to a
// limit) and the tail of each output stream on the way.
//
// The relay never waits on a descriptor it does not own for longer than a
// bounded slice: every wait is a poll() that also watches a cancel eventfd,
// and no read or write of a client descriptor can block past it. The client's
// descriptors are shared with the client (often with its terminal), so their
// file status flags are never changed (O_NONBLOCK on a shared open file
// description would leak to the client). Instead, per kind (Io in
// relay.cpp):
//   - socket: send()/recv() with MSG_DONTWAIT, which is per call;
//   - pipe/FIFO: reopened through /proc/self/fd/N with O_NONBLOCK, which makes
//     a new open file description of the same pipe, ours alone;
//   - regular file, block device: plain I/O (it never waits for a peer);
//   - anything else (terminals, other character devices, a pipe that could not
//     be reopened): at most PIPE_BUF after POLLOUT/POLLIN, under a per-thread
//     timer that interrupts a call still blocked after kSliceMs (a terminal
//     under flow control, a pty nobody reads), so the thread gets back to its
//     poll() and sees a cancel.
// So cancel() makes the thread return within about 2 * kSliceMs whatever the
// client does; Supervisor cancels 5 s after the job ended (the drain time).
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "moat/common/fd.h"
#include "moat/store/store.h"

namespace moat::supervisor {

// The last bytes of a running job's stdout and stderr, for watchers of the
// job (docs/protocol.md "watch", output): the relay appends, readers copy out
// under the mutex. Bounded: each stream keeps at most `max` bytes (between
// max and 2 * max before it is trimmed), whatever the job writes.
struct LiveOutput {
    struct Stream {
        std::string data;        // the last bytes
        uint64_t total = 0;      // bytes the job wrote; data ends at this offset
    };
    std::mutex mu;
    Stream streams[2];           // stdout, stderr
    uint64_t max = 64u << 10;
    std::function<void()> on_append;  // runs on the relay thread after each append (cheap: posts)
    void append(int stream, const char* p, size_t n);
};

struct RelaySpec {
    UniqueFd job_in;             // write end of the job's stdin pipe
    UniqueFd job_out, job_err;   // read ends of the job's stdout/stderr pipes
    UniqueFd src_in;             // the client's stdin or a recorded blob; empty: EOF at once
    UniqueFd dst_out, dst_err;   // the client's stdout/stderr; empty: discard (kept in the tail)
    UniqueFd record_in;          // temp file that receives stdin; empty: not recorded
    // Or made when the first stdin byte comes (relay thread): a job whose
    // stdin is empty costs no temp file (its recording is the empty blob).
    // Returns the open fd and its path (RelayResult::in_temp).
    std::function<Result<std::pair<int, std::string>>()> make_record_in;
    uint64_t record_in_max = 16ull << 20;
    uint64_t tail_max = 1ull << 20;
    std::shared_ptr<LiveOutput> live;  // may be empty
};

struct RelayResult {
    uint64_t in_bytes = 0;       // stdin bytes handed to the job
    uint64_t in_recorded = 0;
    bool in_truncated = false;   // stdin went past record_in_max: the recording is a prefix
    bool in_recorded_complete = false;  // the source reached EOF (not cut by the job closing stdin)
    store::JobOutput out, err;
    bool cancelled = false;      // stopped before the job's output was fully delivered
    std::string error;           // a recording write failed (relaying went on)
    std::string in_temp;         // the temp file make_record_in made; empty: none
    bool in_record_failed = false;  // making or writing the stdin recording failed (error says why)
};

class SliceTimer;

// A relay runs on a thread of its own for its whole life. The threads are
// kept for the next job (relay.cpp, RelayThreads): one made and ended per job
// cost each start a clone, a POSIX timer and, at the thread's end, the
// madvise of its stack with a TLB shootdown on every CPU (issue 15). A relay
// never waits for another's thread: with none idle, a new one starts.
class Relay final {
public:
    // `done` runs on the relay thread, once, when the job's stdout and stderr
    // are at EOF and delivered (or on cancel).
    Relay(RelaySpec spec, std::function<void(RelayResult)> done);
    ~Relay();  // cancels and waits until the relay's work has returned
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;
    void cancel();

    // Relay threads waiting for work now (for tests).
    static size_t idle_threads();

private:
    struct Finished;
    void run(SliceTimer& slice);
    RelaySpec m_spec;
    std::function<void(RelayResult)> m_done;
    UniqueFd m_cancel;
    std::shared_ptr<Finished> m_finished;
};

}  // namespace moat::supervisor
