/* moat-escape-attacks: the program the escape suite runs inside the sandbox.
 *
 * One static binary, one mode per attack (argv[1]). Each mode attempts one known
 * escape or abuse and prints a single line:
 *
 *     ESCAPED <what>                  the attack worked          (exit 1)
 *     BLOCKED <how> [detail...]       it did not                 (exit 0)
 *
 * <how> is an errno name (EPERM, EACCES, ENOENT, ...) or a signal name. The
 * optional detail is `key=value` tokens: `NAME=ERRNO` for each call tried
 * (escape_test checks that the calls the policy denies were recorded) and
 * facts the test checks from the host (bytes written, fds seen, ...).
 * Modes whose attack is ended by a limit (memory-bomb, cpu-spin) may print
 * nothing at all: the test checks the job's termination cause instead.
 *
 * Written in C against libc only, linked statically, so the program needs
 * nothing from the sandbox's file system and the syscalls it makes are the
 * attack's plus the usual start-up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static const char* errname(int e) {
    const char* n = strerrorname_np(e);
    return n ? n : "E?";
}

static int escaped(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static int escaped(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ESCAPED ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    return 1;
}

static int blocked(const char* how, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int blocked(const char* how, const char* fmt, ...) {
    printf("BLOCKED %s", how);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputc(' ', stdout);
        vprintf(fmt, ap);
        va_end(ap);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

static const char* arg(int argc, char** argv, int i) {
    if (i >= argc) {
        fprintf(stderr, "moat-escape-attacks %s: missing argument %d\n", argv[1], i - 1);
        exit(2);
    }
    return argv[i];
}

/* ---- files ----------------------------------------------------------------- */

/* Open PATH for reading and read a byte: success is an escape. */
static int try_read(const char* what, const char* path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return blocked(errname(e), "openat=%s", errname(e));
    }
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0) {
        int e = errno;
        return blocked(errname(e), "openat=ok read=%s", errname(e));
    }
    return escaped("%s: read %s (%zd bytes)", what, path, n);
}

static int m_read_shadow(int argc, char** argv) {
    (void)argc, (void)argv;
    return try_read("read /etc/shadow", "/etc/shadow");
}

static int m_read_host_file(int argc, char** argv) {
    return try_read("read a host file outside the policy", arg(argc, argv, 2));
}

static int m_write_etc(int argc, char** argv) {
    (void)argc, (void)argv;
    char path[64];
    snprintf(path, sizeof path, "/etc/moat-escape-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        unlink(path);
        return escaped("created %s", path);
    }
    int e = errno;
    /* An existing file, opened for writing, is the other half. */
    int fd2 = open("/etc/hostname", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd2 >= 0) return escaped("opened /etc/hostname for writing");
    int e2 = errno;
    return blocked(errname(e), "create=%s append=%s", errname(e), errname(e2));
}

static int m_sysrq_trigger(int argc, char** argv) {
    (void)argc, (void)argv;
    /* Opening is enough: nothing is ever written. */
    int fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) return escaped("opened /proc/sysrq-trigger for writing");
    return blocked(errname(errno), "openat=%s", errname(errno));
}

static int m_proc1_environ(int argc, char** argv) {
    (void)argc, (void)argv;
    return try_read("read /proc/1/environ", "/proc/1/environ");
}

static int m_chroot_escape(int argc, char** argv) {
    (void)argc, (void)argv;
    /* The classic: chroot into a subdirectory while keeping the cwd outside,
     * then walk up past the new root. */
    int r = chroot("/tmp");
    int ce = r < 0 ? errno : 0;
    for (int i = 0; i < 16; ++i) (void)chdir("..");
    (void)chroot(".");
    int fd = open("etc/shadow", O_RDONLY | O_CLOEXEC);
    if (fd < 0) fd = open("/etc/shadow", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char c;
        if (read(fd, &c, 1) >= 0) return escaped("chroot escape: read /etc/shadow (chroot=%s)", r < 0 ? errname(ce) : "ok");
    }
    int e = errno;
    if (r == 0) return escaped("chroot(\"/tmp\") succeeded (shadow=%s)", errname(e));
    return blocked(errname(ce), "chroot=%s shadow=%s", errname(ce), errname(e));
}

/* ---- processes ------------------------------------------------------------- */

static int try_ptrace(pid_t pid, const char* who) {
    long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
    if (r == 0) {
        ptrace(PTRACE_DETACH, pid, 0, 0);
        return escaped("PTRACE_ATTACH to %s (pid %d)", who, (int)pid);
    }
    return blocked(errname(errno), "ptrace=%s pid=%d", errname(errno), (int)pid);
}

static int m_ptrace_parent(int argc, char** argv) {
    (void)argc, (void)argv;
    return try_ptrace(getppid(), "the parent");
}

static int m_ptrace_init(int argc, char** argv) {
    (void)argc, (void)argv;
    return try_ptrace(1, "pid 1");
}

static int m_process_vm_writev(int argc, char** argv) {
    (void)argc, (void)argv;
    static char target[16] = "moat";
    char data[16] = "pwned";
    struct iovec local = {data, sizeof data};
    struct iovec remote = {target, sizeof target};
    pid_t pp = getppid();
    ssize_t n = process_vm_writev(pp, &local, 1, &remote, 1, 0);
    if (n >= 0) return escaped("process_vm_writev into the parent (pid %d) wrote %zd bytes", (int)pp, n);
    int e = errno;
    /* EFAULT means the access check passed and only our guess of an address
     * was wrong: that is an escape too. */
    if (e == EFAULT) return escaped("process_vm_writev into the parent (pid %d) passed the access check (EFAULT)", (int)pp);
    return blocked(errname(e), "process_vm_writev=%s pid=%d", errname(e), (int)pp);
}

static int m_kill_host(int argc, char** argv) {
    pid_t pid = (pid_t)strtol(arg(argc, argv, 2), NULL, 10);
    if (kill(pid, SIGTERM) == 0) return escaped("kill(%d, SIGTERM) succeeded", (int)pid);
    return blocked(errname(errno), "kill=%s pid=%d", errname(errno), (int)pid);
}

static int m_fork_bomb(int argc, char** argv) {
    (void)argc, (void)argv;
    enum { kMax = 4096 };
    static pid_t kids[kMax];
    int n = 0, e = 0;
    while (n < kMax) {
        pid_t p = fork();
        if (p == 0) {
            for (;;) pause();
        }
        if (p < 0) {
            e = errno;
            break;
        }
        kids[n++] = p;
    }
    if (n == kMax) {
        for (int i = 0; i < n; ++i) kill(kids[i], SIGKILL);
        return escaped("forked %d processes without hitting a limit", n);
    }
    /* Hold the limit for a moment so the test can check that the host still
     * forks, then clean up. */
    blocked(errname(e), "forked=%d", n);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    for (int i = 0; i < n; ++i) kill(kids[i], SIGKILL);
    while (wait(NULL) > 0) {
    }
    return 0;
}

static int m_memory_bomb(int argc, char** argv) {
    (void)argc, (void)argv;
    /* Allocate and touch 1 MiB at a time, up to 4 GiB; expected: the memory
     * limit kills the job long before. */
    size_t total = 0;
    for (int i = 0; i < 4096; ++i) {
        char* p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return blocked(errname(errno), "allocated_mib=%zu", total >> 20);
        memset(p, 0xa5, 1 << 20);
        total += 1 << 20;
    }
    return escaped("allocated and touched %zu MiB", total >> 20);
}

static int m_cpu_spin(int argc, char** argv) {
    (void)argc, (void)argv;
    /* Spin for up to 60 s of wall time; expected: the CPU-time limit ends it. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile uint64_t x = 0;
    for (;;) {
        for (int i = 0; i < 1000000; ++i) x += (uint64_t)i;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= 60) break;
    }
    return escaped("spun for 60 s of wall time");
}

/* ---- disks ------------------------------------------------------------------- */

/* Writes FILE 1 MiB at a time until a write fails; SIGXFSZ is ignored so the
 * failure shows as EFBIG. Returns the errno, 0 when the cap was reached. */
static int fill_file(const char* file, size_t cap, size_t* written) {
    static char buf[1 << 20];
    memset(buf, 'x', sizeof buf);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    while (*written < cap) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n < 0) {
            int e = errno;
            close(fd);
            return e;
        }
        *written += (size_t)n;
    }
    close(fd);
    return 0;
}

static int m_disk_fill(int argc, char** argv) {
    /* One ever-growing file in a writable directory (read_write): the file-size
     * limit must stop it. Capped at 1 GiB. */
    signal(SIGXFSZ, SIG_IGN);
    char file[4096];
    snprintf(file, sizeof file, "%s/fill", arg(argc, argv, 2));
    size_t w = 0;
    int e = fill_file(file, (size_t)1 << 30, &w);
    if (e == 0) return escaped("wrote %zu MiB to %s", w >> 20, file);
    return blocked(errname(e), "bytes=%zu", w);
}

static int m_tmp_fill(int argc, char** argv) {
    /* Many 1 MiB files in /tmp (the policy's tmpfs): the tmpfs size must stop
     * it, whatever the per-file limit. Capped at 256 MiB. */
    (void)argc, (void)argv;
    signal(SIGXFSZ, SIG_IGN);
    size_t total = 0;
    for (int i = 0; i < 256; ++i) {
        char file[64];
        snprintf(file, sizeof file, "/tmp/moat-escape-fill-%d", i);
        size_t w = 0;
        int e = fill_file(file, (size_t)1 << 20, &w);
        total += w;
        if (e) return blocked(errname(e), "bytes=%zu files=%d", total, i);
    }
    return escaped("wrote %zu MiB to /tmp", total >> 20);
}

/* ---- namespaces and mounts ----------------------------------------------------- */

static int m_mount_tmpfs(int argc, char** argv) {
    (void)argc, (void)argv;
    if (mount("none", "/tmp", "tmpfs", 0, "size=1m") == 0) {
        umount2("/tmp", MNT_DETACH);
        return escaped("mounted a tmpfs on /tmp");
    }
    return blocked(errname(errno), "mount=%s", errname(errno));
}

static int m_unshare_user(int argc, char** argv) {
    (void)argc, (void)argv;
    if (unshare(CLONE_NEWUSER) == 0) return escaped("unshare(CLONE_NEWUSER) succeeded");
    return blocked(errname(errno), "unshare=%s", errname(errno));
}

static int m_clone_newns(int argc, char** argv) {
    (void)argc, (void)argv;
    long r = syscall(SYS_clone, (long)(CLONE_NEWNS | SIGCHLD), 0L, 0L, 0L, 0L);
    if (r == 0) _exit(0);
    int e = errno;
    if (r > 0) {
        waitpid((pid_t)r, NULL, 0);
        return escaped("clone(CLONE_NEWNS) created pid %ld", r);
    }
    return blocked(errname(e), "clone=%s", errname(e));
}

static int m_clone3_ns(int argc, char** argv) {
    (void)argc, (void)argv;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET;
    ca.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0) _exit(0);
    int e = errno;
    if (r > 0) {
        waitpid((pid_t)r, NULL, 0);
        return escaped("clone3 with namespace flags created pid %ld", r);
    }
    return blocked(errname(e), "clone3=%s", errname(e));
}

/* ---- kernel interfaces --------------------------------------------------------- */

static int m_io_uring(int argc, char** argv) {
    (void)argc, (void)argv;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(SYS_io_uring_setup, 4, &p);
    if (fd >= 0) return escaped("io_uring_setup returned fd %ld", fd);
    return blocked(errname(errno), "io_uring_setup=%s", errname(errno));
}

static int m_bpf(int argc, char** argv) {
    (void)argc, (void)argv;
    /* r0 = 0; exit */
    struct bpf_insn insns[2];
    memset(insns, 0, sizeof insns);
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
    insns[1].code = BPF_JMP | BPF_EXIT;
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = 2;
    a.license = (uint64_t)(uintptr_t) "GPL";
    long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
    if (fd >= 0) return escaped("bpf(BPF_PROG_LOAD) returned fd %ld", fd);
    return blocked(errname(errno), "bpf=%s", errname(errno));
}

static int m_userfaultfd(int argc, char** argv) {
    (void)argc, (void)argv;
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) return escaped("userfaultfd returned fd %ld", fd);
    return blocked(errname(errno), "userfaultfd=%s", errname(errno));
}

static int m_keyctl(int argc, char** argv) {
    (void)argc, (void)argv;
    long k = syscall(SYS_add_key, "user", "moat-escape", "secret", 6L, (long)KEY_SPEC_PROCESS_KEYRING);
    int e1 = errno;
    if (k >= 0) return escaped("add_key created key %ld", k);
    long r = syscall(SYS_keyctl, (long)KEYCTL_JOIN_SESSION_KEYRING, 0L, 0L, 0L, 0L);
    int e2 = errno;
    if (r >= 0) return escaped("keyctl(KEYCTL_JOIN_SESSION_KEYRING) returned %ld", r);
    return blocked(errname(e1), "add_key=%s keyctl=%s", errname(e1), errname(e2));
}

static int m_perf_event(int argc, char** argv) {
    (void)argc, (void)argv;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.disabled = 1;
    long fd = syscall(SYS_perf_event_open, &a, 0L, -1L, -1L, 0L);
    if (fd >= 0) return escaped("perf_event_open returned fd %ld", fd);
    return blocked(errname(errno), "perf_event_open=%s", errname(errno));
}

static int m_open_by_handle(int argc, char** argv) {
    (void)argc, (void)argv;
    /* "Shocker": a forged handle for inode 2 (the root of an ext4 file
     * system), resolved against the mount of the cwd. */
    struct {
        struct file_handle fh;
        unsigned char bytes[8];
    } h;
    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = 8;
    h.fh.handle_type = 1; /* FILEID_INO32_GEN */
    uint32_t ino = 2;
    memcpy(h.fh.f_handle, &ino, sizeof ino);
    int fd = open_by_handle_at(AT_FDCWD, &h.fh, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) return escaped("open_by_handle_at opened a forged handle (fd %d)", fd);
    return blocked(errname(errno), "open_by_handle_at=%s", errname(errno));
}

static int m_personality(int argc, char** argv) {
    (void)argc, (void)argv;
    long r = syscall(SYS_personality, (long)(READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE));
    int e = errno;
    if (r >= 0) {
        long now = syscall(SYS_personality, 0xffffffffL);
        if (now >= 0 && (now & (READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE)))
            return escaped("personality set to 0x%lx", now);
        return blocked("ignored", "personality=0x%lx", now);
    }
    return blocked(errname(e), "personality=%s", errname(e));
}

/* ---- other ABIs ---------------------------------------------------------------- */

static int m_x32(int argc, char** argv) {
    (void)argc, (void)argv;
    long r = syscall(0x40000000L | SYS_getpid);
    if (r >= 0) return escaped("x32 getpid returned %ld", r);
    return blocked(errname(errno), "x32_getpid=%s", errname(errno));
}

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_sig;
static void on_fault(int sig) {
    g_sig = sig;
    siglongjmp(g_jmp, 1);
}

static int m_i386(int argc, char** argv) {
    (void)argc, (void)argv;
    /* i386 getuid (24) through the 32-bit entry point. */
    signal(SIGSEGV, on_fault);
    signal(SIGSYS, on_fault);
    signal(SIGILL, on_fault);
    if (sigsetjmp(g_jmp, 1)) return blocked(sigabbrev_np(g_sig) ? sigabbrev_np(g_sig) : "signal", "i386_getuid=SIG%s", sigabbrev_np(g_sig));
    long ret = 24;
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "rcx", "r11", "r8", "r9", "r10");
    if (ret >= 0 || ret <= -4096) return escaped("i386 getuid returned %ld", ret);
    return blocked(errname((int)-ret), "i386_getuid=%s", errname((int)-ret));
}

/* ---- terminal, fds, environment, privileges, network ---------------------------- */

static int m_tiocsti(int argc, char** argv) {
    (void)argc, (void)argv;
    /* Push a command into the input queue of the terminal on fd 0 (the test
     * gives the job a pty there), then of /dev/tty. */
    const char* cmd = "id\n";
    int e0 = 0, et = 0;
    int ok0 = isatty(0);
    for (const char* c = cmd; *c; ++c)
        if (ioctl(0, TIOCSTI, c) < 0) {
            e0 = errno;
            break;
        }
    if (!e0) return escaped("TIOCSTI pushed input into fd 0's terminal");
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        for (const char* c = cmd; *c; ++c)
            if (ioctl(fd, TIOCSTI, c) < 0) {
                et = errno;
                break;
            }
        if (!et) return escaped("TIOCSTI pushed input into /dev/tty");
    } else {
        et = errno;
    }
    return blocked(errname(e0), "fd0_tty=%s fd0=%s devtty=%s", ok0 ? "yes" : "no", errname(e0), errname(et));
}

static int m_inherited_fds(int argc, char** argv) {
    (void)argc, (void)argv;
    char found[1024] = "";
    int n = 0;
    for (int fd = 3; fd < 1024; ++fd)
        if (fcntl(fd, F_GETFD) >= 0) {
            char link[64], target[256] = "?";
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t l = readlink(link, target, sizeof target - 1);
            if (l > 0) target[l] = 0;
            size_t len = strlen(found);
            snprintf(found + len, sizeof found - len, " %d(%s)", fd, target);
            ++n;
        }
    if (n) return escaped("%d inherited fd(s):%s", n, found);
    return blocked("none-open", "scanned=3..1023");
}

static int m_env_secret(int argc, char** argv) {
    (void)argc, (void)argv;
    for (char** e = environ; *e; ++e)
        if (strncmp(*e, "MOAT_SECRET", 11) == 0 || strstr(*e, "moat-escape-secret")) return escaped("environment has %s", *e);
    /* And through /proc, in case the environment block differs. */
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        static char buf[65536];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            for (ssize_t i = 0; i < n; ++i)
                if (!buf[i]) buf[i] = '\n';
            buf[n] = 0;
            if (strstr(buf, "MOAT_SECRET") || strstr(buf, "moat-escape-secret")) return escaped("/proc/self/environ has the secret");
        }
    }
    int count = 0;
    for (char** e = environ; *e; ++e) ++count;
    return blocked("filtered", "vars=%d", count);
}

static int m_capabilities(int argc, char** argv) {
    (void)argc, (void)argv;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    int cg = (int)syscall(SYS_capget, &hdr, d);
    int cge = errno;
    if (cg == 0) {
        uint64_t eff = (uint64_t)d[1].effective << 32 | d[0].effective;
        uint64_t prm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
        if (eff || prm) return escaped("capabilities: CapEff=%016llx CapPrm=%016llx", (unsigned long long)eff, (unsigned long long)prm);
    }
    if (setuid(0) == 0 && getuid() == 0) return escaped("setuid(0) succeeded");
    int se = errno;
    if (cg != 0) return blocked(errname(se), "capget=%s setuid=%s", errname(cge), errname(se));
    return blocked(errname(se), "capget=ok capeff=0 capprm=0 setuid=%s", errname(se));
}

static int m_net_connect(int argc, char** argv) {
    int port = atoi(arg(argc, argv, 2));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return blocked(errname(errno), "socket=%s", errname(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) return escaped("connected to 127.0.0.1:%d", port);
    return blocked(errname(errno), "socket=ok connect=%s", errname(errno));
}

/* ---- dispatch ---------------------------------------------------------------------- */

struct mode {
    const char* name;
    int (*fn)(int, char**);
};

static const struct mode kModes[] = {
    {"read-shadow", m_read_shadow},
    {"read-host-file", m_read_host_file},
    {"write-etc", m_write_etc},
    {"ptrace-parent", m_ptrace_parent},
    {"ptrace-init", m_ptrace_init},
    {"mount-tmpfs", m_mount_tmpfs},
    {"unshare-user", m_unshare_user},
    {"clone-newns", m_clone_newns},
    {"clone3-ns", m_clone3_ns},
    {"io-uring", m_io_uring},
    {"bpf", m_bpf},
    {"userfaultfd", m_userfaultfd},
    {"keyctl", m_keyctl},
    {"perf-event-open", m_perf_event},
    {"open-by-handle-at", m_open_by_handle},
    {"x32-abi", m_x32},
    {"i386-abi", m_i386},
    {"tiocsti", m_tiocsti},
    {"inherited-fds", m_inherited_fds},
    {"env-secret", m_env_secret},
    {"capabilities", m_capabilities},
    {"net-connect", m_net_connect},
    {"kill-host", m_kill_host},
    {"fork-bomb", m_fork_bomb},
    {"memory-bomb", m_memory_bomb},
    {"disk-fill", m_disk_fill},
    {"tmp-fill", m_tmp_fill},
    {"cpu-spin", m_cpu_spin},
    {"personality", m_personality},
    {"process-vm-writev", m_process_vm_writev},
    {"sysrq-trigger", m_sysrq_trigger},
    {"chroot-escape", m_chroot_escape},
    {"proc1-environ", m_proc1_environ},
};

int main(int argc, char** argv) {
    if (argc >= 2)
        for (size_t i = 0; i < sizeof kModes / sizeof kModes[0]; ++i)
            if (strcmp(argv[1], kModes[i].name) == 0) return kModes[i].fn(argc, argv);
    fprintf(stderr, "usage: moat-escape-attacks MODE [ARG]\nmodes:");
    for (size_t i = 0; i < sizeof kModes / sizeof kModes[0]; ++i) fprintf(stderr, " %s", kModes[i].name);
    fputc('\n', stderr);
    return 2;
}
