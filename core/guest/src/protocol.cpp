#include "moat/guest/protocol.h"

#include <cstring>

namespace moat::guest {

namespace {

// ---- little-endian writer / bounded reader ----

class Writer {
public:
    void u8(uint8_t v) { m_out.push_back(char(v)); }
    void u32(uint32_t v) {
        for (int i = 0; i < 4; ++i) m_out.push_back(char((v >> (8 * i)) & 0xff));
    }
    void u64(uint64_t v) {
        for (int i = 0; i < 8; ++i) m_out.push_back(char((v >> (8 * i)) & 0xff));
    }
    void i32(int32_t v) { u32(uint32_t(v)); }
    void str(std::string_view s) {
        u32(uint32_t(s.size()));
        m_out.append(s);
    }
    void opt_str(const std::optional<std::string>& s) {
        u8(s ? 1 : 0);
        if (s) str(*s);
    }
    std::string& out() { return m_out; }

private:
    std::string m_out;
};

// Every read checks the remaining length first; a string's length is checked
// against its limit before anything is copied, so a huge length prefix costs
// nothing. The first failure sticks and names the field.
class Reader {
public:
    Reader(std::string_view p, const char* msg) : m_p(p), m_msg(msg) {}
    bool ok() const { return m_err.empty(); }

    uint8_t u8(const char* field) {
        if (!need(1, field)) return 0;
        return uint8_t(m_p[m_off++]);
    }
    uint32_t u32(const char* field) {
        if (!need(4, field)) return 0;
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(m_p[m_off + i])) << (8 * i);
        m_off += 4;
        return v;
    }
    uint64_t u64(const char* field) {
        if (!need(8, field)) return 0;
        uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(m_p[m_off + i])) << (8 * i);
        m_off += 8;
        return v;
    }
    int32_t i32(const char* field) { return int32_t(u32(field)); }
    bool flag(const char* field) {
        uint8_t v = u8(field);
        if (ok() && v > 1) bad(field, "is " + std::to_string(v) + ", not 0 or 1");
        return v == 1;
    }
    std::string str(const char* field, size_t min, size_t max) {
        uint32_t n = u32(field);
        if (!ok()) return {};
        if (n > max) {
            bad(field, "is " + std::to_string(n) + " bytes, more than the limit of " + std::to_string(max));
            return {};
        }
        if (n < min) {
            bad(field, "is " + std::to_string(n) + " bytes, fewer than " + std::to_string(min));
            return {};
        }
        if (!need(n, field)) return {};
        std::string s(m_p.substr(m_off, n));
        m_off += n;
        return s;
    }
    std::optional<std::string> opt_str(const char* field, size_t max) {
        if (!flag(field)) return std::nullopt;
        std::string s = str(field, 0, max);
        if (!ok()) return std::nullopt;
        return s;
    }
    void bad(const char* field, const std::string& why) {
        if (m_err.empty()) m_err = std::string("guest protocol: ") + m_msg + ": " + field + " " + why;
    }
    // Finishes: trailing bytes are an error.
    template <class T>
    Result<T> done(T v) {
        if (ok() && m_off != m_p.size())
            m_err = std::string("guest protocol: ") + m_msg + ": " + std::to_string(m_p.size() - m_off) +
                    " trailing byte(s)";
        if (!ok()) return fail(m_err);
        return v;
    }

private:
    bool need(size_t n, const char* field) {
        if (!ok()) return false;
        if (m_p.size() - m_off < n) {
            m_err = std::string("guest protocol: ") + m_msg + ": truncated at " + field;
            return false;
        }
        return true;
    }
    std::string_view m_p;
    const char* m_msg;
    size_t m_off = 0;
    std::string m_err;
};

Result<std::string> frame(Type t, Writer& w, uint32_t max) {
    std::string& p = w.out();
    if (p.size() > max)
        return fail(std::string("guest protocol: ") + type_name(t) + " payload of " + std::to_string(p.size()) +
                    " bytes exceeds the limit of " + std::to_string(max));
    std::string out;
    out.reserve(kHeaderBytes + p.size());
    uint32_t n = uint32_t(p.size());
    for (int i = 0; i < 4; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
    out.push_back(char(uint8_t(t)));
    out += p;
    return out;
}

std::unexpected<Error> too_long(const char* msg, const char* field, size_t n, size_t max) {
    return fail(std::string("guest protocol: ") + msg + ": " + field + " is " + std::to_string(n) +
                " bytes, more than the limit of " + std::to_string(max));
}

Result<void> check_len(const char* msg, const char* field, size_t n, size_t min, size_t max) {
    if (n > max) return too_long(msg, field, n, max);
    if (n < min)
        return fail(std::string("guest protocol: ") + msg + ": " + field + " is shorter than " + std::to_string(min) +
                    " bytes");
    return {};
}

#define MOAT_CHECK_LEN(msg, field, s, min, max)                                                     \
    do {                                                                                            \
        if (auto r_ = check_len(msg, field, (s).size(), (min), (max)); !r_) return std::unexpected(r_.error()); \
    } while (0)

bool valid_wait_status(int32_t s) {
    if (s < 0) return false;
    const int low = s & 0x7f;
    if (low == 0) return (s & 0xff) == 0 && s <= 0xff00;          // exited: code in bits 8..15
    if (low == 0x7f) return false;                                 // stopped: never reported
    return (s >> 8) == 0 && low <= 64;                             // signaled (bit 7: core dumped)
}

bool valid_sandbox_path(std::string_view p) {
    if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
    if (p.find('\0') != std::string_view::npos) return false;
    size_t i = 1;
    while (i <= p.size()) {
        size_t j = p.find('/', i);
        if (j == std::string_view::npos) j = p.size();
        std::string_view c = p.substr(i, j - i);
        if (c.empty() || c == "." || c == "..") return false;
        i = j + 1;
    }
    return true;
}

}  // namespace

const char* type_name(Type t) {
    switch (t) {
        case Type::Hello: return "Hello";
        case Type::SetupStatus: return "SetupStatus";
        case Type::Started: return "Started";
        case Type::Notice: return "Notice";
        case Type::Exec: return "Exec";
        case Type::Output: return "Output";
        case Type::OutputEof: return "OutputEof";
        case Type::Sample: return "Sample";
        case Type::Exit: return "Exit";
        case Type::Log: return "Log";
        case Type::StdinConsumed: return "StdinConsumed";
        case Type::Job: return "Job";
        case Type::InputFile: return "InputFile";
        case Type::InputData: return "InputData";
        case Type::InputEnd: return "InputEnd";
        case Type::Stdin: return "Stdin";
        case Type::StdinEof: return "StdinEof";
        case Type::Verdict: return "Verdict";
        case Type::Kill: return "Kill";
        case Type::Rehearse: return "Rehearse";
    }
    return "?";
}

bool is_guest_type(uint8_t t) { return t >= uint8_t(Type::Hello) && t <= uint8_t(Type::StdinConsumed); }
bool is_host_type(uint8_t t) { return t >= uint8_t(Type::Job) && t <= uint8_t(Type::Rehearse); }

// ---- Decoder ----

Decoder::Decoder(Direction from)
    : m_from(from), m_max(from == Direction::GuestToHost ? kMaxGuestPayload : kMaxHostPayload) {}

Result<void> Decoder::feed(std::string_view data, std::vector<Frame>& out) {
    if (m_failed) return fail("guest protocol: the stream already failed; drop it");
    while (!data.empty()) {
        if (m_head.size() < kHeaderBytes) {
            size_t take = std::min(kHeaderBytes - m_head.size(), data.size());
            m_head.append(data.substr(0, take));
            data.remove_prefix(take);
            if (m_head.size() < kHeaderBytes) break;
            uint32_t len = 0;
            for (int i = 0; i < 4; ++i) len |= uint32_t(uint8_t(m_head[i])) << (8 * i);
            const uint8_t type = uint8_t(m_head[4]);
            const bool known = m_from == Direction::GuestToHost ? is_guest_type(type) : is_host_type(type);
            if (!known) {
                m_failed = true;
                return fail("guest protocol: unknown frame type " + std::to_string(type) +
                            (m_from == Direction::GuestToHost ? " from the guest" : " from the host"));
            }
            if (len > m_max) {
                m_failed = true;
                return fail("guest protocol: " + std::string(type_name(Type(type))) + " frame announces " +
                            std::to_string(len) + " bytes, more than the limit of " + std::to_string(m_max));
            }
            m_len = len;
            m_body.clear();
        }
        size_t take = std::min(size_t(m_len) - m_body.size(), data.size());
        m_body.append(data.substr(0, take));
        data.remove_prefix(take);
        if (m_body.size() == m_len) {
            out.push_back(Frame{Type(uint8_t(m_head[4])), std::move(m_body)});
            m_body = std::string();
            m_head.clear();
            m_len = 0;
        }
    }
    return {};
}

// ---- encoders ----

Result<std::string> encode(const Hello& m) {
    MOAT_CHECK_LEN("Hello", "kernel_release", m.kernel_release, 0, kMaxRelease);
    if (m.landlock_abi < 0 || m.landlock_abi > 255) return fail("guest protocol: Hello: landlock_abi out of range");
    Writer w;
    w.u32(m.version);
    w.str(m.kernel_release);
    w.u64(m.boot_time_ns);
    w.i32(m.landlock_abi);
    return frame(Type::Hello, w, kMaxGuestPayload);
}

Result<std::string> encode(const SetupStatus& m) {
    MOAT_CHECK_LEN("SetupStatus", "step", m.step, 1, kMaxStep);
    MOAT_CHECK_LEN("SetupStatus", "detail", m.detail, 0, kMaxText);
    if (m.err < 0 || m.err > 4095) return fail("guest protocol: SetupStatus: errno out of range");
    Writer w;
    w.str(m.step);
    w.i32(m.err);
    w.str(m.detail);
    w.u8(m.fatal ? 1 : 0);
    return frame(Type::SetupStatus, w, kMaxGuestPayload);
}

Result<std::string> encode(const Started& m) {
    if (m.pid <= 0) return fail("guest protocol: Started: pid must be positive");
    Writer w;
    w.i32(m.pid);
    return frame(Type::Started, w, kMaxGuestPayload);
}

Result<std::string> encode(const Notice& m) {
    if (m.pid <= 0) return fail("guest protocol: Notice: pid must be positive");
    if (m.decoded) MOAT_CHECK_LEN("Notice", "decoded", *m.decoded, 0, kMaxText);
    if (m.module) MOAT_CHECK_LEN("Notice", "module", *m.module, 0, kMaxText);
    Writer w;
    w.u64(m.id);
    w.i32(m.pid);
    w.i32(m.nr);
    w.u32(m.arch);
    for (uint64_t a : m.args) w.u64(a);
    w.u64(m.ip);
    w.opt_str(m.decoded);
    w.opt_str(m.module);
    return frame(Type::Notice, w, kMaxGuestPayload);
}

Result<std::string> encode(const Exec& m) {
    if (m.pid <= 0) return fail("guest protocol: Exec: pid must be positive");
    MOAT_CHECK_LEN("Exec", "path", m.path, 0, kMaxText);
    Writer w;
    w.i32(m.pid);
    w.str(m.path);
    return frame(Type::Exec, w, kMaxGuestPayload);
}

Result<std::string> encode(const Output& m) {
    if (m.stream != 1 && m.stream != 2) return fail("guest protocol: Output: stream must be 1 or 2");
    MOAT_CHECK_LEN("Output", "bytes", m.bytes, 1, kMaxChunk);
    Writer w;
    w.u8(m.stream);
    w.str(m.bytes);
    return frame(Type::Output, w, kMaxGuestPayload);
}

Result<std::string> encode(const OutputEof& m) {
    if (m.stream != 1 && m.stream != 2) return fail("guest protocol: OutputEof: stream must be 1 or 2");
    Writer w;
    w.u8(m.stream);
    return frame(Type::OutputEof, w, kMaxGuestPayload);
}

Result<std::string> encode(const Sample& m) {
    Writer w;
    for (uint64_t v : {m.cpu_ns, m.memory_bytes, m.memory_peak_bytes, m.pids, m.oom_kills, m.pids_max_hits}) w.u64(v);
    return frame(Type::Sample, w, kMaxGuestPayload);
}

Result<std::string> encode(const Exit& m) {
    if (!valid_wait_status(m.wait_status))
        return fail("guest protocol: Exit: " + std::to_string(m.wait_status) + " is not an exit or signal wait status");
    Writer w;
    w.i32(m.wait_status);
    w.u8(m.killed_by_agent ? 1 : 0);
    return frame(Type::Exit, w, kMaxGuestPayload);
}

Result<std::string> encode(const Log& m) {
    MOAT_CHECK_LEN("Log", "text", m.text, 0, kMaxText);
    Writer w;
    w.str(m.text);
    return frame(Type::Log, w, kMaxGuestPayload);
}

Result<std::string> encode(const StdinConsumed& m) {
    Writer w;
    w.u64(m.total);
    return frame(Type::StdinConsumed, w, kMaxGuestPayload);
}

namespace {
// Job and Rehearse share one payload layout (Rehearse adds prefetch after it).
Result<Writer> job_payload(const Job& m, const char* name) {
    MOAT_CHECK_LEN(name, "plan_json", m.plan_json, 1, kMaxPlan);
    if (m.sample_interval_ns != 0 && m.sample_interval_ns < 1'000'000)
        return fail(std::string("guest protocol: ") + name + ": sample_interval_ns below 1 ms");
    Writer w;
    w.u64(m.sample_interval_ns);
    w.u64(m.memory_max);
    w.u64(m.pids_max);
    w.str(m.plan_json);
    return w;
}
}  // namespace

Result<std::string> encode(const Job& m) {
    auto w = job_payload(m, "Job");
    if (!w) return std::unexpected(w.error());
    return frame(Type::Job, *w, kMaxHostPayload);
}
Result<std::string> encode(const Rehearse& m) {
    auto w = job_payload(m.job, "Rehearse");
    if (!w) return std::unexpected(w.error());
    MOAT_CHECK_LEN("Rehearse", "prefetch", m.prefetch, 0, kMaxPath);
    if (!m.prefetch.empty() && m.prefetch[0] != '/') return fail("guest protocol: Rehearse: prefetch must be absolute");
    if (m.prefetch.find('\0') != std::string::npos) return fail("guest protocol: Rehearse: prefetch holds a NUL");
    w->str(m.prefetch);
    return frame(Type::Rehearse, *w, kMaxHostPayload);
}

Result<std::string> encode(const InputFile& m) {
    MOAT_CHECK_LEN("InputFile", "path", m.path, 2, kMaxPath);
    if (!valid_sandbox_path(m.path)) return fail("guest protocol: InputFile: path is not a clean absolute path");
    if (m.mode > 07777) return fail("guest protocol: InputFile: mode has bits beyond 07777");
    Writer w;
    w.str(m.path);
    w.u32(m.mode);
    w.u64(m.size);
    return frame(Type::InputFile, w, kMaxHostPayload);
}

Result<std::string> encode(const InputData& m) {
    MOAT_CHECK_LEN("InputData", "bytes", m.bytes, 1, kMaxChunk);
    Writer w;
    w.str(m.bytes);
    return frame(Type::InputData, w, kMaxHostPayload);
}

Result<std::string> encode(const InputEnd&) {
    Writer w;
    return frame(Type::InputEnd, w, kMaxHostPayload);
}

Result<std::string> encode(const Stdin& m) {
    MOAT_CHECK_LEN("Stdin", "bytes", m.bytes, 1, kMaxChunk);
    Writer w;
    w.str(m.bytes);
    return frame(Type::Stdin, w, kMaxHostPayload);
}

Result<std::string> encode(const StdinEof&) {
    Writer w;
    return frame(Type::StdinEof, w, kMaxHostPayload);
}

namespace {
Result<void> check_verdict(const Verdict& m) {
    constexpr uint8_t known = Verdict::kContinue | Verdict::kKill | Verdict::kTrap;
    if (m.flags & ~known) return fail("guest protocol: Verdict: unknown flag bits");
    if (m.error < 0 || m.error > 4095) return fail("guest protocol: Verdict: error out of range");
    if ((m.flags & Verdict::kContinue) && (m.error != 0 || (m.flags & ~Verdict::kContinue)))
        return fail("guest protocol: Verdict: continue excludes an error, kill and trap");
    if ((m.flags & Verdict::kKill) && (m.flags & Verdict::kTrap))
        return fail("guest protocol: Verdict: kill and trap are exclusive");
    if (m.flags == 0 && m.error == 0) return fail("guest protocol: Verdict: neither continue, kill nor an error");
    return {};
}
}  // namespace

Result<std::string> encode(const Verdict& m) {
    if (auto r = check_verdict(m); !r) return std::unexpected(r.error());
    Writer w;
    w.u64(m.id);
    w.i32(m.error);
    w.u8(m.flags);
    return frame(Type::Verdict, w, kMaxHostPayload);
}

Result<std::string> encode(const Kill&) {
    Writer w;
    return frame(Type::Kill, w, kMaxHostPayload);
}

Result<std::string> encode(const GuestMessage& m) {
    return std::visit([](const auto& x) { return encode(x); }, m);
}
Result<std::string> encode(const HostMessage& m) {
    return std::visit([](const auto& x) { return encode(x); }, m);
}

// ---- parsers ----

Result<Hello> parse_hello(std::string_view p) {
    Reader r(p, "Hello");
    Hello m;
    m.version = r.u32("version");
    m.kernel_release = r.str("kernel_release", 0, kMaxRelease);
    m.boot_time_ns = r.u64("boot_time_ns");
    m.landlock_abi = r.i32("landlock_abi");
    if (r.ok() && (m.landlock_abi < 0 || m.landlock_abi > 255)) r.bad("landlock_abi", "is out of range 0..255");
    return r.done(std::move(m));
}

Result<SetupStatus> parse_setup_status(std::string_view p) {
    Reader r(p, "SetupStatus");
    SetupStatus m;
    m.step = r.str("step", 1, kMaxStep);
    m.err = r.i32("errno");
    if (r.ok() && (m.err < 0 || m.err > 4095)) r.bad("errno", "is out of range 0..4095");
    m.detail = r.str("detail", 0, kMaxText);
    m.fatal = r.flag("fatal");
    return r.done(std::move(m));
}

Result<Started> parse_started(std::string_view p) {
    Reader r(p, "Started");
    Started m;
    m.pid = r.i32("pid");
    if (r.ok() && m.pid <= 0) r.bad("pid", "is not positive");
    return r.done(m);
}

Result<Notice> parse_notice(std::string_view p) {
    Reader r(p, "Notice");
    Notice m;
    m.id = r.u64("id");
    m.pid = r.i32("pid");
    if (r.ok() && m.pid <= 0) r.bad("pid", "is not positive");
    m.nr = r.i32("nr");
    m.arch = r.u32("arch");
    for (auto& a : m.args) a = r.u64("args");
    m.ip = r.u64("ip");
    m.decoded = r.opt_str("decoded", kMaxText);
    m.module = r.opt_str("module", kMaxText);
    return r.done(std::move(m));
}

Result<Exec> parse_exec(std::string_view p) {
    Reader r(p, "Exec");
    Exec m;
    m.pid = r.i32("pid");
    if (r.ok() && m.pid <= 0) r.bad("pid", "is not positive");
    m.path = r.str("path", 0, kMaxText);
    return r.done(std::move(m));
}

Result<Output> parse_output(std::string_view p) {
    Reader r(p, "Output");
    Output m;
    m.stream = r.u8("stream");
    if (r.ok() && m.stream != 1 && m.stream != 2) r.bad("stream", "is not 1 (stdout) or 2 (stderr)");
    m.bytes = r.str("bytes", 1, kMaxChunk);
    return r.done(std::move(m));
}

Result<OutputEof> parse_output_eof(std::string_view p) {
    Reader r(p, "OutputEof");
    OutputEof m;
    m.stream = r.u8("stream");
    if (r.ok() && m.stream != 1 && m.stream != 2) r.bad("stream", "is not 1 (stdout) or 2 (stderr)");
    return r.done(m);
}

Result<Sample> parse_sample(std::string_view p) {
    Reader r(p, "Sample");
    Sample m;
    m.cpu_ns = r.u64("cpu_ns");
    m.memory_bytes = r.u64("memory_bytes");
    m.memory_peak_bytes = r.u64("memory_peak_bytes");
    m.pids = r.u64("pids");
    m.oom_kills = r.u64("oom_kills");
    m.pids_max_hits = r.u64("pids_max_hits");
    return r.done(m);
}

Result<Exit> parse_exit(std::string_view p) {
    Reader r(p, "Exit");
    Exit m;
    m.wait_status = r.i32("wait_status");
    if (r.ok() && !valid_wait_status(m.wait_status)) r.bad("wait_status", "is not an exit or signal wait status");
    m.killed_by_agent = r.flag("killed_by_agent");
    return r.done(m);
}

Result<Log> parse_log(std::string_view p) {
    Reader r(p, "Log");
    Log m;
    m.text = r.str("text", 0, kMaxText);
    return r.done(std::move(m));
}

Result<StdinConsumed> parse_stdin_consumed(std::string_view p) {
    Reader r(p, "StdinConsumed");
    StdinConsumed m;
    m.total = r.u64("total");
    return r.done(m);
}

namespace {
Job read_job(Reader& r) {
    Job m;
    m.sample_interval_ns = r.u64("sample_interval_ns");
    if (r.ok() && m.sample_interval_ns != 0 && m.sample_interval_ns < 1'000'000) r.bad("sample_interval_ns", "is below 1 ms");
    m.memory_max = r.u64("memory_max");
    m.pids_max = r.u64("pids_max");
    m.plan_json = r.str("plan_json", 1, kMaxPlan);
    return m;
}
}  // namespace

Result<Job> parse_job(std::string_view p) {
    Reader r(p, "Job");
    Job m = read_job(r);
    return r.done(std::move(m));
}
Result<Rehearse> parse_rehearse(std::string_view p) {
    Reader r(p, "Rehearse");
    Rehearse m{read_job(r), {}};
    m.prefetch = r.str("prefetch", 0, kMaxPath);
    if (r.ok() && !m.prefetch.empty() && m.prefetch[0] != '/') r.bad("prefetch", "is not absolute");
    if (r.ok() && m.prefetch.find('\0') != std::string::npos) r.bad("prefetch", "holds a NUL");
    return r.done(std::move(m));
}

Result<InputFile> parse_input_file(std::string_view p) {
    Reader r(p, "InputFile");
    InputFile m;
    m.path = r.str("path", 2, kMaxPath);
    if (r.ok() && !valid_sandbox_path(m.path)) r.bad("path", "is not a clean absolute path");
    m.mode = r.u32("mode");
    if (r.ok() && m.mode > 07777) r.bad("mode", "has bits beyond 07777");
    m.size = r.u64("size");
    return r.done(std::move(m));
}

Result<InputData> parse_input_data(std::string_view p) {
    Reader r(p, "InputData");
    InputData m;
    m.bytes = r.str("bytes", 1, kMaxChunk);
    return r.done(std::move(m));
}

Result<InputEnd> parse_input_end(std::string_view p) {
    Reader r(p, "InputEnd");
    return r.done(InputEnd{});
}

Result<Stdin> parse_stdin(std::string_view p) {
    Reader r(p, "Stdin");
    Stdin m;
    m.bytes = r.str("bytes", 1, kMaxChunk);
    return r.done(std::move(m));
}

Result<StdinEof> parse_stdin_eof(std::string_view p) {
    Reader r(p, "StdinEof");
    return r.done(StdinEof{});
}

Result<Verdict> parse_verdict(std::string_view p) {
    Reader r(p, "Verdict");
    Verdict m;
    m.id = r.u64("id");
    m.error = r.i32("error");
    m.flags = r.u8("flags");
    auto v = r.done(m);
    if (!v) return v;
    if (auto c = check_verdict(*v); !c) return std::unexpected(c.error());
    return v;
}

Result<Kill> parse_kill(std::string_view p) {
    Reader r(p, "Kill");
    return r.done(Kill{});
}

namespace {
template <class Variant, class T>
Result<Variant> lift(Result<T> r) {
    if (!r) return std::unexpected(r.error());
    return Variant(std::move(*r));
}
}  // namespace

Result<GuestMessage> parse_guest(const Frame& f) {
    const std::string_view p = f.payload;
    if (p.size() > kMaxGuestPayload) return fail("guest protocol: frame over the guest limit");
    switch (f.type) {
        case Type::Hello: return lift<GuestMessage>(parse_hello(p));
        case Type::SetupStatus: return lift<GuestMessage>(parse_setup_status(p));
        case Type::Started: return lift<GuestMessage>(parse_started(p));
        case Type::Notice: return lift<GuestMessage>(parse_notice(p));
        case Type::Exec: return lift<GuestMessage>(parse_exec(p));
        case Type::Output: return lift<GuestMessage>(parse_output(p));
        case Type::OutputEof: return lift<GuestMessage>(parse_output_eof(p));
        case Type::Sample: return lift<GuestMessage>(parse_sample(p));
        case Type::Exit: return lift<GuestMessage>(parse_exit(p));
        case Type::Log: return lift<GuestMessage>(parse_log(p));
        case Type::StdinConsumed: return lift<GuestMessage>(parse_stdin_consumed(p));
        default: break;
    }
    return fail("guest protocol: frame type " + std::to_string(unsigned(uint8_t(f.type))) + " is not one the guest sends");
}

Result<HostMessage> parse_host(const Frame& f) {
    const std::string_view p = f.payload;
    switch (f.type) {
        case Type::Job: return lift<HostMessage>(parse_job(p));
        case Type::InputFile: return lift<HostMessage>(parse_input_file(p));
        case Type::InputData: return lift<HostMessage>(parse_input_data(p));
        case Type::InputEnd: return lift<HostMessage>(parse_input_end(p));
        case Type::Stdin: return lift<HostMessage>(parse_stdin(p));
        case Type::StdinEof: return lift<HostMessage>(parse_stdin_eof(p));
        case Type::Verdict: return lift<HostMessage>(parse_verdict(p));
        case Type::Kill: return lift<HostMessage>(parse_kill(p));
        case Type::Rehearse: return lift<HostMessage>(parse_rehearse(p));
        default: break;
    }
    return fail("guest protocol: frame type " + std::to_string(unsigned(uint8_t(f.type))) + " is not one the host sends");
}

}  // namespace moat::guest
