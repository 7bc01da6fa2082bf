// moat-runtime's config.json -> job conversion (app/moat-runtime/bundle.h),
// on the config.json podman 4.3 wrote here for `podman run --network none
// --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 IMAGE sh -c "echo hi"`,
// and on variations of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bundle.h"
#include "moat/policy/parser.h"

namespace {

using nlohmann::json;
using moat::runtime::convert_bundle;

json podman_config() {
    std::ifstream f(FIXTURE_DIR "/podman-4.3-config.json");
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str());
}

const std::string kId = "5b7a816b68ad9e4da482fc098f6c5f2b32663a80e91f63d21cc11c40ac657714";

bool has_note(const moat::runtime::BundleJob& j, const std::string& part) {
    return std::any_of(j.notes.begin(), j.notes.end(), [&](const std::string& n) { return n.find(part) != std::string::npos; });
}

TEST(Bundle, PodmansConfigBecomesAValidContainerPolicy) {
    auto j = convert_bundle(podman_config().dump(), "/bundle", kId);
    ASSERT_TRUE(j) << j.error().message;
    auto parsed = moat::policy::parse_policy(j->policy_toml, "x.toml");
    ASSERT_TRUE(parsed.policy) << j->policy_toml;
    const auto& p = *parsed.policy;
    EXPECT_EQ(p.name, "oci-5b7a816b68ad");
    EXPECT_EQ(p.tier, moat::policy::Tier::Container);
    EXPECT_EQ(p.limits.open_files, 1024u);     // --ulimit nofile
    EXPECT_EQ(p.limits.pids, 2048u);           // podman's pids.limit
    EXPECT_EQ(p.limits.wall_time_ns, 720ull * 3600 * 1000000000);  // a container runs until stopped
    EXPECT_TRUE(p.filesystem.read_only.empty());  // nothing of the host's
    EXPECT_TRUE(p.filesystem.read_write.empty());
    EXPECT_EQ(p.network, moat::policy::NetworkMode::Loopback);
    EXPECT_EQ(p.environment.set.at("container"), "podman");
    EXPECT_EQ(p.environment.set.at("PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    EXPECT_TRUE(p.environment.pass.empty());
    EXPECT_TRUE(p.seccomp.allowed.count("read"));
    EXPECT_FALSE(p.seccomp.allowed.count("swapon"));  // the profile denies it by rule
    EXPECT_EQ(j->argv, (std::vector<std::string>{"sh", "-c", "echo hi"}));
    EXPECT_EQ(j->cwd, "/");
    EXPECT_FALSE(j->root_read_only);
    EXPECT_EQ(j->rootfs.substr(0, 36), "/var/lib/containers/storage/overlay/");
    EXPECT_EQ(j->dev_shm_bytes, 64ull << 20);
    // /etc/hosts, /run/.containerenv, /etc/hostname (the shm bind became Moat's own /dev/shm).
    ASSERT_EQ(j->binds.size(), 3u);
    EXPECT_EQ(j->binds[0].target, "/etc/hosts");
    EXPECT_FALSE(j->binds[0].read_only);
    EXPECT_EQ(j->mount_points, (std::vector<std::string>{"/proc", "/dev"}));
    // What is not honoured is said, in the policy text too.
    for (const char* n : {"/sys (sysfs) not mounted", "/dev/pts (devpts)", "process.capabilities", "linux.sysctl",
                          "RLIMIT_NPROC", "process.user 0:0"})
        EXPECT_TRUE(has_note(*j, n)) << n;
    EXPECT_NE(j->policy_toml.find("#   /sys (sysfs) not mounted"), std::string::npos);
}

TEST(Bundle, WhatWouldWeakenOrBreakTheContainerIsRefusedInWords) {
    struct Case {
        const char* what;
        std::function<void(json&)> edit;
        const char* says;
    } cases[] = {
        {"no seccomp", [](json& c) { c["linux"].erase("seccomp"); }, "no seccomp profile"},
        {"a hook", [](json& c) { c["hooks"] = {{"prestart", {{{"path", "/bin/true"}}}}}; }, "hooks.prestart"},
        {"joining a mount namespace",
         [](json& c) { c["linux"]["namespaces"][4] = {{"type", "mount"}, {"path", "/proc/1/ns/mnt"}}; },
         "joining the mount namespace at /proc/1/ns/mnt"},
        {"a mount of another type",
         [](json& c) { c["mounts"].push_back({{"destination", "/data"}, {"type", "nfs"}, {"source", "x:/y"}}); },
         "mount type \"nfs\" at /data"},
        {"a mount escaping with ..",
         [](json& c) { c["mounts"].push_back({{"destination", "/a/../../etc"}, {"type", "tmpfs"}, {"source", "t"}}); },
         "without .."},
        {"a bind over /proc",
         [](json& c) {
             c["mounts"].push_back({{"destination", "/proc/sys"}, {"type", "bind"}, {"source", "/proc/sys"}});
         },
         "/dev and /proc are its own"},
        {"no args", [](json& c) { c["process"]["args"] = json::array(); }, "process.args"},
        {"a relative cwd", [](json& c) { c["process"]["cwd"] = "tmp"; }, "process.cwd"},
        {"a bad env entry", [](json& c) { c["process"]["env"].push_back("=x"); }, "not NAME=VALUE"},
        {"another major version", [](json& c) { c["ociVersion"] = "2.0.0"; }, "is not 1.x"},
    };
    for (auto& cs : cases) {
        json c = podman_config();
        cs.edit(c);
        auto j = convert_bundle(c.dump(), "/bundle", kId);
        ASSERT_FALSE(j) << cs.what;
        EXPECT_NE(j.error().message.find(cs.says), std::string::npos) << cs.what << ": " << j.error().message;
    }
    EXPECT_FALSE(convert_bundle("{not json", "/b", kId));
    EXPECT_FALSE(convert_bundle(std::string(5u << 20, ' '), "/b", kId));
}

TEST(Bundle, LimitsComeFromResourcesRlimitsAndAnnotations) {
    json c = podman_config();
    c["linux"]["resources"]["memory"] = {{"limit", 256 << 20}, {"swap", 512 << 20}};
    c["linux"]["resources"]["cpu"] = {{"quota", 50000}, {"period", 100000}};
    c["process"]["rlimits"].push_back({{"type", "RLIMIT_FSIZE"}, {"hard", 1 << 20}, {"soft", 1 << 20}});
    c["process"]["rlimits"].push_back({{"type", "RLIMIT_NOFILE"}, {"hard", 1u << 30}, {"soft", 1024}});
    c["annotations"]["org.moat.limits.wall_time"] = "90s";
    c["root"]["readonly"] = true;
    c["mounts"].push_back({{"destination", "/scratch"}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", {"size=2m"}}});
    c["mounts"].push_back({{"destination", "/data"}, {"type", "bind"}, {"source", "/srv/data"}, {"options", {"rbind", "ro"}}});
    auto j = convert_bundle(c.dump(), "/bundle", kId);
    ASSERT_TRUE(j) << j.error().message;
    auto p = moat::policy::parse_policy(j->policy_toml, "x.toml").policy;
    ASSERT_TRUE(p) << j->policy_toml;
    EXPECT_EQ(p->limits.memory_bytes, 256u << 20);
    EXPECT_EQ(p->limits.file_size_bytes, 1u << 20);
    EXPECT_EQ(p->limits.open_files, 1048576u);  // clamped to the kernel's nr_open default
    EXPECT_EQ(p->limits.wall_time_ns, 90ull * 1000000000);
    EXPECT_EQ(p->filesystem.tmpfs, std::vector<std::string>{"/scratch"});
    EXPECT_EQ(p->filesystem.tmpfs_size_bytes, 2u << 20);
    EXPECT_TRUE(j->root_read_only);
    ASSERT_EQ(j->binds.back().target, "/data");
    EXPECT_TRUE(j->binds.back().read_only);
    EXPECT_TRUE(j->binds.back().recursive);
    EXPECT_TRUE(has_note(*j, "linux.resources.cpu"));
    EXPECT_TRUE(has_note(*j, "linux.resources.memory.swap"));
    EXPECT_TRUE(has_note(*j, "RLIMIT_NOFILE 1073741824 clamped"));
    EXPECT_EQ(j->mount_points, (std::vector<std::string>{"/proc", "/dev", "/scratch"}));
}

TEST(Bundle, TextFromConfigJsonCannotWriteThePolicy) {
    // A note quotes config.json on a comment line of the policy: a newline in
    // it must not start a line (a key) of its own.
    json c = podman_config();
    c["process"]["rlimits"].push_back(
        {{"type", "RLIMIT_X\nmonitor.max_events = 100\n#"}, {"hard", 1}, {"soft", 1}});
    c["mounts"].push_back({{"destination", "/dev/x\n[limits]"}, {"type", "mqueue"}, {"source", "m"}});
    auto j = convert_bundle(c.dump(), "/bundle", kId);
    ASSERT_TRUE(j) << j.error().message;
    auto p = moat::policy::parse_policy(j->policy_toml, "x.toml").policy;
    ASSERT_TRUE(p) << j->policy_toml;
    EXPECT_EQ(p->monitor.max_events, moat::policy::Monitor{}.max_events) << j->policy_toml;
    for (const auto& n : j->notes) EXPECT_EQ(n.find('\n'), std::string::npos) << n;
    EXPECT_TRUE(has_note(*j, "RLIMIT_X?monitor.max_events"));
    // A tmpfs size past what any job can have is not a size (no wrap to 0).
    json d = podman_config();
    d["mounts"].push_back({{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
                           {"options", {"size=17179869184g"}}});
    auto k = convert_bundle(d.dump(), "/bundle", kId);
    ASSERT_TRUE(k) << k.error().message;
    EXPECT_EQ(k->dev_shm_bytes, 64ull << 20);
}

TEST(Bundle, TheEnginesNetworkNamespaceIsJoinedOthersAreNotShared) {
    // What a pod's container (or podman --network ns:PATH / a bridge network) gets.
    json c = podman_config();
    c["linux"]["namespaces"][1] = {{"type", "network"}, {"path", "/run/netns/cni-1"}};
    c["linux"]["namespaces"][2] = {{"type", "ipc"}, {"path", "/proc/42/ns/ipc"}};
    auto j = convert_bundle(c.dump(), "/bundle", kId);
    ASSERT_TRUE(j) << j.error().message;
    EXPECT_EQ(j->netns_path, "/run/netns/cni-1");
    auto p = moat::policy::parse_policy(j->policy_toml, "x.toml").policy;
    ASSERT_TRUE(p) << j->policy_toml;
    EXPECT_EQ(p->network, moat::policy::NetworkMode::Engine);
    EXPECT_TRUE(has_note(*j, "the ipc namespace at /proc/42/ns/ipc is not joined"));
    // Without a path: a new one with lo up.
    auto k = convert_bundle(podman_config().dump(), "/bundle", kId);
    ASSERT_TRUE(k);
    EXPECT_TRUE(k->netns_path.empty());
    EXPECT_EQ(moat::policy::parse_policy(k->policy_toml, "x.toml").policy->network, moat::policy::NetworkMode::Loopback);
}

TEST(Bundle, TerminalIsFlaggedAndRelativeRootIsTheBundles) {
    json c = podman_config();
    c["process"]["terminal"] = true;
    c["root"]["path"] = "rootfs";
    auto j = convert_bundle(c.dump(), "/srv/bundle", kId);
    ASSERT_TRUE(j) << j.error().message;
    EXPECT_TRUE(j->terminal);
    EXPECT_EQ(j->rootfs, "/srv/bundle/rootfs");
}

TEST(Bundle, ContainerIdsThatNameADirectoryOnly) {
    using moat::runtime::valid_container_id;
    EXPECT_TRUE(valid_container_id(kId));
    EXPECT_TRUE(valid_container_id("web-1.blue_2"));
    for (const char* bad : {"", ".", "..", "a/b", "../x", "a b", "x\n"}) EXPECT_FALSE(valid_container_id(bad)) << bad;
    EXPECT_FALSE(valid_container_id(std::string(129, 'a')));
}

}  // namespace
