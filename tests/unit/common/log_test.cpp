// moatd's log lines: the level word on a terminal or file, the syslog prefix
// when stderr is the journal (JOURNAL_STREAM), and the level filter.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "moat/common/log.h"

namespace {

// Runs fn with fd 2 pointing at a fresh file and returns what was written.
template <class F>
std::string captured(F fn, bool as_journal) {
    char path[] = "/tmp/moat-log-test-XXXXXX";
    int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    int saved = dup(2);
    dup2(fd, 2);
    struct stat st{};
    fstat(2, &st);
    if (as_journal)
        setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
    else
        setenv("JOURNAL_STREAM", "1:2", 1);  // some other stream: not ours
    fn();
    dup2(saved, 2);
    close(saved);
    close(fd);
    unsetenv("JOURNAL_STREAM");
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    unlink(path);
    return ss.str();
}

TEST(Log, LevelWordsOnAFileAndSyslogPrefixesForTheJournal) {
    auto lines = [] {
        moat::logf(moat::LogLevel::Error, "cannot open %s", "x");
        moat::logf(moat::LogLevel::Warning, "tier vm unavailable: %s\n", "no kernel");
        moat::logf(moat::LogLevel::Notice, "serving %s", "/run/moat/moatd.sock");
        moat::logf(moat::LogLevel::Debug, "not shown at info");
    };
    std::string file = captured([&] {
        moat::log_init("moatd");
        lines();
    }, false);
    EXPECT_EQ(file,
              "moatd: error: cannot open x\n"
              "moatd: warning: tier vm unavailable: no kernel\n"
              "moatd: serving /run/moat/moatd.sock\n");
    std::string journal = captured([&] {
        moat::log_init("moatd");
        lines();
    }, true);
    EXPECT_EQ(journal,
              "<3>moatd: cannot open x\n"
              "<4>moatd: tier vm unavailable: no kernel\n"
              "<5>moatd: serving /run/moat/moatd.sock\n");
}

TEST(Log, TheLevelFilterDropsLessImportantLines) {
    std::string out = captured([] {
        moat::log_init("moatd-reaper", moat::LogLevel::Warning);
        moat::logf(moat::LogLevel::Notice, "dropped");
        moat::logf(moat::LogLevel::Warning, "kept");
        moat::log_init("moatd", moat::LogLevel::Debug);
        moat::logf(moat::LogLevel::Debug, "debug %d", 1);
    }, false);
    EXPECT_EQ(out, "moatd-reaper: warning: kept\nmoatd: debug 1\n");
    moat::log_init("moatd");
    EXPECT_EQ(moat::log_level_from_name("notice"), moat::LogLevel::Notice);
    EXPECT_FALSE(moat::log_level_from_name("verbose"));
}

}  // namespace
