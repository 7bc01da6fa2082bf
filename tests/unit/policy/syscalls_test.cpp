#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <functional>
#include <set>

#include "moat/policy/syscalls.h"

namespace moat::policy {
namespace {

TEST(Syscalls, NamesAndNumbersComeFromLibseccomp) {
    EXPECT_EQ(syscall_nr("read"), 0);
    EXPECT_EQ(syscall_nr("openat"), SYS_openat);
    EXPECT_EQ(syscall_nr("execve"), SYS_execve);
    EXPECT_EQ(syscall_nr("nosuchcall"), std::nullopt);
    EXPECT_EQ(syscall_nr(""), std::nullopt);
    // Exists on i386 only: libseccomp gives a negative pseudo number, not a syscall.
    EXPECT_EQ(syscall_nr("socketcall"), std::nullopt);
    EXPECT_EQ(syscall_name(SYS_openat), "openat");
    EXPECT_EQ(syscall_name(5, "i386"), "open");
    EXPECT_EQ(syscall_name(100000), "");
    EXPECT_EQ(syscall_name(0, "sparc"), "");
}

TEST(Syscalls, AllSyscallsIsSortedAndComplete) {
    const auto& all = all_syscalls();
    EXPECT_GT(all.size(), 300u);
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
    EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), all.size());
    for (const char* n : {"read", "openat", "io_uring_setup", "clone3", "landlock_create_ruleset", "exit_group"})
        EXPECT_TRUE(std::binary_search(all.begin(), all.end(), n)) << n;
    for (const std::string& n : all) EXPECT_TRUE(syscall_nr(n).has_value()) << n;
}

TEST(SyscallGroups, RequiredGroupsExist) {
    const auto& g = syscall_groups();
    for (const char* name : {"@default", "@basic-io", "@file-system", "@network-io", "@process", "@signal", "@memory",
                             "@time", "@ipc", "@privileged", "@obsolete", "@debug", "@io-uring", "@keyring"}) {
        auto it = g.find(name);
        ASSERT_NE(it, g.end()) << name;
        EXPECT_EQ(it->second.name, name);
        EXPECT_FALSE(it->second.description.empty()) << name;
        EXPECT_FALSE(it->second.members.empty()) << name;
    }
}

// The groups file is data compiled into the binary; this is its build-time check.
TEST(SyscallGroups, EveryMemberResolvesAndThereAreNoCycles) {
    const auto& groups = syscall_groups();
    ASSERT_FALSE(groups.empty());
    for (const auto& [name, g] : groups) {
        EXPECT_TRUE(name.starts_with('@')) << name;
        for (const std::string& m : g.members) {
            if (m.starts_with('@'))
                EXPECT_TRUE(groups.contains(m)) << name << " references unknown group " << m;
            else
                EXPECT_TRUE(syscall_nr(m).has_value()) << name << ": libseccomp does not know \"" << m << "\"";
        }
    }
    // Depth-first search with colours: grey -> grey is a cycle.
    std::map<std::string, int> colour;  // 0 white, 1 grey, 2 black
    std::vector<std::string> cycle;
    std::function<bool(const std::string&)> visit = [&](const std::string& n) {
        colour[n] = 1;
        for (const std::string& m : groups.at(n).members) {
            if (!m.starts_with('@') || !groups.contains(m)) continue;
            if (colour[m] == 1 || (colour[m] == 0 && visit(m))) {
                cycle.push_back(n);
                return true;
            }
        }
        colour[n] = 2;
        return false;
    };
    for (const auto& [name, _] : groups)
        if (colour[name] == 0) {
            EXPECT_FALSE(visit(name)) << "cycle through " << ::testing::PrintToString(cycle);
        }
}

TEST(SyscallGroups, DefaultGroupContents) {
    std::vector<std::string> d = expand_group("@default");
    auto has = [&](const char* n) { return std::binary_search(d.begin(), d.end(), n); };
    for (const char* n : {"execve", "exit_group", "openat", "read", "write", "mmap", "brk", "rt_sigreturn", "futex",
                          "newfstatat", "getdents64", "wait4"})
        EXPECT_TRUE(has(n)) << n;
    // Deliberately not in @default.
    for (const char* n : {"ioctl", "ptrace", "clone3", "mount", "socket", "bpf", "io_uring_setup", "personality"})
        EXPECT_FALSE(has(n)) << n;
    EXPECT_TRUE(expand_group("@nope").empty());
    EXPECT_TRUE(std::is_sorted(d.begin(), d.end()));
}

TEST(Closest, SuggestsOnlyCloseWords) {
    const std::vector<std::string> c = {"limits", "filesystem", "network", "openat", "open", "execve"};
    EXPECT_EQ(closest("limts", c), "limits");
    EXPECT_EQ(closest("opnat", c), "openat");
    EXPECT_EQ(closest("exceve", c), "execve");    // transposition counts as one edit
    EXPECT_EQ(closest("LIMITS", c), "limits");    // case-insensitive
    EXPECT_EQ(closest("netwrk", c), "network");
    EXPECT_EQ(closest("xyz", c), "");
    EXPECT_EQ(closest("opn", c), "open");         // len 3: distance 1 allowed
    EXPECT_EQ(closest("oxan", c), "");            // distance 2 > max(1, 4/3)
    EXPECT_EQ(closest("", c), "");
    EXPECT_EQ(closest("limits", {}), "");
    EXPECT_EQ(closest(std::string(1000, 'a'), c), "");
}

}  // namespace
}  // namespace moat::policy
