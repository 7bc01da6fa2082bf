// The vm kit's pieces without booting a guest: the kernel kit's checks, the
// initramfs's contents and cache, the root image's key, contents, cache and
// the unprivileged reads, QEMU's command line, and the accelerator probe's
// no-KVM path. Root: mkfs runs as nobody in a private mount namespace.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include "moat/vm/accel.h"
#include "moat/vm/guest_kernel.h"
#include "moat/vm/initramfs.h"
#include "moat/vm/qemu_jail.h"
#include "moat/vm/root_image.h"
#include "moat/common/sha256.h"
#include "vm_test_util.h"

using namespace moat;
using namespace moat::vm;
using vmtest::TempDir;
using vmtest::write_file;

namespace {

// A kit with the layout packaging/moat.sh writes, small fake files.
struct FakeKit {
    TempDir dir;
    std::string release = "6.1.0-99-test";
    FakeKit() {
        std::string r = dir / release;
        mkdir(r.c_str(), 0755);
        mkdir((r + "/modules").c_str(), 0755);
        std::string vmlinux = std::string("\x7f" "ELF", 4) + std::string(1000, 'k');
        write_file(r + "/vmlinux", vmlinux);
        std::string manifest = "# test\nformat 1\nrelease " + release + "\npackage linux-image-" + release +
                               " 1.0\nvmlinux vmlinux " + sha256_hex(vmlinux) + " " + std::to_string(vmlinux.size()) +
                               "\n";
        for (const char* m : {"virtio_ring", "virtio", "virtio_mmio"}) {
            std::string data = std::string("module ") + m;
            write_file(r + "/modules/" + m + ".ko", data);
            manifest += std::string("module ") + m + " modules/" + m + ".ko " + sha256_hex(data) + "\n";
        }
        write_file(r + "/manifest", manifest);
        symlink(release.c_str(), (dir / "current").c_str());
    }
    std::string rdir() const { return dir / release; }
};

std::string run(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
}

void need_root() {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: mkfs runs as nobody in a private mount namespace";
}

}  // namespace

// ---- GuestKernel -------------------------------------------------------------

TEST(GuestKernel, MissingKitSaysHowToFetchIt) {
    TempDir empty;
    auto k = GuestKernel::find(empty.path);
    ASSERT_FALSE(k);
    EXPECT_NE(k.error().message.find("run packaging/moat.sh guest-kernel"), std::string::npos) << k.error().message;
}

TEST(GuestKernel, ReadsTheManifestThroughCurrent) {
    FakeKit kit;
    auto k = GuestKernel::find(kit.dir.path);
    ASSERT_TRUE(k) << k.error().message;
    EXPECT_EQ(k->release(), kit.release);
    EXPECT_EQ(k->vmlinux(), kit.rdir() + "/vmlinux");
    ASSERT_EQ(k->modules().size(), 3u);
    EXPECT_EQ(k->modules()[0].name, "virtio_ring");  // manifest order = load order
    EXPECT_EQ(k->modules()[2].name, "virtio_mmio");
    EXPECT_TRUE(k->verify()) << k->verify().error().message;
}

TEST(GuestKernel, TamperedFilesAreRefused) {
    FakeKit kit;
    write_file(kit.rdir() + "/modules/virtio.ko", "evil");
    auto k = GuestKernel::find(kit.dir.path);
    ASSERT_TRUE(k);  // find() checks sizes and presence; the hash is verify()'s job
    auto v = k->verify();
    ASSERT_FALSE(v);
    EXPECT_NE(v.error().message.find("differs from the manifest"), std::string::npos) << v.error().message;

    write_file(kit.rdir() + "/vmlinux", "short");
    auto k2 = GuestKernel::find(kit.dir.path);
    ASSERT_FALSE(k2);
    EXPECT_NE(k2.error().message.find("the manifest says"), std::string::npos) << k2.error().message;
}

TEST(GuestKernel, ManifestCannotPointOutsideTheKit) {
    FakeKit kit;
    write_file(kit.rdir() + "/manifest", "format 1\nrelease x\nvmlinux ../../etc/passwd " + std::string(64, 'a') + " 1\n");
    auto k = GuestKernel::find(kit.dir.path);
    ASSERT_FALSE(k);
    EXPECT_NE(k.error().message.find("malformed vmlinux entry"), std::string::npos) << k.error().message;
}

TEST(GuestKernel, TheInstalledKitVerifies) {
    auto k = GuestKernel::find();
    if (!k) GTEST_SKIP() << k.error().message;
    EXPECT_TRUE(k->verify()) << k->verify().error().message;
    std::vector<std::string> names;
    for (const auto& m : k->modules()) names.push_back(m.name);
    // Dependencies first: virtio_ring before virtio before the drivers.
    auto pos = [&](const char* n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    EXPECT_LT(pos("virtio_ring"), pos("virtio"));
    EXPECT_LT(pos("virtio"), pos("virtio_mmio"));
    EXPECT_LT(pos("virtio"), pos("virtio_console"));
    EXPECT_LT(pos("virtio"), pos("virtio_blk"));
    EXPECT_EQ(names.size(), 5u);
}

// ---- BaseInitramfs -------------------------------------------------------------

namespace {
struct CpioEntry {
    mode_t mode;
    std::string data;
};
std::map<std::string, CpioEntry> read_cpio(const std::string& path) {
    std::map<std::string, CpioEntry> out;
    archive* a = archive_read_new();
    archive_read_support_format_cpio(a);
    if (archive_read_open_filename(a, path.c_str(), 65536) != ARCHIVE_OK) {
        archive_read_free(a);
        return out;
    }
    archive_entry* e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        CpioEntry c{archive_entry_mode(e), {}};
        char buf[65536];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0) c.data.append(buf, size_t(n));
        out[archive_entry_pathname(e)] = c;
    }
    archive_read_free(a);
    return out;
}
}  // namespace

TEST(BaseInitramfs, HoldsTheAgentModulesAndMountPoints) {
    FakeKit kit;
    auto k = GuestKernel::find(kit.dir.path);
    ASSERT_TRUE(k);
    TempDir work;
    write_file(work / "agent", "agent-bytes", 0755);
    auto r = BaseInitramfs::build(*k, {work / "agent", work / "cache"});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_FALSE(r->cache_hit());
    auto c = read_cpio(r->path());
    ASSERT_TRUE(c.count("init"));
    EXPECT_EQ(c["init"].data, "agent-bytes");
    EXPECT_EQ(c["init"].mode, mode_t(S_IFREG | 0755));
    EXPECT_EQ(c["modules.order"].data, "virtio_ring\nvirtio\nvirtio_mmio\n");
    EXPECT_EQ(c["lib/modules/virtio.ko"].data, "module virtio");
    for (const char* d : {"dev", "proc", "sys", "tmp", "mnt"}) {
        ASSERT_TRUE(c.count(d)) << d;
        EXPECT_TRUE(S_ISDIR(c[d].mode)) << d;
    }
    EXPECT_TRUE(S_ISCHR(c["dev/console"].mode));

    // Same inputs: the same file, not rebuilt.
    struct stat st1, st2;
    stat(r->path().c_str(), &st1);
    auto again = BaseInitramfs::build(*k, {work / "agent", work / "cache"});
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->cache_hit());
    EXPECT_EQ(again->path(), r->path());
    stat(again->path().c_str(), &st2);
    EXPECT_EQ(st1.st_ino, st2.st_ino);

    // A rebuilt agent: another key. It is the only program: moat-init's
    // code runs inside it (ContainerSpawnPlan::plan_in_process).
    write_file(work / "agent", "agent-bytes-2", 0755);
    auto other = BaseInitramfs::build(*k, {work / "agent", work / "cache"});
    ASSERT_TRUE(other);
    EXPECT_FALSE(other->cache_hit());
    EXPECT_NE(other->key(), r->key());
    auto c2 = read_cpio(other->path());
    EXPECT_EQ(c2["init"].data, "agent-bytes-2");
    EXPECT_FALSE(c2.count("moat-init"));
    EXPECT_FALSE(c.count("moat-init"));
}

TEST(BaseInitramfs, MissingAgentIsAnError) {
    FakeKit kit;
    auto k = GuestKernel::find(kit.dir.path);
    ASSERT_TRUE(k);
    TempDir work;
    auto r = BaseInitramfs::build(*k, {work / "nope", work / "cache"});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("nope"), std::string::npos) << r.error().message;
}

// ---- RootImage ---------------------------------------------------------------------

TEST(RootImage, PathsMustBeAbsoluteAndNormalised) {
    for (const char* bad : {"usr", "/", "/usr/", "/a/../b", "/a//b", "/a/."}) {
        auto r = root_image_key({bad}, vmtest::kNobody, vmtest::kNogroup);
        EXPECT_FALSE(r) << bad;
    }
}

TEST(RootImage, KeyFollowsTheTree) {
    TempDir t;
    mkdir((t / "d").c_str(), 0755);
    write_file(t / "d/f", "one");
    auto k1 = root_image_key({t / "d"}, vmtest::kNobody, vmtest::kNogroup);
    ASSERT_TRUE(k1) << k1.error().message;
    auto k1b = root_image_key({t / "d", t / "d/f"}, vmtest::kNobody, vmtest::kNogroup);  // nested: already included
    ASSERT_TRUE(k1b);
    EXPECT_EQ(k1->key, k1b->key);
    EXPECT_EQ(k1->entries, 2u);
    EXPECT_EQ(root_image_key({t / "d"}, vmtest::kNobody, vmtest::kNogroup)->key, k1->key);  // stable
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    write_file(t / "d/f", "two");  // same size, new mtime
    EXPECT_NE(root_image_key({t / "d"}, vmtest::kNobody, vmtest::kNogroup)->key, k1->key);
    auto before = root_image_key({t / "d"}, vmtest::kNobody, vmtest::kNogroup)->key;
    symlink("f", (t / "d/l").c_str());
    EXPECT_NE(root_image_key({t / "d"}, vmtest::kNobody, vmtest::kNogroup)->key, before);
    auto missing = root_image_key({t / "d", t / "absent"}, vmtest::kNobody, vmtest::kNogroup);
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->missing, std::vector<std::string>{t / "absent"});
}

TEST(RootImage, BuildsAsNobodyKeepsSymlinksAndCaches) {
    need_root();
    TempDir t, cache;
    mkdir((t / "data").c_str(), 0755);
    mkdir((t / "data/sub").c_str(), 0755);
    write_file(t / "data/sub/file.txt", "hello image\n");
    symlink("data", (t / "link").c_str());
    RootImageOptions o;
    o.paths = {t / "link", t / "data", "/lib"};  // /lib: a symlink on merged-/usr Debian
    o.uid = vmtest::kNobody;
    o.gid = vmtest::kNogroup;
    o.cache_dir = cache.path;
    auto img = build_root_image(o);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_FALSE(img->cache_hit);
    struct stat st;
    ASSERT_EQ(stat(img->path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
    EXPECT_EQ(uint64_t(st.st_size), img->image_bytes);
    EXPECT_LT(uint64_t(st.st_blocks) * 512, uint64_t(st.st_size)) << "the image should be sparse";

    EXPECT_EQ(run("debugfs -R 'cat " + t / "data/sub/file.txt" + "' " + img->path + " 2>/dev/null"), "hello image\n");
    std::string link = run("debugfs -R 'stat " + t / "link" + "' " + img->path + " 2>/dev/null");
    EXPECT_NE(link.find("Type: symlink"), std::string::npos) << link;
    EXPECT_NE(link.find("\"data\""), std::string::npos) << link;
    struct stat lib;
    if (lstat("/lib", &lib) == 0 && S_ISLNK(lib.st_mode)) {
        std::string l = run("debugfs -R 'stat /lib' " + img->path + " 2>/dev/null");
        EXPECT_NE(l.find("Type: symlink"), std::string::npos) << l;
    }
    // The files keep their host owner; the directories the image adds are root's.
    std::string f = run("debugfs -R 'stat " + t / "data/sub/file.txt" + "' " + img->path + " 2>/dev/null");
    EXPECT_NE(f.find("User:     0"), std::string::npos) << f;

    auto again = build_root_image(o);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_TRUE(again->cache_hit);
    EXPECT_EQ(again->path, img->path);
}

TEST(RootImage, HoldsOnlyWhatTheUidMayRead) {
    need_root();
    TempDir cache;
    RootImageOptions o;
    o.paths = {"/etc/shadow"};
    o.uid = vmtest::kNobody;
    o.gid = vmtest::kNogroup;
    o.cache_dir = cache.path;
    auto img = build_root_image(o);
    ASSERT_FALSE(img) << "nobody must not be able to put /etc/shadow into an image";
    EXPECT_NE(img.error().message.find("mkfs.ext4"), std::string::npos) << img.error().message;
    EXPECT_NE(img.error().message.find("shadow"), std::string::npos) << img.error().message;
    EXPECT_NE(img.error().message.find("Permission denied"), std::string::npos) << img.error().message;
    // Nothing is left behind in the cache.
    EXPECT_EQ(run("ls -A " + cache.path), "");
}

TEST(RootImage, WhatTheUidMayNotReadInsideATreeIsAnEmptyPlaceholder) {
    need_root();
    TempDir t, cache;
    mkdir((t / "tree").c_str(), 0755);
    write_file(t / "tree/public.txt", "public\n");
    mkdir((t / "tree/private").c_str(), 0700);  // like /usr/share/polkit-1/rules.d
    write_file(t / "tree/private/secret.txt", "secret\n");
    write_file(t / "tree/key.pem", "secret key\n", 0600);
    RootImageOptions o;
    o.paths = {t / "tree"};
    o.uid = vmtest::kNobody;
    o.gid = vmtest::kNogroup;
    o.cache_dir = cache.path;
    auto img = build_root_image(o);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(img->hidden, (std::vector<std::string>{t / "tree/key.pem", t / "tree/private"}));
    EXPECT_EQ(run("debugfs -R 'cat " + t / "tree/public.txt" + "' " + img->path + " 2>/dev/null"), "public\n");
    EXPECT_EQ(run("debugfs -R 'cat " + t / "tree/key.pem" + "' " + img->path + " 2>/dev/null"), "");
    std::string ls = run("debugfs -R 'ls " + t / "tree/private" + "' " + img->path + " 2>/dev/null");
    EXPECT_EQ(ls.find("secret"), std::string::npos) << ls;
    // The whole image holds no secret byte.
    EXPECT_EQ(run("grep -c secret " + img->path), "0\n");

    // Another uid may read the key: another image.
    chown((t / "tree/key.pem").c_str(), 4321, 4321);
    auto as_owner = root_image_key(o.paths, 4321, 4321);
    ASSERT_TRUE(as_owner);
    EXPECT_NE(as_owner->key, img->key);
    EXPECT_EQ(as_owner->hidden, std::vector<std::string>{t / "tree/private"});
}

TEST(RootImage, LeastRecentlyUsedImagesAreEvicted) {
    need_root();
    TempDir t, cache;
    RootImageOptions o;
    o.uid = vmtest::kNobody;
    o.gid = vmtest::kNogroup;
    o.cache_dir = cache.path;
    o.max_images = 2;
    auto build = [&](const char* name) {
        mkdir((t / name).c_str(), 0755);
        write_file(t / name + "/f", name);
        o.paths = {t / name};
        auto r = build_root_image(o);
        EXPECT_TRUE(r) << r.error().message;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return r ? r->path : std::string();
    };
    std::string a = build("a"), b = build("b");
    o.paths = {t / "a"};
    auto hit = build_root_image(o);  // a is now the most recently used
    ASSERT_TRUE(hit && hit->cache_hit);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::string c = build("c");
    EXPECT_EQ(access(a.c_str(), F_OK), 0) << "a was used after b";
    EXPECT_NE(access(b.c_str(), F_OK), 0) << "b is the least recently used";
    EXPECT_EQ(access(c.c_str(), F_OK), 0);

    o.max_images = 10;
    o.max_bytes = 1;  // below any image: only the one just built survives
    std::string d = build("d");
    EXPECT_EQ(access(d.c_str(), F_OK), 0);
    EXPECT_NE(access(a.c_str(), F_OK), 0);
    EXPECT_NE(access(c.c_str(), F_OK), 0);
}

TEST(RootImage, RefusesRoot) {
    auto r = build_root_image({.paths = {"/usr"}, .uid = 0, .gid = 0});
    ASSERT_FALSE(r);
}

// ---- QEMU command line and launcher checks ---------------------------------------

TEST(QemuJail, CommandLine) {
    QemuConfig c;
    c.kernel = "/k/vmlinux";
    c.initrd = "/k/initrd";
    c.root_image = "/k/root.img";
    c.ports = {{"moat-control", 10}, {"moat-stdio", 11}};
    c.console_fd = 12;
    c.memory_mib = 200;
    auto v = qemu_argv(c);
    std::string all;
    for (auto& s : v) all += s + " ";
    for (const char* want : {"-nodefaults ", "-no-user-config ", "-no-reboot ", "-M microvm,isa-serial=on ",
                             "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny ",
                             "-m 200 ", "-smp 1 ", "-accel tcg ", "-icount shift=4,sleep=on ", "-kernel /k/vmlinux ", "-initrd /k/initrd ",
                             "id=root,file=/k/root.img,format=raw,if=none,read-only=on ",
                             "virtio-blk-device,drive=root ", "socket,id=port0,fd=3 ",
                             "virtserialport,chardev=port0,name=moat-control ", "socket,id=port1,fd=4 ",
                             "socket,id=console,fd=5 ", "-serial chardev:console "})
        EXPECT_NE(all.find(want), std::string::npos) << want << " in " << all;
    for (const char* never : {"-netdev", "-nic", "-net ", "-monitor", "-qmp"})
        EXPECT_EQ(all.find(never), std::string::npos) << never;

    c.console_fd = -1;
    c.accel = Accel::Kvm;
    all.clear();
    for (auto& s : qemu_argv(c)) all += s + " ";
    EXPECT_NE(all.find("-serial none"), std::string::npos);
    EXPECT_NE(all.find("-accel kvm"), std::string::npos);
    EXPECT_EQ(all.find("-icount"), std::string::npos) << "instruction counting is TCG-only";
}

TEST(QemuJail, RefusesRootAndOptionInjection) {
    QemuConfig c;
    c.kernel = "/k";
    c.initrd = "/i";
    EXPECT_FALSE(launch_qemu(c));  // uid 0
    c.uid = c.gid = 65534;
    c.root_image = "/x,file=/etc/shadow";
    auto r = launch_qemu(c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("','"), std::string::npos) << r.error().message;
    c.root_image.clear();
    c.ports = {{"a,b", 3}};
    EXPECT_FALSE(launch_qemu(c));
}

TEST(QemuJail, ExecFailureNamesTheStep) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to nobody";
    QemuConfig c;
    c.qemu = "/nonexistent/qemu";
    c.kernel = "/k";
    c.initrd = "/i";
    c.uid = vmtest::kNobody;
    c.gid = vmtest::kNogroup;
    auto r = launch_qemu(c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("execve(\"/nonexistent/qemu\"): ENOENT"), std::string::npos) << r.error().message;
}

// ---- Accelerator ---------------------------------------------------------------------

TEST(Accelerator, NoKvmDeviceMeansTcg) {
    ProbeConfig p;
    p.kvm_device = "/nonexistent/kvm";
    auto v = probe_accelerator_uncached(p);
    EXPECT_EQ(v.accel, Accel::Tcg);
    EXPECT_EQ(v.reason, "/nonexistent/kvm absent");
    p.kvm_device = "/dev/null";  // exists, a char device, but no KVM: the test boot fails
    p.kernel = "/nonexistent/vmlinux";
    p.initrd = "/nonexistent/initrd";
    p.uid = vmtest::kNobody;
    p.gid = vmtest::kNogroup;
    if (geteuid() == 0) {
        auto v2 = probe_accelerator_uncached(p);
        EXPECT_EQ(v2.accel, Accel::Tcg) << v2.reason;
        EXPECT_FALSE(v2.reason.empty());
    }
}
