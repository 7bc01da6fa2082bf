#include "moat/sandbox/container_init.h"

#include "moat/policy/container_dev.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "moat/common/fd.h"
#include "moat/common/paths.h"
#include "moat/sandbox/container_plan.h"
#include "moat/sandbox/spawn.h"

namespace moat::sandbox {

namespace {

// A failed step: reported to moatd and the helper exits 125.
[[noreturn]] void die(const char* step, int err, const std::string& detail) {
    SetupRecord rec{};
    snprintf(rec.step, sizeof rec.step, "%s", step);
    rec.err = err;
    rec.fatal = 1;
    snprintf(rec.detail, sizeof rec.detail, "%s", detail.c_str());
    (void)!write(kInitStatusFd, &rec, sizeof rec);
    _exit(125);
}

void report(const char* step, int err, int fatal, const std::string& detail) {
    SetupRecord rec{};
    snprintf(rec.step, sizeof rec.step, "%s", step);
    rec.err = err;
    rec.fatal = fatal;
    snprintf(rec.detail, sizeof rec.detail, "%s", detail.c_str());
    (void)!write(kInitStatusFd, &rec, sizeof rec);
}

int sys_open_tree(int dfd, const char* path, unsigned flags) { return int(syscall(SYS_open_tree, dfd, path, flags)); }
int sys_move_mount(int from, const char* fp, int to, const char* tp, unsigned flags) {
    return int(syscall(SYS_move_mount, from, fp, to, tp, flags));
}
int sys_mount_setattr(int dfd, const char* path, unsigned flags, mount_attr* a) {
    return int(syscall(SYS_mount_setattr, dfd, path, flags, a, sizeof *a));
}

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

ContainerPlan read_plan() {
    std::string text;
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(kInitPlanFd, buf, sizeof buf, off);
        if (n < 0) die("read(plan)", errno, "");
        if (n == 0) break;
        text.append(buf, size_t(n));
        off += n;
        if (text.size() > (16u << 20)) die("read(plan)", EFBIG, "plan larger than 16 MiB");
    }
    close(kInitPlanFd);
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) die("parse(plan)", EINVAL, "not JSON");
    auto p = ContainerPlan::from_json(j);
    if (!p) die("parse(plan)", EINVAL, p.error().message);
    return std::move(*p);
}

// Opens (creating as needed) the mount point `target` below the root fd,
// component by component, never following a symlink: whatever an earlier
// bind mount brought in, a mount can only land inside the job's root.
UniqueFd make_target(int rootfd, const std::string& target, bool dir) {
    UniqueFd cur(fcntl(rootfd, F_DUPFD_CLOEXEC, 0));
    size_t i = 1;
    while (i <= target.size()) {
        size_t j = target.find('/', i);
        bool last = j == std::string::npos;
        if (last) j = target.size();
        std::string comp = target.substr(i, j - i);
        i = j + 1;
        if (comp.empty()) continue;
        if (!last || dir) {
            int fd = openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT) {
                if (mkdirat(cur.get(), comp.c_str(), 0755) < 0 && errno != EEXIST)
                    die("mkdir(mount point)", errno, target);
                fd = openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
            if (fd < 0) die("open(mount point)", errno, target);
            cur.reset(fd);
        } else {
            // Looked at before anything opens it for writing: a FIFO (or a
            // device) a client's root put there must not block or act.
            int fd = openat(cur.get(), comp.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT) {
                fd = openat(cur.get(), comp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd >= 0) close(fd);
                else if (errno != EEXIST) die("create(mount point)", errno, target);
                fd = openat(cur.get(), comp.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
            }
            if (fd < 0) die("open(mount point)", errno, target);
            struct stat st{};
            if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) die("mount point is not a regular file", ENOTDIR, target);
            cur.reset(fd);
        }
    }
    return cur;
}

void bind(int rootfd, const MountSpec& m) {
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS;
    UniqueFd src(int(syscall(SYS_openat2, AT_FDCWD, m.source.c_str(), &how, sizeof how)));
    if (!src) die("open(mount source)", errno, m.source);
    struct stat st{};
    if (fstat(src.get(), &st) < 0) die("fstat(mount source)", errno, m.source);
    const bool dir = S_ISDIR(st.st_mode);
    if (!dir && !S_ISREG(st.st_mode)) die("bind(neither a directory nor a regular file)", EINVAL, m.source);
    // An --input: the file the client opened, not whatever the path names now.
    if (m.verify && (uint64_t(st.st_dev) != m.dev || uint64_t(st.st_ino) != m.ino))
        die("input is no longer the file the client opened (it was replaced after the client's open)", ESTALE,
            m.source);
    UniqueFd tgt = make_target(rootfd, m.target, dir);
    UniqueFd tree(sys_open_tree(src.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
    if (!tree) die("open_tree(mount source)", errno, m.source);
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (m.kind == MountSpec::Kind::BindRo) attr.attr_set |= MOUNT_ATTR_RDONLY;
    // AT_RECURSIVE: every mount below the source becomes read-only too, not
    // just the top one (a classic hole with MS_REMOUNT|MS_BIND|MS_RDONLY).
    if (sys_mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0)
        die("mount_setattr(ro,nosuid,nodev)", errno, m.source);
    if (sys_move_mount(tree.get(), "", tgt.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        die("move_mount", errno, m.source + " -> " + m.target);
    if (m.kind == MountSpec::Kind::BindRo) {
        struct statvfs sv{};
        if (fstatvfs(tree.get(), &sv) < 0 || !(sv.f_flag & ST_RDONLY))
            die("verify read-only mount", EPERM, m.target);
    }
}

// Flags every client tree gets once it is ours (it came from another mount
// namespace: only now may we change it), checked like a bind's.
// Private too: a clone of a shared mount is in its peer group, and every
// mount made below it here would appear on the client's source (and stay
// there after the job).
void secure_tree(int treefd, bool read_only, const std::string& what) {
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0);
    attr.propagation = MS_PRIVATE;
    if (sys_mount_setattr(treefd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0)
        die(read_only ? "mount_setattr(tree: ro,nosuid,nodev,private)" : "mount_setattr(tree: nosuid,nodev,private)",
            errno, what);
    struct statvfs sv{};
    if (fstatvfs(treefd, &sv) < 0 || !(sv.f_flag & ST_NOSUID) || !(sv.f_flag & ST_NODEV) ||
        (read_only && !(sv.f_flag & ST_RDONLY)))
        die("verify tree mount flags", EPERM, what);
}

// A tree the client passed (moatd never looked its path up): moved onto its
// mount point, which must already exist inside the job's root.
void tree_bind(int rootfd, const MountSpec& m) {
    const int treefd = kInitTreeFd0 + m.tree;
    struct stat st{};
    if (fstat(treefd, &st) < 0) die("fstat(tree)", errno, m.target);
    const bool dir = S_ISDIR(st.st_mode);
    if (!dir && !S_ISREG(st.st_mode)) die("bind(tree is neither a directory nor a regular file)", EINVAL, m.target);
    UniqueFd tgt = make_target(rootfd, m.target, dir);
    if (sys_move_mount(treefd, "", tgt.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        die("move_mount(tree)", errno, m.target);
    secure_tree(treefd, m.kind == MountSpec::Kind::TreeRo, m.target);
}

void mount_tmpfs(int rootfd, const std::string& target, uint64_t size, const char* mode, unsigned long extra) {
    UniqueFd tgt = make_target(rootfd, target, true);
    std::string opts = "size=" + std::to_string(size) + ",mode=" + mode;
    if (mount("tmpfs", fd_path(tgt.get()).c_str(), "tmpfs", MS_NOSUID | MS_NODEV | extra, opts.c_str()) < 0)
        die("mount(tmpfs)", errno, target);
}

void symlink_in_root(int rootfd, const MountSpec& m) {
    auto slash = m.target.rfind('/');
    std::string parent = slash == 0 ? "/" : m.target.substr(0, slash);
    std::string name = m.target.substr(slash + 1);
    UniqueFd dir = parent == "/" ? UniqueFd(fcntl(rootfd, F_DUPFD_CLOEXEC, 0)) : make_target(rootfd, parent, true);
    if (symlinkat(m.source.c_str(), dir.get(), name.c_str()) < 0 && errno != EEXIST)
        die("symlink", errno, m.target + " -> " + m.source);
}

void step_mounts(int rootfd, const ContainerPlan& p) {
    for (const auto& m : p.mounts) {
        switch (m.kind) {
            case MountSpec::Kind::BindRo:
            case MountSpec::Kind::BindRw: bind(rootfd, m); break;
            case MountSpec::Kind::Tmpfs: mount_tmpfs(rootfd, m.target, m.size, "1777", 0); break;
            case MountSpec::Kind::Symlink: symlink_in_root(rootfd, m); break;
            case MountSpec::Kind::TreeRo:
            case MountSpec::Kind::TreeRw: tree_bind(rootfd, m); break;
        }
    }
}

void step_dev(int rootfd, uint64_t shm_size) {
    // A minimal /dev: the harmless character devices, bound from the host (a
    // user namespace cannot mknod), and the usual /proc/self/fd links. No tty.
    mount_tmpfs(rootfd, "/dev", 256 * 1024, "0755", MS_NOEXEC);
    for (const char* d : policy::kContainerDevices) {
        std::string target = std::string("/dev/") + d;
        UniqueFd tgt = make_target(rootfd, target, false);
        UniqueFd tree(sys_open_tree(AT_FDCWD, target.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
        if (!tree) die("open_tree(/dev)", errno, target);
        if (sys_move_mount(tree.get(), "", tgt.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            die("move_mount(/dev)", errno, target);
    }
    UniqueFd dev = make_target(rootfd, "/dev", true);
    struct { const char* name; const char* to; } links[] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
    for (auto& l : links)
        if (symlinkat(l.to, dev.get(), l.name) < 0) die("symlink(/dev)", errno, l.name);
    // POSIX shared memory (shm_open) for a job that asked for it, before
    // /dev itself becomes read-only.
    if (shm_size) mount_tmpfs(rootfd, "/dev/shm", shm_size, "1777", MS_NOEXEC);
    if (mount(nullptr, fd_path(dev.get()).c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) < 0)
        die("remount(/dev, ro)", errno, "/dev");
}

void step_proc(int rootfd) {
    // proc of the new pid namespace: we are its pid 1.
    UniqueFd tgt = make_target(rootfd, "/proc", true);
    if (mount("proc", fd_path(tgt.get()).c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
        die("mount(proc)", errno, "/proc");
    UniqueFd proc(openat(rootfd, "proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!proc) die("open(/proc)", errno, "/proc");
    for (const auto& path : proc_masked_paths()) {
        std::string rel = path.substr(6);  // strip "/proc/"
        UniqueFd fd(openat(proc.get(), rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) continue;  // not present on this kernel
        struct stat st{};
        fstat(fd.get(), &st);
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", fd_path(fd.get()).c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4096,mode=0") < 0)
                die("mask(/proc dir)", errno, path);
        } else {
            UniqueFd tree(sys_open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
            if (!tree || sys_move_mount(tree.get(), "", fd.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                die("mask(/proc file)", errno, path);
        }
    }
    for (const auto& path : proc_readonly_paths()) {
        std::string rel = path.substr(6);
        UniqueFd tree(sys_open_tree(proc.get(), rel.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
        if (!tree) continue;
        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        if (sys_mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) die("mount_setattr(/proc ro)", errno, path);
        UniqueFd at(openat(proc.get(), rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!at || sys_move_mount(tree.get(), "", at.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            die("move_mount(/proc ro)", errno, path);
    }
}

void step_pivot_root(const std::string& newroot, bool read_only) {
    if (chdir(newroot.c_str()) < 0) die("chdir(new root)", errno, newroot);
    // pivot_root(".", "."): the old root ends up on top of the new one and is
    // detached right away; nothing of the host's tree stays reachable.
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", errno, newroot);
    if (umount2(".", MNT_DETACH) < 0) die("umount2(old root)", errno, "/");
    if (chdir("/") < 0) die("chdir(/)", errno, "/");
    if (read_only && mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0)
        die("remount(/, ro)", errno, "/");
}

void step_network(bool loopback) {
    if (!loopback) return;  // `none`: the new namespace's lo stays down
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket(AF_INET)", errno, "lo");
    ifreq ifr{};
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("ioctl(SIOCGIFFLAGS)", errno, "lo");
    // Already up in a network namespace the spawn helper made ahead (which
    // this init, root of the job's user namespace only, could not change).
    if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("ioctl(SIOCSIFFLAGS)", errno, "lo");
    }
    close(s);
}

// execvp's search: the first regular executable file along PATH (default
// as glibc's); a name found nowhere stays as it is and fails at execve with
// the usual words.
std::string resolve_in_path(const std::string& name, const std::vector<std::string>& env) {
    auto found = search_path(name, env, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             [](const std::string& cand) {
                                 struct stat st{};
                                 return stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                                        access(cand.c_str(), X_OK) == 0;
                             });
    return found ? *found : "/" + name;  // ENOENT at execve, described with the name
}

[[noreturn]] void job_main(const ContainerPlan& p, const ExecFailureWord& exec_word) {
    HeldTimings held;  // sent with the listener's number: one wake-up of moatd
    held.note(kInitStatusFd, "forked");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setsid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PDEATHSIG)", errno, "");
    struct { int res; uint64_t v; const char* name; } lims[] = {
        {RLIMIT_FSIZE, p.rlimits.file_size, "setrlimit(RLIMIT_FSIZE)"},
        {RLIMIT_NOFILE, p.rlimits.open_files, "setrlimit(RLIMIT_NOFILE)"},
        {RLIMIT_STACK, p.rlimits.stack, "setrlimit(RLIMIT_STACK)"},
        {RLIMIT_CORE, p.rlimits.core, "setrlimit(RLIMIT_CORE)"},
    };
    for (auto& l : lims) {
        rlimit rl{rlim_t(l.v), rlim_t(l.v)};
        if (setrlimit(l.res, &rl) < 0) die(l.name, errno, "");
    }
    if (p.rlimits.cpu_seconds) {
        rlimit rl{rlim_t(p.rlimits.cpu_seconds), rlim_t(p.rlimits.cpu_seconds + 1)};
        setrlimit(RLIMIT_CPU, &rl);
    }
    // Capabilities inside the user namespace go too: bounding set first (needs
    // CAP_SETPCAP), then the uid switch clears the rest.
    // Capabilities are numbered without gaps: EINVAL is the first past the last.
    for (int cap = 0; cap <= 63; ++cap)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL) break;
    // Raw syscalls: glibc's wrappers act on every thread glibc believes the
    // process has, and this process may share the init's memory (start_job).
    if (syscall(SYS_setgroups, 0, nullptr) < 0) die("setgroups(0)", errno, "");
    if (syscall(SYS_setresgid, p.gid, p.gid, p.gid) < 0) die("setresgid", errno, std::to_string(p.gid));
    if (syscall(SYS_setresuid, p.uid, p.uid, p.uid) < 0) die("setresuid", errno, std::to_string(p.uid));
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PDEATHSIG)", errno, "");  // cleared by setresuid
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset(0)", errno, "");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("prctl(NO_NEW_PRIVS)", errno, "");
    if (chdir(p.cwd.c_str()) < 0) {
        report("chdir", errno, 0, p.cwd);
        if (chdir("/") < 0) die("chdir(/)", errno, "/");
    }
    if (syscall(SYS_close_range, 3U, ~0U, 4U /*CLOSE_RANGE_CLOEXEC*/) < 0) die("close_range", errno, "");
    // A name in a client's root: looked up here, as the job, in the job's own
    // PATH, the way execvp would (moatd cannot see into that root).
    std::string exe = p.exe;
    if (p.resolve_exe) exe = resolve_in_path(p.exe, p.env);
    std::vector<char*> argv, envp;
    for (const auto& s : p.argv) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    for (const auto& s : p.env) envp.push_back(const_cast<char*>(s.c_str()));
    envp.push_back(nullptr);
    sock_fprog prog{(unsigned short)p.filter.size(), const_cast<sock_filter*>(p.filter.data())};
    // moatd sleeps until this, then copies the listener at the number we give.
    // Nothing allocates an fd between here and seccomp().
    SetupRecord mark{};
    snprintf(mark.step, sizeof mark.step, "filter");
    mark.err = predict_listener_fd();
    mark.fatal = kSetupFilterNext;
    held.send(kInitStatusFd, &mark);
    // Last step: from here every syscall is judged; the first execve waits for moatd.
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog) < 0)
        die("seccomp(SET_MODE_FILTER)", errno, "");
    execve(exe.c_str(), argv.data(), envp.data());
    // The filter is installed: a write (die()) may be denied, and would be
    // recorded as the job's own denial. A memory store needs no syscall; init
    // (our parent, not under the filter) reports it when we are gone.
    exec_word.set(errno);
    // The raw exit_group, not _exit(): a sanitizer runtime intercepts _exit
    // (LeakSanitizer's exit-time check) and would make syscalls the filter denies.
    syscall(SYS_exit_group, 125);
    __builtin_unreachable();
}

[[noreturn]] void init_loop(pid_t job, const ContainerPlan& p, const ExecFailureWord& exec_word) {
    // pid 1 of the namespace: reap everything, forward termination signals to
    // the job, report the job's wait status, then end the namespace.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&set, s);
    for (;;) {
        siginfo_t si{};
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            kill(job, sig);
            continue;
        }
        for (;;) {
            int status = 0;
            pid_t w = waitpid(-1, &status, WNOHANG);
            if (w <= 0) break;
            if (w == job) {
                HeldTimings held;  // "reaped" goes with the job's status, in one write
                held.note(kInitStatusFd, "reaped");
                if (auto err = exec_word.get())  // the program never ran: say why, with the path walked in here
                    report("execve", *err, 1, describe_exec_failure(p.exe, *err));
                SetupRecord rec{};
                snprintf(rec.step, sizeof rec.step, "exit");
                rec.err = status;  // the raw wait status
                rec.fatal = 0;
                held.send(kInitStatusFd, &rec);
                kill(-1, SIGKILL);  // everything else in the namespace
                while (waitpid(-1, nullptr, 0) > 0) {}
                // Nothing of the job is left: whatever of its stdio an
                // orphan held is closed now (this process closed its own
                // copies when the job started), and "emptied" tells moatd it
                // may answer the client; it reaps this process and removes
                // the cgroup after (docs/architecture.md, "A container job's end").
                report_timing(kInitStatusFd, "emptied");
                _exit(0);
            }
        }
    }
}

struct JobArgs {
    const ContainerPlan* plan;
    const ExecFailureWord* exec_word;
};

int job_entry(void* p) {
    auto* a = static_cast<const JobArgs*>(p);
    job_main(*a->plan, *a->exec_word);
}

// The job's process, as posix_spawn makes one: on this process's memory
// (CLONE_VM) with this process stopped until its execve or exit
// (CLONE_VFORK), so neither copies page tables nor takes copy-on-write
// faults (~0.1-0.25 ms of a start on this VM, docs/performance.md). Nothing of
// the init's runs meanwhile: there is nothing to reap yet, and a signal
// for the job stays pending (blocked) until the init waits for it. A
// plain fork where the memory may not be shared (child_may_share_memory);
// 0 returned in that child.
//
// What this relies on: the init is single-threaded (a fresh exec of
// moat-init, a copy of the single-threaded spawn helper, or the guest
// agent's in-process path, which checks), so the child's allocations and
// glibc calls meet no lock another thread holds; and the init's code after a
// child that died part-way (init_loop) allocates only once that child's
// execve failed cleanly (describe_exec_failure), never after a kill in the
// middle of a malloc.
pid_t start_job(const ContainerPlan& plan, const ExecFailureWord& exec_word) {
    if (child_may_share_memory()) {
        if (auto mem = ChildMemory::create(0)) {
            JobArgs a{&plan, &exec_word};
            pid_t pid = clone(job_entry, mem->stack_top(), CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
            if (pid > 0) return pid;  // exec'd or gone: its stack may go
        }
    }
    return fork();
}

}  // namespace

int container_init_main() {
    fcntl(kInitStatusFd, F_SETFD, FD_CLOEXEC);
    fcntl(kInitPlanFd, F_SETFD, FD_CLOEXEC);
    if (getpid() != 1) die("moat-init", EINVAL, "must be pid 1 of a new pid namespace (started by moatd)");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PDEATHSIG)", errno, "");
    container_init_run(read_plan());
}

void container_init_run(const ContainerPlan& plan) {
    if (getpid() != 1) die("moat-init", EINVAL, "must be pid 1 of a new pid namespace (started by moatd)");
    // Now inside the job's cgroup (moatd moved us): root the cgroup namespace here.
    if (unshare(CLONE_NEWCGROUP) < 0) die("unshare(CLONE_NEWCGROUP)", errno, "");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) die("mount(/, MS_PRIVATE)", errno, "/");
    if (plan.root_tree >= 0) {
        // The client's root filesystem: its tree moved onto the new root. The
        // mount points below must exist in it (moat-init never writes there).
        const int treefd = kInitTreeFd0 + plan.root_tree;
        struct stat st{};
        if (fstat(treefd, &st) < 0 || !S_ISDIR(st.st_mode)) die("root tree is not a directory", ENOTDIR, plan.newroot);
        if (sys_move_mount(treefd, "", AT_FDCWD, plan.newroot.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
            die("move_mount(root tree)", errno, plan.newroot);
        // Private (pivot_root refuses a shared mount, and nothing of the
        // job's may propagate back); read-only, if asked, with every mount
        // below it that came with the tree (its mount points were made by
        // the client: moat-init writes nothing here).
        secure_tree(treefd, plan.root_read_only, "/");
    } else {
        std::string opts = "size=" + std::to_string(plan.root_size) + ",mode=0755";
        if (mount("tmpfs", plan.newroot.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) < 0)
            die("mount(root tmpfs)", errno, plan.newroot);
    }
    UniqueFd root(open(plan.newroot.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) die("open(new root)", errno, plan.newroot);
    // The steps' timings are held and sent together before the job's
    // process starts (one wake-up of moatd instead of six).
    HeldTimings held;
    held.note(kInitStatusFd, "plan");
    step_mounts(root.get(), plan);
    held.note(kInitStatusFd, "mounts");
    step_dev(root.get(), plan.dev_shm_size);
    held.note(kInitStatusFd, "dev");
    step_proc(root.get());
    held.note(kInitStatusFd, "proc");
    step_pivot_root(plan.newroot, plan.root_tree < 0 || plan.root_read_only);
    held.note(kInitStatusFd, "pivot");
    for (size_t i = 0; i < plan.trees; ++i) close(kInitTreeFd0 + int(i));
    if (sethostname(plan.hostname.data(), plan.hostname.size()) < 0) die("sethostname", errno, plan.hostname);
    step_network(plan.loopback);
    held.note(kInitStatusFd, "root");
    held.send(kInitStatusFd);

    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    auto exec_word = ExecFailureWord::create();
    if (!exec_word) die("mmap(exec failure word)", ENOMEM, exec_word.error().message);
    pid_t job = start_job(plan, *exec_word);
    if (job < 0) die("fork(job)", errno, "");
    if (job == 0) job_main(plan, *exec_word);
    // The job has its own copies of its stdio; ours would keep the relay from
    // EOF until this process reports the job's end and closes them (see
    // init_loop). Without them the relay is done as soon as the job and
    // whatever it left holding its output are: a short job's output is then
    // usually all relayed before moatd hears of its end, and its end and its
    // outputs are stored in one commit (issue 15).
    for (int fd = 0; fd < 3; ++fd) close(fd);
    init_loop(job, plan, *exec_word);
}

}  // namespace moat::sandbox
