// Learn mode's host side (core/supervisor/src/path_learn.h) without a job:
// paths handed to PathLearner::missing() as a learn replay would, resolved by
// report() on the host with a client's credentials. What moat_learn proposes
// comes from this JSON, so it must name every symlink hop, the final path and
// an exec'd program's interpreter and libraries, and it must never tell a
// client about a path the client itself cannot look up.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "moat/common/fd.h"
#include "moat/guest/prefetch.h"
#include "path_learn.h"

namespace {

namespace fs = std::filesystem;
using moat::supervisor::ClientCreds;
using moat::supervisor::PathLearner;
using nlohmann::json;

// A world-traversable temp dir (its real path: the walk reports real paths).
class PathLearnTest : public ::testing::Test {
protected:
    void SetUp() override {
        char t[] = "/tmp/moat-pathlearn-XXXXXX";
        ASSERT_NE(mkdtemp(t), nullptr) << strerror(errno);
        m_dir = fs::canonical(t).string();
        chmod(m_dir.c_str(), 0755);
    }
    void TearDown() override {
        std::error_code ec;
        if (!m_dir.empty()) fs::remove_all(m_dir, ec);
    }
    void write(const std::string& rel, const std::string& text, mode_t mode = 0644) {
        std::ofstream(m_dir + "/" + rel) << text;
        chmod((m_dir + "/" + rel).c_str(), mode);
    }
    void link(const std::string& target, const std::string& rel) {
        ASSERT_EQ(symlink(target.c_str(), (m_dir + "/" + rel).c_str()), 0) << rel << ": " << strerror(errno);
    }
    std::string p(const std::string& rel) const { return m_dir + "/" + rel; }

    static ClientCreds self() {
        ClientCreds c;
        c.uid = getuid();
        c.gid = getgid();
        int n = getgroups(0, nullptr);
        c.groups.resize(size_t(n > 0 ? n : 0));
        if (n > 0) c.groups.resize(size_t(getgroups(n, c.groups.data())));
        return c;
    }
    static ClientCreds nobody() { return ClientCreds{65534, 65534, {}}; }

    // report() needs CAP_SETUID/CAP_SETGID to take even the caller's own
    // identity on its thread (setgroups always does): moatd runs as root.
    static bool can_take_identities() { return geteuid() == 0; }

    std::string m_dir;
};

const json* entry_for(const json& report, const std::string& path) {
    for (const auto& e : report["paths"])
        if (e.value("path", "") == path) return &e;
    return nullptr;
}

const json* add_for(const json& entry, const std::string& path) {
    for (const auto& a : entry["add"])
        if (a.value("path", "") == path) return &a;
    return nullptr;
}

PathLearner::View empty_view() {
    PathLearner::View v;
    v.cwd = "/";
    return v;
}

TEST_F(PathLearnTest, WithoutPrivilegeTheReportSaysItCouldNotTakeTheClientsIdentity) {
    if (can_take_identities()) GTEST_SKIP() << "runs as non-root only (as root the identity is taken)";
    PathLearner l(empty_view());
    l.missing("/etc/hostname", "openat", false);
    json r = l.report(self());
    ASSERT_TRUE(r.contains("error")) << r.dump(2);
    EXPECT_NE(r["error"].get<std::string>().find("taking the identity of uid"), std::string::npos) << r.dump(2);
    EXPECT_TRUE(r["paths"].empty()) << "nothing may be looked up with moatd's own rights: " << r.dump(2);
}

TEST_F(PathLearnTest, ASymlinkChainReportsEveryHopAndWhereItLeads) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    write("c", "data\n");
    link("b", "a");          // relative
    link(p("c"), "b");       // absolute
    ASSERT_EQ(mkdir(p("sub").c_str(), 0755), 0);

    PathLearner l(empty_view());
    l.missing(p("a"), "openat", false, 2);
    l.missing(p("a"), "newfstatat", false);  // the same path again: counted, not repeated
    l.missing(p("nope"), "access", false);
    l.missing(p("sub"), "chdir", false);
    json r = l.report(self());
    ASSERT_FALSE(r.contains("error")) << r.dump(2);
    ASSERT_EQ(r["paths"].size(), 3u) << r.dump(2);
    EXPECT_EQ(r.value("tier_view", ""), "mount namespace");

    const json* a = entry_for(r, p("a"));
    ASSERT_NE(a, nullptr) << r.dump(2);
    EXPECT_EQ(a->value("host", ""), "file");
    EXPECT_EQ(a->value("syscall", ""), "openat") << "the first call that needed it";
    EXPECT_EQ(a->value("calls", 0), 3);
    EXPECT_EQ((*a)["links"], json({p("a") + " -> b", p("b") + " -> " + p("c")})) << a->dump(2);
    ASSERT_EQ((*a)["add"].size(), 3u) << a->dump(2);
    EXPECT_EQ((*a)["add"][0], json({{"path", p("a")}, {"kind", "symlink"}, {"why", "a symlink on the way: " + p("a") + " -> b"}}));
    EXPECT_EQ((*a)["add"][1].value("path", ""), p("b"));
    EXPECT_EQ((*a)["add"][1].value("kind", ""), "symlink");
    EXPECT_EQ((*a)["add"][2], json({{"path", p("c")}, {"kind", "file"}, {"why", "where " + p("a") + " leads"}}));

    const json* nope = entry_for(r, p("nope"));
    ASSERT_NE(nope, nullptr) << r.dump(2);
    EXPECT_EQ(nope->value("host", ""), "absent");
    EXPECT_TRUE((*nope)["add"].empty()) << nope->dump();

    const json* sub = entry_for(r, p("sub"));
    ASSERT_NE(sub, nullptr) << r.dump(2);
    EXPECT_EQ(sub->value("host", ""), "directory");
    EXPECT_EQ((*sub)["add"], json::array({{{"path", p("sub")}, {"kind", "directory"}, {"why", "the path itself"}}}));
}

TEST_F(PathLearnTest, WhatTheViewAlreadyHasIsNotAdded) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    ASSERT_EQ(mkdir(p("vis").c_str(), 0755), 0);
    write("vis/file", "x");
    link("vis/file", "x");
    PathLearner::View v = empty_view();
    v.visible = {p("vis")};
    PathLearner l(v);
    EXPECT_TRUE(l.covered(p("vis/file")));
    EXPECT_FALSE(l.covered(p("visible")));
    l.missing(p("x"), "openat", false);
    json r = l.report(self());
    const json* x = entry_for(r, p("x"));
    ASSERT_NE(x, nullptr) << r.dump(2);
    EXPECT_EQ((*x)["add"], json::array({{{"path", p("x")}, {"kind", "symlink"},
                                         {"why", "a symlink on the way: " + p("x") + " -> vis/file"}}}))
        << "the target is in the view; only the link is lacking";
}

TEST_F(PathLearnTest, AnExecdProgramBringsItsInterpreterAndLibraries) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    const std::string real_true = fs::canonical("/bin/true").string();
    std::error_code ec;
    fs::copy_file(real_true, p("prog"), ec);
    ASSERT_FALSE(ec) << ec.message();
    chmod(p("prog").c_str(), 0755);
    moat::guest::ElfDeps deps;
    {
        moat::UniqueFd fd(open(p("prog").c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(fd);
        deps = moat::guest::elf_deps(fd.get());
    }
    ASSERT_FALSE(deps.interp.empty()) << real_true << " is not dynamically linked";
    ASSERT_FALSE(deps.needed.empty()) << real_true << " needs no library";
    link("prog", "alias");

    PathLearner l(empty_view());
    l.missing(p("alias"), "execve", true);
    l.missing(p("c-not-run"), "openat", false);
    write("c-not-run", "not a program");
    json r = l.report(self());
    const json* e = entry_for(r, p("alias"));
    ASSERT_NE(e, nullptr) << r.dump(2);
    EXPECT_EQ(e->value("host", ""), "file");
    const json* prog = add_for(*e, p("prog"));
    ASSERT_NE(prog, nullptr) << e->dump(2);
    EXPECT_EQ(prog->value("kind", ""), "file");
    ASSERT_NE(add_for(*e, p("alias")), nullptr) << e->dump(2);

    // The interpreter, by its real path, with why; each hop to it too.
    const json* interp = add_for(*e, fs::canonical(deps.interp).string());
    ASSERT_NE(interp, nullptr) << deps.interp << "\n" << e->dump(2);
    EXPECT_EQ(interp->value("why", ""), "the ELF interpreter of " + p("prog"));
    EXPECT_EQ(interp->value("kind", ""), "file");
    // libc (or whatever /bin/true needs first), found where the loader would.
    bool lib = false;
    for (const auto& a : (*e)["add"])
        lib = lib || a.value("why", "") == "a library " + p("prog") + " needs (" + deps.needed[0] + ")";
    EXPECT_TRUE(lib) << deps.needed[0] << "\n" << e->dump(2);
    // Every hop is a real symlink on the host, every other addition a real file.
    for (const auto& a : (*e)["add"]) {
        struct stat st{};
        ASSERT_EQ(lstat(a.value("path", "").c_str(), &st), 0) << a.dump();
        if (a.value("kind", "") == "symlink")
            EXPECT_TRUE(S_ISLNK(st.st_mode)) << a.dump();
        else
            EXPECT_TRUE(S_ISREG(st.st_mode)) << a.dump();
    }
    if (fs::is_symlink(fs::path(deps.interp).parent_path())) {  // /lib64 -> usr/lib64 on merged /usr
        EXPECT_NE(add_for(*e, fs::path(deps.interp).parent_path().string()), nullptr) << e->dump(2);
    }

    // A file that was only opened brings nothing else.
    const json* plain = entry_for(r, p("c-not-run"));
    ASSERT_NE(plain, nullptr) << r.dump(2);
    EXPECT_EQ((*plain)["add"].size(), 1u) << plain->dump(2);
}

TEST_F(PathLearnTest, AScriptBringsItsInterpreter) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    ASSERT_TRUE(fs::exists("/bin/sh"));
    write("script", "#!/bin/sh -e\necho hi\n", 0755);
    PathLearner l(empty_view());
    l.missing(p("script"), "execve", true);
    json r = l.report(self());
    const json* e = entry_for(r, p("script"));
    ASSERT_NE(e, nullptr) << r.dump(2);
    const json* sh = add_for(*e, fs::canonical("/bin/sh").string());
    ASSERT_NE(sh, nullptr) << e->dump(2);
    EXPECT_EQ(sh->value("why", ""), "the interpreter of " + p("script"));
}

TEST_F(PathLearnTest, APathTheClientCannotLookUpIsNotResolvedForIt) {
    if (!can_take_identities()) GTEST_SKIP() << "needs root: a root-owned 0700 directory and another uid";
    ASSERT_EQ(mkdir(p("locked").c_str(), 0700), 0);
    ASSERT_EQ(chown(p("locked").c_str(), 0, 0), 0);
    write("locked/f", "root only\n", 0644);
    write("locked/prog", "#!/bin/sh\n", 0755);
    link("locked/f", "to-locked");
    write("open", "anyone\n");

    PathLearner l(empty_view());
    l.missing(p("locked/f"), "openat", false);
    l.missing(p("locked/prog"), "execve", true);
    l.missing(p("to-locked"), "openat", false);
    l.missing(p("open"), "openat", false);

    // Control: root sees what is there.
    json as_root = l.report(self());
    ASSERT_NE(entry_for(as_root, p("locked/f")), nullptr) << as_root.dump(2);
    EXPECT_EQ(entry_for(as_root, p("locked/f"))->value("host", ""), "file") << as_root.dump(2);

    json r = l.report(nobody());
    ASSERT_FALSE(r.contains("error")) << r.dump(2);
    for (const char* rel : {"locked/f", "locked/prog", "to-locked"}) {
        const json* e = entry_for(r, p(rel));
        ASSERT_NE(e, nullptr) << rel << "\n" << r.dump(2);
        EXPECT_EQ(e->value("host", ""), strerror(EACCES)) << rel << ": " << e->dump();
        EXPECT_TRUE((*e)["add"].empty()) << rel << ": nothing may be proposed from what the client cannot see\n"
                                         << e->dump(2);
    }
    EXPECT_EQ(entry_for(r, p("to-locked"))->value("links", json()), json({p("to-locked") + " -> locked/f"}))
        << "the link itself is the client's to read";
    const json* open = entry_for(r, p("open"));
    ASSERT_NE(open, nullptr);
    EXPECT_EQ(open->value("host", ""), "file") << "the client's own rights still resolve what it may see";
}

TEST_F(PathLearnTest, MoatdsOwnDirectoriesAreNeverLookedUp) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    ASSERT_EQ(mkdir(p("state").c_str(), 0755), 0);
    write("state/moat.db", "db");
    PathLearner::View v = empty_view();
    v.private_dirs = {p("state")};
    PathLearner l(v);
    l.missing(p("state/moat.db"), "openat", false);
    json r = l.report(self());
    const json* e = entry_for(r, p("state/moat.db"));
    ASSERT_NE(e, nullptr) << r.dump(2);
    EXPECT_EQ(e->value("host", ""), "moatd's own");
    EXPECT_TRUE((*e)["add"].empty()) << e->dump();
}

TEST_F(PathLearnTest, MissingPathsAreBoundedAndTheDropIsCounted) {
    if (!can_take_identities()) GTEST_SKIP() << "report() takes the client's identity on a thread: needs root";
    PathLearner l(empty_view());
    for (size_t i = 0; i < PathLearner::kMaxPaths + 3; ++i) l.missing(p("n" + std::to_string(i)), "access", false);
    json r = l.report(self());
    EXPECT_EQ(r["paths"].size(), PathLearner::kMaxPaths);
    EXPECT_EQ(r.value("dropped", 0), 3);
}

}  // namespace
