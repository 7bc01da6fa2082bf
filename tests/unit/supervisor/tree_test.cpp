// Directory inputs (core/supervisor/src/tree.h): the manifest's encoder and
// hostile-input parser, the walk that records a tree through a directory fd
// and the restore that rebuilds it, on temp directories (no root needed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "moat/common/fd.h"
#include "moat/common/sha256.h"
#include "tree.h"

namespace {

using moat::UniqueFd;
using namespace moat::supervisor;

const std::string kSha(64, 'a');

std::string make_temp_dir() {
    char t[] = "/tmp/moat-tree-XXXXXX";
    EXPECT_NE(mkdtemp(t), nullptr);
    return t;
}

void write(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    chmod(path.c_str(), mode);
}

std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A blob store in a temp directory: each file's bytes under their sha256.
struct Blobs {
    std::string dir = make_temp_dir();
    int stored = 0;
    FileSink sink() {
        return [this](int fd, uint64_t max) -> moat::Result<FileDigest> {
            std::string bytes;
            char buf[4096];
            for (off_t off = 0;;) {
                ssize_t n = pread(fd, buf, sizeof buf, off);
                if (n <= 0) break;
                bytes.append(buf, size_t(n));
                off += n;
            }
            FileDigest d;
            d.truncated = bytes.size() > max;
            if (d.truncated) bytes.resize(max);
            d.sha256 = moat::sha256_hex(bytes);
            d.bytes = bytes.size();
            std::ofstream(dir + "/" + d.sha256) << bytes;
            ++stored;
            return d;
        };
    }
    BlobPath path() const {
        return [this](const std::string& sha) { return dir + "/" + sha; };
    }
    ~Blobs() { remove_tree_at(AT_FDCWD, dir); }
};

class Tree : public ::testing::Test {
protected:
    void SetUp() override {
        root = make_temp_dir();
        src = root + "/src";
        mkdir(src.c_str(), 0755);
        mkdir((src + "/sub").c_str(), 0750);
        mkdir((src + "/sub/deeper").c_str(), 0700);
        write(src + "/top.txt", "top\n", 0644);
        write(src + "/sub/secret", "only the owner\n", 0600);
        write(src + "/sub/deeper/same.txt", "top\n", 0444);  // the same bytes as top.txt: one blob
        symlink("sub/secret", (src + "/link").c_str());
        symlink("/etc", (src + "/sub/outside").c_str());  // recorded, never entered
        mkfifo((src + "/fifo").c_str(), 0644);
    }
    void TearDown() override { remove_tree_at(AT_FDCWD, root); }

    moat::Result<TreeWalk> walk(const std::string& dir, const TreeLimits& limits, Blobs& blobs) {
        UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        EXPECT_TRUE(fd) << dir;
        return walk_tree(fd.get(), limits, blobs.sink(), cancel);
    }

    std::string root, src;
    std::atomic<bool> cancel{false};
};

TEST(TreeManifest, EncodesCanonicallyAndParsesBack) {
    TreeManifest m;
    m.root_mode = 0750;
    m.entries = {{"a", TreeEntry::Type::Dir, 0700, 0, "", ""},
                 {"a/f", TreeEntry::Type::File, 0600, 5, kSha, ""},
                 {"a/l", TreeEntry::Type::Symlink, 0, 0, "", "../b"},
                 {"b", TreeEntry::Type::File, 0644, 0, std::string(64, '0'), ""}};
    const std::string text = encode_manifest(m);
    auto back = parse_manifest(text);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, m);
    EXPECT_EQ(encode_manifest(*back), text) << "one spelling per tree";
    EXPECT_NE(text.find("\"format\":\"moat-tree/1\""), std::string::npos) << text;
}

// Each manifest text differs from a valid one in one way that must be refused.
TEST(TreeManifest, ParserRefusesHostileManifests) {
    auto doc = [](const std::string& entries) {
        return R"({"format":"moat-tree/1","root_mode":493,"entries":[)" + entries + "]}";
    };
    const std::string d = R"({"path":"d","type":"dir","mode":493})";
    auto file = [](const std::string& path) {
        return R"({"path":")" + path + R"(","type":"file","mode":420,"size":1,"sha256":")" + std::string(64, 'a') + "\"}";
    };
    ASSERT_TRUE(parse_manifest(doc(d + "," + file("d/f")))) << "the valid base";
    const std::pair<std::string, std::string> bad[] = {
        {doc(file("..")), "\"..\" component"},
        {doc(d + "," + file("d/../../etc/passwd")), "\"..\" component"},
        {doc(file("/etc/passwd")), "absolute path"},
        {doc(d + "," + file("d//f")), "empty path component"},
        {doc(file("./f")), "\".\" component"},
        {doc(file("")), "empty path"},
        {doc(file("f") + "," + file("f")), "repeats or is out of order"},
        {doc(file("b") + "," + file("a")), "repeats or is out of order"},
        {doc(file("d/f")), "not inside a directory entry"},
        {doc(file("d") + "," + file("d/f")), "not inside a directory entry"},
        {doc(R"({"path":"l","type":"symlink","mode":0,"target":"/x"},)" + file("l/f")), "not inside a directory entry"},
        {doc(R"({"path":"f","type":"file","mode":420,"size":1,"sha256":"../../etc"})"), "sha256"},
        {doc(R"({"path":"f","type":"file","mode":4096,"size":1,"sha256":")" + kSha + "\"}"), "mode"},
        {doc(R"({"path":"l","type":"symlink","mode":0})"), "target"},
        {doc(R"({"path":"x","type":"fifo","mode":420})"), "unknown type"},
        {doc(R"("d")"), "not an object"},
        {R"({"format":"other","root_mode":493,"entries":[]})", "format"},
        {R"({"format":"moat-tree/1","entries":[]})", "root_mode"},
        {"not json", "not a JSON object"},
    };
    for (const auto& [text, why] : bad) {
        auto m = parse_manifest(text);
        ASSERT_FALSE(m) << "accepted: " << text;
        EXPECT_NE(m.error().message.find(why), std::string::npos) << text << "\n -> " << m.error().message;
    }
    std::string deep;
    for (size_t i = 0; i <= kMaxTreeDepth; ++i) deep += (i ? "/" : "") + std::string("d");
    auto m = parse_manifest(doc(file(deep)));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("deeper"), std::string::npos) << m.error().message;
}

TEST_F(Tree, WalkRecordsDirsFilesSymlinksAndModesAndSkipsSpecialFiles) {
    Blobs blobs;
    auto w = walk(src, {}, blobs);
    ASSERT_TRUE(w) << w.error().message;
    std::map<std::string, TreeEntry> by_path;
    for (const auto& e : w->manifest.entries) by_path[e.path] = e;
    ASSERT_EQ(by_path.size(), 7u) << encode_manifest(w->manifest);
    EXPECT_EQ(w->manifest.root_mode, 0755u);
    EXPECT_EQ(by_path["sub"].type, TreeEntry::Type::Dir);
    EXPECT_EQ(by_path["sub"].mode, 0750u);
    EXPECT_EQ(by_path["sub/deeper"].mode, 0700u);
    EXPECT_EQ(by_path["sub/secret"].type, TreeEntry::Type::File);
    EXPECT_EQ(by_path["sub/secret"].mode, 0600u);
    EXPECT_EQ(by_path["sub/secret"].size, 15u);
    EXPECT_EQ(by_path["sub/secret"].sha256, moat::sha256_hex("only the owner\n"));
    EXPECT_EQ(by_path["top.txt"].sha256, by_path["sub/deeper/same.txt"].sha256);
    EXPECT_EQ(by_path["link"].type, TreeEntry::Type::Symlink);
    EXPECT_EQ(by_path["link"].target, "sub/secret");
    EXPECT_EQ(by_path["sub/outside"].target, "/etc");
    EXPECT_EQ(w->bytes, 4u + 15u + 4u);
    ASSERT_EQ(w->skipped.size(), 1u);
    EXPECT_EQ(w->skipped[0], "fifo: a FIFO (not recorded)");
    EXPECT_EQ(blobs.stored, 3) << "/etc behind the symlink was not read";
    // Sorted: a parent before its children; what the parser insists on.
    auto again = parse_manifest(encode_manifest(w->manifest));
    ASSERT_TRUE(again) << again.error().message;
}

TEST_F(Tree, WalkStopsAtItsBoundsAndWhenCancelled) {
    Blobs blobs;
    auto few = walk(src, {1ull << 20, 3}, blobs);
    ASSERT_FALSE(few);
    EXPECT_NE(few.error().message.find("more than 3 entries (moatd --record-input-entries)"), std::string::npos)
        << few.error().message;
    auto small = walk(src, {10, 1000}, blobs);
    ASSERT_FALSE(small);
    EXPECT_NE(small.error().message.find("over the snapshot limit of 10B for the whole tree (moatd --record-input-max)"),
              std::string::npos)
        << small.error().message;
    cancel = true;
    auto stopped = walk(src, {}, blobs);
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().message, "cancelled");
}

TEST_F(Tree, RestoreRebuildsTheSameTreeAndTheSourceChangingAfterwardsDoesNotMatter) {
    Blobs blobs;
    unlink((src + "/fifo").c_str());
    auto w = walk(src, {}, blobs);
    ASSERT_TRUE(w) << w.error().message;
    write(src + "/top.txt", "CHANGED\n", 0644);

    const std::string stage = root + "/stage";
    mkdir(stage.c_str(), 0700);
    UniqueFd sfd(open(stage.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto r = restore_tree(w->manifest, sfd.get(), "input-0", getuid(), blobs.path(), cancel);
    ASSERT_TRUE(r) << r.error().message;
    const std::string out = stage + "/input-0";
    EXPECT_EQ(read(out + "/top.txt"), "top\n");
    char target[64] = {};
    ASSERT_GT(readlink((out + "/link").c_str(), target, sizeof target - 1), 0) << "recreated as a symlink";
    EXPECT_STREQ(target, "sub/secret");
    struct stat st{};
    ASSERT_EQ(stat((out + "/sub/secret").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);

    auto rewalk = walk(out, {}, blobs);
    ASSERT_TRUE(rewalk) << rewalk.error().message;
    EXPECT_EQ(encode_manifest(rewalk->manifest), encode_manifest(w->manifest));
}

// restore_tree trusts parse_manifest's checks, and does not rely on them: a
// manifest that walks through one of its own symlinks (or up) creates nothing
// outside the new directory.
TEST_F(Tree, RestoreNeverWritesThroughASymlinkOrOutsideItsDirectory) {
    Blobs blobs;
    const std::string victim = root + "/victim";
    mkdir(victim.c_str(), 0755);
    TreeManifest m;
    m.entries = {{"l", TreeEntry::Type::Symlink, 0, 0, "", victim},
                 {"l/planted", TreeEntry::Type::Dir, 0755, 0, "", ""}};
    UniqueFd rfd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto r = restore_tree(m, rfd.get(), "stage-a", getuid(), blobs.path(), cancel);
    ASSERT_FALSE(r);
    EXPECT_NE(access((victim + "/planted").c_str(), F_OK), 0) << "created through the symlink";

    m.entries = {{"../escaped", TreeEntry::Type::Dir, 0755, 0, "", ""}};
    r = restore_tree(m, rfd.get(), "stage-b", getuid(), blobs.path(), cancel);
    EXPECT_NE(access((root + "/escaped").c_str(), F_OK), 0) << "an entry with \"..\" left the stage";

    // Removal does not follow the symlink either.
    remove_tree_at(rfd.get(), "stage-a");
    EXPECT_EQ(access((root + "/stage-a").c_str(), F_OK), -1);
    EXPECT_EQ(access(victim.c_str(), F_OK), 0);
}

}  // namespace
