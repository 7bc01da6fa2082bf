/* The guest's pid 1 in the vm kit's boot tests (tests/vm/vm_boot_test.cpp).
 * Statically linked C: the initramfs holds no libc. It does what the real
 * guest agent must do first (load the virtio modules in /modules.order, find
 * its port by name), then obeys line commands from the host on that port:
 *   echo TEXT   -> "TEXT"
 *   cat PATH    -> mounts /dev/vda read-only on /mnt (once), replies the first
 *                  line of /mnt/PATH or "ERR <errno>"
 *   touch PATH  -> tries to create /mnt/PATH: "OK" or "ERR <errno>"
 *   mounts      -> the /proc/mounts line for /mnt
 *   run PATH    -> runs PATH (no arguments) rooted in the mounted image
 *                  (chroot /mnt, stdio on /dev/null), with no sandbox at all:
 *                  "EXIT <wait status>" or "ERR ...". The vm benchmark's bare
 *                  baseline runs the cold job's program this way, so the
 *                  program's own first run under TCG is not counted as Moat's.
 *   bye         -> sync and reboot (QEMU runs with -no-reboot, so it exits)
 * It writes "READY" first. Anything unexpected ends in a reboot, never a
 * kernel panic loop: the host test waits for QEMU to exit. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PORT_NAME
#define PORT_NAME "moat-test"
#endif

static void die(const char *what) {
    fprintf(stderr, "moat-test-init: %s: %s\n", what, strerror(errno));
    sync();
    reboot(RB_AUTOBOOT);
    _exit(1);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void load_modules(void) {
    FILE *f = fopen("/modules.order", "r");
    if (!f) die("open /modules.order");
    char name[128];
    while (fgets(name, sizeof name, f)) {
        name[strcspn(name, "\n")] = 0;
        if (!name[0]) continue;
        char path[256];
        snprintf(path, sizeof path, "/lib/modules/%s.ko", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die(path);
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST) die(path);
        close(fd);
    }
    fclose(f);
}

/* /sys/class/virtio-ports/vport0pN/name holds the name the host gave the port. */
static int open_port(void) {
    for (int tries = 0; tries < 300; ++tries) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[300], name[64] = {0};
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, name, sizeof name - 1);
            close(fd);
            if (n > 0 && strncmp(name, PORT_NAME "\n", strlen(PORT_NAME) + 1) == 0) {
                snprintf(path, sizeof path, "/dev/%s", e->d_name);
                closedir(d);
                int port = -1;
                for (int t = 0; t < 100 && port < 0; ++t) { /* devtmpfs node may lag */
                    port = open(path, O_RDWR | O_CLOEXEC);
                    if (port < 0) sleep_ms(10);
                }
                if (port < 0) die(path);
                return port;
            }
        }
        if (d) closedir(d);
        sleep_ms(10);
    }
    errno = ENOENT;
    die("virtio port " PORT_NAME);
    return -1;
}

static void reply(int port, const char *text) {
    char buf[600];
    int n = snprintf(buf, sizeof buf, "%s\n", text);
    if (write(port, buf, (size_t)n) != n) die("write port");
}

static int mounted;
static int mount_root(char *err, size_t len) {
    if (mounted) return 0;
    for (int t = 0; t < 200 && access("/dev/vda", F_OK) < 0; ++t) sleep_ms(10);
    if (mount("/dev/vda", "/mnt", "ext4", MS_RDONLY | MS_NODEV | MS_NOSUID, "") < 0) {
        snprintf(err, len, "ERR mount %s", strerror(errno));
        return -1;
    }
    mounted = 1;
    return 0;
}

#ifndef MOAT_NO_TEST_INIT_MAIN
int main(void) {
    mount("devtmpfs", "/dev", "devtmpfs", 0, "");
    mount("proc", "/proc", "proc", 0, "");
    mount("sysfs", "/sys", "sysfs", 0, "");
    load_modules();
    int port = open_port();
    reply(port, "READY");
    char line[512];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(port, line + have, sizeof line - 1 - have);
        if (n <= 0) die("read port");
        have += (size_t)n;
        line[have] = 0;
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            char out[520];
            if (strncmp(line, "echo ", 5) == 0) {
                reply(port, line + 5);
            } else if (strncmp(line, "cat ", 4) == 0) {
                if (mount_root(out, sizeof out) == 0) {
                    char path[600];
                    snprintf(path, sizeof path, "/mnt%s", line + 4);
                    FILE *f = fopen(path, "r");
                    if (!f) snprintf(out, sizeof out, "ERR %s", strerror(errno));
                    else {
                        if (!fgets(out, sizeof out, f)) out[0] = 0;
                        out[strcspn(out, "\n")] = 0;
                        fclose(f);
                    }
                }
                reply(port, out);
            } else if (strncmp(line, "touch ", 6) == 0) {
                if (mount_root(out, sizeof out) == 0) {
                    char path[600];
                    snprintf(path, sizeof path, "/mnt%s", line + 6);
                    int fd = open(path, O_WRONLY | O_CREAT, 0644);
                    if (fd >= 0) { close(fd); snprintf(out, sizeof out, "OK"); }
                    else snprintf(out, sizeof out, "ERR %s", strerror(errno));
                }
                reply(port, out);
            } else if (strncmp(line, "run ", 4) == 0) {
                if (mount_root(out, sizeof out) == 0) {
                    pid_t pid = fork();
                    if (pid == 0) {
                        int null = open("/dev/null", O_RDWR);
                        if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
                        if (chroot("/mnt") < 0 || chdir("/") < 0) _exit(126);
                        char *argv[] = {line + 4, NULL}, *envp[] = {NULL};
                        execve(line + 4, argv, envp);
                        _exit(127);
                    }
                    int st = 0;
                    if (pid < 0) snprintf(out, sizeof out, "ERR fork %s", strerror(errno));
                    else if (waitpid(pid, &st, 0) < 0) snprintf(out, sizeof out, "ERR waitpid %s", strerror(errno));
                    else snprintf(out, sizeof out, "EXIT %d", st);
                }
                reply(port, out);
            } else if (strcmp(line, "mounts") == 0) {
                FILE *f = fopen("/proc/mounts", "r");
                snprintf(out, sizeof out, "none");
                char m[512];
                while (f && fgets(m, sizeof m, f))
                    if (strstr(m, " /mnt ")) { m[strcspn(m, "\n")] = 0; snprintf(out, sizeof out, "%s", m); }
                if (f) fclose(f);
                reply(port, out);
            } else if (strcmp(line, "bye") == 0) {
                sync();
                reboot(RB_AUTOBOOT);
                _exit(0);
            } else {
                reply(port, "ERR unknown command");
            }
            have -= (size_t)(nl + 1 - line);
            memmove(line, nl + 1, have + 1);
        }
    }
}
#endif
