/* Per-syscall cost probe for tests/bench/run.sh (issue 7, targets 2 and 3).
 *
 *   syscall_loop getpid N    N raw getpid() calls            -> "getpid ns_per_call=X"
 *   syscall_loop read N      N read(fd, buf, 1) on /dev/zero -> "read ns_per_call=X"
 *   syscall_loop rmdir N     N rmdir("/nonexistent/x"), each expected to fail
 *                            -> "rmdir calls=N eperm=K elapsed_ns=T per_s=R"
 *
 * Timing uses clock_gettime(CLOCK_MONOTONIC) through the vDSO, which is not a
 * syscall and therefore does not pass the seccomp filter. getpid goes through
 * syscall(2) so glibc cannot cache it. Plain C, libc only, so it runs under a
 * narrow allowlist (execve, brk, mmap, ..., the measured call, write, exit). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s getpid|read|rmdir N\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    if (n <= 0) return 2;
    const char* mode = argv[1];
    if (strcmp(mode, "getpid") == 0) {
        for (long i = 0; i < n / 10 + 1; i++) syscall(SYS_getpid); /* warm up */
        long long t0 = now_ns();
        for (long i = 0; i < n; i++) syscall(SYS_getpid);
        long long t1 = now_ns();
        printf("getpid ns_per_call=%.2f\n", (double)(t1 - t0) / (double)n);
    } else if (strcmp(mode, "read") == 0) {
        int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror("open /dev/zero");
            return 1;
        }
        char buf[1];
        for (long i = 0; i < n / 10 + 1; i++)
            if (read(fd, buf, 1) != 1) return 1;
        long long t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (read(fd, buf, 1) != 1) {
                perror("read");
                return 1;
            }
        long long t1 = now_ns();
        printf("read ns_per_call=%.2f\n", (double)(t1 - t0) / (double)n);
    } else if (strcmp(mode, "rmdir") == 0) {
        long eperm = 0;
        long long t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (rmdir("/nonexistent/x") != 0 && errno == EPERM) eperm++;
        long long t1 = now_ns();
        double s = (double)(t1 - t0) / 1e9;
        printf("rmdir calls=%ld eperm=%ld elapsed_ns=%lld per_s=%.0f\n", n, eperm, t1 - t0, (double)n / s);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    fflush(stdout);
    return 0;
}
