// moat-agent: pid 1 of a vm-tier guest (see agent.h and docs/vm-protocol.md).
//   moat-agent                          in the guest (started by the kernel)
//   moat-agent --test-mode --ctl-fd N [--root-dir DIR]
//              [--work-dir DIR] [--uid-base N] [--cgroup-parent NAME]
//                                       on a host, for the tests
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent.h"

namespace {
[[noreturn]] void usage(const char* why) {
    fprintf(stderr,
            "moat-agent: %s\n"
            "usage: moat-agent [--test-mode --ctl-fd N [--root-dir DIR] [--work-dir DIR]\n"
            "                   [--uid-base N] [--cgroup-parent NAME]]\n",
            why);
    exit(2);
}
long number(const char* s, long min, long max) {
    char* end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < min || v > max) usage("bad number");
    return v;
}
// Copies the tree at `from` into `to` (regular files, directories, symlinks
// and device nodes), removing each file from `from` once copied so the
// initramfs's memory is given back. `skip` is not entered.
bool copy_tree(const std::string& from, const std::string& to, const std::string& skip) {
    DIR* d = opendir(from.c_str());
    if (!d) return false;
    bool ok = true;
    while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string src = (from == "/" ? "" : from) + "/" + name, dst = to + "/" + name;
        if (src == skip) continue;
        struct stat st{};
        if (lstat(src.c_str(), &st) < 0) continue;
        if (S_ISDIR(st.st_mode)) {
            mkdir(dst.c_str(), st.st_mode & 07777);
            ok = copy_tree(src, dst, skip) && ok;
        } else if (S_ISREG(st.st_mode)) {
            int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
            int out = open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
            if (in < 0 || out < 0) ok = false;
            for (off_t off = 0; in >= 0 && out >= 0 && off < st.st_size;) {
                ssize_t n = sendfile(out, in, &off, size_t(st.st_size - off));
                if (n <= 0) {
                    ok = false;
                    break;
                }
            }
            if (in >= 0) close(in);
            if (out >= 0) close(out);
            unlink(src.c_str());
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(src.c_str(), target, sizeof target - 1);
            if (n > 0) {
                target[n] = 0;
                if (symlink(target, dst.c_str()) < 0) ok = false;
            }
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            mknod(dst.c_str(), st.st_mode, st.st_rdev);
        }
    }
    closedir(d);
    return ok;
}

// The kernel's rootfs (the unpacked initramfs) cannot be pivot_root'ed away,
// and moat-init builds each job's root with pivot_root. So, as switch_root
// does, pid 1 first moves the initramfs onto a tmpfs, makes that the root and
// executes itself again there. Returns only on failure.
void leave_rootfs(char** argv) {
    const char* mnt = "/.moat-root";
    if (mkdir(mnt, 0755) < 0 && errno != EEXIST) return;
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID, "mode=0755") < 0) return;
    if (!copy_tree("/", mnt, mnt)) return;
    if (chdir(mnt) < 0 || mount(".", "/", nullptr, MS_MOVE, nullptr) < 0 || chroot(".") < 0 || chdir("/") < 0) return;
    char self[] = "/init";
    char flag[] = "--switched";
    char* args[] = {self, flag, nullptr};
    (void)argv;
    execv(self, args);
}
}  // namespace

int main(int argc, char** argv) {
    if (getpid() == 1 && !(argc > 1 && std::string(argv[1]) == "--switched")) {
        leave_rootfs(argv);
        fprintf(stderr, "moat-agent: could not move off the initramfs root (%s); going on without it\n", strerror(errno));
    }
    moat::agent::Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--switched") continue;  // leave_rootfs() is done
        if (a == "--test-mode") o.test_mode = true;
        else if (a == "--ctl-fd") o.ctl_fd = int(number(val(), 0, 1 << 20));
        else if (a == "--root-dir") o.root_dir = val();
        else if (a == "--work-dir") o.work_dir = val();
        else if (a == "--uid-base") o.uid_base = uid_t(number(val(), 1, 0x7ffffff0));
        else if (a == "--cgroup-parent") o.cgroup_parent = val();
        else usage(("unknown option " + a).c_str());
    }
    if (o.test_mode && o.ctl_fd < 0) usage("--test-mode needs --ctl-fd");
    if (!o.test_mode && o.ctl_fd >= 0) usage("--ctl-fd is for --test-mode");
    if (!o.test_mode && getpid() != 1) usage("outside --test-mode, moat-agent runs only as pid 1 of a guest");
    return moat::agent::run(o);
}
