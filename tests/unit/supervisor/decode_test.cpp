#include <fcntl.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "moat/supervisor/decode.h"

using namespace moat::supervisor;

TEST(Decode, PrintableKeepsUtf8AndEscapesTheRest) {
    EXPECT_EQ(printable("/tmp/ok"), "/tmp/ok");
    EXPECT_EQ(printable("/tmp/\xc3\xa9t\xc3\xa9"), "/tmp/\xc3\xa9t\xc3\xa9");
    EXPECT_EQ(printable("/tmp/\xff"), "/tmp/\\xff");
    EXPECT_EQ(printable("a\nb"), "a\\x0ab");
    EXPECT_EQ(printable("a\\xff"), "a\\\\xff") << "a literal backslash must not look like an escape";
    EXPECT_EQ(printable("\xe2\x82"), "\\xe2\\x82") << "truncated sequence";
}

// Issue 11: stored strings (decoded paths, modules) reach terminals and the
// console; DEL, C1 controls and bidi overrides are escaped like C0.
TEST(Decode, PrintableEscapesDelC1AndBidi) {
    EXPECT_EQ(printable("a\x7f"), "a\\x7f");
    EXPECT_EQ(printable("\xc2\x9b" "2J"), "\\u009b2J");
    EXPECT_EQ(printable("\x9b" "2J"), "\\x9b2J");
    EXPECT_EQ(printable("/tmp/x\u202etxt.sh"), "/tmp/x\\u202etxt.sh");
    EXPECT_EQ(printable("\xc0\xae"), "\\xc0\\xae") << "overlong";
}

TEST(Decode, RemoteStringStopsAtAnUnmappedPage) {
    // A string that ends exactly at the end of a mapping followed by a hole.
    long page = sysconf(_SC_PAGESIZE);
    char* m = static_cast<char*>(mmap(nullptr, size_t(page) * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(m, MAP_FAILED);
    munmap(m + page, size_t(page));
    char* s = m + page - 6;
    memcpy(s, "/etc/", 5);
    s[5] = 0;
    auto r = read_remote_string(getpid(), reinterpret_cast<uint64_t>(s));
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, "/etc/");
    // Unterminated up to the hole: what was readable, not a crash or an error.
    memset(m + page - 4, 'x', 4);
    r = read_remote_string(getpid(), reinterpret_cast<uint64_t>(m + page - 4));
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, "xxxx");
    EXPECT_FALSE(read_remote_string(getpid(), 0));
    EXPECT_FALSE(read_remote_string(getpid(), reinterpret_cast<uint64_t>(m + page)));
    munmap(m, size_t(page));
}

TEST(Decode, OverlongStringsAreCutAndMarked) {
    std::string big(10000, 'a');
    auto r = read_remote_string(getpid(), reinterpret_cast<uint64_t>(big.c_str()), 4096);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 4096u + 3);
    EXPECT_EQ(r->substr(4096), "...");
}

TEST(Decode, Sockaddrs) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(8080);
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    EXPECT_EQ(format_sockaddr(reinterpret_cast<uint8_t*>(&in), sizeof in), "AF_INET 127.0.0.1:8080");
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(53);
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    EXPECT_EQ(format_sockaddr(reinterpret_cast<uint8_t*>(&in6), sizeof in6), "AF_INET6 [::1]:53");
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, "/run/x.sock");
    EXPECT_EQ(format_sockaddr(reinterpret_cast<uint8_t*>(&un), offsetof(sockaddr_un, sun_path) + 12), "AF_UNIX /run/x.sock");
    un.sun_path[0] = 0;
    memcpy(un.sun_path + 1, "abs", 3);
    EXPECT_EQ(format_sockaddr(reinterpret_cast<uint8_t*>(&un), offsetof(sockaddr_un, sun_path) + 4), "AF_UNIX @abs");
    uint8_t tiny[1] = {0};
    EXPECT_EQ(format_sockaddr(tiny, 1), "(short sockaddr)");
}

TEST(Decode, ArgumentsOfPathSyscallsInThisProcess) {
    const char* p = "relative/name";
    uint64_t args[6] = {uint64_t(-100), reinterpret_cast<uint64_t>(p), 0, 0, 0, 0};  // AT_FDCWD
    char cwd[4096];
    ASSERT_TRUE(getcwd(cwd, sizeof cwd));
    auto d = decode_args(getpid(), SYS_openat, args);
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, std::string(cwd) + (std::string(cwd) == "/" ? "" : "/") + "relative/name");
    const char* a = "/a";
    const char* b = "/b";
    uint64_t r[6] = {reinterpret_cast<uint64_t>(a), reinterpret_cast<uint64_t>(b), 0, 0, 0, 0};
    EXPECT_EQ(decode_args(getpid(), SYS_rename, r).value_or(""), "/a -> /b");
    EXPECT_FALSE(decode_args(getpid(), SYS_getpid, r));
}

TEST(Decode, NullOrEmptyPathNamesTheDirfdItActsOn) {
    // futimens(fd) is utimensat(fd, NULL, ...): the decoded path is the fd's.
    int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    uint64_t args[6] = {uint64_t(fd), 0, 0, 0, 0, 0};
    EXPECT_EQ(decode_args(getpid(), SYS_utimensat, args).value_or(""), "/tmp");
    const char* empty = "";
    uint64_t e[6] = {uint64_t(fd), reinterpret_cast<uint64_t>(empty), 0, 0x1000 /* AT_EMPTY_PATH */, 0, 0};
    EXPECT_EQ(decode_args(getpid(), SYS_newfstatat, e).value_or(""), "/tmp");
    close(fd);
    uint64_t n[6] = {0, 0, 0, 0, 0, 0};
    EXPECT_EQ(decode_args(getpid(), SYS_mkdir, n).value_or(""), "(null)");
}

TEST(Decode, MapsParsingAndModuleResolution) {
    auto maps = ModuleResolver::parse_maps(
        "7f0000000000-7f0000001000 r-xp 00002000 08:01 1234   /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n"
        "7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0      [vdso]\n"
        "garbage line\n");
    ASSERT_EQ(maps.size(), 2u);
    EXPECT_EQ(maps[0].name, "libc.so.6");
    EXPECT_EQ(maps[0].offset, 0x2000u);
    EXPECT_EQ(maps[1].name, "[vdso]");
    ModuleResolver r;
    auto self = r.resolve(getpid(), reinterpret_cast<uint64_t>(&getpid));
    ASSERT_TRUE(self);
    EXPECT_EQ(self->rfind("libc.so.6+0x", 0), 0u) << *self;
    int stack_var = 0;
    EXPECT_FALSE(r.resolve(getpid(), reinterpret_cast<uint64_t>(&stack_var)).has_value() &&
                 r.resolve(getpid(), reinterpret_cast<uint64_t>(&stack_var))->find(".so") != std::string::npos);
}

// Issue 11 item 5: /proc/PID/maps is the job's to make large, and an
// instruction pointer in anonymous executable memory is in no file mapping.
// The resolver must not re-read the maps for every such denial. Reads are
// counted through an injected reader; time is passed in (no clock, no sleeps).
TEST(Decode, ModuleCacheRereadsAtMostOncePerIntervalAndIsBounded) {
    int reads = 0;
    size_t asked_max = 0;
    ModuleResolver r([&](pid_t, size_t max) {
        ++reads;
        asked_max = max;
        return std::string("1000-2000 r-xp 00000000 08:01 1 /usr/lib/libfoo.so\n"
                           "3000-4000 rw-p 00001000 08:01 1 /usr/lib/libfoo.so\n"
                           "5000-6000 rwxp 00000000 00:00 0 \n");
    });
    const int64_t t0 = 1'000'000'000'000;
    EXPECT_EQ(r.resolve(7, 0x1100, t0).value_or(""), "libfoo.so+0x100");
    EXPECT_EQ(reads, 1);
    EXPECT_LE(asked_max, ModuleResolver::kMaxMapsBytes) << "the read is bounded";
    EXPECT_LE(ModuleResolver::kMaxMapsBytes, size_t(1) << 20);
    EXPECT_EQ(r.resolve(7, 0x1f00, t0 + 1).value_or(""), "libfoo.so+0xf00");
    EXPECT_EQ(reads, 1) << "a hit is answered from the cache";

    // Anonymous executable memory: not a module, and asking again and again
    // within the interval costs no read.
    for (int i = 0; i < 1000; ++i) EXPECT_FALSE(r.resolve(7, 0x5010, t0 + 2 + i).has_value());
    EXPECT_EQ(reads, 1) << "misses within kRereadNs must not re-read the maps";
    // A data mapping is not where a syscall instruction lives.
    EXPECT_FALSE(r.resolve(7, 0x3100, t0 + 5).has_value());
    EXPECT_EQ(reads, 1);
    // Once the copy is old enough, a miss reads again (a new mmap shows up).
    EXPECT_FALSE(r.resolve(7, 0x5010, t0 + ModuleResolver::kRereadNs).has_value());
    EXPECT_EQ(reads, 2);
    EXPECT_FALSE(r.resolve(7, 0x5010, t0 + ModuleResolver::kRereadNs + 1).has_value());
    EXPECT_EQ(reads, 2);
    // exec invalidates.
    r.forget(7);
    EXPECT_EQ(r.resolve(7, 0x1100, t0 + ModuleResolver::kRereadNs + 2).value_or(""), "libfoo.so+0x100");
    EXPECT_EQ(reads, 3);
    EXPECT_EQ(r.reads(), 3u);

    // Bounded number of processes: the least recently read goes.
    for (pid_t p = 100; p < 100 + pid_t(ModuleResolver::kMaxProcesses) * 2; ++p) r.resolve(p, 0x1100, t0 + p);
    EXPECT_LE(r.cached(), ModuleResolver::kMaxProcesses);
    EXPECT_TRUE(r.resolve(100 + pid_t(ModuleResolver::kMaxProcesses) * 2 - 1, 0x1100, t0 + 10'000).has_value());
}

// LocalRunning reuses a found module answer for the same tid and ip while the
// resolver's generation is unchanged: every change of what resolve() could
// answer (a read, a re-read, exec's forget, clear) must change it, and a hit
// answered from the cache must not.
TEST(Decode, ModuleGenerationChangesWithEveryReadAndForget) {
    ModuleResolver r([&](pid_t, size_t) { return std::string("1000-2000 r-xp 00000000 08:01 1 /usr/lib/libfoo.so\n"); });
    const int64_t t0 = 1'000'000'000'000;
    uint64_t g = r.generation();
    EXPECT_TRUE(r.resolve(7, 0x1100, t0).has_value());
    EXPECT_NE(r.generation(), g) << "a read";
    g = r.generation();
    EXPECT_TRUE(r.resolve(7, 0x1200, t0 + 1).has_value());
    EXPECT_FALSE(r.resolve(7, 0x9000, t0 + 2).has_value());
    EXPECT_EQ(r.generation(), g) << "answers from the cache change nothing";
    EXPECT_FALSE(r.resolve(7, 0x9000, t0 + ModuleResolver::kRereadNs + 2).has_value());
    EXPECT_NE(r.generation(), g) << "a re-read";
    g = r.generation();
    r.forget(8);
    EXPECT_EQ(r.generation(), g) << "forgetting a pid not cached";
    r.forget(7);
    EXPECT_NE(r.generation(), g) << "exec";
    g = r.generation();
    EXPECT_TRUE(r.resolve(9, 0x1100, t0).has_value());
    EXPECT_NE(r.generation(), g);
    g = r.generation();
    r.clear();
    EXPECT_NE(r.generation(), g);
}

TEST(Decode, ModuleCacheHoldsABoundedNumberOfMappings) {
    // A process with many executable file mappings: what is kept is bounded,
    // in total over every cached process too.
    std::string big;
    for (size_t i = 0; i < ModuleResolver::kMaxMappings * 2; ++i) {
        char line[128];
        snprintf(line, sizeof line, "%zx-%zx r-xp 00000000 08:01 1 /usr/lib/lib%zu.so\n", 0x100000 + i * 0x2000,
                 0x101000 + i * 0x2000, i);
        big += line;
    }
    ModuleResolver r([&](pid_t, size_t max) { return big.substr(0, max); });
    EXPECT_EQ(r.resolve(1, 0x100010, 0).value_or(""), "lib0.so+0x10");
    EXPECT_LE(r.cached_mappings(), ModuleResolver::kMaxMappings);
    for (pid_t p = 2; p < 10; ++p) EXPECT_TRUE(r.resolve(p, 0x100010, p).has_value());
    EXPECT_LE(r.cached_mappings(), ModuleResolver::kMaxMappings);
    EXPECT_GE(r.cached(), 1u);
    r.forget(9);
    EXPECT_EQ(r.cached_mappings(), 0u);
}

TEST(Decode, ModuleCacheReadsAtMostTheBoundFromARealMapsFile) {
    // The real reader on this process: the answer is right and the read stops at the bound.
    ModuleResolver r;
    auto self = r.resolve(getpid(), reinterpret_cast<uint64_t>(&getpid), 0);
    ASSERT_TRUE(self);
    EXPECT_EQ(self->rfind("libc.so.6+0x", 0), 0u) << *self;
    EXPECT_EQ(r.reads(), 1u);
    int local = 0;
    EXPECT_FALSE(r.resolve(getpid(), reinterpret_cast<uint64_t>(&local), 1).has_value()) << "the stack is no module";
    EXPECT_EQ(r.reads(), 1u);
}
