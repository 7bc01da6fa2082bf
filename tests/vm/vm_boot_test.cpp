// Boots the real guest kernel (the kit from packaging/moat.sh guest-kernel)
// under QEMU's microvm, jailed by launch_qemu: as nobody, in a job cgroup,
// with TCG (no usable KVM here). The guest's pid 1 is tests/vm/guest_test_init.c,
// which loads the virtio modules, finds its port by name and answers line
// commands. Skips, saying why, only without root, QEMU or the kit.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "moat/cgroup/cgroup.h"
#include "moat/common/text.h"
#include "moat/common/timeutil.h"
#include "moat/vm/accel.h"
#include "moat/vm/guest_kernel.h"
#include "moat/vm/initramfs.h"
#include "moat/vm/qemu_jail.h"
#include "moat/vm/root_image.h"
#include "vm_test_util.h"

using namespace moat;
using namespace moat::vm;
using vmtest::TempDir;
using vmtest::write_file;

namespace {

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

// One end of a line protocol over a stream socket, with a deadline per line.
struct Line {
    int fd;
    std::string buf;
    std::optional<std::string> read(int timeout_ms) {
        const int64_t deadline = now_monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
        for (;;) {
            auto nl = buf.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                return line;
            }
            int64_t left = (deadline - now_monotonic_ns()) / 1'000'000;
            if (left <= 0) return std::nullopt;
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, int(left)) <= 0) continue;
            char tmp[512];
            ssize_t n = ::read(fd, tmp, sizeof tmp);
            if (n <= 0) return std::nullopt;
            buf.append(tmp, size_t(n));
        }
    }
    bool write(const std::string& s) { return ::write(fd, (s + "\n").data(), s.size() + 1) == ssize_t(s.size() + 1); }
};

std::string proc_status(pid_t pid, const std::string& key) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key + ":", 0) == 0) {
            std::string v = line.substr(key.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    return "";
}

// QEMU's resident memory split three ways: the guest's RAM (the anonymous
// mapping of exactly memory_mib), file pages shared with every other guest
// and process (the mapped vmlinux, QEMU's own binary: page cache), and the
// rest, which is each QEMU's own cost (TCG's translation cache, heap).
struct Rss {
    uint64_t total_kb = 0, guest_kb = 0, shared_file_kb = 0;
    uint64_t private_overhead_kb() const { return total_kb - guest_kb - shared_file_kb; }
};
Rss measure_rss(pid_t pid, uint32_t memory_mib) {
    Rss r;
    std::ifstream f("/proc/" + std::to_string(pid) + "/smaps");
    std::string line;
    bool in_guest = false, file_backed = false;
    while (std::getline(f, line)) {
        unsigned long lo, hi;
        if (sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            in_guest = (hi - lo) == uint64_t(memory_mib) << 20;
            file_backed = line.find(" /") != std::string::npos;
            continue;
        }
        unsigned long kb;
        if (sscanf(line.c_str(), "Rss: %lu kB", &kb) == 1) {
            r.total_kb += kb;
            if (in_guest) r.guest_kb += kb;
        }
        if (file_backed && !in_guest && (sscanf(line.c_str(), "Shared_Clean: %lu kB", &kb) == 1 ||
                                         sscanf(line.c_str(), "Private_Clean: %lu kB", &kb) == 1))
            r.shared_file_kb += kb;  // clean file pages: page cache, reclaimable and shareable
    }
    return r;
}

class VmBoot : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root: QEMU is jailed as nobody in a job cgroup";
        if (access(kQemu, X_OK) != 0) GTEST_SKIP() << kQemu << " missing (Debian package qemu-system-x86)";
        auto k = GuestKernel::find();
        if (!k) GTEST_SKIP() << k.error().message;
        kernel = std::move(*k);
        auto ir = BaseInitramfs::build(*kernel, {MOAT_VM_TEST_INIT, cache / "initramfs"});
        ASSERT_TRUE(ir) << ir.error().message;
        initrd = ir->path();
    }

    struct Guest {
        QemuProcess proc;
        UniqueFd port, console, log;
        Line line{-1, {}};
        ConsoleLog console_log;
        int64_t launched_ns = 0;
    };

    // Launches QEMU with one port named moat-test, the console and QEMU's log on pipes/sockets.
    Guest launch(const std::string& root_image, const cgroup::JobCgroup* cg, uint32_t mib = 128) {
        Guest g;
        int p[2], c[2], l[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        EXPECT_EQ(pipe2(l, O_CLOEXEC | O_NONBLOCK), 0);
        UniqueFd qp(p[1]), qc(c[1]), ql(l[1]);
        g.port.reset(p[0]);
        g.console.reset(c[0]);
        g.log.reset(l[0]);
        QemuConfig q;
        q.qemu = kQemu;
        q.kernel = kernel->vmlinux();
        q.initrd = initrd;
        q.root_image = root_image;
        q.memory_mib = mib;
        q.accel = Accel::Tcg;
        q.ports = {{"moat-test", qp.get()}};
        q.console_fd = qc.get();
        q.log_fd = ql.get();
        q.uid = vmtest::kNobody;
        q.gid = vmtest::kNogroup;
        q.cgroup = cg;
        g.launched_ns = now_monotonic_ns();
        auto r = launch_qemu(q);
        EXPECT_TRUE(r) << r.error().message;
        if (r) g.proc = std::move(*r);
        g.line.fd = g.port.get();
        return g;
    }

    std::string diagnostics(Guest& g) {
        g.console_log.drain(g.console.get());
        ConsoleLog l;
        l.drain(g.log.get());
        return "\nQEMU said: " + printable(l.text()) + "\nconsole: " + printable(g.console_log.text());
    }

    TempDir cache;
    std::optional<GuestKernel> kernel;
    std::string initrd;
};

}  // namespace

TEST_F(VmBoot, MarkerOverVirtioPortFromAJailedQemuInACgroup) {
    auto layout = cgroup::Layout::detect();
    ASSERT_TRUE(layout) << layout.error().message;
    const std::string parent = "moat-vm-test-" + std::to_string(getpid());
    auto cg = cgroup::JobCgroup::create(*layout, parent, "job-1", {});
    ASSERT_TRUE(cg) << cg.error().message;

    Guest g = launch("", &*cg);
    ASSERT_GT(g.proc.pid, 0);
    const pid_t pid = g.proc.pid;
    auto ready = g.line.read(15000);
    ASSERT_EQ(ready, "READY") << diagnostics(g);
    const int64_t boot_ms = (now_monotonic_ns() - g.launched_ns) / 1'000'000;

    // The jail, as the kernel sees QEMU.
    EXPECT_EQ(proc_status(pid, "Uid"), "65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status(pid, "Gid"), "65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status(pid, "Groups"), "");
    EXPECT_EQ(proc_status(pid, "NoNewPrivs"), "1");
    EXPECT_EQ(proc_status(pid, "Seccomp"), "2") << "QEMU's -sandbox filter";
    EXPECT_EQ(proc_status(pid, "CapBnd"), "0000000000000000");
    std::ifstream env("/proc/" + std::to_string(pid) + "/environ");
    std::string envtext((std::istreambuf_iterator<char>(env)), {});
    EXPECT_EQ(envtext, "") << "QEMU must start with an empty environment";
    char mine[64], theirs[64];
    ssize_t a = readlink("/proc/self/ns/net", mine, sizeof mine), b = readlink(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), theirs, sizeof theirs);
    ASSERT_GT(a, 0);
    ASSERT_GT(b, 0);
    EXPECT_NE(std::string(mine, size_t(a)), std::string(theirs, size_t(b))) << "QEMU gets its own network namespace";
    auto pids = cg->pids();
    EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end()) << "QEMU runs in the job cgroup";

    const std::string marker = "moat-marker-" + std::to_string(getpid());
    ASSERT_TRUE(g.line.write("echo " + marker));
    EXPECT_EQ(g.line.read(5000), marker) << diagnostics(g);

    Rss rss = measure_rss(pid, 128);
    std::cout << "[ measure  ] boot to READY (TCG, modules loaded, port open): " << boot_ms << " ms; QEMU RSS "
              << rss.total_kb / 1024 << " MiB = guest RAM touched " << rss.guest_kb / 1024
              << " MiB + clean file pages (vmlinux, QEMU binary; page cache) " << rss.shared_file_kb / 1024
              << " MiB + QEMU's own " << rss.private_overhead_kb() / 1024 << " MiB\n";
    RecordProperty("boot_ms", int(boot_ms));
    RecordProperty("qemu_overhead_kib", int(rss.private_overhead_kb()));

    ASSERT_TRUE(g.line.write("bye"));
    auto ws = wait_qemu(g.proc, 10000);
    ASSERT_TRUE(ws) << ws.error().message << diagnostics(g);
    EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0) << "status " << *ws << diagnostics(g);
    EXPECT_TRUE(cg->pids().empty()) << "the job cgroup must be empty once QEMU exited";
    EXPECT_FALSE(wait_qemu(g.proc, 100)) << "a second wait must not reap or kill anything else";
    EXPECT_TRUE(cg->destroy());
    for (const auto& d : cg->dirs()) rmdir(d.substr(0, d.rfind('/')).c_str());
}

TEST_F(VmBoot, RootImageIsReadOnlyInTheGuest) {
    TempDir tree;
    mkdir((tree / "data").c_str(), 0755);
    write_file(tree / "data/probe.txt", "read from the root image\n");
    RootImageOptions o;
    o.paths = {tree / "data"};
    o.uid = vmtest::kNobody;
    o.gid = vmtest::kNogroup;
    o.cache_dir = cache / "images";
    auto img = build_root_image(o);
    ASSERT_TRUE(img) << img.error().message;

    Guest g = launch(img->path, nullptr);
    ASSERT_GT(g.proc.pid, 0);
    ASSERT_EQ(g.line.read(15000), "READY") << diagnostics(g);
    ASSERT_TRUE(g.line.write("cat " + tree / "data/probe.txt"));
    EXPECT_EQ(g.line.read(5000), "read from the root image") << diagnostics(g);
    ASSERT_TRUE(g.line.write("mounts"));
    auto m = g.line.read(5000);
    ASSERT_TRUE(m);
    EXPECT_NE(m->find("/dev/vda /mnt ext4 ro"), std::string::npos) << *m;
    ASSERT_TRUE(g.line.write("touch " + tree / "data/new"));
    EXPECT_EQ(g.line.read(5000), "ERR Read-only file system");
    ASSERT_TRUE(g.line.write("bye"));
    auto ws = wait_qemu(g.proc, 10000);
    ASSERT_TRUE(ws) << ws.error().message;
    EXPECT_EQ(access((tree / "data/new").c_str(), F_OK), -1);
}

TEST_F(VmBoot, AcceleratorProbe) {
    TempDir probe_cache;
    auto ir = BaseInitramfs::build(*kernel, {MOAT_VM_PROBE_INIT, probe_cache / "initramfs"});
    ASSERT_TRUE(ir) << ir.error().message;
    ProbeConfig p;
    p.qemu = kQemu;
    p.kernel = kernel->vmlinux();
    p.initrd = ir->path();
    p.uid = vmtest::kNobody;
    p.gid = vmtest::kNogroup;
    // The marker check itself, under TCG (which boots here): user space is reached.
    auto t = test_boot(p, Accel::Tcg, 15000);
    ASSERT_TRUE(t) << t.error().message;
    std::cout << "[ measure  ] probe boot to user space under TCG: " << *t << " ms\n";
    // A boot slower than the timeout is a "no", with the reason.
    auto slow = test_boot(p, Accel::Tcg, 300);
    ASSERT_FALSE(slow);
    EXPECT_NE(slow.error().message.find("test boot did not reach user space in 0.3 s"), std::string::npos)
        << slow.error().message;

    auto v = probe_accelerator(p);
    std::cout << "[ measure  ] accelerator: " << accel_name(v.accel) << " (" << v.reason << ", " << v.probe_ms
              << " ms)\n";
    if (access("/dev/kvm", F_OK) != 0) {
        EXPECT_EQ(v.accel, Accel::Tcg);
        EXPECT_EQ(v.reason, "/dev/kvm absent");
    }
    EXPECT_FALSE(v.reason.empty());
    auto again = probe_accelerator(p);  // cached: same verdict, no boot
    EXPECT_EQ(again.reason, v.reason);
}
