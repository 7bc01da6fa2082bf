// Reporting a failed execve() of the job (spawn.h: ExecFailureWord,
// describe_exec_failure, exec_failure).
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "moat/common/fd.h"
#include "moat/sandbox/path_walk.h"
#include "moat/sandbox/spawn.h"

namespace moat::sandbox {

// ---- the shared word ----------------------------------------------------------

Result<ExecFailureWord> ExecFailureWord::create() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return std::unexpected(Error::sys("mmap(exec failure word)", errno));
    ExecFailureWord w;
    w.m_word = static_cast<int*>(p);
    return w;
}

ExecFailureWord::~ExecFailureWord() {
    if (m_word) munmap(m_word, 4096);
}

ExecFailureWord& ExecFailureWord::operator=(ExecFailureWord&& o) noexcept {
    if (this != &o) {
        if (m_word) munmap(m_word, 4096);
        m_word = o.m_word;
        o.m_word = nullptr;
    }
    return *this;
}

void ExecFailureWord::set(int err) const noexcept { ref().set(err); }

void ExecFailureWord::Ref::set(int err) const noexcept {
    if (!word) return;
    __atomic_store_n(&word[1], err, __ATOMIC_RELAXED);
    __atomic_store_n(&word[0], 1, __ATOMIC_RELEASE);
}

std::optional<int> ExecFailureWord::get() const {
    if (!m_word || __atomic_load_n(&m_word[0], __ATOMIC_ACQUIRE) != 1) return std::nullopt;
    return __atomic_load_n(&m_word[1], __ATOMIC_RELAXED);
}

std::optional<SetupRecord> exec_failure(const Spawned& s) {
    auto err = s.exec_word.get();
    if (!err) return std::nullopt;
    SetupRecord rec{};
    snprintf(rec.step, sizeof rec.step, "execve");
    rec.err = *err;
    rec.fatal = 1;
    snprintf(rec.detail, sizeof rec.detail, "%s", describe_exec_failure(s.exe, *err).c_str());
    return rec;
}

// ---- the diagnosis --------------------------------------------------------------

namespace {

std::deque<std::string> components(const std::string& path) {
    std::deque<std::string> out;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) out.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

}  // namespace

PathWalk walk_path(const std::string& path, bool nofollow) {
    PathWalk w;
    std::string done;  // resolved prefix; "" is "/"
    std::deque<std::string> todo = components(path);
    int hops = 0;
    while (!todo.empty()) {
        std::string c = std::move(todo.front());
        todo.pop_front();
        if (c == ".") continue;
        if (c == "..") {
            done = done.substr(0, done.rfind('/') == std::string::npos ? 0 : done.rfind('/'));
            continue;
        }
        std::string cand = done + "/" + c;
        struct stat st{};
        if (lstat(cand.c_str(), &st) < 0) {
            w.err = errno;
            w.stuck = cand;
            return w;
        }
        if (S_ISLNK(st.st_mode) && !(nofollow && todo.empty())) {
            char buf[PATH_MAX];
            ssize_t n = readlink(cand.c_str(), buf, sizeof buf - 1);
            if (n < 0 || ++hops > 40) {
                w.err = n < 0 ? errno : ELOOP;
                w.stuck = cand;
                return w;
            }
            std::string target(buf, size_t(n));
            w.links.push_back({cand, target});
            if (!target.empty() && target[0] == '/') done.clear();
            auto more = components(target);
            todo.insert(todo.begin(), more.begin(), more.end());
            continue;
        }
        if (!todo.empty() && !S_ISDIR(st.st_mode)) {
            w.err = ENOTDIR;
            w.stuck = cand;
            return w;
        }
        w.is_dir = S_ISDIR(st.st_mode);
        done = cand;
    }
    w.resolved = done.empty() ? "/" : done;
    if (done.empty()) w.is_dir = true;
    return w;
}

namespace {

std::string join(const std::vector<PathWalk::Link>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x.path + " -> " + x.target;
    return s;
}

// "LINKS: STUCK does not exist in the sandbox", or the like for other errors.
std::string explain(const std::string& path, const PathWalk& w) {
    std::string s;
    if (!w.links.empty()) {
        if (w.links.front().path != path) s = path + ": ";
        s += join(w.links) + ": ";
    } else if (w.stuck != path) {
        s = path + ": ";
    }
    if (w.err == ENOENT) return s + w.stuck + " does not exist in the sandbox";
    if (w.err == ENOTDIR) return s + w.stuck + " is not a directory";
    return s + w.stuck + ": " + strerror(w.err);
}

}  // namespace

std::string interpreter_of(int fd) {
    char head[256];
    ssize_t n = pread(fd, head, sizeof head, 0);
    if (n >= 2 && head[0] == '#' && head[1] == '!') {
        std::string line(head + 2, size_t(n - 2));
        line = line.substr(0, line.find('\n'));
        size_t b = line.find_first_not_of(" \t");
        if (b == std::string::npos) return "";
        return line.substr(b, line.find_first_of(" \t", b) - b);
    }
    if (n < EI_NIDENT || memcmp(head, ELFMAG, SELFMAG) != 0) return "";
    auto find = [&](auto ehdr, auto phdr) -> std::string {
        if (size_t(n) < sizeof ehdr) return "";
        memcpy(&ehdr, head, sizeof ehdr);
        for (unsigned i = 0; i < ehdr.e_phnum && i < 256; ++i) {
            if (pread(fd, &phdr, sizeof phdr, off_t(ehdr.e_phoff + uint64_t(i) * ehdr.e_phentsize)) !=
                ssize_t(sizeof phdr))
                return "";
            if (phdr.p_type != PT_INTERP || phdr.p_filesz == 0 || phdr.p_filesz > PATH_MAX) continue;
            std::string interp(size_t(phdr.p_filesz), '\0');
            if (pread(fd, interp.data(), interp.size(), off_t(phdr.p_offset)) != ssize_t(interp.size())) return "";
            return interp.c_str();  // up to the NUL
        }
        return "";
    };
    if (head[EI_CLASS] == ELFCLASS64) return find(Elf64_Ehdr{}, Elf64_Phdr{});
    if (head[EI_CLASS] == ELFCLASS32) return find(Elf32_Ehdr{}, Elf32_Phdr{});
    return "";
}

namespace {

std::string interpreter_at(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    return fd ? interpreter_of(fd.get()) : std::string();
}

}  // namespace

std::string describe_exec_failure(const std::string& exe, int err) {
    PathWalk w = walk_path(exe);
    if (w.err) return explain(exe, w);
    std::string s = w.links.empty() ? exe : (w.links.front().path == exe ? "" : exe + ": ") + join(w.links);
    if (err == ENOENT || err == ELIBBAD || err == ENOEXEC) {
        // The program is there, so the kernel missed what it loads first.
        std::string interp = interpreter_at(w.resolved);
        if (!interp.empty()) {
            PathWalk iw = walk_path(interp);
            if (iw.err) return s + ": its interpreter " + explain(interp, iw);
        }
    }
    return s;
}

}  // namespace moat::sandbox
