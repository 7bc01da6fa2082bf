#pragma once
// Shared by the vm kit's tests: temporary directories nobody can traverse
// (QEMU and mkfs run as nobody), and the uid they run as.
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace vmtest {

inline constexpr uid_t kNobody = 65534;
inline constexpr gid_t kNogroup = 65534;

struct TempDir {
    std::string path;
    TempDir() {
        char buf[] = "/tmp/moat-vm-test-XXXXXX";
        if (!mkdtemp(buf)) abort();
        path = buf;
        chmod(buf, 0755);  // traversable by the unprivileged QEMU / mkfs
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_file(const std::string& path, const std::string& data, mode_t mode = 0644) {
    FILE* f = fopen(path.c_str(), "w");
    if (!f) abort();
    fwrite(data.data(), 1, data.size(), f);
    fclose(f);
    chmod(path.c_str(), mode);
}

}  // namespace vmtest
