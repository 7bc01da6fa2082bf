// moatctl's front: the program a user runs as `moatctl`.
//
// It serves the one command that is started over and over by scripts,
// `moatctl run --policy FILE [--tier T] [--id-file F] -- PROGRAM [ARG...]`
// (and `--help`, `--version`), by itself, and hands everything else to the C++
// client (moatctl-light, which hands the policy tools on to moatctl-full) by
// executing it with the same arguments. It is plain C, linked statically
// against musl where musl-gcc is installed (app/moatctl/CMakeLists.txt):
// glibc's start-up probes the CPU's caches with `cpuid`, which traps to the
// hypervisor on a virtual machine, and cost ~0.5 ms of every `moatctl run`
// on ours (docs/performance.md, "Thirteenth session"); musl's costs nothing.
//
// What it does not interpret, it does not take: any option or form it does
// not know, a byte outside ASCII in an argument, the environment or the
// policy (the C++ client checks UTF-8 and skips what the protocol cannot
// carry), a policy that is not a regular file, a socket it cannot reach: all
// go to moatctl-light untouched, before anything is sent, so what moatctl
// says and exits with is the C++ client's. Once the request is sent the
// front sees the run through: it asks moatd for brief answers (moatd renders
// the end of the run with the function moatctl-light uses, moat/ipc/run_end.h,
// so this program parses no JSON: docs/protocol.md, "Brief runs").
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "moat/common/wire.h"  // the constants moatd and the C++ client use too
#include "moatctl_front_text.h"  // kFrontHelp, kFrontVersion: moatctl-light's own words, taken at build time

extern char** environ;

enum {
    kExitSetup = MOAT_RUN_SETUP_FAILED,
    kMaxPolicyBytes = MOAT_MAX_POLICY_BYTES,
    kMaxRequestBytes = MOAT_MAX_REQUEST_BYTES,
};
static const uint32_t kMaxResponseBytes = MOAT_MAX_RESPONSE_BYTES;
static const char kBriefJob = MOAT_BRIEF_JOB, kBriefEnd = MOAT_BRIEF_END;
static const char* const kDefaultSocket = MOAT_DEFAULT_SOCKET;

// ---- handing over to the C++ client

static struct sigaction g_old_pipe;
static int g_pipe_saved = 0;

// moatctl-light next to this program (the build tree), in an install's
// ../libexec/moat/, then /usr/libexec/moat/ (as moatctl-light finds moatctl-full).
static _Noreturn void hand_over(char** argv, int not_found_status) {
    // SIGPIPE as this program found it (an ignored signal stays ignored across exec).
    if (g_pipe_saved) sigaction(SIGPIPE, &g_old_pipe, NULL);
    char self[PATH_MAX];
    char cand[3][PATH_MAX + 64];
    int n = 0;
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;
        char* slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand[n++], sizeof cand[0], "%s/moatctl-light", self);
            snprintf(cand[n++], sizeof cand[0], "%s/../libexec/moat/moatctl-light", self);
        }
    }
    snprintf(cand[n++], sizeof cand[0], "/usr/libexec/moat/moatctl-light");
    for (int i = 0; i < n; ++i) {
        if (access(cand[i], X_OK) != 0) continue;
        execv(cand[i], argv);
        fprintf(stderr, "moatctl: %s: %s\n", cand[i], strerror(errno));
        exit(not_found_status);
    }
    fprintf(stderr, "moatctl: this command needs moatctl-light, which was not found (looked in %s and %s)\n", cand[0],
            cand[n - 1]);
    exit(not_found_status);
}

// ---- the command line: only the forms taken here

struct Run {
    const char* socket;   // NULL: $MOAT_SOCKET, else the default
    const char* policy;
    const char* tier;     // NULL: the policy's
    const char* id_file;  // NULL: none
    char** prog;          // PROGRAM [ARG...], NULL-terminated
};

// "--name VALUE" or "--name=VALUE" at argv[*i]: 1 taken (and *i moved past
// it), 0 not this option, -1 malformed or repeated (the C++ client says why).
static int take_option(char** argv, int argc, int* i, const char* name, const char** out) {
    const size_t n = strlen(name);
    const char* a = argv[*i];
    const char* v;
    if (strcmp(a, name) == 0) {
        if (*i + 1 >= argc) return -1;
        v = argv[*i + 1];
        *i += 2;
    } else if (strncmp(a, name, n) == 0 && a[n] == '=') {
        v = a + n + 1;
        *i += 1;
    } else {
        return 0;
    }
    if (*out || !*v || v[0] == '-') return -1;
    *out = v;
    return 1;
}

static int ascii_text(const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (s[i] == 0 || (unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static int ascii(const char* s) { return ascii_text(s, strlen(s)); }

// 1 when argv is exactly a `run` this program serves.
static int parse_run(int argc, char** argv, struct Run* r) {
    memset(r, 0, sizeof *r);
    int i = 1;
    while (i < argc && strcmp(argv[i], "run") != 0) {
        if (take_option(argv, argc, &i, "--socket", &r->socket) != 1) return 0;
    }
    if (i >= argc) return 0;
    ++i;  // "run"
    while (i < argc && strcmp(argv[i], "--") != 0) {
        int t = take_option(argv, argc, &i, "--policy", &r->policy);
        if (t == 0) t = take_option(argv, argc, &i, "--tier", &r->tier);
        if (t == 0) t = take_option(argv, argc, &i, "--id-file", &r->id_file);
        if (t != 1) return 0;
    }
    if (i + 1 >= argc || !r->policy) return 0;  // no "--", or nothing after it
    if (r->tier && strcmp(r->tier, "seccomp") != 0 && strcmp(r->tier, "container") != 0 && strcmp(r->tier, "vm") != 0)
        return 0;
    r->prog = argv + i + 1;
    for (char** a = r->prog; *a; ++a)
        if (!ascii(*a)) return 0;
    if ((r->socket && !ascii(r->socket)) || !ascii(r->policy) || (r->id_file && !ascii(r->id_file))) return 0;
    for (char** e = environ; *e; ++e)
        if (!ascii(*e)) return 0;
    return 1;
}

// ---- the request

struct Buf {
    char* p;
    size_t n, cap;
    int failed;
};

static void put(struct Buf* b, const char* s, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char* p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(struct Buf* b, const char* s) { put(b, s, strlen(s)); }

// A JSON string of ASCII text (checked by the caller).
static void put_string(struct Buf* b, const char* s, size_t n) {
    put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; ++i) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(b, s + run, i - run);
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else snprintf(esc, sizeof esc, "\\u%04x", c);
        puts_(b, esc);
        run = i + 1;
    }
    put(b, s + run, n - run);
    put(b, "\"", 1);
}

static void put_strings(struct Buf* b, char** v) {
    put(b, "[", 1);
    for (char** a = v; *a; ++a) {
        if (a != v) put(b, ",", 1);
        put_string(b, *a, strlen(*a));
    }
    put(b, "]", 1);
}

// The policy's text, or NULL when the C++ client should read it (and say
// what is wrong): not openable, not a regular file (a pipe read here would
// be gone for it), larger than a policy may be, or not ASCII.
static char* read_policy(const char* path, size_t* len) {
    // Looked at before it is opened: opening (and closing) a FIFO would let
    // its writer go on into a pipe nobody reads, and the C++ client would
    // then wait for a writer forever.
    struct stat pre;
    if (stat(path, &pre) < 0 || !S_ISREG(pre.st_mode)) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxPolicyBytes) {
        close(fd);
        return NULL;
    }
    char* text = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (text) {
        if (n > (size_t)kMaxPolicyBytes) break;
        ssize_t r = read(fd, text + n, (size_t)st.st_size + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (r == 0) {
            close(fd);
            if (!ascii_text(text, n)) break;
            *len = n;
            return text;
        }
        n += (size_t)r;
        if (n == (size_t)st.st_size + 1) break;  // it grew while read: the C++ client reads it
    }
    if (fd >= 0) close(fd);
    free(text);
    return NULL;
}

static int build_request(const struct Run* r, struct Buf* b) {
    size_t plen = 0;
    char* policy = read_policy(r->policy, &plen);
    if (!policy) return 0;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
    if (!ascii(cwd)) {
        free(policy);
        return 0;
    }
    put(b, "\0\0\0\0", 4);  // the frame's length, below
    puts_(b, "{\"op\":\"run_brief\",\"policy_toml\":");
    put_string(b, policy, plen);
    free(policy);
    puts_(b, ",\"policy_source\":");
    put_string(b, r->policy, strlen(r->policy));
    puts_(b, ",\"argv\":");
    put_strings(b, r->prog);
    if (r->tier) {
        puts_(b, ",\"tier\":");
        put_string(b, r->tier, strlen(r->tier));
    }
    puts_(b, ",\"env\":");
    put_strings(b, environ);
    puts_(b, ",\"cwd\":");
    put_string(b, cwd, strlen(cwd));
    puts_(b, ",\"inputs\":[]}");
    if (b->failed || b->n - 4 > (size_t)kMaxRequestBytes) return 0;
    const uint32_t len = (uint32_t)(b->n - 4);
    const unsigned char hdr[4] = {len >> 24, len >> 16, len >> 8, len};
    memcpy(b->p, hdr, 4);
    return 1;
}

static int connect_to(const char* path) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) return -1;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc;
    do rc = connect(fd, (struct sockaddr*)&sa, sizeof sa);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_rest(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// The frame with the job's stdio (SCM_RIGHTS on its first byte).
// -1: nothing was sent; -2: part of it was.
static int send_request(int fd, const struct Buf* b) {
    int fds[3] = {0, 1, 2};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {b->p, b->n};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t w;
    do w = sendmsg(fd, &m, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w <= 0) return -1;
    return send_rest(fd, b->p + w, b->n - (size_t)w) == 0 ? 0 : -2;
}

// ---- the run

static volatile sig_atomic_t g_signal = 0;
static int g_sigpipe[2] = {-1, -1};

static void on_signal(int sig) {
    const int saved = errno;
    g_signal = sig;
    char b = 1;
    (void)!write(g_sigpipe[1], &b, 1);
    errno = saved;
}

static void write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

// An operator's Ctrl-C (or TERM, HUP): moatctl stops the job and still
// reports its end. Sent on the run's connection, as moatctl-light does (a
// connection of its own could be refused at moatd's per-user limit); its
// answer comes in JSON, which follow_run lets go.
static void send_stop(int fd, long long job) {
    char payload[96];
    const int n = snprintf(payload, sizeof payload, "{\"op\":\"stop\",\"job\":%lld}", job);
    const unsigned char hdr[4] = {0, 0, 0, (unsigned char)n};
    char frame[4 + sizeof payload];
    memcpy(frame, hdr, 4);
    memcpy(frame + 4, payload, (size_t)n);
    (void)send_rest(fd, frame, 4 + (size_t)n);
}

static int fail(const char* what) {
    fprintf(stderr, "moatctl: %s\n", what);
    return kExitSetup;
}

// What came from moatd and is not used yet (freed by main).
static char* g_in = NULL;

// follow_run's answer when moatd refused the request before any job
// existed, in JSON: at accepting the connection (not a member of its groups,
// too many connections), or a moatd that does not know run_brief. Nothing
// ran: the C++ client asks again and says what moatd says, in its words.
enum { kHandOver = -1 };

// Reads the brief frames until the run's end; returns the exit status, or
// kHandOver.
static int follow_run(int fd, const struct Run* r) {
    long long job = 0;
    int stop_sent = 0;
    char* in = NULL;
    size_t have = 0, cap = 0;
    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) return fail("poll");
        if (p[1].revents & POLLIN) {
            char drain[16];
            while (read(g_sigpipe[0], drain, sizeof drain) > 0) {}
        }
        if (g_signal && job && !stop_sent) {
            stop_sent = 1;
            send_stop(fd, job);
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        if (cap - have < 65536) {
            size_t ncap = cap ? cap * 2 : 65536;
            char* np = realloc(in, ncap);
            if (!np) return fail("out of memory");
            in = g_in = np;
            cap = ncap;
        }
        ssize_t got = read(fd, in + have, cap - have);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got < 0) {
            fprintf(stderr, "moatctl: read from moatd: %s\n", strerror(errno));
            return kExitSetup;
        }
        if (got == 0) return fail("moatd closed the connection");
        have += (size_t)got;
        for (;;) {
            if (have < 4) break;
            const unsigned char* h = (const unsigned char*)in;
            const uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
            if (len > kMaxResponseBytes) {
                fprintf(stderr, "moatctl: response of %u bytes exceeds the limit\n", len);
                return kExitSetup;
            }
            if (have - 4 < len) {
                // Room for the whole frame before the next read.
                if (cap < (size_t)len + 4) {
                    char* np = realloc(in, (size_t)len + 4);
                    if (!np) return fail("out of memory");
                    in = g_in = np;
                    cap = (size_t)len + 4;
                }
                break;
            }
            char* f = in + 4;
            if (len > 0 && f[0] == kBriefJob) {
                char num[24] = {0};
                memcpy(num, f + 1, len - 1 < sizeof num - 1 ? len - 1 : sizeof num - 1);
                job = strtoll(num, NULL, 10);
                if (r->id_file) {
                    int o = open(r->id_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0666);
                    if (o >= 0) {
                        char line[32];
                        const int n = snprintf(line, sizeof line, "%lld\n", job);
                        write_all(o, line, (size_t)n);
                        close(o);
                    }
                }
                if (g_signal && !stop_sent) {
                    stop_sent = 1;
                    send_stop(fd, job);
                }
            } else if (len > 0 && f[0] == kBriefEnd) {
                char* nl = memchr(f, '\n', len);
                if (!nl) return fail("moatd sent a malformed answer");
                *nl = 0;
                const int status = atoi(f + 1);
                write_all(2, nl + 1, len - (size_t)(nl + 1 - f));
                return status;
            } else if (!job) {
                return kHandOver;  // JSON before the job existed: a refusal
            }
            // JSON once the job exists: the answer to our stop, let go (a
            // stop that came too late finds the job ended: its end follows).
            memmove(in, in + 4 + len, have - 4 - len);
            have -= 4 + len;
        }
    }
}

static void ensure_stdio_open(void) {
    for (int fd = 0; fd < 3; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            const int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) close(n);
        }
}

int main(int argc, char** argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        // CLI11 names the program as it was called (argv[0]) in the usage line.
        const char* at = strstr(kFrontHelp, kFrontArgv0Marker);
        if (!at) at = kFrontHelp + sizeof kFrontHelp - 1;
        write_all(1, kFrontHelp, (size_t)(at - kFrontHelp));
        if (*at) {
            write_all(1, argv[0], strlen(argv[0]));
            at += sizeof kFrontArgv0Marker - 1;
            write_all(1, at, strlen(at));
        }
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        write_all(1, kFrontVersion, sizeof kFrontVersion - 1);
        return 0;
    }
    struct Run r;
    if (!parse_run(argc, argv, &r)) {
        // The status if moatctl-light is missing: 125 for run and replay (a
        // set-up failure in the contract), else 2. The subcommand is the
        // first word that is not an option or --socket's value.
        int i = 1;
        while (i < argc && argv[i][0] == '-') i += strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "--connect") == 0 ? 2 : 1;
        const int is_run = i < argc && (strcmp(argv[i], "run") == 0 || strcmp(argv[i], "replay") == 0);
        hand_over(argv, is_run ? kExitSetup : 2);
    }
    ensure_stdio_open();
    const char* sock = r.socket;
    if (!sock) {
        const char* e = getenv("MOAT_SOCKET");
        sock = e && *e ? e : kDefaultSocket;
    }
    struct Buf b = {0};
    if (!build_request(&r, &b)) hand_over(argv, kExitSetup);
    const int fd = connect_to(sock);
    if (fd < 0) hand_over(argv, kExitSetup);  // the C++ client says why, in its words
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    g_pipe_saved = sigaction(SIGPIPE, &ign, &g_old_pipe) == 0;
    // Ctrl-C, TERM and HUP from here on stop the job once it exists (as
    // moatctl-light's handlers do from before its request).
    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        close(fd);
        hand_over(argv, kExitSetup);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    // Not sent, or not all of it: moatd runs nothing from a partial frame,
    // and the C++ client says what went wrong (a refusal moatd sent at once).
    const int sent = send_request(fd, &b);
    free(b.p);
    int status = sent == 0 ? follow_run(fd, &r) : kHandOver;
    free(g_in);
    if (status != kHandOver) return status & 0xff;
    close(fd);
    if (g_signal) {
        // Interrupted before any job existed: end as the signal would have
        // ended us (a handler does not survive the exec).
        signal(g_signal, SIG_DFL);
        raise(g_signal);
    }
    hand_over(argv, kExitSetup);
}
