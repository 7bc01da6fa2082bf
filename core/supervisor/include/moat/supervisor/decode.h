#pragma once
// Turning a notified syscall into something an operator can read: the path
// behind a pointer, the address behind a sockaddr, the library behind an
// instruction pointer. Everything read from the job is untrusted and bounded.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moat::supervisor {

// Job-controlled bytes made safe for JSON and terminals: moat::printable()
// (valid UTF-8 kept, backslash doubled; C0/DEL/C1/bidi controls and invalid
// bytes escaped), the form decoded strings are stored in.
std::string printable(const std::string& in);

// Reads a NUL-terminated string of at most max bytes from the job's memory
// (page by page, so an unmapped page after the string does not fail the read).
std::optional<std::string> read_remote_string(pid_t pid, uint64_t addr, size_t max = 4096);
std::optional<std::vector<uint8_t>> read_remote(pid_t pid, uint64_t addr, size_t len);

// "AF_INET 127.0.0.1:8080", "AF_UNIX /run/x.sock", "AF_UNIX @abstract", "AF_INET6 [::1]:53".
std::string format_sockaddr(const uint8_t* data, size_t len);

// What a syscall's pointer arguments mean, by x86_64 number.
struct ArgShape {
    enum class Kind { None, Path, DirfdPath, Sockaddr };
    struct Arg { Kind kind; int arg; int extra; };  // DirfdPath: extra = dirfd arg; Sockaddr: extra = len arg
    std::vector<Arg> args;
};
const ArgShape* arg_shape(int nr);

// The human reading of the pointer arguments ("/tmp/x", "old -> new",
// "AF_INET 10.0.0.1:443"), or nullopt when the syscall has none.
std::optional<std::string> decode_args(pid_t pid, int nr, const uint64_t args[6]);

// module+offset from /proc/PID/maps, cached per pid.
//
// The job decides what its maps look like (tens of thousands of mappings, an
// instruction pointer in anonymous executable memory), so reading them is
// bounded three ways: at most kMaxMapsBytes are read, a pid's maps are read
// again at most once per kRereadNs (an address found in no cached mapping is
// answered "no module" until then: a new mmap is seen at most that late), and
// at most kMaxProcesses pids and kMaxMappings executable mappings in all are
// cached (the least recently read pid goes first; a pid's mappings past
// kMaxMappings are not kept, so addresses in them get "no module").
// exec invalidates through forget().
class ModuleResolver final {
public:
    static constexpr size_t kMaxMapsBytes = 1 << 20;
    static constexpr int64_t kRereadNs = 1'000'000'000;
    static constexpr size_t kMaxProcesses = 256;
    static constexpr size_t kMaxMappings = 4096;
    // Reads /proc/PID/maps, at most `max` bytes; replaceable for tests.
    using Reader = std::function<std::string(pid_t pid, size_t max)>;

    ModuleResolver();
    explicit ModuleResolver(Reader reader);

    // "libc.so.6+0x11f0a", or nullopt when the address is in no file mapping
    // (or in none known: see kRereadNs). now_ns: CLOCK_MONOTONIC.
    std::optional<std::string> resolve(pid_t pid, uint64_t ip, int64_t now_ns);
    std::optional<std::string> resolve(pid_t pid, uint64_t ip);
    void forget(pid_t pid);
    void clear() {
        ++m_generation;
        m_maps.clear();
        m_mappings = 0;
    }

    uint64_t reads() const { return m_reads; }  // maps files read so far
    // Changes whenever what resolve() would answer for some (pid, ip) may have
    // changed (a read, forget, clear): an answer kept by a caller for the same
    // pid and ip stays the resolver's answer while this is unchanged.
    uint64_t generation() const { return m_generation; }
    size_t cached() const { return m_maps.size(); }
    size_t cached_mappings() const { return m_mappings; }

    struct Mapping { uint64_t start, end, offset; std::string name; bool exec = false; };
    static std::vector<Mapping> parse_maps(const std::string& text);

private:
    struct Entry {
        std::vector<Mapping> maps;  // executable file mappings only
        int64_t read_ns = 0;
    };
    Reader m_reader;
    std::map<pid_t, Entry> m_maps;
    size_t m_mappings = 0;  // Σ maps.size() over m_maps
    uint64_t m_reads = 0;
    uint64_t m_generation = 0;
};

}  // namespace moat::supervisor
