#include "moat/vm/root_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "fsutil.h"
#include "moat/common/fd.h"
#include "moat/common/sha256.h"

namespace moat::vm {

namespace {

constexpr const char* kFormatTag = "moat-root-image-v1";
constexpr uint64_t kBlock = 4096;

Result<std::vector<std::string>> normalise(const std::vector<std::string>& in) {
    std::vector<std::string> paths;
    for (const auto& p : in) {
        if (p.empty() || p[0] != '/') return fail("root image path \"" + p + "\" is not absolute");
        if (p == "/") return fail("root image path \"/\": name the directories the job needs, not the whole host");
        if (p.back() == '/' || p.find("//") != std::string::npos || p.find("/./") != std::string::npos ||
            p.find("/../") != std::string::npos || p.ends_with("/..") || p.ends_with("/."))
            return fail("root image path \"" + p + "\" is not normalised");
        paths.push_back(p);
    }
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    // A path under another named path is already in the image with it.
    std::vector<std::string> out;
    for (const auto& p : paths) {
        bool nested = false;
        for (const auto& q : out)
            if (p.starts_with(q + "/")) nested = true;
        if (!nested) out.push_back(p);
    }
    return out;
}

struct Walk {
    Sha256 hash;
    uint64_t data_bytes = 0;
    uint64_t entries = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<std::string> hidden;  // entries the uid may not read (see may_read)
};

// Whether uid:gid (no supplementary groups) may read `st` as mkfs needs it:
// a file readable, a directory readable and searchable. The kernel's rule:
// the owner bits if the uid owns it, else the group bits if the gid matches,
// else the other bits. ACLs are not looked at: an ACL that denies what the
// bits allow makes mkfs fail with its own words instead.
bool may_read(const struct stat& st, uid_t uid, gid_t gid) {
    unsigned bits = st.st_uid == uid ? (st.st_mode >> 6) & 7 : st.st_gid == gid ? (st.st_mode >> 3) & 7 : st.st_mode & 7;
    if (S_ISDIR(st.st_mode)) return (bits & 5) == 5;
    if (S_ISREG(st.st_mode)) return (bits & 4) == 4;
    return true;  // symlinks (readlink needs no permission), fifos, sockets, devices: no content read
}

void account(Walk& w, const std::string& path, const struct stat& st, const std::string& link) {
    char rec[256];
    int n = snprintf(rec, sizeof rec, "\n%o %lld %lld.%09ld %llu %o ", unsigned(st.st_mode & S_IFMT),
                     (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     (unsigned long long)st.st_ino, unsigned(st.st_mode & 07777));
    w.hash.update(path);
    w.hash.update(std::string_view(rec, size_t(n)));
    w.hash.update(link);
    ++w.entries;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        w.data_bytes += (uint64_t(st.st_size) + kBlock - 1) / kBlock * kBlock + (S_ISDIR(st.st_mode) ? kBlock : 0);
    else if (S_ISLNK(st.st_mode) && link.size() >= 60)  // shorter targets live in the inode
        w.data_bytes += kBlock;
}

Result<void> walk(Walk& w, const std::string& path, const struct stat& st, bool named) {
    std::string link;
    if (S_ISLNK(st.st_mode)) {
        char buf[PATH_MAX];
        ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
        if (n < 0) return fail_sys("readlink(\"" + path + "\")", errno);
        link.assign(buf, size_t(n));
    }
    // Inside a named tree, what the uid may not read becomes an empty,
    // readable placeholder (an empty directory or file): the job could not
    // read it on the host either, and one 0700 directory deep in /usr
    // (polkit's rules.d) must not make all of /usr impossible. A NAMED path
    // the uid may not read is not hidden: mkfs fails on it, saying why.
    if (!named && !may_read(st, w.uid, w.gid)) {
        w.hidden.push_back(path);
        w.hash.update("\nhidden " + path + (S_ISDIR(st.st_mode) ? " dir" : " file"));
        ++w.entries;
        w.data_bytes += kBlock;
        return {};
    }
    account(w, path, st, link);
    if (!S_ISDIR(st.st_mode)) return {};
    DIR* d = ::opendir(path.c_str());
    if (!d) return fail_sys("opendir(\"" + path + "\")", errno);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        names.emplace_back(e->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());  // readdir order is not stable across rebuilds of a dir
    for (const auto& name : names) {
        std::string child = path + "/" + name;
        struct stat cst;
        if (::lstat(child.c_str(), &cst) < 0) {
            if (errno == ENOENT) continue;  // removed while we walk
            return fail_sys("lstat(\"" + child + "\")", errno);
        }
        if (auto r = walk(w, child, cst, false); !r) return r;
    }
    return {};
}

// One step of the staging tree, prepared in the parent: the child only reads it.
struct StageOp {
    enum Kind { Dir, Symlink, BindDir, BindFile, MaskDir, MaskFile } kind;
    std::string path;    // in the staging tree (absolute, under the tmpfs)
    std::string source;  // Bind*: the host path; Symlink: the target
    mode_t mode = 0755;
    uid_t uid = 0;
    gid_t gid = 0;
};

struct ChildArgs {
    const char* staging;
    const char* masks;  // a second tmpfs: the empty placeholders live here, outside the image
    const StageOp* ops;
    size_t nops;
    uid_t uid;
    gid_t gid;
    int out_fd;  // mkfs's stdout+stderr and our own failure text
    char* const* argv;
};

// ---- the child: async-signal-safe code only (moatd is multi-threaded) ----

[[noreturn]] void child_fail(int fd, const char* what, const char* arg, int err) {
    // Plain writes, no formatting: "<what>(<arg>): <strerror>".
    auto put = [fd](const char* s) { (void)!::write(fd, s, strlen(s)); };
    put(what);
    put("(\"");
    put(arg ? arg : "");
    put("\"): ");
    put(strerrorname_np(err) ? strerrorname_np(err) : "?");
    put("\n");
    _exit(126);
}

[[noreturn]] void child_main(const ChildArgs& a) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (dup2(a.out_fd, 1) < 0 || dup2(a.out_fd, 2) < 0) _exit(126);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    // Only 0..2 survive: mkfs gets nothing of the parent's.
    syscall(SYS_close_range, 3U, ~0U, 0U);
    // A private mount namespace: the tmpfs and the bind mounts exist only for
    // this process and vanish with it; MS_PRIVATE first so none of them
    // propagates back to the host's mount table.
    if (unshare(CLONE_NEWNS) < 0) child_fail(2, "unshare", "CLONE_NEWNS", errno);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) child_fail(2, "mount", "/ MS_PRIVATE", errno);
    if (mount("moat-stage", a.staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") < 0)
        child_fail(2, "mount(tmpfs)", a.staging, errno);
    // The placeholders for what the uid may not read: an empty directory and
    // an empty file, root's, readable by all (kMaskDir, kMaskFile).
    if (mount("moat-mask", a.masks, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") < 0)
        child_fail(2, "mount(tmpfs)", a.masks, errno);
    for (size_t i = 0; i < a.nops; ++i) {
        const StageOp& op = a.ops[i];
        const char* p = op.path.c_str();
        switch (op.kind) {
            case StageOp::Dir:
                if (mkdir(p, op.mode) < 0 && errno != EEXIST) child_fail(2, "mkdir", p, errno);
                if (chmod(p, op.mode) < 0 || lchown(p, op.uid, op.gid) < 0) child_fail(2, "chown", p, errno);
                break;
            case StageOp::Symlink:
                if (symlink(op.source.c_str(), p) < 0) child_fail(2, "symlink", p, errno);
                if (lchown(p, op.uid, op.gid) < 0) child_fail(2, "lchown", p, errno);
                break;
            case StageOp::MaskDir:
            case StageOp::MaskFile:
                if (op.kind == StageOp::MaskDir && mkdir(op.source.c_str(), 0755) < 0 && errno != EEXIST)
                    child_fail(2, "mkdir", op.source.c_str(), errno);
                if (op.kind == StageOp::MaskFile) {
                    int fd = ::open(op.source.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                    if (fd < 0) child_fail(2, "open(O_CREAT)", op.source.c_str(), errno);
                    ::close(fd);
                }
                if (mount(op.source.c_str(), p, nullptr, MS_BIND, nullptr) < 0)
                    child_fail(2, "mount(MS_BIND mask)", p, errno);
                break;
            case StageOp::BindDir:
            case StageOp::BindFile: {
                if (op.kind == StageOp::BindDir) {
                    if (mkdir(p, 0755) < 0) child_fail(2, "mkdir", p, errno);
                } else {
                    int fd = ::open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                    if (fd < 0) child_fail(2, "open(O_CREAT)", p, errno);
                    ::close(fd);
                }
                if (mount(op.source.c_str(), p, nullptr, MS_BIND | MS_REC, nullptr) < 0)
                    child_fail(2, "mount(MS_BIND)", op.source.c_str(), errno);
                // Read-only for the same reason the guest gets it read-only:
                // the image builder has no business writing the host's files.
                if (mount(nullptr, p, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) < 0)
                    child_fail(2, "mount(MS_REMOUNT|MS_RDONLY)", p, errno);
                break;
            }
        }
    }
    // Now the unprivileged uid: from here every file mkfs copies is one this
    // uid may read. setgroups first: after setresuid we could not drop the
    // supplementary groups any more (and root's would grant reads).
    if (setgroups(0, nullptr) < 0) child_fail(2, "setgroups", "0", errno);
    if (setresgid(a.gid, a.gid, a.gid) < 0) child_fail(2, "setresgid", "", errno);
    if (setresuid(a.uid, a.uid, a.uid) < 0) child_fail(2, "setresuid", "", errno);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // cleared by the credential change
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (chdir("/") < 0) child_fail(2, "chdir", "/", errno);
    char* envp[] = {nullptr};
    execve(a.argv[0], a.argv, envp);
    child_fail(2, "execve", a.argv[0], errno);
}

// ---- parent -----------------------------------------------------------------

struct CacheEntry {
    std::string path;
    int64_t mtime_ns;
    uint64_t bytes;
};

// Keeps the cache within max_images / max_bytes, oldest use first; `keep` is
// the image just built or returned. An image QEMU has open survives its
// unlink until QEMU closes it.
void evict(const RootImageOptions& opt, const std::string& keep) {
    DIR* d = ::opendir(opt.cache_dir.c_str());
    if (!d) return;
    std::vector<CacheEntry> all;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (!name.starts_with("root-") || !name.ends_with(".img")) continue;
        std::string p = opt.cache_dir + "/" + name;
        struct stat st;
        if (::stat(p.c_str(), &st) < 0) continue;
        all.push_back({p, int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec, detail::allocated_bytes(st)});
    }
    ::closedir(d);
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.mtime_ns < b.mtime_ns; });
    uint64_t total = 0;
    for (const auto& e : all) total += e.bytes;
    size_t count = all.size();
    for (const auto& e : all) {
        if (count <= opt.max_images && total <= opt.max_bytes) break;
        if (e.path == keep) continue;
        if (::unlink(e.path.c_str()) == 0) {
            --count;
            total -= e.bytes;
        }
    }
}

// Marks an image as just used (eviction is by mtime: the image's content never
// changes after the rename, and atime may be off on the cache's filesystem).
void touch(const std::string& path) { ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

Result<std::vector<StageOp>> plan_staging(const std::string& staging, const std::string& masks,
                                          const std::vector<std::string>& paths, const std::vector<std::string>& hidden,
                                          std::vector<std::string>& missing) {
    std::vector<StageOp> ops;
    std::vector<std::string> made;  // staging dirs already planned
    for (const auto& p : paths) {
        struct stat st;
        if (::lstat(p.c_str(), &st) < 0) {
            if (errno == ENOENT) {
                missing.push_back(p);
                continue;
            }
            return fail_sys("lstat(\"" + p + "\")", errno);
        }
        // Parents: real directories on the host, recreated with their owner
        // and mode. A parent that is a symlink would be followed by mkfs in
        // the host's namespace view differently from the guest's: refuse it.
        for (size_t pos = p.find('/', 1); pos != std::string::npos; pos = p.find('/', pos + 1)) {
            std::string parent = p.substr(0, pos);
            struct stat pst;
            if (::lstat(parent.c_str(), &pst) < 0) return fail_sys("lstat(\"" + parent + "\")", errno);
            if (!S_ISDIR(pst.st_mode))
                return fail("root image path " + p + " lies under " + parent +
                            ", which is not a directory (a symlink?): name the path it resolves to");
            if (std::find(made.begin(), made.end(), parent) != made.end()) continue;
            made.push_back(parent);
            ops.push_back({StageOp::Dir, staging + parent, "", mode_t(pst.st_mode & 07777), pst.st_uid, pst.st_gid});
        }
        if (S_ISLNK(st.st_mode)) {
            char buf[PATH_MAX];
            ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
            if (n < 0) return fail_sys("readlink(\"" + p + "\")", errno);
            ops.push_back({StageOp::Symlink, staging + p, std::string(buf, size_t(n)), 0777, st.st_uid, st.st_gid});
        } else if (S_ISDIR(st.st_mode)) {
            ops.push_back({StageOp::BindDir, staging + p, p});
        } else if (S_ISREG(st.st_mode)) {
            ops.push_back({StageOp::BindFile, staging + p, p});
        } else {
            return fail("root image path " + p + " is neither a file, a directory nor a symlink");
        }
    }
    // After every bind: the masks go over paths inside the bound trees.
    for (const auto& h : hidden) {
        struct stat st;
        if (::lstat(h.c_str(), &st) < 0) continue;  // gone since the walk
        bool dir = S_ISDIR(st.st_mode);
        ops.push_back({dir ? StageOp::MaskDir : StageOp::MaskFile, staging + h, masks + (dir ? "/d" : "/f")});
    }
    return ops;
}

}  // namespace

Result<RootImage> root_image_key(const std::vector<std::string>& in, uid_t uid, gid_t gid) {
    auto paths = normalise(in);
    if (!paths) return std::unexpected(paths.error());
    Walk w;
    w.uid = uid;
    w.gid = gid;
    w.hash.update(kFormatTag);
    w.hash.update("\nas " + std::to_string(uid) + ":" + std::to_string(gid));
    RootImage out;
    for (const auto& p : *paths) {
        w.hash.update("\npath ");
        w.hash.update(p);
    }
    for (const auto& p : *paths) {
        struct stat st;
        if (::lstat(p.c_str(), &st) < 0) {
            if (errno != ENOENT) return fail_sys("lstat(\"" + p + "\")", errno);
            out.missing.push_back(p);
            w.hash.update("\nmissing " + p);
            continue;
        }
        if (auto r = walk(w, p, st, true); !r) return std::unexpected(r.error().wrap("walking " + p));
    }
    out.key = w.hash.hex();
    out.hidden = std::move(w.hidden);
    out.tree_bytes = w.data_bytes;
    out.entries = w.entries;
    return out;
}

Result<RootImage> build_root_image(const RootImageOptions& opt) {
    if (opt.uid == 0 || opt.gid == 0) return fail("refusing to build a root image as uid or gid 0");
    auto paths = normalise(opt.paths);
    if (!paths) return std::unexpected(paths.error());
    if (paths->empty()) return fail("root image: no paths");
    auto keyed = root_image_key(*paths, opt.uid, opt.gid);
    if (!keyed) return keyed;
    RootImage out = std::move(*keyed);
    out.path = opt.cache_dir + "/root-" + out.key + ".img";
    struct stat st;
    if (::stat(out.path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        out.cache_hit = true;
        out.image_bytes = uint64_t(st.st_size);
        touch(out.path);
        return out;
    }
    if (auto r = detail::make_dirs(opt.cache_dir); !r) return std::unexpected(r.error());

    // Size: the data rounded to blocks, an inode (256 B) per entry plus
    // spare ones, 5% for extent trees, bitmaps and group descriptors, and
    // 16 MiB of slack; rounded up to a MiB. The file is sparse, so slack
    // costs no disk; mkfs writes only what it uses.
    const uint64_t inodes = out.entries + 1024;
    uint64_t size = out.tree_bytes + inodes * 256 + out.tree_bytes / 20 + (16ull << 20);
    size = (size + (1 << 20) - 1) & ~uint64_t((1 << 20) - 1);
    out.image_bytes = size;

    const std::string tmp = detail::temp_name_for(out.path);
    UniqueFd img(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!img) return fail_sys("open(\"" + tmp + "\", O_CREAT|O_EXCL)", errno);
    auto cleanup_fail = [&](Error e) -> Result<RootImage> {
        ::unlink(tmp.c_str());
        return std::unexpected(std::move(e));
    };
    if (::ftruncate(img.get(), off_t(size)) < 0) return cleanup_fail(Error::sys("ftruncate(\"" + tmp + "\")", errno));
    // mkfs runs as opt.uid and must write this one file (and nothing else in
    // the root-owned cache directory). It is ours again before the rename.
    if (::fchown(img.get(), opt.uid, opt.gid) < 0) return cleanup_fail(Error::sys("fchown(\"" + tmp + "\")", errno));

    char staging_buf[] = "/tmp/moat-rootimg-XXXXXX";
    if (!::mkdtemp(staging_buf)) return cleanup_fail(Error::sys("mkdtemp(/tmp/moat-rootimg-XXXXXX)", errno));
    const std::string staging = staging_buf;
    char masks_buf[] = "/tmp/moat-rootimg-mask-XXXXXX";
    if (!::mkdtemp(masks_buf)) {
        ::rmdir(staging.c_str());
        return cleanup_fail(Error::sys("mkdtemp(/tmp/moat-rootimg-mask-XXXXXX)", errno));
    }
    const std::string masks = masks_buf;
    auto remove_dirs = [&] {
        ::rmdir(staging.c_str());
        ::rmdir(masks.c_str());
    };
    out.missing.clear();
    auto ops = plan_staging(staging, masks, *paths, out.hidden, out.missing);
    if (!ops) {
        remove_dirs();
        return cleanup_fail(ops.error());
    }

    const std::string inode_arg = std::to_string(inodes);
    std::vector<std::string> args = {opt.mkfs, "-q", "-F", "-b", "4096", "-I", "256", "-N", inode_arg,
                                     "-m", "0", "-O", "^has_journal", "-E", "root_owner=0:0,nodiscard",
                                     "-L", "moat-root", "-d", staging, tmp};
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) < 0) {
        remove_dirs();
        return cleanup_fail(Error::sys("pipe2", errno));
    }
    UniqueFd out_r(pipefd[0]), out_w(pipefd[1]);
    ChildArgs a{staging.c_str(), masks.c_str(), ops->data(), ops->size(), opt.uid, opt.gid, out_w.get(), argv.data()};
    pid_t pid = ::fork();
    if (pid < 0) {
        remove_dirs();
        return cleanup_fail(Error::sys("fork", errno));
    }
    if (pid == 0) child_main(a);
    out_w.reset();
    // Keep the first 8 KiB of what mkfs says: its error is near the start.
    std::string said;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(out_r.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (said.size() < 8192) said.append(buf, size_t(std::min<ssize_t>(n, 8192 - ssize_t(said.size()))));
    }
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    remove_dirs();
    while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        std::string how = WIFEXITED(ws) ? "exit status " + std::to_string(WEXITSTATUS(ws))
                                        : "signal " + std::to_string(WTERMSIG(ws));
        return cleanup_fail(Error::msg("building the root image (mkfs.ext4 -d as uid " + std::to_string(opt.uid) +
                                       ") failed with " + how + ": " + said));
    }
    if (::fchown(img.get(), 0, 0) < 0 || ::fchmod(img.get(), 0644) < 0)
        return cleanup_fail(Error::sys("fchown/fchmod(\"" + tmp + "\")", errno));
    if (::rename(tmp.c_str(), out.path.c_str()) < 0) return cleanup_fail(Error::sys("rename(\"" + tmp + "\")", errno));
    evict(opt, out.path);
    return out;
}

}  // namespace moat::vm
