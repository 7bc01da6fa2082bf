// moat-testprog: the job that scenario tests run inside the sandbox.
//
// One program, many behaviours, chosen by argv[1]. Each mode prints one or a
// few `key=value` lines on stdout (what the test parses) and exits with a
// meaningful status. Written against libc only (no iostreams) so the syscalls
// it makes are the ones the mode is about, plus the usual start-up.
//
// Exit status: 0 = the mode did what it set out to do, 1 = the operation it
// tried failed (the printed errno says how), 2 = usage error.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <net/if.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

extern char** environ;

namespace {

const char* errname(int e) {
    const char* n = strerrorname_np(e);
    return n ? n : "E?";
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

long arg_num(int argc, char** argv, int i) {
    if (i >= argc) {
        fprintf(stderr, "moat-testprog %s: missing argument %d\n", argv[1], i - 1);
        exit(2);
    }
    return strtol(argv[i], nullptr, 0);
}

const char* arg_str(int argc, char** argv, int i) {
    if (i >= argc) {
        fprintf(stderr, "moat-testprog %s: missing argument %d\n", argv[1], i - 1);
        exit(2);
    }
    return argv[i];
}

int report(const char* what, long ret, int err) {
    if (ret < 0) {
        printf("%s=fail errno=%s\n", what, errname(err));
        return 1;
    }
    printf("%s=ok ret=%ld\n", what, ret);
    return 0;
}

int mode_mkdir(int argc, char** argv) {
    int r = mkdir(arg_str(argc, argv, 2), 0755);
    return report("mkdir", r, errno);
}

int mode_spin(int argc, char** argv) {
    double until = now_s() + double(arg_num(argc, argv, 2));
    volatile uint64_t x = 0;
    while (now_s() < until)
        for (int i = 0; i < 100000; ++i) x = x + 1;
    printf("spin=done\n");
    return 0;
}

int mode_alloc(int argc, char** argv) {
    long mib = arg_num(argc, argv, 2);
    for (long i = 0; i < mib; ++i) {
        // Touch every page so the memory is really charged to the cgroup.
        char* p = static_cast<char*>(malloc(1 << 20));
        if (!p) return report("alloc", -1, ENOMEM);
        memset(p, int(i) | 1, 1 << 20);
    }
    printf("alloc=done mib=%ld\n", mib);
    return 0;
}

int mode_writefile(int argc, char** argv) {
    const char* path = arg_str(argc, argv, 2);
    long bytes = arg_num(argc, argv, 3);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return report("open", -1, errno);
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    long done = 0;
    while (done < bytes) {
        size_t n = size_t(bytes - done) < sizeof buf ? size_t(bytes - done) : sizeof buf;
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            printf("written=%ld\n", done);
            return report("write", -1, errno);
        }
        done += w;
    }
    close(fd);
    printf("written=%ld\n", done);
    return 0;
}

int mode_sleep(int argc, char** argv) {
    double s = strtod(arg_str(argc, argv, 2), nullptr);
    printf("sleeping pid=%d\n", getpid());
    fflush(stdout);
    timespec ts{time_t(s), long((s - double(time_t(s))) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    printf("slept=%g\n", s);
    return 0;
}

int mode_forkbomb(int, char**) {
    // Fork until the pids limit stops us; children wait a moment so they are
    // all alive at once, then the parent reaps them.
    int forked = 0, err = 0;
    for (int i = 0; i < 100000; ++i) {
        pid_t p = fork();
        if (p == 0) {
            sleep(2);
            _exit(0);
        }
        if (p < 0) {
            err = errno;
            break;
        }
        ++forked;
    }
    printf("forked=%d errno=%s\n", forked, err ? errname(err) : "none");
    fflush(stdout);
    while (wait(nullptr) > 0) {
    }
    return err ? 0 : 1;
}

int mode_deny_loop(int argc, char** argv) {
    // rmdir is outside the scenario policies' allow list: every call goes to
    // the supervisor, which answers with the policy's default action.
    long n = arg_num(argc, argv, 2);
    long eperm = 0, other = 0;
    int other_errno = 0;
    for (long i = 0; i < n; ++i) {
        if (rmdir("/nonexistent/x") < 0 && errno == EPERM) ++eperm;
        else {
            ++other;
            other_errno = errno;
        }
    }
    printf("calls=%ld eperm=%ld other=%ld other_errno=%s\n", n, eperm, other, other ? errname(other_errno) : "none");
    return 0;
}

int mode_fds(int, char**) {
    // /proc may be outside the Landlock rules: probe descriptors directly.
    printf("fds=");
    bool first = true;
    for (int fd = 0; fd < 1024; ++fd) {
        if (fcntl(fd, F_GETFD) >= 0) {
            printf(first ? "%d" : ",%d", fd);
            first = false;
        }
    }
    printf("\n");
    return 0;
}

int mode_ids(int, char**) {
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    gid_t groups[256];
    int ng = getgroups(256, groups);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    long cr = syscall(SYS_capget, &hdr, data);
    uint64_t eff = cr == 0 ? (uint64_t(data[1].effective) << 32 | data[0].effective) : ~0ULL;
    uint64_t prm = cr == 0 ? (uint64_t(data[1].permitted) << 32 | data[0].permitted) : ~0ULL;
    uint64_t bnd = 0;
    bool bnd_ok = true;
    for (int cap = 0; cap < 64; ++cap) {
        int v = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (v < 0) {
            if (errno != EINVAL) bnd_ok = false;  // EINVAL: past the last capability
            continue;
        }
        if (v) bnd |= 1ULL << cap;
    }
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    printf("uid=%u euid=%u suid=%u gid=%u egid=%u sgid=%u\n", r, e, s, gr, ge, gs);
    printf("groups=%d\n", ng);
    printf("capeff=%#llx capprm=%#llx capget=%s\n", (unsigned long long)eff, (unsigned long long)prm,
           cr == 0 ? "ok" : errname(errno));
    printf("capbnd=%#llx capbnd_read=%s\n", (unsigned long long)bnd, bnd_ok ? "ok" : "fail");
    printf("nnp=%d\n", nnp);
    return 0;
}

int mode_env(int, char**) {
    for (char** e = environ; *e; ++e) printf("env:%s\n", *e);
    return 0;
}

int mode_i386(int, char**) {
    // The 32-bit entry point from a 64-bit process: eax = 20 is getpid in the
    // i386 table. The kernel reports AUDIT_ARCH_I386 to seccomp for it.
    long ret = 20;
    asm volatile("int $0x80" : "+a"(ret) : : "memory", "rcx", "r11", "r8", "r9", "r10");
    if (ret < 0 && ret > -4096) return report("i386", -1, int(-ret));
    return report("i386", ret, 0);
}

int mode_x32(int, char**) {
    // x32 getpid: the x86_64 arch with __X32_SYSCALL_BIT set in the number.
    long ret = syscall(0x40000000L | 39);
    return report("x32", ret, errno);
}

int mode_clone_newuser(int, char**) {
    long ret = syscall(SYS_clone, long(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);
    if (ret == 0) _exit(0);
    int err = errno;
    if (ret > 0) waitpid(pid_t(ret), nullptr, 0);
    return report("clone_newuser", ret, err);
}

int mode_clone3(int argc, char** argv) {
    clone_args ca{};
    ca.exit_signal = SIGCHLD;
    if (argc > 2 && strcmp(argv[2], "newuser") == 0) ca.flags = CLONE_NEWUSER;  // asks for a namespace
    long ret = syscall(SYS_clone3, &ca, sizeof ca);
    if (ret == 0) _exit(0);
    int err = errno;
    if (ret > 0) waitpid(pid_t(ret), nullptr, 0);
    return report("clone3", ret, err);
}

int mode_read_file(int argc, char** argv) {
    int fd = open(arg_str(argc, argv, 2), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return report("read", -1, errno);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    int err = errno;
    close(fd);
    return report("read", n, err);
}

int mode_connect_tcp(int argc, char** argv) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return report("socket", -1, errno);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(arg_num(argc, argv, 2)));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    return report("connect", r, errno);
}

int mode_socket(int argc, char** argv) {
    const char* fam = arg_str(argc, argv, 2);
    int domain = strcmp(fam, "unix") == 0 ? AF_UNIX : strcmp(fam, "inet") == 0 ? AF_INET : -1;
    if (domain < 0) return 2;
    int fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = errno;
    if (fd >= 0) close(fd);
    return report("socket", fd, err);
}

// A program with a fallback: it tries a socket and goes on without one.
int mode_socket_or_not(int argc, char** argv) {
    mode_socket(argc, argv);
    return 0;
}

int mode_kill(int argc, char** argv) {
    int r = kill(pid_t(arg_num(argc, argv, 2)), SIGKILL);
    return report("kill", r, errno);
}

int mode_signal(int argc, char** argv) {
    int sig = int(arg_num(argc, argv, 2));
    signal(sig, SIG_DFL);
    fflush(stdout);
    raise(sig);
    printf("survived signal %d\n", sig);
    return 1;
}

int mode_exit(int argc, char** argv) { return int(arg_num(argc, argv, 2)); }

int mode_orphan(int argc, char** argv) {
    // Leaves a child behind that sleeps for ever with the job's stdout and
    // stderr open, then exits with CODE: the job ends with its first
    // process, and what it left must go (and must not hold the answer up).
    pid_t c = fork();
    if (c < 0) return 99;
    if (c == 0) {
        for (;;) pause();
    }
    printf("orphan=%d\n", c);
    fflush(stdout);
    return int(arg_num(argc, argv, 2));
}


// ---- container tier ----------------------------------------------------------

int mode_whoami(int, char**) {
    // What a process sees of its pid namespace and UTS namespace.
    char init[256] = "";
    int fd = open("/proc/1/cmdline", O_RDONLY | O_CLOEXEC);
    int init_err = errno;
    if (fd >= 0) {
        ssize_t n = read(fd, init, sizeof init - 1);
        init_err = errno;
        close(fd);
        if (n > 0) init[n] = 0;
        else snprintf(init, sizeof init, "(read:%s)", n == 0 ? "empty" : errname(init_err));
    } else {
        snprintf(init, sizeof init, "(open:%s)", errname(init_err));
    }
    // argv[0] only (cmdline is NUL-separated); its basename.
    const char* base = strrchr(init, '/');
    base = base ? base + 1 : init;
    utsname u{};
    uname(&u);
    printf("pid=%d ppid=%d\n", getpid(), getppid());
    printf("init=%s\n", base);
    printf("hostname=%s\n", u.nodename);
    return 0;
}

int mode_netdevs(int, char**) {
    // Interface names from /proc/net/dev (of our network namespace) and
    // whether each is up (SIOCGIFFLAGS).
    FILE* f = fopen("/proc/net/dev", "re");
    if (!f) return report("netdevs", -1, errno);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int s_err = errno;
    char line[512];
    int lineno = 0;
    printf("netdevs=");
    bool first = true;
    while (fgets(line, sizeof line, f)) {
        if (++lineno <= 2) continue;  // two header lines
        char* colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        char* name = line;
        while (*name == ' ') ++name;
        const char* state = "unknown";
        if (s >= 0) {
            ifreq ifr{};
            snprintf(ifr.ifr_name, IFNAMSIZ, "%.15s", name);
            if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) state = (ifr.ifr_flags & IFF_UP) ? "up" : "down";
            else state = errname(errno);
        } else {
            state = errname(s_err);
        }
        printf(first ? "%s:%s" : ",%s:%s", name, state);
        first = false;
    }
    printf("\n");
    fclose(f);
    if (s >= 0) close(s);
    return 0;
}

int mode_tcp_self(int, char**) {
    // Listen on 127.0.0.1, connect to ourselves, pass a few bytes.
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) return report("listen_socket", -1, errno);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return report("bind", -1, errno);
    if (listen(l, 4) < 0) return report("listen", -1, errno);
    socklen_t len = sizeof a;
    if (getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) < 0) return report("getsockname", -1, errno);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) return report("socket", -1, errno);
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return report("connect", -1, errno);
    int acc = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (acc < 0) return report("accept", -1, errno);
    if (write(c, "ping", 4) != 4) return report("send", -1, errno);
    char buf[8] = {};
    ssize_t n = read(acc, buf, 4);
    if (n != 4 || memcmp(buf, "ping", 4) != 0) return report("recv", -1, n < 0 ? errno : EIO);
    printf("tcp_self=ok port=%d\n", ntohs(a.sin_port));
    return 0;
}

int mode_cat(int argc, char** argv) {
    int fd = open(arg_str(argc, argv, 2), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return report("cat", -1, errno);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0) return report("cat", -1, err);
    buf[n] = 0;
    printf("cat=ok bytes=%zd\ndata:%s\n", n, buf);
    return 0;
}

// tree DIR: one line per entry below DIR, sorted, symlinks not followed:
// "tree: PATH TYPE MODE" and "-> TARGET", "data=BYTES" or "open=ERRNO".
void tree_lines(const std::string& dir, const std::string& rel, std::vector<std::string>& out) {
    DIR* d = opendir(dir.c_str());
    if (!d) {
        out.push_back("tree: " + rel + " opendir=" + strerror(errno));
        return;
    }
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        const std::string path = dir + "/" + name, r = rel.empty() ? name : rel + "/" + name;
        struct stat st{};
        if (lstat(path.c_str(), &st) < 0) continue;
        char mode[16];
        snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        std::string line = "tree: " + r + " " + mode;
        if (S_ISDIR(st.st_mode)) {
            out.push_back(line + " dir");
            tree_lines(path, r, out);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            out.push_back(line + " symlink -> " + target);
        } else {
            int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) {
                out.push_back(line + " file open=" + strerror(errno));
                continue;
            }
            char buf[256];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            buf[n < 0 ? 0 : n] = 0;
            for (char* c = buf; *c; ++c)
                if (*c == '\n') *c = '|';
            out.push_back(line + " file data=" + buf);
        }
    }
    closedir(d);
}

int mode_tree(int argc, char** argv) {
    std::vector<std::string> lines;
    tree_lines(arg_str(argc, argv, 2), "", lines);
    std::sort(lines.begin(), lines.end());
    for (const auto& l : lines) printf("%s\n", l.c_str());
    printf("tree=ok entries=%zu\n", lines.size());
    return 0;
}

int mode_statvfs(int argc, char** argv) {
    struct statvfs sv{};
    if (statvfs(arg_str(argc, argv, 2), &sv) < 0) return report("statvfs", -1, errno);
    printf("statvfs=ok ro=%d nosuid=%d\n", (sv.f_flag & ST_RDONLY) ? 1 : 0, (sv.f_flag & ST_NOSUID) ? 1 : 0);
    return 0;
}

int mode_openw(int argc, char** argv) {
    // Open an existing file for writing, without creating or truncating it.
    int fd = open(arg_str(argc, argv, 2), O_WRONLY | O_CLOEXEC);
    int err = errno;
    if (fd >= 0) close(fd);
    return report("openw", fd, err);
}

int mode_forkbomb_tree(int, char**) {
    // The real thing: every process forks for ever, and so does every child.
    // A refused fork backs off briefly so the bomb does not also burn the CPU.
    printf("bomb=started\n");
    fflush(stdout);
    for (;;) {
        pid_t p = fork();
        if (p < 0) {
            usleep(5000);
            continue;
        }
        // Reap what we can so zombies do not hold pids.
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
    }
}

int mode_deny_distinct(int argc, char** argv) {
    // Like deny-loop, but every call has a different path, so no two denials
    // coalesce: one stored row each (the reliability suite fills a disk with it).
    long n = arg_num(argc, argv, 2);
    long eperm = 0, other = 0;
    char path[64];
    for (long i = 0; i < n; ++i) {
        snprintf(path, sizeof path, "/nonexistent/moat-deny-%ld", i);
        if (rmdir(path) < 0 && errno == EPERM) ++eperm;
        else ++other;
    }
    printf("calls=%ld eperm=%ld other=%ld\n", n, eperm, other);
    return 0;
}

// deny-anon-exec N MAPPINGS: N denied rmdir calls made by a `syscall`
// instruction in anonymous executable memory (as a JIT would), from a process
// with MAPPINGS extra file mappings (of this program's own file, so each one
// is a long line in /proc/PID/maps). Looking up the module behind such an
// instruction pointer used to re-read the whole maps file on every denial.
int mode_deny_anon_exec(int argc, char** argv) {
    long n = arg_num(argc, argv, 2);
    long maps = arg_num(argc, argv, 3);
    int fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("open_errno=%s\n", errname(errno));
        return 1;
    }
    // Every mapping at file offset 0: neighbours never merge into one VMA.
    long mapped = 0;
    for (long i = 0; i < maps; ++i)
        if (mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0) != MAP_FAILED) ++mapped;
    // mov rax, rdi; mov rdi, rsi; mov rsi, rdx; syscall; ret
    static const unsigned char kStub[] = {0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x0f, 0x05, 0xc3};
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        printf("mmap_errno=%s\n", errname(errno));
        return 1;
    }
    memcpy(page, kStub, sizeof kStub);
    auto raw = reinterpret_cast<long (*)(long, long, long)>(page);
    long eperm = 0, other = 0;
    for (long i = 0; i < n; ++i) {
        long r = raw(SYS_rmdir, reinterpret_cast<long>("/nonexistent/moat-anon"), 0);
        if (r == -EPERM) ++eperm;
        else ++other;
    }
    printf("calls=%ld eperm=%ld other=%ld mapped=%ld\n", n, eperm, other, mapped);
    return 0;
}

// convert v1|v2 INPUT OUTDIR: the brittle-allowlist story (replay tests). A
// "converter" upper-cases INPUT followed by its stdin into OUTDIR/out.tmp; its
// "upgraded" v2 then publishes the result atomically with renameat2 — one
// syscall more than v1 ever made.
int mode_convert(int argc, char** argv) {
    if (argc < 5) return 2;
    const bool v2 = strcmp(argv[2], "v2") == 0;
    std::string data;
    char buf[4096];
    int in = open(argv[3], O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        printf("open-input errno=%s\n", errname(errno));
        return 1;
    }
    for (ssize_t n; (n = read(in, buf, sizeof buf)) > 0;) data.append(buf, size_t(n));
    close(in);
    for (ssize_t n; (n = read(0, buf, sizeof buf)) > 0;) data.append(buf, size_t(n));
    for (char& c : data) c = char(toupper(static_cast<unsigned char>(c)));
    std::string tmp = std::string(argv[4]) + "/out.tmp", out = std::string(argv[4]) + "/out";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data.data(), data.size()) != ssize_t(data.size())) {
        printf("write errno=%s\n", errname(errno));
        return 1;
    }
    close(fd);
    if (v2 && syscall(SYS_renameat2, AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), 1 /* RENAME_NOREPLACE */) < 0) {
        fprintf(stderr, "convert: publishing %s: %s\n", out.c_str(), strerror(errno));
        printf("rename errno=%s\n", errname(errno));
        return 1;
    }
    printf("converted bytes=%zu version=%s\n", data.size(), v2 ? "v2" : "v1");
    return 0;
}

// threads [N]: starts N threads (default: the CPUs the job may run on), each
// adding to a counter under a mutex, and joins them: a thread library's start
// and exit paths (issue 14 item 4). How many of those calls one run makes
// depends on timing and the CPU count (futex only under contention, munmap
// only when a stack leaves glibc's cache), which is what learn must not miss.
pthread_mutex_t g_threads_mu = PTHREAD_MUTEX_INITIALIZER;
long g_threads_sum = 0;

void* thread_work(void*) {
    for (int i = 0; i < 20000; ++i) {
        pthread_mutex_lock(&g_threads_mu);
        ++g_threads_sum;
        pthread_mutex_unlock(&g_threads_mu);
    }
    return nullptr;
}

int mode_threads(int argc, char** argv) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long n = argc > 2 ? arg_num(argc, argv, 2) : cpus;
    if (n < 1 || n > 256) return 2;
    pthread_t t[256];
    for (long i = 0; i < n; ++i)
        if (int e = pthread_create(&t[i], nullptr, thread_work, nullptr); e != 0) {
            printf("pthread_create_errno=%s started=%ld\n", errname(e), i);
            return 1;
        }
    for (long i = 0; i < n; ++i) pthread_join(t[i], nullptr);
    printf("threads=%ld cpus=%ld sum=%ld\n", n, cpus, g_threads_sum);
    return g_threads_sum == n * 20000 ? 0 : 1;
}

int mode_deny_then_sleep(int argc, char** argv) {
    // N distinct denials, then a sleep: a running job with denials stored
    // (what the live counts and pushed updates are checked against).
    long n = arg_num(argc, argv, 2);
    double s = strtod(arg_str(argc, argv, 3), nullptr);
    char path[64];
    for (long i = 0; i < n; ++i) {
        snprintf(path, sizeof path, "/nonexistent/moat-watch-%ld", i);
        (void)rmdir(path);
    }
    printf("denied=%ld\n", n);
    fflush(stdout);
    timespec ts{time_t(s), long((s - double(time_t(s))) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    return 0;
}

struct Mode {
    const char* name;
    int (*fn)(int, char**);
};
const Mode kModes[] = {
    {"mkdir", mode_mkdir},           {"spin", mode_spin},
    {"alloc", mode_alloc},           {"writefile", mode_writefile},
    {"sleep", mode_sleep},           {"forkbomb", mode_forkbomb},
    {"deny-loop", mode_deny_loop},   {"fds", mode_fds},
    {"ids", mode_ids},               {"env", mode_env},
    {"i386", mode_i386},             {"x32", mode_x32},
    {"clone-newuser", mode_clone_newuser}, {"clone3", mode_clone3},
    {"read-file", mode_read_file},   {"connect-tcp", mode_connect_tcp},
    {"socket", mode_socket},         {"kill", mode_kill},
    {"socket-or-not", mode_socket_or_not},
    {"signal", mode_signal},         {"exit", mode_exit},
    {"orphan", mode_orphan},
    {"whoami", mode_whoami},         {"netdevs", mode_netdevs},
    {"tcp-self", mode_tcp_self},     {"cat", mode_cat},
    {"statvfs", mode_statvfs},       {"openw", mode_openw},
    {"forkbomb-tree", mode_forkbomb_tree},
    {"deny-distinct", mode_deny_distinct},
    {"deny-anon-exec", mode_deny_anon_exec},
    {"convert", mode_convert},
    {"deny-then-sleep", mode_deny_then_sleep},
    {"tree", mode_tree},
    {"threads", mode_threads},
};

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2)
        for (const Mode& m : kModes)
            if (strcmp(argv[1], m.name) == 0) {
                int rc = m.fn(argc, argv);
                fflush(stdout);
                return rc;
            }
    fprintf(stderr, "usage: moat-testprog MODE [ARG...]; modes:");
    for (const Mode& m : kModes) fprintf(stderr, " %s", m.name);
    fprintf(stderr, "\n");
    return 2;
}
