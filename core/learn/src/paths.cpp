#include "moat/learn/paths.h"

#include "moat/common/paths.h"

#include <cstring>

#include <algorithm>
#include <map>
#include <set>

namespace moat::learn {

namespace {

using nlohmann::json;

std::string parent_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Where credentials and keys live: never proposed, whatever the job wanted.
constexpr const char* kSecretTrees[] = {
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
    "/etc/ssh", "/etc/ssl/private", "/etc/security/opasswd", "/etc/krb5.keytab", "/etc/wireguard",
    "/etc/letsencrypt", "/etc/NetworkManager/system-connections", "/etc/moat", "/root", "/var/lib/moat",
    "/var/lib/sss", "/var/lib/docker", "/var/lib/containers", "/run/secrets", "/var/run/secrets",
    "/run/moat", "/var/run/moat",
};
// Below a home directory.
constexpr const char* kSecretHomeDirs[] = {".ssh", ".gnupg", ".aws", ".kube", ".docker", ".password-store",
                                           ".netrc", ".pgpass", ".git-credentials", ".config/gcloud"};
// Names that hold keys wherever they are.
bool secret_name(const std::string& name) {
    for (const char* p : {"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"})
        if (name.rfind(p, 0) == 0 && name.find(".pub") == std::string::npos) return true;
    for (const char* suffix : {".key", ".p12", ".pfx", ".keytab", ".kdbx"})
        if (name.size() > strlen(suffix) && name.compare(name.size() - strlen(suffix), strlen(suffix), suffix) == 0)
            return true;
    return false;
}

// Whole directories too broad to add for a few files in them.
constexpr const char* kBroad[] = {"/",        "/etc",      "/usr",       "/var",      "/home",     "/opt",
                                  "/srv",     "/run",      "/tmp",       "/boot",     "/mnt",      "/media",
                                  "/lib",     "/lib64",    "/bin",       "/sbin",     "/usr/lib",  "/usr/share",
                                  "/usr/local", "/usr/bin", "/usr/sbin", "/var/lib", "/var/cache", "/var/log"};

// Files in one directory before the directory is proposed instead of each.
constexpr size_t kCoalesce = 16;

bool has_control(const std::string& s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; });
}

}  // namespace

std::string secret_reason(const std::string& path) {
    for (const char* t : kSecretTrees)
        if (path_under(path, t)) return std::string("under ") + t + ", where credentials and keys live";
    if (path.rfind("/home/", 0) == 0) {
        const size_t user_end = path.find('/', 6);
        if (user_end != std::string::npos)
            for (const char* d : kSecretHomeDirs)
                if (path_under(path, path.substr(0, user_end) + "/" + d)) return std::string("a home directory's ") + d;
    }
    if (secret_name(base_of(path))) return "a key file by its name";
    return {};
}

// A directory that holds secrets somewhere below it: never proposed whole
// (a home directory holds .ssh and .aws, ~/.config holds gcloud...).
bool holds_secret(const std::string& dir) {
    for (const char* t : kSecretTrees)
        if (path_under(t, dir)) return true;
    if (dir == "/home") return true;
    if (dir.rfind("/home/", 0) == 0) {
        const size_t user_end = dir.find('/', 6);
        if (user_end == std::string::npos) return true;  // /home/USER itself
        for (const char* d : kSecretHomeDirs)
            if (path_under(dir.substr(0, user_end) + "/" + d, dir)) return true;
    }
    return false;
}

bool broad_dir(const std::string& path) {
    return std::any_of(std::begin(kBroad), std::end(kBroad), [&](const char* b) { return path == b; });
}

PathsProposal propose_paths(const policy::Policy& base, const json& learned, bool replay_passed) {
    PathsProposal out;
    if (!learned.is_object() || !learned.contains("paths") || !learned["paths"].is_array()) return out;
    struct Cand {
        std::string why;       // the first reason
        std::string evidence;  // the first call that needed it
        uint64_t calls = 0;
    };
    std::map<std::string, Cand> cand;
    std::vector<std::string> absent;
    std::map<std::string, std::string> refused;  // path -> why
    for (const auto& e : learned["paths"]) {
        if (!e.is_object()) continue;
        const std::string path = e.value("path", std::string());
        const std::string call = e.value("syscall", std::string());
        const uint64_t calls = e.value("calls", uint64_t(1));
        const std::string host = e.value("host", std::string());
        if (path.empty()) continue;
        if (host == "moatd's own") {
            refused[path] = "moatd's state or runtime directory";
            continue;
        }
        const json add = e.value("add", json::array());
        if (!add.is_array() || add.empty()) {
            if (host == "absent") absent.push_back(path);
            continue;
        }
        for (const auto& a : add) {
            const std::string p = a.value("path", std::string());
            if (p.empty() || p[0] != '/' || has_control(p)) continue;  // moatd sends none; a policy takes none
            if (auto why = secret_reason(p); !why.empty()) {
                refused[p] = why;
                continue;
            }
            if (a.value("private", false)) {
                refused[p] = "moatd's state or runtime directory";
                continue;
            }
            // A symlink is recreated, not bound: only a directory can be too broad.
            if (a.value("kind", std::string()) == "directory" && broad_dir(p)) {
                refused[p] = "too broad to add whole; add what the job reads in it";
                continue;
            }
            if (a.value("kind", std::string()) == "directory" && holds_secret(p)) {
                refused[p] = "a directory that holds credentials or keys; add what the job reads in it";
                continue;
            }
            Cand& c = cand[p];
            if (c.why.empty()) {
                c.why = a.value("why", std::string());
                c.evidence = call + " " + path;
            }
            c.calls += calls;
        }
    }
    // Paths the base already has are not added again.
    auto in_base = [&](const std::string& p) {
        for (const auto* list : {&base.filesystem.read_only, &base.filesystem.read_write})
            for (const auto& v : *list)
                if (path_under(p, v)) return true;
        return false;
    };
    // Many files of one directory (not a broad one, holding no secret): the directory.
    std::map<std::string, std::vector<std::string>> by_dir;
    for (const auto& [p, c] : cand)
        if (!in_base(p)) by_dir[parent_of(p)].push_back(p);
    std::map<std::string, Cand> chosen;
    for (auto& [dir, files] : by_dir) {
        // What the directory would expose besides the files: a secret tree
        // below it, a home directory's key stores, or a path refused just now.
        bool refused_below = false;
        for (const auto& [r, _] : refused) refused_below = refused_below || path_under(r, dir);
        if (files.size() >= kCoalesce && !broad_dir(dir) && !holds_secret(dir) && !refused_below &&
            secret_reason(dir).empty()) {
            Cand c;
            c.why = std::to_string(files.size()) + " files in it the job needed (" + base_of(files[0]) + ", " +
                    base_of(files[1]) + ", ...)";
            c.evidence = cand[files[0]].evidence;
            for (const auto& f : files) c.calls += cand[f].calls;
            chosen[dir] = std::move(c);
        } else {
            for (const auto& f : files) chosen[f] = cand[f];
        }
    }
    // A path under another chosen directory is covered by it.
    for (auto it = chosen.begin(); it != chosen.end();) {
        bool inside = false;
        for (const auto& [q, _] : chosen) inside = inside || (q != it->first && path_under(it->first, q));
        it = inside ? chosen.erase(it) : std::next(it);
    }

    for (const auto& [p, why] : refused)
        out.notes.push_back(p + ": not proposed (" + why + ")");
    out.refused = refused.size();
    // Probes that find nothing anywhere (ld.so.preload, locale variants) are
    // normal; they are worth a line only when the job failed.
    if (!absent.empty() && !replay_passed) {
        std::string list;
        for (size_t i = 0; i < absent.size() && i < 5; ++i) list += (i ? ", " : "") + absent[i];
        if (absent.size() > 5) list += ", ...";
        out.notes.push_back(std::to_string(absent.size()) + " path(s) the job looked for exist neither in the sandbox "
                            "nor on the host (" + list + "): nothing to add");
    }
    if (learned.value("relative_not_followed", uint64_t(0)) > 0)
        out.notes.push_back(std::to_string(learned["relative_not_followed"].get<uint64_t>()) +
                            " relative path(s) from another directory than the job's working directory were not "
                            "looked up");
    if (learned.value("not_followed", uint64_t(0)) > 0)
        out.notes.push_back(std::to_string(learned["not_followed"].get<uint64_t>()) +
                            " path(s) with \"..\", control characters, bytes that are not UTF-8 or over 1024 bytes were not looked up");
    if (learned.value("truncated", false))
        out.notes.push_back("the host lookups stopped at their time or size budget; replay again after this change");
    if (learned.value("dropped", uint64_t(0)) > 0)
        out.notes.push_back("more paths were missing than learn keeps per job; replay again after this change");
    if (learned.contains("error") && learned["error"].is_string())
        out.notes.push_back("the host side of the paths could not be looked up: " + learned["error"].get<std::string>());
    // Directories the job created files in that its view lacks (or has
    // read-only): a tmpfs there, scratch space that ends with the job. Never
    // over a path the view binds from the host (that would hide it), never
    // read_write (the host's files stay out of reach).
    std::vector<std::pair<std::string, std::string>> scratch;  // dir, evidence
    for (const auto& w : learned.value("write_dirs", json::array())) {
        if (!w.is_object()) continue;
        const std::string dir = w.value("path", std::string());
        if (dir.empty() || dir[0] != '/' || has_control(dir)) continue;
        const std::string ev = std::to_string(w.value("calls", uint64_t(1))) + " call(s), first " +
                               w.value("syscall", std::string()) + " " + w.value("example", std::string());
        bool under_tmpfs = false;
        for (const auto& t : base.filesystem.tmpfs) under_tmpfs = under_tmpfs || path_under(dir, t);
        if (under_tmpfs) continue;
        if (w.value("private", false) || !secret_reason(dir).empty() || holds_secret(dir) || dir == "/") {
            out.notes.push_back(dir + ": the job writes there; not proposed (" +
                                (dir == "/" ? std::string("the root stays read-only") : "a protected path") + ")");
        } else if (w.value("in_view", false)) {
            out.notes.push_back(dir + ": the job writes there (" + ev + "), but the view has it read-only from the "
                                "host; not proposed: add it to read_write if the job must change the host's files, "
                                "or give it another directory to write in");
        } else {
            scratch.emplace_back(dir, ev);
        }
    }
    // The outermost directories only.
    std::vector<std::pair<std::string, std::string>> outer;
    for (const auto& [d, ev] : scratch) {
        bool inside = false;
        for (const auto& [e, _] : scratch) inside = inside || (e != d && path_under(d, e));
        if (!inside) outer.emplace_back(d, ev);
    }
    if (chosen.empty() && outer.empty()) return out;
    if (replay_passed) {
        std::string list;
        for (const auto& [p, _] : chosen) list += (list.empty() ? "" : ", ") + p;
        for (const auto& [d, _] : outer) list += (list.empty() ? "" : ", ") + d + " (to write in)";
        out.notes.push_back("the job looked for " + list + " outside its view and passed without them: not proposed");
        return out;
    }
    for (const auto& [d, ev] : outer) {
        Addition a;
        a.tmpfs = d;
        a.entry = "tmpfs " + d;
        a.evidence = "the job creates files there; " + ev;
        a.risk = "scratch space: what the job writes there is gone when it ends (read_write keeps it, on the host)";
        out.additions.push_back(std::move(a));
    }
    for (const auto& [p, c] : chosen) {
        Addition a;
        a.read_only = p;
        a.entry = "read_only " + p;
        a.evidence = c.why + "; " + std::to_string(c.calls) + " call(s), first " + c.evidence;
        out.additions.push_back(std::move(a));
    }
    return out;
}

}  // namespace moat::learn
