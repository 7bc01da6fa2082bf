#pragma once
// The vm tier's host <-> guest protocol (docs/vm-protocol.md): what moatd and
// the guest agent (moat-agent, pid 1 of the micro-VM) say to each other over a
// virtio-serial port.
//
// The guest is untrusted: the job may own the guest kernel and write any bytes
// to the port. So everything moatd reads goes through Decoder (which refuses a
// frame longer than the limit before buffering any of it) and then through a
// strict parser per message type: every field is checked (lengths, counts,
// enum values, flags), trailing bytes are an error, and nothing is allocated
// beyond what the frame limit allows. The agent trusts the host, but parses
// the host's messages with the same strictness so a bug is an error, not UB.
//
// Frame: u32 little-endian payload length, u8 type, payload. Payloads are
// fixed little-endian layouts; strings are u32 length + bytes (any bytes: no
// UTF-8 requirement, the reader escapes them before showing them); an
// optional string is a u8 0/1 then the string when 1.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "moat/common/error.h"

namespace moat::guest {

// 2: the plan's seccomp filter is one hex string (ContainerPlan::to_json);
// an agent of version 1 could not read it, and says so at Hello instead.
inline constexpr uint32_t kProtocolVersion = 2;
inline constexpr size_t kHeaderBytes = 5;                 // u32 length + u8 type
inline constexpr uint32_t kMaxGuestPayload = 64u << 10;   // guest -> host: every message
inline constexpr uint32_t kMaxHostPayload = 16u << 20;    // host -> guest: a Job carries the plan (filter, argv, env)
inline constexpr size_t kMaxText = 4096;                  // decoded, module, detail, log text, exec path
inline constexpr size_t kMaxStep = 64;                    // SetupStatus step name
inline constexpr size_t kMaxRelease = 256;                // Hello kernel release
inline constexpr size_t kMaxChunk = 32u << 10;            // Output / Stdin / InputData bytes per frame
inline constexpr size_t kMaxPath = 4096;                  // InputFile sandbox path
inline constexpr size_t kMaxPlan = kMaxHostPayload - 64;  // Job plan JSON

enum class Type : uint8_t {
    // guest -> host
    Hello = 1,
    SetupStatus = 2,
    Started = 3,
    Notice = 4,
    Exec = 5,
    Output = 6,
    OutputEof = 7,
    Sample = 8,
    Exit = 9,
    Log = 10,
    StdinConsumed = 11,
    // host -> guest
    Job = 64,
    InputFile = 65,
    InputData = 66,
    InputEnd = 67,
    Stdin = 68,
    StdinEof = 69,
    Verdict = 70,
    Kill = 71,
    Rehearse = 72,
};

enum class Direction { GuestToHost, HostToGuest };  // who sends what the decoder reads

const char* type_name(Type t);
bool is_guest_type(uint8_t t);
bool is_host_type(uint8_t t);

struct Frame {
    Type type;
    std::string payload;
};

// Incremental frame decoder. feed() appends complete frames to `out` and keeps
// at most one partial frame: the buffer never holds more than kHeaderBytes +
// the direction's payload limit. The header is checked as soon as its five
// bytes are in (length over the limit, a type the direction does not send),
// before any of the payload is buffered. After an error the decoder refuses
// everything: the stream is out of sync and must be dropped.
class Decoder final {
public:
    explicit Decoder(Direction from);
    Result<void> feed(std::string_view data, std::vector<Frame>& out);
    size_t buffered() const { return m_head.size() + m_body.size(); }
    bool failed() const { return m_failed; }
    uint32_t max_payload() const { return m_max; }

private:
    Direction m_from;
    uint32_t m_max;
    bool m_failed = false;
    std::string m_head;  // < kHeaderBytes while the header is incomplete
    uint32_t m_len = 0;  // payload length once the header is complete
    std::string m_body;
};

// ---- guest -> host ----

struct Hello {
    uint32_t version = kProtocolVersion;
    std::string kernel_release;  // <= kMaxRelease
    uint64_t boot_time_ns = 0;   // CLOCK_BOOTTIME when the agent started
    int32_t landlock_abi = 0;    // 0..255
};

// A setup record of the job (moat::sandbox::SetupRecord's meaning), or an
// agent setup step ("mount(/dev/vda)"). fatal: the job did not / will not run.
struct SetupStatus {
    std::string step;    // 1..kMaxStep bytes
    int32_t err = 0;     // errno, 0..4095
    std::string detail;  // <= kMaxText
    bool fatal = false;
};

struct Started {
    int32_t pid = 0;  // > 0: the job's init (guest pid namespace)
};

// A seccomp user notification received and decoded in the guest. decoded and
// module were produced by the guest: they can lie. Only nr, arch and args are
// what the guest kernel reported, and only if the guest kernel is honest.
struct Notice {
    uint64_t id = 0;  // cookie the Verdict must name
    int32_t pid = 0;  // > 0
    int32_t nr = 0;
    uint32_t arch = 0;
    std::array<uint64_t, 6> args{};
    uint64_t ip = 0;
    std::optional<std::string> decoded;  // <= kMaxText
    std::optional<std::string> module;   // <= kMaxText
};

struct Exec {
    int32_t pid = 0;   // > 0
    std::string path;  // <= kMaxText
};

struct Output {
    uint8_t stream = 1;  // 1 stdout, 2 stderr
    std::string bytes;   // 1..kMaxChunk
};

struct OutputEof {
    uint8_t stream = 1;
};

struct Sample {
    uint64_t cpu_ns = 0, memory_bytes = 0, memory_peak_bytes = 0, pids = 0, oom_kills = 0, pids_max_hits = 0;
};

struct Exit {
    int32_t wait_status = 0;  // as waitpid() gives it: exited (code << 8) or killed by a signal (1..64, core bit)
    bool killed_by_agent = false;
};

struct Log {
    std::string text;  // <= kMaxText
};

// How many stdin bytes the agent has written to the job so far (cumulative):
// the host keeps at most kStdinWindow bytes sent and not yet consumed.
struct StdinConsumed {
    uint64_t total = 0;
};
inline constexpr uint64_t kStdinWindow = 1u << 20;

using GuestMessage = std::variant<Hello, SetupStatus, Started, Notice, Exec, Output, OutputEof, Sample, Exit, Log,
                                  StdinConsumed>;

// ---- host -> guest ----

struct Job {
    // moat::sandbox::ContainerPlan JSON. Bind sources name paths in the
    // guest's root image (/mnt/root/<path>); the agent sets newroot itself.
    std::string plan_json;            // 1..kMaxPlan
    uint64_t sample_interval_ns = 0;  // 0: no samples; else >= 1 ms
    uint64_t memory_max = 0;          // bytes; 0: no limit
    uint64_t pids_max = 0;            // 0: no limit
};

struct InputFile {
    std::string path;  // absolute sandbox path, 2..kMaxPath, no NUL
    uint32_t mode = 0644;  // permission bits only (<= 07777)
    uint64_t size = 0;     // exactly this many InputData bytes follow before InputEnd
};

struct InputData {
    std::string bytes;  // 1..kMaxChunk
};

struct InputEnd {};

struct Stdin {
    std::string bytes;  // 1..kMaxChunk
};

struct StdinEof {};

struct Verdict {
    static constexpr uint8_t kContinue = 1;  // SECCOMP_USER_NOTIF_FLAG_CONTINUE (error must be 0)
    static constexpr uint8_t kKill = 2;      // kill the job; the notification is never answered
    static constexpr uint8_t kTrap = 4;      // SIGSYS to the thread, syscall fails with `error`
    uint64_t id = 0;
    int32_t error = 0;  // errno the syscall fails with, 0..4095
    uint8_t flags = 0;
};

struct Kill {};

// A warm guest's dress rehearsal (docs/vm.md, "Warm pool"): before any Job,
// the agent runs this plan through the whole job set-up (guest cgroup,
// moat-init, namespaces, mounts, filter) up to an exec of a path that does not
// exist, answers every notification itself, cleans up and sends nothing back.
// It runs the set-up's code once so that TCG has translated it before the job
// that pays for it. moatd sends it only with argv, env and exe scrubbed.
struct Rehearse {
    Job job;
    // The key's last program, as the job sees it (absolute, 0..kMaxPath, no
    // NUL; empty: none). The agent reads it and the ELF interpreter and
    // libraries it names from the root image into the guest's page cache, so
    // the job's exec does not wait on virtio-blk. Nothing of it is executed.
    std::string prefetch;
};

using HostMessage = std::variant<Job, InputFile, InputData, InputEnd, Stdin, StdinEof, Verdict, Kill, Rehearse>;

// ---- encoding: whole frames, ready to write ----
// Encoding checks the same limits the parsers do and fails rather than emit a
// frame the other side would refuse.
Result<std::string> encode(const Hello& m);
Result<std::string> encode(const SetupStatus& m);
Result<std::string> encode(const Started& m);
Result<std::string> encode(const Notice& m);
Result<std::string> encode(const Exec& m);
Result<std::string> encode(const Output& m);
Result<std::string> encode(const OutputEof& m);
Result<std::string> encode(const Sample& m);
Result<std::string> encode(const Exit& m);
Result<std::string> encode(const Log& m);
Result<std::string> encode(const StdinConsumed& m);
Result<std::string> encode(const Job& m);
Result<std::string> encode(const InputFile& m);
Result<std::string> encode(const InputData& m);
Result<std::string> encode(const InputEnd& m);
Result<std::string> encode(const Stdin& m);
Result<std::string> encode(const StdinEof& m);
Result<std::string> encode(const Verdict& m);
Result<std::string> encode(const Kill& m);
Result<std::string> encode(const Rehearse& m);
Result<std::string> encode(const GuestMessage& m);
Result<std::string> encode(const HostMessage& m);

// ---- strict parsers, one per type (payload only, without the header) ----
Result<Hello> parse_hello(std::string_view p);
Result<SetupStatus> parse_setup_status(std::string_view p);
Result<Started> parse_started(std::string_view p);
Result<Notice> parse_notice(std::string_view p);
Result<Exec> parse_exec(std::string_view p);
Result<Output> parse_output(std::string_view p);
Result<OutputEof> parse_output_eof(std::string_view p);
Result<Sample> parse_sample(std::string_view p);
Result<Exit> parse_exit(std::string_view p);
Result<Log> parse_log(std::string_view p);
Result<StdinConsumed> parse_stdin_consumed(std::string_view p);
Result<Job> parse_job(std::string_view p);
Result<InputFile> parse_input_file(std::string_view p);
Result<InputData> parse_input_data(std::string_view p);
Result<InputEnd> parse_input_end(std::string_view p);
Result<Stdin> parse_stdin(std::string_view p);
Result<StdinEof> parse_stdin_eof(std::string_view p);
Result<Verdict> parse_verdict(std::string_view p);
Result<Kill> parse_kill(std::string_view p);
Result<Rehearse> parse_rehearse(std::string_view p);

// Dispatch on the frame's type; a type of the other direction is an error.
Result<GuestMessage> parse_guest(const Frame& f);
Result<HostMessage> parse_host(const Frame& f);

}  // namespace moat::guest
