// moat/guest/prefetch.h: what a warm guest reads ahead of a job's exec. The
// ELF reader takes hostile bytes; every malformed header must give "nothing
// to follow", never a crash or a read outside the file.
#include "moat/guest/prefetch.h"

#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;
using namespace moat::guest;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char t[] = "/tmp/moat-prefetch-XXXXXX";
        path = mkdtemp(t);
    }
    ~TempDir() { fs::remove_all(path); }
};

void write_file(const fs::path& p, const std::string& data) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << data;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

ElfDeps deps_of_bytes(const TempDir& d, const std::string& bytes) {
    write_file(d.path / "f", bytes);
    int fd = ::open((d.path / "f").c_str(), O_RDONLY | O_CLOEXEC);
    ElfDeps r = elf_deps(fd);
    ::close(fd);
    return r;
}

}  // namespace

TEST(Prefetch, ADynamicProgramNamesItsInterpreterAndLibraries) {
    int fd = ::open("/usr/bin/env", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ElfDeps d = elf_deps(fd);
    ::close(fd);
    EXPECT_EQ(d.interp, "/lib64/ld-linux-x86-64.so.2");
    EXPECT_NE(std::find(d.needed.begin(), d.needed.end(), "libc.so.6"), d.needed.end());
}

TEST(Prefetch, AHandBuiltElfGivesItsInterpreterAndNeededInOrder) {
    // The fuzzer's seed (tests/fuzz/corpus/elf_deps/minimal): one PT_LOAD at
    // address 0, DT_STRTAB an address inside it, two DT_NEEDED.
    int fd = ::open(ELF_SEED_DIR "/minimal", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ElfDeps d = elf_deps(fd);
    ::close(fd);
    EXPECT_EQ(d.interp, "/lib64/ld-linux-x86-64.so.2");
    EXPECT_EQ(d.needed, (std::vector<std::string>{"libc.so.6", "libm.so.6"}));
}

TEST(Prefetch, ReadsTheProgramItsInterpreterAndItsLibrariesTransitively) {
    int root = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    // ls needs libselinux, which needs libpcre2: two levels of DT_NEEDED.
    PrefetchResult r = prefetch_program(root, "/usr/bin/ls");
    ::close(root);
    ASSERT_FALSE(r.files.empty());
    EXPECT_EQ(r.files[0], "/usr/bin/ls");
    auto has = [&](const std::string& suffix) {
        return std::any_of(r.files.begin(), r.files.end(),
                           [&](const std::string& f) { return f.size() >= suffix.size() && f.ends_with(suffix); });
    };
    EXPECT_TRUE(has("/ld-linux-x86-64.so.2"));
    EXPECT_TRUE(has("/libc.so.6"));
    EXPECT_TRUE(has("/libselinux.so.1"));
    EXPECT_TRUE(has("/libpcre2-8.so.0")) << "a library's own DT_NEEDED is followed";
    EXPECT_GT(r.bytes, uint64_t(fs::file_size("/usr/bin/ls")));
}

TEST(Prefetch, AdviseFollowsTheSameFilesAsAReadAndStaysWithinTheLimits) {
    // advise (a cold guest at its Job): the reads are only started, but the
    // same files are followed, in the same order, under the same bounds.
    int root = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    PrefetchResult read = prefetch_program(root, "/usr/bin/ls");
    PrefetchLimits adv;
    adv.advise = true;
    PrefetchResult asked = prefetch_program(root, "/usr/bin/ls", adv);
    EXPECT_EQ(asked.files, read.files);
    EXPECT_EQ(asked.bytes, read.bytes) << "each file's whole size is asked for";
    adv.max_files = 2;
    EXPECT_EQ(prefetch_program(root, "/usr/bin/ls", adv).files.size(), 2u);
    adv.max_files = 32;
    adv.max_bytes = uint64_t(fs::file_size("/usr/bin/ls"));  // the program fits, nothing after it
    PrefetchResult small = prefetch_program(root, "/usr/bin/ls", adv);
    ::close(root);
    EXPECT_EQ(small.files, std::vector<std::string>{"/usr/bin/ls"});
    EXPECT_FALSE(small.skipped.empty());
}

TEST(Prefetch, StaysInsideTheRootAndWithinItsLimits) {
    TempDir d;
    // An absolute symlink resolves inside the root (RESOLVE_IN_ROOT): the
    // host's /usr/bin/env is not what this reads.
    write_file(d.path / "real/prog", "#!/bin/sh\n");
    fs::create_directories(d.path / "usr/bin");
    fs::create_symlink("/real/prog", d.path / "usr/bin/env");
    int root = ::open(d.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    PrefetchResult r = prefetch_program(root, "/usr/bin/env");
    EXPECT_EQ(r.files, std::vector<std::string>{"/usr/bin/env"});
    EXPECT_EQ(r.bytes, 10u) << "the root's file, not the host's /usr/bin/env";

    // A missing program or a directory: skipped with the reason.
    r = prefetch_program(root, "/nope");
    EXPECT_TRUE(r.files.empty());
    ASSERT_EQ(r.skipped.size(), 1u);
    EXPECT_NE(r.skipped[0].find("/nope"), std::string::npos);
    r = prefetch_program(root, "/real");
    EXPECT_TRUE(r.files.empty());
    EXPECT_NE(r.skipped.at(0).find("not a regular file"), std::string::npos);
    // A relative path is not the job's program.
    EXPECT_TRUE(prefetch_program(root, "real/prog").files.empty());

    // Over the byte limit: skipped, nothing read.
    write_file(d.path / "big", std::string(4096, 'x'));
    PrefetchLimits small;
    small.max_bytes = 1000;
    r = prefetch_program(root, "/big", small);
    EXPECT_TRUE(r.files.empty());
    EXPECT_EQ(r.bytes, 0u);
    EXPECT_NE(r.skipped.at(0).find("prefetch limit"), std::string::npos);
    ::close(root);

    // The file-count limit holds for a real program with many libraries.
    int host = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    PrefetchLimits two;
    two.max_files = 2;
    EXPECT_EQ(prefetch_program(host, "/usr/bin/ls", two).files.size(), 2u);
    ::close(host);
}

TEST(Prefetch, MalformedElfGivesNothingToFollow) {
    TempDir d;
    const std::string good = read_file("/usr/bin/env");
    ASSERT_GT(good.size(), 4096u);
    // Not ELF, empty, a bare header, and every truncation of the headers.
    EXPECT_TRUE(deps_of_bytes(d, "").needed.empty());
    EXPECT_TRUE(deps_of_bytes(d, "#!/bin/sh\n").interp.empty());
    for (size_t n : {4ul, 16ul, 63ul, 64ul, 100ul, 500ul, 1000ul}) {
        ElfDeps e = deps_of_bytes(d, good.substr(0, n));
        EXPECT_TRUE(e.needed.empty()) << n;
    }
    // Header fields pointing outside the file or at absurd sizes.
    auto patched = [&](size_t off, const void* v, size_t n) {
        std::string b = good;
        memcpy(b.data() + off, v, n);
        return deps_of_bytes(d, b);
    };
    uint64_t huge = ~0ull;
    uint16_t many = 0xffff;
    EXPECT_TRUE(patched(offsetof(Elf64_Ehdr, e_phoff), &huge, 8).needed.empty());
    EXPECT_TRUE(patched(offsetof(Elf64_Ehdr, e_phnum), &many, 2).needed.empty());
    // Random corruption of the first 4 KiB: no crash, whatever it yields.
    std::mt19937 rng(1234);
    for (int i = 0; i < 300; ++i) {
        std::string b = good;
        for (int k = 0; k < 8; ++k) b[64 + rng() % (4096 - 64)] = char(rng());
        ElfDeps e = deps_of_bytes(d, b);
        for (const auto& n : e.needed) {
            EXPECT_EQ(n.find('/'), std::string::npos);
            EXPECT_LE(n.size(), 255u);
        }
    }
}
