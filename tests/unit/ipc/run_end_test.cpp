// moat/ipc/run_end.h: what a run's client exits with and says, from the job's
// record (the same words from moatctl-light and, for brief runs, from moatd).
#include "moat/ipc/run_end.h"

#include <gtest/gtest.h>

using moat::ipc::describe_run_end;
using moat::ipc::describe_run_error;
using nlohmann::json;

namespace {

json record(const char* cause, json exit_code, json signal, const char* detail = "d") {
    return {{"id", 5}, {"termination", {{"cause", cause}, {"detail", detail}}}, {"exit_code", exit_code}, {"signal", signal}};
}

}  // namespace

TEST(RunEnd, TheJobsExitCodeIsTheStatusAndNothingIsSaid) {
    auto e = describe_run_end(5, record("exited", 7, nullptr));
    EXPECT_EQ(e.status, 7);
    EXPECT_EQ(e.text, "");
}

TEST(RunEnd, ASignalIs128PlusItAndTheSandboxsOwnKillsAreNamed) {
    auto own = describe_run_end(5, record("signaled", nullptr, 15));
    EXPECT_EQ(own.status, 143);
    EXPECT_EQ(own.text, "");  // the program's own death: nothing to add
    auto killed = describe_run_end(5, record("wall-time", nullptr, 9, "wall time 1s reached"));
    EXPECT_EQ(killed.status, 137);
    EXPECT_EQ(killed.text, "moatctl: job 5 ended: wall-time: wall time 1s reached\n");
}

TEST(RunEnd, SetUpFailuresAndJobsThatNeverRanAre125WithTheReason) {
    auto e = describe_run_end(5, record("setup-failed", nullptr, nullptr, "program \"/x\" not found"));
    EXPECT_EQ(e.status, 125);
    EXPECT_EQ(e.text, "moatctl: job 5 could not be set up: program \"/x\" not found\n");
    auto never = describe_run_end(5, record("stopped", nullptr, nullptr, "by an operator"));
    EXPECT_EQ(never.status, 125);
    EXPECT_EQ(never.text, "moatctl: job 5 ended before it started: stopped: by an operator\n");
    auto refused = describe_run_error("bad policy\nline 2");
    EXPECT_EQ(refused.status, 125);
    EXPECT_EQ(refused.text, "moatctl: bad policy\nline 2\n");
}

TEST(RunEnd, WarningsComeBeforeTheStatusAndJobBytesAreEscaped) {
    json r = record("exited", 0, nullptr);
    r["recording"] = {{"inputs", json::array({{{"host", "/in\x1b[2J"}, {"note", "too large"}},
                                               {{"host", "/ok"}, {"sha256", "ab"}}})},
                      {"output_cut", "stdout closed"}};
    auto e = describe_run_end(5, r);
    EXPECT_EQ(e.status, 0);
    EXPECT_EQ(e.text.find('\x1b'), std::string::npos) << "a terminal escape from a path reached the text";
    EXPECT_NE(e.text.find("input /in"), std::string::npos) << e.text;
    EXPECT_EQ(e.text.find("input /ok"), std::string::npos) << "a snapshotted input was warned about";
    EXPECT_NE(e.text.find("not all of its output reached this terminal (stdout closed)"), std::string::npos) << e.text;
    auto escaped = describe_run_end(5, record("setup-failed", nullptr, nullptr, "bad\x1b]0;x\x07"));
    EXPECT_EQ(escaped.text.find('\x1b'), std::string::npos);
}

TEST(RunEnd, AMalformedRecordIsASetUpFailureNotACrash) {
    for (const json& bad : {json(nullptr), json::array(), json{{"termination", "x"}}, json{{"id", 1}}}) {
        auto e = describe_run_end(1, bad);
        EXPECT_EQ(e.status, 125);
        EXPECT_EQ(e.text, "moatctl: moatd sent a malformed job record\n");
    }
    // Wrong types inside are shown as JSON, never thrown on.
    json odd = {{"termination", {{"cause", 3}, {"detail", json::array()}}}, {"exit_code", "7"}, {"signal", nullptr}};
    auto e = describe_run_end(1, odd);
    EXPECT_EQ(e.status, 125);
}
