#include "moat/vm/guest_kernel.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <sstream>

#include "fsutil.h"
#include "moat/common/fd.h"

namespace moat::vm {

namespace {
constexpr const char* kFetchHint = "run packaging/moat.sh guest-kernel (as root) to fetch it";

bool safe_relative(const std::string& p) {
    // The manifest names files inside the kit; "../" or an absolute path
    // would make a tampered manifest point the kit elsewhere.
    return !p.empty() && p[0] != '/' && p.find("..") == std::string::npos;
}
}  // namespace

std::string default_guest_dir() {
    const char* env = std::getenv("MOAT_GUEST_DIR");
    return env && *env ? std::string(env) : std::string("/var/cache/moat/guest");
}

Result<GuestKernel> GuestKernel::find(const std::string& dir) {
    GuestKernel k;
    struct stat st;
    std::string release_dir = dir;
    if (::stat((dir + "/current").c_str(), &st) == 0 && S_ISDIR(st.st_mode)) release_dir = dir + "/current";
    const std::string manifest_path = release_dir + "/manifest";
    if (::stat(manifest_path.c_str(), &st) < 0) {
        if (errno == ENOENT)
            return fail("guest kernel kit not found (no " + manifest_path + "): " + kFetchHint);
        return fail_sys("stat(\"" + manifest_path + "\")", errno);
    }
    // Resolve `current` once, so a kit replaced while we run is not mixed with the old one.
    char real[PATH_MAX];
    if (!::realpath(release_dir.c_str(), real)) return fail_sys("realpath(\"" + release_dir + "\")", errno);
    k.m_dir = real;
    auto text = detail::read_file(k.m_dir + "/manifest", 64 * 1024);
    if (!text) return std::unexpected(text.error().wrap("reading the guest kernel manifest"));

    std::istringstream in(*text);
    std::string line;
    bool format_ok = false;
    int lineno = 0;
    auto bad = [&](const std::string& why) {
        return fail(k.m_dir + "/manifest line " + std::to_string(lineno) + ": " + why + " (" + kFetchHint + ")");
    };
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::string kind;
        ls >> kind;
        if (kind == "format") {
            std::string v;
            ls >> v;
            if (v != "1") return bad("unknown format " + v);
            format_ok = true;
        } else if (kind == "release") {
            ls >> k.m_release;
        } else if (kind == "package") {
            std::string name, version;
            ls >> name >> version;
            k.m_package = name + " " + version;
        } else if (kind == "vmlinux") {
            std::string rel;
            ls >> rel >> k.m_vmlinux_sha256 >> k.m_vmlinux_size;
            if (!safe_relative(rel) || k.m_vmlinux_sha256.size() != 64) return bad("malformed vmlinux entry");
            k.m_vmlinux = k.m_dir + "/" + rel;
        } else if (kind == "module") {
            GuestModule m;
            std::string rel;
            ls >> m.name >> rel >> m.sha256;
            if (m.name.empty() || !safe_relative(rel) || m.sha256.size() != 64 ||
                m.name.find('/') != std::string::npos)
                return bad("malformed module entry");
            m.path = k.m_dir + "/" + rel;
            k.m_modules.push_back(std::move(m));
        }
    }
    if (!format_ok) return bad("no `format 1` line");
    if (k.m_release.empty() || k.m_vmlinux.empty()) return bad("no release or vmlinux line");

    UniqueFd fd(::open(k.m_vmlinux.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_sys("open(\"" + k.m_vmlinux + "\")", errno);
    if (::fstat(fd.get(), &st) < 0) return fail_sys("fstat(\"" + k.m_vmlinux + "\")", errno);
    if (uint64_t(st.st_size) != k.m_vmlinux_size)
        return fail(k.m_vmlinux + " has " + std::to_string(st.st_size) + " bytes, the manifest says " +
                    std::to_string(k.m_vmlinux_size) + " (" + kFetchHint + ")");
    char magic[4] = {};
    if (::pread(fd.get(), magic, 4, 0) != 4 || magic[0] != 0x7f || magic[1] != 'E' || magic[2] != 'L' || magic[3] != 'F')
        return fail(k.m_vmlinux + " is not an ELF file (" + kFetchHint + ")");
    for (const auto& m : k.m_modules)
        if (::access(m.path.c_str(), R_OK) < 0) return fail_sys("access(\"" + m.path + "\", R_OK)", errno);
    return k;
}

Result<void> GuestKernel::verify() const {
    auto check = [](const std::string& path, const std::string& want) -> Result<void> {
        auto got = detail::file_sha256(path);
        if (!got) return std::unexpected(got.error());
        if (*got != want)
            return fail(path + ": sha256 " + *got + " differs from the manifest's " + want + " (" + kFetchHint + ")");
        return {};
    };
    if (auto r = check(m_vmlinux, m_vmlinux_sha256); !r) return r;
    for (const auto& m : m_modules)
        if (auto r = check(m.path, m.sha256); !r) return r;
    return {};
}

}  // namespace moat::vm
