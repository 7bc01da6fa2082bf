#pragma once
// Learn mode's filesystem half (docs/replay.md, "Learning the filesystem
// view"). While a learn replay runs, the calls that take a path (open, stat,
// access, readlink, exec, chdir families) reach moatd too; each path is looked
// up in the job's own view, and what is missing there is remembered. When the
// job ends, each missing path is resolved on the host with the replaying
// client's rights (never moatd's), every symlink hop on the way noted, and an
// exec'd program's interpreter and libraries added: the job's `info` gets the
// facts as `learn_paths`, from which moat_learn proposes read_only entries.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "moat/supervisor/supervisor.h"

namespace moat::supervisor {

// Where a watched syscall keeps its path.
struct PathArg {
    int dirfd = -1;         // argument with the directory fd (-1: none; a relative path is from the cwd)
    int path = 0;           // argument with the path pointer
    int flags = -1;         // argument with AT_* flags (-1: none)
    bool nofollow = false;  // never follows a final symlink (lstat, readlink)
    bool opens = false;     // opens or executes the file (what Landlock judges)
    int open_flags = -1;    // argument with O_* flags (-1: none); O_CREAT/O_WRONLY/O_RDWR write
};
// nullopt when the syscall is not one whose path learn mode watches.
std::optional<PathArg> watched_path_arg(const std::string& syscall);
// Every syscall watched_path_arg() knows (for CompileOptions::watch).
const std::vector<std::string>& watched_path_syscalls();

class PathLearner {
public:
    struct View {
        std::vector<std::string> visible;   // read_only, read_write, the inputs' sandbox paths
        std::vector<std::string> scratch;   // tmpfs mounts: the job's own files, never proposed
        bool mount_namespace = true;        // container tier; false: the seccomp tier under Landlock
        std::string cwd;                    // the job's working directory as recorded
        std::vector<std::string> private_dirs;  // moatd's state and runtime dirs: never proposed
        bool covers(const std::string& path) const;  // visible or scratch
    };
    static constexpr size_t kMaxPaths = 1024;     // distinct missing paths kept per job
    static constexpr size_t kMaxLookups = 16384;  // distinct paths looked up per job (kept as hashes)
    static constexpr size_t kMaxPathBytes = 1024; // longer paths are not followed
    static constexpr int64_t kReportBudgetNs = 2'000'000'000;  // host lookups at the job's end, wall time
    static constexpr size_t kMaxReportBytes = 256 * 1024;     // the learn_paths JSON, about

    explicit PathLearner(View v) : m_view(std::move(v)) {}

    // A watched call by the job's task `tid` (still held by the kernel).
    void observe(pid_t tid, const std::string& syscall, const uint64_t args[6]);
    // A path the job needed that is not in its view (the program at set-up).
    void missing(const std::string& path, const std::string& syscall, bool exec, uint64_t calls = 1);

    // The host side, with the client's rights, as JSON for the job's info.
    nlohmann::json report(const ClientCreds& who) const;

    bool covered(const std::string& path) const { return m_view.covers(path); }

private:
    struct Seen {
        std::string syscall;
        uint64_t calls = 0;
        bool exec = false;
    };
    bool missing_inside(pid_t tid, const std::string& path, bool nofollow, bool opens) const;
    bool same_cwd(pid_t tid) const;

    View m_view;
    // A file created or written in a directory the view lacks or has read-only.
    struct WriteDir {
        std::string syscall, example;
        uint64_t calls = 0;
    };
    void observe_write(pid_t tid, const std::string& syscall, const std::string& path);

    std::map<std::string, Seen> m_missing;
    std::map<std::string, WriteDir> m_write_dirs;
    std::unordered_set<uint64_t> m_present;  // hashes of paths looked up and found: not looked up again
    uint64_t m_dropped = 0;           // missing paths past kMaxPaths
    uint64_t m_relative = 0;          // relative paths not followed (another directory than the recorded cwd)
    uint64_t m_unfollowed = 0;        // paths with "..", control bytes or over kMaxPathBytes
};

}  // namespace moat::supervisor
