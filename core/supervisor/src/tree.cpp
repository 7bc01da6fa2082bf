// Directory snapshots: the manifest, the walk that makes one and the restore
// that puts one back (tree.h).
#include "tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "moat/common/fd.h"
#include "moat/common/text.h"
#include "moat/common/units.h"
#include "moat/store/artifacts.h"

namespace moat::supervisor {

namespace {

using nlohmann::json;

constexpr const char* kFormat = "moat-tree/1";

const char* type_name(TreeEntry::Type t) {
    switch (t) {
        case TreeEntry::Type::Dir: return "dir";
        case TreeEntry::Type::File: return "file";
        case TreeEntry::Type::Symlink: return "symlink";
    }
    return "?";
}

size_t components(std::string_view path) { return size_t(std::count(path.begin(), path.end(), '/')) + 1; }

// Why `path` is not a relative path of a manifest entry, or "".
std::string bad_path(std::string_view path) {
    if (path.empty()) return "an empty path";
    if (path.size() > kMaxTreePath) return "a path longer than " + std::to_string(kMaxTreePath) + " bytes";
    if (path.find('\0') != std::string_view::npos) return "a NUL byte in a path";
    if (path.front() == '/') return "an absolute path";
    if (components(path) > kMaxTreeDepth) return "a path deeper than " + std::to_string(kMaxTreeDepth) + " levels";
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        std::string_view c = path.substr(i, j - i);
        if (c.empty()) return "an empty path component";
        if (c == "." || c == "..") return "a \"" + std::string(c) + "\" component";
        i = j + 1;
    }
    return "";
}

// ------------------------------------------------------------------ walk

struct DirCloser {
    void operator()(DIR* d) const { closedir(d); }
};

class Walker {
public:
    Walker(const TreeLimits& limits, const FileSink& sink, const std::atomic<bool>& cancel)
        : m_limits(limits), m_sink(sink), m_cancel(cancel) {}

    Result<void> dir(int dirfd, const std::string& prefix) {
        // fdopendir owns what it is given: a duplicate, so the caller's fd stays.
        int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) return fail_sys("dup(" + shown(prefix) + ")", errno);
        std::unique_ptr<DIR, DirCloser> d(fdopendir(dup));
        if (!d) {
            int e = errno;
            ::close(dup);
            return fail_sys("opendir(" + shown(prefix) + ")", e);
        }
        for (;;) {
            errno = 0;
            dirent* e = readdir(d.get());
            if (!e) {
                if (errno) return fail_sys("readdir(" + shown(prefix) + ")", errno);
                return {};
            }
            const std::string name = e->d_name;
            if (name == "." || name == "..") continue;
            if (auto r = entry(dirfd, name, prefix.empty() ? name : prefix + "/" + name); !r) return r;
        }
    }

    TreeWalk take() {
        std::sort(m_out.manifest.entries.begin(), m_out.manifest.entries.end(),
                  [](const TreeEntry& a, const TreeEntry& b) { return a.path < b.path; });
        return std::move(m_out);
    }
    TreeWalk& out() { return m_out; }

private:
    static std::string shown(const std::string& rel) { return rel.empty() ? "." : rel; }

    Result<void> entry(int dirfd, const std::string& name, const std::string& rel) {
        if (m_cancel) return fail("cancelled");
        if (++m_seen > m_limits.max_entries)
            return fail("more than " + std::to_string(m_limits.max_entries) +
                        " entries (moatd --record-input-entries)");
        if (std::string why = bad_path(rel); !why.empty()) return fail(rel.substr(0, 256) + "...: " + why);
        if (!valid_utf8(rel))  // the manifest is JSON text: it could not carry the name unchanged
            return fail("a name that is not UTF-8 (" + rel.substr(0, 256) + ")");
        struct stat st{};
        if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return fail_sys("stat(" + rel + ")", errno);
        TreeEntry en;
        en.path = rel;
        en.mode = uint32_t(st.st_mode & 07777);
        if (S_ISDIR(st.st_mode)) {
            en.type = TreeEntry::Type::Dir;
            m_out.manifest.entries.push_back(std::move(en));
            UniqueFd sub(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!sub) return fail_sys("open(" + rel + ")", errno);
            return dir(sub.get(), rel);
        }
        if (S_ISLNK(st.st_mode)) return symlink(dirfd, name, std::move(en));
        if (S_ISREG(st.st_mode)) return file(dirfd, name, std::move(en));
        m_out.skipped.push_back(rel + ": " + special_kind(st.st_mode));
        return {};
    }

    Result<void> symlink(int dirfd, const std::string& name, TreeEntry en) {
        std::string target(kMaxTreePath + 1, '\0');
        ssize_t n = readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return fail_sys("readlink(" + en.path + ")", errno);
        if (size_t(n) > kMaxTreePath) return fail(en.path + ": a symlink target longer than " +
                                                  std::to_string(kMaxTreePath) + " bytes");
        target.resize(size_t(n));
        if (target.empty() || !valid_utf8(target)) return fail(en.path + ": a symlink target that is not UTF-8 text");
        en.type = TreeEntry::Type::Symlink;
        en.mode = 0;
        en.target = std::move(target);
        m_out.manifest.entries.push_back(std::move(en));
        return {};
    }

    Result<void> file(int dirfd, const std::string& name, TreeEntry en) {
        // O_NONBLOCK: if the entry was swapped for a FIFO since fstatat, the
        // open does not wait for a writer (and the fstat below refuses it).
        UniqueFd fd(openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
        if (!fd) return fail_sys("open(" + en.path + ")", errno);
        struct stat st{};
        if (fstat(fd.get(), &st) < 0) return fail_sys("fstat(" + en.path + ")", errno);
        if (!S_ISREG(st.st_mode)) return fail(en.path + ": changed while the tree was read");
        const uint64_t left = m_limits.max_bytes - m_out.bytes;
        if (uint64_t(st.st_size) > left) return over_budget();
        auto d = m_sink(fd.get(), left);
        if (!d) return std::unexpected(d.error().wrap(en.path));
        if (d->truncated) return over_budget();
        if (d->bytes > uint64_t(st.st_size)) m_out.grown.push_back(en.path);
        en.type = TreeEntry::Type::File;
        en.mode = uint32_t(st.st_mode & 07777);
        en.size = d->bytes;
        en.sha256 = d->sha256;
        m_out.bytes += d->bytes;
        m_out.manifest.entries.push_back(std::move(en));
        return {};
    }

    std::unexpected<Error> over_budget() const {
        return fail("its files are over the snapshot limit of " + format_size(m_limits.max_bytes) +
                    " for the whole tree (moatd --record-input-max)");
    }

    static std::string special_kind(mode_t m) {
        if (S_ISFIFO(m)) return "a FIFO (not recorded)";
        if (S_ISSOCK(m)) return "a socket (not recorded)";
        if (S_ISCHR(m)) return "a character device (not recorded)";
        if (S_ISBLK(m)) return "a block device (not recorded)";
        return "not a file, directory or symlink (not recorded)";
    }

    const TreeLimits& m_limits;
    const FileSink& m_sink;
    const std::atomic<bool>& m_cancel;
    uint64_t m_seen = 0;
    TreeWalk m_out;
};

// ------------------------------------------------------------------ restore

// Opens directory `rel` below `root`. The kernel refuses any resolution that
// would leave `root` or cross a symlink, whatever `rel` says.
UniqueFd open_beneath(int root, const std::string& rel, int flags = O_PATH) {
    open_how how{};
    how.flags = uint64_t(flags | O_DIRECTORY | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    // Raw syscall: glibc has no openat2 wrapper.
    return UniqueFd(int(syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how)));
}

// Permission bits as restored: set-uid and set-gid are dropped (the files are
// owned by a host uid; the job runs with no_new_privs on a nosuid mount, so
// they would change nothing inside anyway).
mode_t restored_mode(uint32_t mode) { return mode_t(mode & 01777); }

Result<void> copy_blob(const TreeEntry& en, int dirfd, const std::string& base, uid_t owner, const BlobPath& blob_path,
                       const std::atomic<bool>& cancel) {
    UniqueFd in(::open(blob_path(en.sha256).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) return fail_sys("open the snapshot of " + en.path, errno);
    struct stat st{};
    if (fstat(in.get(), &st) < 0 || uint64_t(st.st_size) != en.size)
        return fail("the snapshot of " + en.path + " is not the recorded " + std::to_string(en.size) + " bytes");
    UniqueFd out(openat(dirfd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return fail_sys("create " + en.path, errno);
    if (auto r = copy_bytes(in.get(), out.get(), cancel); !r) return std::unexpected(r.error().wrap(en.path));
    if (fchown(out.get(), owner, owner) < 0) return fail_sys("chown " + en.path, errno);
    if (fchmod(out.get(), restored_mode(en.mode)) < 0) return fail_sys("chmod " + en.path, errno);
    return {};
}

Result<void> restore_entry(const TreeEntry& en, int dirfd, const std::string& base, uid_t owner,
                           const BlobPath& blob_path, const std::atomic<bool>& cancel) {
    switch (en.type) {
        case TreeEntry::Type::Dir:
            // 0700 until every entry is in; its recorded mode comes last.
            if (mkdirat(dirfd, base.c_str(), 0700) < 0) return fail_sys("mkdir " + en.path, errno);
            break;
        case TreeEntry::Type::Symlink:
            if (symlinkat(en.target.c_str(), dirfd, base.c_str()) < 0) return fail_sys("symlink " + en.path, errno);
            break;
        case TreeEntry::Type::File:
            return copy_blob(en, dirfd, base, owner, blob_path, cancel);
    }
    if (fchownat(dirfd, base.c_str(), owner, owner, AT_SYMLINK_NOFOLLOW) < 0) return fail_sys("chown " + en.path, errno);
    return {};
}

Result<void> restore_entries(const TreeManifest& m, int root, uid_t owner, const BlobPath& blob_path,
                             const std::atomic<bool>& cancel) {
    std::string parent_rel;  // the directory `parent` is open on ("" = root)
    UniqueFd parent;
    for (const TreeEntry& en : m.entries) {
        if (cancel) return fail("cancelled");
        const size_t slash = en.path.rfind('/');
        const std::string dir = slash == std::string::npos ? "" : en.path.substr(0, slash);
        const std::string base = slash == std::string::npos ? en.path : en.path.substr(slash + 1);
        if (!dir.empty() && (dir != parent_rel || !parent)) {
            parent = open_beneath(root, dir);
            if (!parent) return fail_sys("open " + dir + " (beneath the stage, no symlinks)", errno);
            parent_rel = dir;
        }
        if (auto r = restore_entry(en, dir.empty() ? root : parent.get(), base, owner, blob_path, cancel); !r) return r;
    }
    // Directory modes last, deepest first (a read-only directory is filled before it becomes one).
    for (auto it = m.entries.rbegin(); it != m.entries.rend(); ++it) {
        if (it->type != TreeEntry::Type::Dir) continue;
        UniqueFd d = open_beneath(root, it->path, O_RDONLY);
        if (!d || fchmod(d.get(), restored_mode(it->mode)) < 0) return fail_sys("chmod " + it->path, errno);
    }
    if (fchmod(root, restored_mode(m.root_mode)) < 0) return fail_sys("chmod (the tree's top)", errno);
    return {};
}

void remove_below(int dirfd, size_t depth) {
    std::unique_ptr<DIR, DirCloser> d(fdopendir(dirfd));
    if (!d) {
        ::close(dirfd);
        return;
    }
    while (auto* e = readdir(d.get())) {
        const std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        if (unlinkat(dirfd, name.c_str(), 0) == 0 || errno != EISDIR || depth > kMaxTreeDepth + 8) continue;
        int sub = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) continue;
        remove_below(sub, depth + 1);
        unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
    }
}

}  // namespace

// ------------------------------------------------------------------ manifest

std::string encode_manifest(const TreeManifest& m) {
    json entries = json::array();
    for (const TreeEntry& e : m.entries) {
        json o = {{"path", e.path}, {"type", type_name(e.type)}, {"mode", e.mode}};
        if (e.type == TreeEntry::Type::File) {
            o["size"] = e.size;
            o["sha256"] = e.sha256;
        } else if (e.type == TreeEntry::Type::Symlink) {
            o["target"] = e.target;
        }
        entries.push_back(std::move(o));
    }
    // nlohmann's objects keep their keys sorted: one spelling per tree.
    json doc = {{"format", kFormat}, {"root_mode", m.root_mode}, {"entries", std::move(entries)}};
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<TreeManifest> parse_manifest(std::string_view text) {
    if (text.size() > kMaxManifestBytes) return fail("a manifest larger than " + format_size(kMaxManifestBytes));
    json doc = json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return fail("the manifest is not a JSON object");
    if (doc.value("format", json()) != kFormat) return fail(std::string("the manifest is not of format ") + kFormat);
    auto mode_of = [](const json& o, const char* key) -> std::optional<uint32_t> {
        auto it = o.find(key);
        if (it == o.end() || !it->is_number_unsigned() || it->get<uint64_t>() > 07777) return std::nullopt;
        return uint32_t(it->get<uint64_t>());
    };
    TreeManifest m;
    auto root = mode_of(doc, "root_mode");
    if (!root) return fail("the manifest has no valid root_mode");
    m.root_mode = *root;
    auto list = doc.find("entries");
    if (list == doc.end() || !list->is_array()) return fail("the manifest has no entries array");
    std::unordered_set<std::string> dirs;
    for (const json& o : *list) {
        const size_t k = m.entries.size();
        auto bad = [&](const std::string& why) { return fail("manifest entry " + std::to_string(k) + ": " + why); };
        if (!o.is_object() || !o.value("path", json()).is_string() || !o.value("type", json()).is_string())
            return bad("not an object with a path and a type");
        TreeEntry e;
        e.path = o["path"].get<std::string>();
        if (std::string why = bad_path(e.path); !why.empty()) return bad(why);
        if (!m.entries.empty() && !(m.entries.back().path < e.path))
            return bad("\"" + e.path + "\" repeats or is out of order");
        const size_t slash = e.path.rfind('/');
        if (slash != std::string::npos && !dirs.count(e.path.substr(0, slash)))
            return bad("\"" + e.path + "\" is not inside a directory entry");
        auto mode = mode_of(o, "mode");
        if (!mode) return bad("no valid mode");
        e.mode = *mode;
        const std::string type = o["type"].get<std::string>();
        if (type == "dir") {
            e.type = TreeEntry::Type::Dir;
            dirs.insert(e.path);
        } else if (type == "file") {
            e.type = TreeEntry::Type::File;
            if (!o.value("size", json()).is_number_unsigned()) return bad("a file without a valid size");
            e.size = o["size"].get<uint64_t>();
            e.sha256 = o.value("sha256", std::string());
            if (!store::valid_sha256(e.sha256)) return bad("a file without a valid sha256");
        } else if (type == "symlink") {
            e.type = TreeEntry::Type::Symlink;
            e.target = o.value("target", json()).is_string() ? o["target"].get<std::string>() : "";
            if (e.target.empty() || e.target.size() > kMaxTreePath || e.target.find('\0') != std::string::npos)
                return bad("a symlink without a valid target");
        } else {
            return bad("unknown type \"" + type + "\"");
        }
        m.entries.push_back(std::move(e));
    }
    return m;
}

// ------------------------------------------------------------------ walk, restore, remove

Result<TreeWalk> walk_tree(int dirfd, const TreeLimits& limits, const FileSink& sink, const std::atomic<bool>& cancel) {
    struct stat st{};
    if (fstat(dirfd, &st) < 0) return fail_sys("fstat(the tree's top)", errno);
    if (!S_ISDIR(st.st_mode)) return fail("not a directory");
    Walker w(limits, sink, cancel);
    w.out().manifest.root_mode = uint32_t(st.st_mode & 07777);
    if (auto r = w.dir(dirfd, ""); !r) return std::unexpected(r.error());
    return w.take();
}

Result<void> restore_tree(const TreeManifest& m, int parent_fd, const std::string& name, uid_t owner,
                          const BlobPath& blob_path, const std::atomic<bool>& cancel) {
    if (mkdirat(parent_fd, name.c_str(), 0700) < 0) return fail_sys("mkdir " + name, errno);
    UniqueFd root(openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root) return fail_sys("open " + name, errno);
    if (fchown(root.get(), owner, owner) < 0) return fail_sys("chown " + name, errno);
    return restore_entries(m, root.get(), owner, blob_path, cancel);
}

void remove_tree_at(int parent_fd, const std::string& name) {
    if (unlinkat(parent_fd, name.c_str(), 0) == 0 || errno != EISDIR) return;
    int d = openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d >= 0) remove_below(d, 0);
    unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR);
}

// Copies in 8 MiB steps so a stop (or moatd's shutdown) is noticed promptly.
Result<void> copy_bytes(int in, int out, const std::atomic<bool>& cancel) {
    for (;;) {
        if (cancel) return fail("cancelled");
        ssize_t n = copy_file_range(in, nullptr, out, nullptr, 8 << 20, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS)) n = sendfile(out, in, nullptr, 8 << 20);
        if (n < 0) return fail_sys("copy", errno);
        if (n == 0) return {};
    }
}

}  // namespace moat::supervisor
