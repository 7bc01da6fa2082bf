#pragma once
// Page-cache prefetch of a program and what its exec will read (the vm tier's
// warm guests, docs/vm.md "Warm pool"). Under TCG a job's first exec from the
// root image waited ~30 ms on virtio-blk reads; a warm guest reads those files
// while it waits for work, so the job's exec finds them in memory.
//
// The files are only read, never executed or mapped. The program's ELF
// headers are parsed to find its interpreter (PT_INTERP) and the libraries it
// names (DT_NEEDED, resolved in the standard library directories, not
// following DT_RUNPATH), transitively. Every read is bounded: the file is
// hostile input to this parser even though it comes from the operator's
// read_only set.
#include <cstdint>
#include <string>
#include <vector>

namespace moat::guest {

struct PrefetchLimits {
    size_t max_files = 32;              // the program and everything it names
    uint64_t max_bytes = 32ull << 20;   // total read; a file that would pass it is skipped
    // false: each file is read whole (a warm guest with time to spare: on
    // return everything is in the page cache). true: only the ELF headers are
    // read, and the rest is asked for with posix_fadvise(WILLNEED), which
    // starts the reads and returns (a cold guest at its Job: virtio-blk fills
    // the page cache while the vCPU builds the job's sandbox).
    bool advise = false;
};

struct PrefetchResult {
    std::vector<std::string> files;  // read, in order (paths as the job sees them)
    uint64_t bytes = 0;
    std::vector<std::string> skipped;  // "path: why" (not found, too large, not a regular file)
};

// Reads `program` (an absolute path as the job sees it) below root_fd, which
// stands for the job's root (openat2 RESOLVE_IN_ROOT: absolute symlinks stay
// inside), then its interpreter and libraries.
PrefetchResult prefetch_program(int root_fd, const std::string& program, const PrefetchLimits& lim = {});

// What an ELF file at fd names: its interpreter (empty if none) and its
// DT_NEEDED entries. Not ELF64 x86-64, or malformed: both empty. Exposed for
// tests and the fuzzer.
struct ElfDeps {
    std::string interp;
    std::vector<std::string> needed;
};
ElfDeps elf_deps(int fd);

// The directories a DT_NEEDED name is looked for in, in the dynamic loader's
// order for a binary without RUNPATH on Debian x86-64.
std::vector<std::string> library_dirs();

}  // namespace moat::guest
