#include "moat/store/artifacts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "moat/common/fd.h"
#include "moat/common/sha256.h"

namespace moat::store {
namespace {

Result<void> ensure_dir(const std::string& p) {
    if (mkdir(p.c_str(), 0700) < 0 && errno != EEXIST) return std::unexpected(Error::sys("mkdir " + p, errno));
    struct stat st{};
    if (lstat(p.c_str(), &st) < 0) return std::unexpected(Error::sys("stat " + p, errno));
    if (!S_ISDIR(st.st_mode)) return fail(p + " exists and is not a directory");
    return {};
}

Result<void> write_all(int fd, const char* p, size_t n) {
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return std::unexpected(Error::sys("write", errno));
        p += w;
        n -= size_t(w);
    }
    return {};
}

}  // namespace

bool valid_sha256(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Result<Artifacts> Artifacts::open(const std::string& dir) {
    for (const std::string& d : {dir, dir + "/blobs", dir + "/tmp"})
        if (auto r = ensure_dir(d); !r) return std::unexpected(r.error());
    // Temp files of a previous run (a crash mid-job) are garbage.
    if (DIR* dp = opendir((dir + "/tmp").c_str())) {
        while (auto* e = readdir(dp))
            if (e->d_name[0] != '.') unlink((dir + "/tmp/" + e->d_name).c_str());
        closedir(dp);
    }
    Artifacts a;
    a.m_dir = dir;
    return a;
}

std::string Artifacts::path(const std::string& sha256) const { return m_dir + "/blobs/" + sha256; }

bool Artifacts::exists(const std::string& sha256) const {
    return valid_sha256(sha256) && access(path(sha256).c_str(), F_OK) == 0;
}

void Artifacts::remove(const std::string& sha256) const {
    if (valid_sha256(sha256)) unlink(path(sha256).c_str());
}

Result<std::pair<int, std::string>> Artifacts::make_temp() const {
    static std::atomic<uint64_t> seq{0};
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string p = m_dir + "/tmp/" + std::to_string(getpid()) + "-" + std::to_string(seq++);
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) return std::pair<int, std::string>{fd, p};
        if (errno != EEXIST) return std::unexpected(Error::sys("creating " + p, errno));
    }
    return fail("no free temp file name in " + m_dir + "/tmp");
}

Result<BlobInfo> Artifacts::adopt(const std::string& temp_path) const {
    UniqueFd fd(::open(temp_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return std::unexpected(Error::sys("open " + temp_path, errno));
    Sha256 h;
    BlobInfo info;
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::unexpected(Error::sys("read " + temp_path, errno));
        if (n == 0) break;
        h.update({buf, size_t(n)});
        info.bytes += uint64_t(n);
    }
    info.sha256 = h.hex();
    fchmod(fd.get(), 0444);
    std::string dst = path(info.sha256);
    if (access(dst.c_str(), F_OK) == 0) {
        unlink(temp_path.c_str());  // deduplicated: identical content is stored once
    } else if (rename(temp_path.c_str(), dst.c_str()) < 0) {
        int e = errno;
        unlink(temp_path.c_str());
        return std::unexpected(Error::sys("rename " + temp_path + " -> " + dst, e));
    }
    return info;
}

Result<BlobInfo> Artifacts::put_bytes(std::string_view bytes) const {
    auto tmp = make_temp();
    if (!tmp) return std::unexpected(tmp.error());
    UniqueFd out(tmp->first);
    if (auto r = write_all(out.get(), bytes.data(), bytes.size()); !r) {
        unlink(tmp->second.c_str());
        return std::unexpected(r.error().wrap("writing " + tmp->second));
    }
    out.reset();
    return adopt(tmp->second);
}

Result<BlobInfo> Artifacts::put_fd(int src, uint64_t max, const std::atomic<bool>* cancel) const {
    auto tmp = make_temp();
    if (!tmp) return std::unexpected(tmp.error());
    UniqueFd out(tmp->first);
    uint64_t copied = 0;
    bool truncated = false;
    char buf[1 << 16];
    off_t off = 0;
    for (;;) {
        if (cancel && *cancel) {
            unlink(tmp->second.c_str());
            return fail("cancelled");
        }
        ssize_t n = ::pread(src, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            unlink(tmp->second.c_str());
            return std::unexpected(Error::sys("read", e));
        }
        if (n == 0) break;
        off += n;
        size_t take = size_t(n);
        if (copied + take > max) {
            take = size_t(max - copied);
            truncated = true;
        }
        if (auto r = write_all(out.get(), buf, take); !r) {
            unlink(tmp->second.c_str());
            return std::unexpected(r.error().wrap("writing " + tmp->second));
        }
        copied += take;
        if (truncated) break;
    }
    out.reset();
    auto info = adopt(tmp->second);
    if (info) info->truncated = truncated;
    return info;
}

}  // namespace moat::store
