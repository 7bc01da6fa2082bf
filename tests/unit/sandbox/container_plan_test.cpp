// The container plan's JSON (moatd -> moat-init): a round trip, and strict
// numbers (the wire fuzzer found a float root_size converted with undefined
// behaviour; corpus/wire/regression-plan-float-root-size).
#include <gtest/gtest.h>
#include <tuple>

#include "moat/sandbox/container_plan.h"

namespace {

using moat::sandbox::ContainerPlan;
using nlohmann::json;

ContainerPlan valid_plan() {
    ContainerPlan p;
    p.hostname = "h";
    p.newroot = "/run/moat/newroot";
    p.argv = {"/bin/true"};
    p.exe = "/bin/true";
    p.cwd = "/";
    p.filter = {sock_filter{6, 0, 0, 0x7fff0000}};
    return p;
}

TEST(ContainerPlan, RoundTrips) {
    ContainerPlan p = valid_plan();
    auto back = ContainerPlan::from_json(p.to_json());
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->to_json(), p.to_json());
}

TEST(ContainerPlan, NumbersMustBeIntegersInRange) {
    const json good = valid_plan().to_json();
    auto with = [&](const char* key, json v) {
        json j = good;
        j[key] = std::move(v);
        return ContainerPlan::from_json(j);
    };
    for (json bad : {json(1.0e32), json(-1), json(3.5), json("5")}) {
        auto r = with("root_size", bad);
        ASSERT_FALSE(r) << "root_size " << bad.dump() << " was accepted";
        EXPECT_NE(r.error().message.find("root_size"), std::string::npos) << r.error().message;
    }
    EXPECT_FALSE(with("uid", json(uint64_t(1) << 40))) << "a uid above 2^32 must not be truncated";
}

// The filter travels as 16 lower-case hex digits per instruction: every
// field comes back exactly, and anything else is refused, never truncated.
TEST(ContainerPlan, TheFilterComesBackExactlyAndABadOneIsRefused) {
    ContainerPlan p = valid_plan();
    p.filter = {sock_filter{0xffff, 0xfe, 0x01, 0xfffffffe}, sock_filter{6, 0, 0, 0x7fff0000}, sock_filter{0, 0, 0, 0}};
    auto back = ContainerPlan::from_json(p.to_json());
    ASSERT_TRUE(back) << back.error().message;
    ASSERT_EQ(back->filter.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(back->filter[i].code, p.filter[i].code) << i;
        EXPECT_EQ(back->filter[i].jt, p.filter[i].jt) << i;
        EXPECT_EQ(back->filter[i].jf, p.filter[i].jf) << i;
        EXPECT_EQ(back->filter[i].k, p.filter[i].k) << i;
    }
    const json good = p.to_json();
    EXPECT_EQ(good["filter"], "fffffe01fffffffe00060000" "7fff0000" "0000000000000000");
    for (json bad : {json(""), json("0006000000ffff7"), json("0006000000ffff7f0"), json("0006000000FFFF7F"),
                     json("000600000 ffff7f"), json(std::string(4097 * 16, '0')),
                     json::array({json::array({6, 0, 0, 0})}), json(6)}) {
        json j = good;
        j["filter"] = bad;
        EXPECT_FALSE(ContainerPlan::from_json(j)) << "filter " << bad.dump().substr(0, 60) << " was accepted";
    }
}

}  // namespace

namespace {

// The container's /dev is its own (step_dev mounts a tmpfs over it after the
// binds): a policy that lists one of its devices (the seccomp tier needs them
// listed for Landlock) runs unchanged, and any other /dev path is refused at
// plan time instead of being hidden under that tmpfs (it once failed in
// moat-init with a truncated step name).
TEST(ContainerPlan, DevPathsAreTheContainersOwnOrRefused) {
    using moat::sandbox::plan_mounts;
    auto ok = plan_mounts({"/usr", "/dev/null", "/dev/urandom"}, {"/dev/zero"}, {}, 1 << 20, {});
    ASSERT_TRUE(ok) << ok.error().message;
    ASSERT_EQ(ok->size(), 1u);
    EXPECT_EQ(ok->at(0).target, "/usr");
    for (auto [ro, rw, tmp] : {std::tuple<const char*, const char*, const char*>{"/dev/sda", nullptr, nullptr},
                               {"/dev", nullptr, nullptr},
                               {nullptr, "/dev/shm", nullptr},
                               {nullptr, nullptr, "/dev/shm"},
                               {nullptr, nullptr, "/dev"}}) {
        std::vector<std::string> r, w, t;
        if (ro) r.push_back(ro);
        if (rw) w.push_back(rw);
        if (tmp) t.push_back(tmp);
        auto bad = plan_mounts(r, w, t, 1 << 20, {});
        ASSERT_FALSE(bad) << (ro ? ro : rw ? rw : tmp) << " was accepted";
        EXPECT_NE(bad.error().message.find("has its own /dev"), std::string::npos) << bad.error().message;
    }
    // An --input placed under /dev would be hidden the same way.
    moat::sandbox::InputMount in;
    in.host = "/usr/bin/true";
    in.sandbox = "/dev/input-file";
    auto input = plan_mounts({}, {}, {}, 1 << 20, {in});
    ASSERT_FALSE(input);
    EXPECT_NE(input.error().message.find("--input /dev/input-file: "), std::string::npos) << input.error().message;
    // A path that only starts with "/dev" is an ordinary path.
    auto devices = plan_mounts({"/devices-not-dev"}, {}, {}, 1 << 20, {});
    ASSERT_FALSE(devices);
    EXPECT_EQ(devices.error().message.find("has its own /dev"), std::string::npos) << devices.error().message;
}

}  // namespace
