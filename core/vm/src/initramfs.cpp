#include "moat/vm/initramfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <vector>

#include "fsutil.h"
#include "moat/common/sha256.h"

namespace moat::vm {

namespace {

constexpr const char* kFormatTag = "moat-initramfs-v1";

struct ArchiveDeleter {
    void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
    void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

class CpioWriter {
public:
    Result<void> open(const std::string& path) {
        m_path = path;
        m_a.reset(archive_write_new());
        if (!m_a) return fail("archive_write_new: out of memory");
        if (archive_write_set_format_cpio_newc(m_a.get()) != ARCHIVE_OK) return err("set_format_cpio_newc");
        // Byte-exact output: no padding to a block size beyond what newc needs.
        archive_write_set_bytes_per_block(m_a.get(), 0);
        if (archive_write_open_filename(m_a.get(), path.c_str()) != ARCHIVE_OK) return err("open");
        return {};
    }
    Result<void> dir(const std::string& name) { return add(name, AE_IFDIR | 0755, {}, 0); }
    Result<void> chardev(const std::string& name, unsigned maj, unsigned min) {
        return add(name, AE_IFCHR | 0600, {}, makedev(maj, min));
    }
    Result<void> file(const std::string& name, mode_t perm, const std::string& data) {
        return add(name, AE_IFREG | perm, data, 0);
    }
    Result<void> close() {
        if (archive_write_close(m_a.get()) != ARCHIVE_OK) return err("close");
        return {};
    }

private:
    Result<void> add(const std::string& name, mode_t mode, const std::string& data, dev_t rdev) {
        EntryPtr e(archive_entry_new());
        archive_entry_set_pathname(e.get(), name.c_str());
        archive_entry_set_mode(e.get(), mode);
        archive_entry_set_uid(e.get(), 0);
        archive_entry_set_gid(e.get(), 0);
        archive_entry_set_mtime(e.get(), 0, 0);
        archive_entry_set_nlink(e.get(), (mode & AE_IFMT) == AE_IFDIR ? 2 : 1);
        archive_entry_set_ino(e.get(), ++m_ino);  // newc wants distinct inode numbers
        if (rdev) archive_entry_set_rdev(e.get(), rdev);
        archive_entry_set_size(e.get(), la_int64_t(data.size()));
        if (archive_write_header(m_a.get(), e.get()) != ARCHIVE_OK) return err("header " + name);
        if (!data.empty() && archive_write_data(m_a.get(), data.data(), data.size()) != la_ssize_t(data.size()))
            return err("data " + name);
        return {};
    }
    std::unexpected<Error> err(const std::string& what) {
        const char* s = archive_error_string(m_a.get());
        return std::unexpected(
            Error::msg("libarchive " + what + " (" + m_path + "): " + (s ? s : "unknown error")));
    }
    ArchivePtr m_a;
    std::string m_path;
    int64_t m_ino = 0;
};

}  // namespace

Result<BaseInitramfs> BaseInitramfs::build(const GuestKernel& kernel, const InitramfsInputs& in) {
    if (in.agent.empty()) return fail("initramfs: no agent executable given");
    // Read every input once: the same bytes are hashed and archived, so a file
    // replaced between the two cannot produce a cpio that does not match its key.
    struct Input {
        std::string name;  // path in the cpio
        mode_t perm;
        std::string data;
    };
    std::vector<Input> files;
    auto load = [&](const std::string& host, const std::string& name, mode_t perm) -> Result<void> {
        auto data = detail::read_file(host, 256u << 20);
        if (!data) return std::unexpected(data.error().wrap("initramfs input " + name));
        files.push_back({name, perm, std::move(*data)});
        return {};
    };
    if (auto r = load(in.agent, "init", 0755); !r) return std::unexpected(r.error());
    std::string order;
    for (const auto& m : kernel.modules()) {
        if (auto r = load(m.path, "lib/modules/" + m.name + ".ko", 0644); !r) return std::unexpected(r.error());
        order += m.name + "\n";
    }
    files.push_back({"modules.order", 0644, order});

    Sha256 h;
    h.update(kFormatTag);
    for (const auto& f : files) {
        h.update("\n");
        h.update(f.name);
        h.update(" ");
        h.update(sha256_hex(f.data));
    }
    BaseInitramfs out;
    out.m_key = h.hex();
    out.m_path = in.cache_dir + "/initramfs-" + out.m_key + ".cpio";
    struct stat st;
    if (::stat(out.m_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        out.m_cache_hit = true;
        return out;
    }
    if (auto r = detail::make_dirs(in.cache_dir); !r) return std::unexpected(r.error());

    // Built under a temporary name and renamed: a concurrent builder or a
    // crash never leaves a half-written cpio under the final name.
    const std::string tmp = detail::temp_name_for(out.m_path);
    CpioWriter w;
    auto write_all = [&]() -> Result<void> {
        if (auto r = w.open(tmp); !r) return r;
        for (const char* d : {"dev", "proc", "sys", "tmp", "mnt", "lib", "lib/modules"})
            if (auto r = w.dir(d); !r) return r;
        // The kernel opens /dev/console for pid 1's stdio before /init runs.
        if (auto r = w.chardev("dev/console", 5, 1); !r) return r;
        for (const auto& f : files)
            if (auto r = w.file(f.name, f.perm, f.data); !r) return r;
        return w.close();
    };
    if (auto r = write_all(); !r) {
        ::unlink(tmp.c_str());
        return std::unexpected(r.error());
    }
    // Readable by the unprivileged uid QEMU runs as; it holds nothing secret.
    ::chmod(tmp.c_str(), 0644);
    if (::rename(tmp.c_str(), out.m_path.c_str()) < 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return fail_sys("rename(\"" + tmp + "\", \"" + out.m_path + "\")", e);
    }
    return out;
}

}  // namespace moat::vm
