// libFuzzer entry point for the warm guest's ELF reader (moat/guest/prefetch.h).
// The agent runs it as the guest's root on the key's last program, which may
// be a file a user supplied: a bug here would be a way into the next job's
// guest. Any bytes: no crash, no read outside the file, bounded results.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "moat/guest/prefetch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    int fd = memfd_create("elf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) break;
        off += size_t(n);
    }
    moat::guest::ElfDeps d = moat::guest::elf_deps(fd);
    close(fd);
    if (d.interp.size() > 4096 || d.needed.size() > 64) __builtin_trap();
    for (const auto& n : d.needed)
        if (n.empty() || n.size() > 255 || n.find('/') != std::string::npos) __builtin_trap();
    return 0;
}
