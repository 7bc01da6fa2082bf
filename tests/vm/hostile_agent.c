/* A hostile guest for vm_tier_test: what a job that owns its guest kernel
 * could make the guest say to moatd. Built as the guest's /init in place of
 * moat-agent (moatd --vm-agent), one behaviour per build (HOSTILE_MODE):
 *   1 garbage  a valid Hello, then (in the same write) a frame header announcing 4 GiB
 *   2 mute     a valid Hello, then silence (it never runs the job)
 *   3 nohello  never says anything
 *   4 flood    a valid Hello, then Log frames as fast as it can
 *   5 badfirst garbage: a frame of an unknown type where the Hello belongs
 *   6 version  a Hello of the next protocol version (an agent moatd does not speak)
 * It reuses the boot-test init's module loading and port lookup. */
#define PORT_NAME "moat.ctl"
#define MOAT_NO_TEST_INIT_MAIN
#pragma GCC diagnostic ignored "-Wunused-function" /* the boot-test commands and, per mode, hello() */
#include "guest_test_init.c"

#include <stdint.h>

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

static void write_all(int fd, const unsigned char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0) die("write port");
        b += w;
        n -= (size_t)w;
    }
}

#ifndef MOAT_GUEST_PROTOCOL_VERSION
#error "MOAT_GUEST_PROTOCOL_VERSION (moat::guest::kProtocolVersion) comes from tests/vm/CMakeLists.txt"
#endif

/* Hello: u32 version (moat::guest::kProtocolVersion), str kernel_release "hostile",
 * u64 boot_time_ns, i32 landlock_abi. */
static size_t hello_frame(unsigned char f[64], uint32_t version) {
    const char *rel = "hostile";
    size_t len = 4 + 4 + strlen(rel) + 8 + 4;
    put_u32(f, (uint32_t)len);
    f[4] = 1;
    unsigned char *p = f + 5;
    put_u32(p, version);
    put_u32(p + 4, (uint32_t)strlen(rel));
    memcpy(p + 8, rel, strlen(rel));
    memset(p + 8 + strlen(rel), 0, 12);
    return 5 + len;
}

static void hello(int port) {
    unsigned char f[64];
    write_all(port, f, hello_frame(f, MOAT_GUEST_PROTOCOL_VERSION));
}

int main(void) {
    mount("devtmpfs", "/dev", "devtmpfs", 0, "");
    mount("proc", "/proc", "proc", 0, "");
    mount("sysfs", "/sys", "sysfs", 0, "");
    load_modules();
    int port = open_port();
#if HOSTILE_MODE == 1
    /* Hello and the bad header in one write: moatd reads both at once and
     * must still see the Hello before the break. */
    unsigned char f[64 + 5];
    size_t n = hello_frame(f, MOAT_GUEST_PROTOCOL_VERSION);
    const unsigned char bad[5] = {0xff, 0xff, 0xff, 0xff, 6};
    memcpy(f + n, bad, sizeof bad);
    write_all(port, f, n + sizeof bad);
    for (;;) pause();
#elif HOSTILE_MODE == 2
    hello(port);
    for (;;) pause();
#elif HOSTILE_MODE == 3
    (void)port;
    for (;;) pause();
#elif HOSTILE_MODE == 6
    {
        unsigned char f[64];
        write_all(port, f, hello_frame(f, MOAT_GUEST_PROTOCOL_VERSION + 1));
    }
    for (;;) pause();
#elif HOSTILE_MODE == 5
    const unsigned char bad[5] = {0, 0, 0, 0, 0xee};
    write_all(port, bad, sizeof bad);
    for (;;) pause();
#else
    hello(port);
    unsigned char f[5 + 4 + 64];
    put_u32(f, 4 + 64);
    f[4] = 10; /* Log */
    put_u32(f + 5, 64);
    memset(f + 9, 'x', 64);
    for (;;) write_all(port, f, sizeof f);
#endif
    return 0;
}
