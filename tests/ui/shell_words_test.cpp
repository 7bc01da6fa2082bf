// The Test run command line's word splitting (models/shell_words.h) and what
// the panel makes of it: the argv shown and run, and refusals.
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>

#include <gtest/gtest.h>

#include "fake_backend.h"
#include "models/shell_words.h"
#include "views/test_run_panel.h"

using namespace moat::ui;
using Words = std::vector<std::string>;

namespace {
Words split(std::string_view s) {
    auto w = splitShellWords(s);
    EXPECT_TRUE(w.has_value()) << s << ": " << (w ? "" : w.error().message);
    return w ? *w : Words{};
}
}  // namespace

TEST(ShellWords, SingleQuotesKeepEverythingInOneWord) {
    EXPECT_EQ(split("/bin/sh -c 'id; mkdir /tmp/moat-test-run'"),
              (Words{"/bin/sh", "-c", "id; mkdir /tmp/moat-test-run"}));
    EXPECT_EQ(split(R"('a\b' 'c"d' '$HOME')"), (Words{R"(a\b)", R"(c"d)", "$HOME"}));
    EXPECT_EQ(split("pre'fix 'post"), (Words{"prefix post"}));  // quotes join with the word around them
}

TEST(ShellWords, DoubleQuotesEscapeOnlyDollarBacktickQuoteBackslashNewline) {
    EXPECT_EQ(split(R"("a b" "x\"y" "\$HOME" "\`" "\\" "\n" "it's")"),
              (Words{"a b", "x\"y", "$HOME", "`", "\\", "\\n", "it's"}));
    EXPECT_EQ(split("\"one\\\ntwo\""), (Words{"onetwo"}));  // backslash-newline is removed
}

TEST(ShellWords, BackslashOutsideQuotesKeepsTheNextCharacter) {
    EXPECT_EQ(split(R"(a\ b c\'d \\ \")"), (Words{"a b", "c'd", "\\", "\""}));
    EXPECT_EQ(split("a\\\nb"), (Words{"ab"}));
}

TEST(ShellWords, BlanksSeparateAndEmptyQuotesMakeEmptyWords) {
    EXPECT_EQ(split("  ls \t -l\n/tmp  "), (Words{"ls", "-l", "/tmp"}));
    EXPECT_EQ(split("printf '%s|' '' \"\" x"), (Words{"printf", "%s|", "", "", "x"}));
    EXPECT_EQ(split(""), Words{});
    EXPECT_EQ(split("   "), Words{});
}

TEST(ShellWords, NothingIsExpanded) {
    EXPECT_EQ(split("echo $HOME ~ * $(id) `id` a;b a|b # c"),
              (Words{"echo", "$HOME", "~", "*", "$(id)", "`id`", "a;b", "a|b", "#", "c"}));
}

TEST(ShellWords, UnbalancedQuotesTrailingBackslashAndNulAreErrors) {
    auto e = splitShellWords("sh -c 'id");
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().offset, 6u);
    EXPECT_NE(e.error().message.find("single quote"), std::string::npos);
    e = splitShellWords("echo \"abc");
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().offset, 5u);
    EXPECT_NE(e.error().message.find("double quote"), std::string::npos);
    EXPECT_FALSE(splitShellWords("echo \"abc\\\""));  // the escaped quote does not close it
    EXPECT_FALSE(splitShellWords("echo abc\\"));
    EXPECT_FALSE(splitShellWords(std::string_view("a\0b", 3)));
    EXPECT_FALSE(splitShellWords(std::string_view("'a\0b'", 5)));
}

TEST(TestRunPanel, ShowsAndRunsTheShellWordsOfTheCommand) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) { return nlohmann::json{{"ok", true}}; });
    TestRunPanel panel(&backend, [] { return std::string(); });
    // Its own example is a shell command in single quotes: one word for -c.
    EXPECT_EQ(panel.argv(), (QStringList{QStringLiteral("/bin/sh"), QStringLiteral("-c"),
                                         QStringLiteral("id; mkdir /tmp/moat-test-run")}));
    EXPECT_TRUE(panel.argvLabel()->text().contains(QStringLiteral("[id;&nbsp;mkdir&nbsp;/tmp/moat-test-run]")))
        << panel.argvLabel()->text().toStdString();
    panel.setSocketPath(QStringLiteral("/nonexistent/moatd.sock"));
    auto* run = panel.findChild<QPushButton*>();
    ASSERT_NE(run, nullptr);
    EXPECT_TRUE(run->isEnabled());
    // An unbalanced quote is shown and refused, not run as something else.
    panel.setCommand(QStringLiteral("/bin/sh -c 'id"));
    EXPECT_TRUE(panel.argv().isEmpty());
    EXPECT_TRUE(panel.commandError().contains(QStringLiteral("unterminated single quote")));
    EXPECT_TRUE(panel.argvLabel()->text().contains(QStringLiteral("column 12")));
    EXPECT_FALSE(run->isEnabled());
    QString said;
    QObject::connect(&panel, &TestRunPanel::message, [&](const QString& m, int) { said = m; });
    panel.run();
    EXPECT_FALSE(panel.running());
    EXPECT_TRUE(said.contains(QStringLiteral("unterminated"))) << said.toStdString();
}

TEST(TestRunPanel, TheNeedsAConnectionNoteGoesOnceItHasASocket) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) { return nlohmann::json{{"ok", true}}; });
    // Built before the main window hands it the socket, as MainWindow does.
    TestRunPanel panel(&backend, [] { return std::string(); });
    EXPECT_TRUE(panel.statusText().contains(QStringLiteral("need a connection")));
    panel.setSocketPath(QStringLiteral("/run/moat/moatd.sock"));
    EXPECT_FALSE(panel.statusText().contains(QStringLiteral("need a connection"))) << panel.statusText().toStdString();
    panel.setSocketPath(QString());
    EXPECT_TRUE(panel.statusText().contains(QStringLiteral("need a connection")));
}

TEST(ShellWords, JoinedWordsSplitBackToTheSameArgv) {
    const std::vector<std::vector<std::string>> cases = {
        {"/bin/sh", "-c", "id; mkdir /tmp/x"},
        {"echo", "", "it's", "a\\b", "x\"y", "$HOME", "*", "two\nlines", "tab\there"},
        {"plain", "--opt=1", "a/b.c:d@e%f+g,h-i"},
    };
    for (const auto& argv : cases) {
        const std::string line = moat::ui::joinShellWords(argv);
        auto back = moat::ui::splitShellWords(line);
        ASSERT_TRUE(back) << line;
        EXPECT_EQ(*back, argv) << line;
    }
    EXPECT_EQ(moat::ui::joinShellWords({"ls", "-l", "/tmp"}), "ls -l /tmp") << "plain words stay unquoted";
}
