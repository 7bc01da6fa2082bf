#include "moat/guest/prefetch.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <set>

#include "moat/common/fd.h"

namespace moat::guest {

namespace {

constexpr size_t kMaxPhdrs = 256;
constexpr uint64_t kMaxDynamic = 1u << 20;  // bytes of PT_DYNAMIC read
constexpr uint64_t kMaxStrtab = 1u << 20;   // bytes of the dynamic string table read
constexpr size_t kMaxNeeded = 64;
constexpr size_t kMaxName = 255;

// The standard directories of a Debian x86-64 system, in the dynamic loader's
// order for a binary without RUNPATH (ld.so.cache lists these).
constexpr const char* kLibDirs[] = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                                    "/lib", "/usr/lib"};

bool pread_all(int fd, void* buf, size_t n, uint64_t off) {
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
        ssize_t r = ::pread(fd, p, n, off_t(off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= size_t(r);
        off += uint64_t(r);
    }
    return true;
}

UniqueFd open_in_root(int root_fd, const std::string& path) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return UniqueFd(int(syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how)));
}

}  // namespace

ElfDeps elf_deps(int fd) {
    ElfDeps out;
    struct stat st{};
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return out;
    const uint64_t size = uint64_t(st.st_size);
    Elf64_Ehdr eh{};
    if (size < sizeof eh || !pread_all(fd, &eh, sizeof eh, 0)) return out;
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
        return out;
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > kMaxPhdrs) return out;
    const uint64_t ph_bytes = uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr);
    if (eh.e_phoff > size || ph_bytes > size - eh.e_phoff) return out;
    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    if (!pread_all(fd, ph.data(), ph_bytes, eh.e_phoff)) return out;

    // [p_offset, p_offset + n) lies in the file.
    auto in_file = [size](uint64_t off, uint64_t n) { return off <= size && n <= size - off; };
    const Elf64_Phdr* dyn = nullptr;
    for (const auto& p : ph) {
        if (p.p_type == PT_INTERP && out.interp.empty()) {
            if (p.p_filesz < 2 || p.p_filesz > 4096 || !in_file(p.p_offset, p.p_filesz)) continue;
            std::string s(p.p_filesz, '\0');
            if (!pread_all(fd, s.data(), s.size(), p.p_offset)) continue;
            s.resize(strnlen(s.data(), s.size()));
            if (!s.empty() && s[0] == '/') out.interp = std::move(s);
        } else if (p.p_type == PT_DYNAMIC && !dyn) {
            dyn = &p;
        }
    }
    if (!dyn || dyn->p_filesz > kMaxDynamic || !in_file(dyn->p_offset, dyn->p_filesz)) return out;
    std::vector<Elf64_Dyn> d(dyn->p_filesz / sizeof(Elf64_Dyn));
    if (d.empty() || !pread_all(fd, d.data(), d.size() * sizeof(Elf64_Dyn), dyn->p_offset)) return out;
    uint64_t strtab = 0, strsz = 0;
    bool have_strtab = false;
    std::vector<uint64_t> needed;
    for (const auto& e : d) {
        if (e.d_tag == DT_NULL) break;
        if (e.d_tag == DT_STRTAB) {
            strtab = e.d_un.d_ptr;
            have_strtab = true;
        } else if (e.d_tag == DT_STRSZ) {
            strsz = e.d_un.d_val;
        } else if (e.d_tag == DT_NEEDED && needed.size() < kMaxNeeded) {
            needed.push_back(e.d_un.d_val);
        }
    }
    if (!have_strtab || strsz == 0 || strsz > kMaxStrtab || needed.empty()) return out;
    // DT_STRTAB is an address: the PT_LOAD segment that holds it gives its offset.
    uint64_t str_off = 0;
    bool mapped = false;
    for (const auto& p : ph) {
        if (p.p_type != PT_LOAD || strtab < p.p_vaddr || strtab - p.p_vaddr >= p.p_filesz) continue;
        const uint64_t rel = strtab - p.p_vaddr;
        if (strsz > p.p_filesz - rel) break;
        str_off = p.p_offset + rel;
        mapped = in_file(str_off, strsz);
        break;
    }
    if (!mapped) return out;
    std::string strs(strsz, '\0');
    if (!pread_all(fd, strs.data(), strs.size(), str_off)) return out;
    for (uint64_t at : needed) {
        if (at >= strs.size()) continue;
        size_t n = strnlen(strs.data() + at, strs.size() - at);
        if (n == 0 || n > kMaxName || at + n == strs.size()) continue;  // empty, too long or unterminated
        std::string name(strs.data() + at, n);
        if (name.find('/') != std::string::npos || name == "." || name == "..") continue;
        out.needed.push_back(std::move(name));
    }
    return out;
}

std::vector<std::string> library_dirs() { return {std::begin(kLibDirs), std::end(kLibDirs)}; }

PrefetchResult prefetch_program(int root_fd, const std::string& program, const PrefetchLimits& lim) {
    PrefetchResult r;
    if (program.empty() || program[0] != '/') return r;
    // Each entry: a path, and its fd when the library search has opened it.
    std::deque<std::pair<std::string, UniqueFd>> todo;
    todo.emplace_back(program, UniqueFd());
    std::set<std::string> seen{program};
    std::vector<char> buf(64 * 1024);
    auto queue = [&](const std::string& path, UniqueFd fd) {
        if (seen.size() < lim.max_files * 4 && seen.insert(path).second) todo.emplace_back(path, std::move(fd));
    };
    while (!todo.empty() && r.files.size() < lim.max_files) {
        const std::string path = std::move(todo.front().first);
        UniqueFd fd = std::move(todo.front().second);
        todo.pop_front();
        if (!fd) fd = open_in_root(root_fd, path);
        if (!fd) {
            r.skipped.push_back(path + ": " + strerror(errno));
            continue;
        }
        struct stat st{};
        if (fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
            r.skipped.push_back(path + ": not a regular file");
            continue;
        }
        if (uint64_t(st.st_size) > lim.max_bytes - r.bytes) {
            r.skipped.push_back(path + ": " + std::to_string(st.st_size) + " bytes would pass the prefetch limit");
            continue;
        }
        uint64_t got = 0;
        if (lim.advise) {
            // Starts the reads and returns: the whole file counts as asked for.
            (void)posix_fadvise(fd.get(), 0, st.st_size, POSIX_FADV_WILLNEED);
            got = uint64_t(st.st_size);
        } else {
            // Read it all (what puts it in the page cache), at most its size at open.
            for (;;) {
                const size_t want = size_t(std::min<uint64_t>(buf.size(), uint64_t(st.st_size) - got));
                if (want == 0) break;
                ssize_t n = ::read(fd.get(), buf.data(), want);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                got += uint64_t(n);
            }
        }
        r.bytes += got;
        r.files.push_back(path);
        ElfDeps deps = elf_deps(fd.get());
        if (!deps.interp.empty()) queue(deps.interp, UniqueFd());
        for (const auto& name : deps.needed) {
            // The first standard directory that has it (kept open for its turn).
            for (const char* dir : kLibDirs) {
                std::string cand = std::string(dir) + "/" + name;
                if (seen.count(cand)) break;
                UniqueFd found = open_in_root(root_fd, cand);
                if (!found) continue;
                queue(cand, std::move(found));
                break;
            }
        }
    }
    return r;
}

}  // namespace moat::guest
