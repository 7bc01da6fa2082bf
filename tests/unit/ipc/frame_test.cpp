#include <gtest/gtest.h>
#include <sys/socket.h>

#include "moat/ipc/frame.h"
#include "moat/ipc/server.h"

using namespace moat::ipc;

TEST(Frame, RoundTripsAcrossArbitrarySplits) {
    std::string a = encode_frame("{\"op\":\"hello\"}") + encode_frame("") + encode_frame(std::string(70000, 'x'));
    for (size_t step : {1u, 3u, 4096u, 100000u}) {
        FrameDecoder d(kMaxRequestBytes);
        std::vector<std::string> got;
        for (size_t i = 0; i < a.size(); i += step) {
            ASSERT_TRUE(d.feed(a.data() + i, std::min(step, a.size() - i)));
            while (auto f = d.next()) got.push_back(*f);
        }
        ASSERT_EQ(got.size(), 3u) << "step " << step;
        EXPECT_EQ(got[0], "{\"op\":\"hello\"}");
        EXPECT_EQ(got[1], "");
        EXPECT_EQ(got[2].size(), 70000u);
        EXPECT_FALSE(d.mid_frame());
    }
}

TEST(Frame, RejectsOversizedHeaderBeforeBuffering) {
    FrameDecoder d(1024);
    const char hdr[4] = {0x40, 0, 0, 0};  // 1 GiB announced
    auto r = d.feed(hdr, 4);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("exceeds the limit"), std::string::npos);
}

TEST(Frame, BlockingHelpersCarryFds) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ASSERT_TRUE(send_frame(sv[0], "hello", {0}));
    auto got = recv_frame(sv[1]);
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "hello");
    close(sv[0]);
    auto eof = recv_frame(sv[1]);
    EXPECT_FALSE(eof);
    close(sv[1]);
}

TEST(Roles, RootIsAdminStrangersAreNobody) {
    ServerConfig cfg;
    cfg.admin_group = "moat-test-no-such-admin-group";
    cfg.viewer_group = "moat-test-no-such-viewer-group";
    EXPECT_EQ(Server::role_for(0, 0, {}, cfg), Role::Admin);
    EXPECT_EQ(Server::role_for(1000, 1000, {}, cfg), Role::None);
    cfg.viewer_group = "root";  // gid 0 exists everywhere
    EXPECT_EQ(Server::role_for(1000, 1000, {0}, cfg), Role::Viewer);
    cfg.admin_group = "root";
    EXPECT_EQ(Server::role_for(1000, 0, {}, cfg), Role::Admin);
}
