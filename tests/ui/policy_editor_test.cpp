// The policy editor's newer parts: the syscall checklist (allow-list editing,
// descriptions, risk flags, search, sync with the form and the TOML tab).
#include <QCoreApplication>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QTest>
#include <QTreeWidget>

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "fake_backend.h"
#include "models/allow_list.h"
#include "models/denial_allow.h"
#include "models/policy_draft.h"
#include "models/syscall_args.h"
#include "models/status_color.h"
#include "views/denial_detail.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"
#include "views/policy_form.h"
#include "views/policy_history.h"
#include "views/rule_table.h"
#include <QTableWidget>
#include "models/policy_list_model.h"
#include "views/policy_view.h"
#include "views/syscall_checklist.h"

using namespace moat::ui;
using Entries = std::vector<std::string>;

namespace {

bool has(const Entries& e, const std::string& s) { return std::find(e.begin(), e.end(), s) != e.end(); }

moat::policy::Policy parse(const std::string& text) {
    auto r = moat::policy::parse_policy(text, "t.toml");
    if (!r.policy) {
        for (const auto& d : r.diagnostics) ADD_FAILURE() << d.str();
        return {};
    }
    return *r.policy;
}

}  // namespace

TEST(AllowList, AddsAndRemovesSyscallsKeepingTheRest) {
    const auto basic = moat::policy::expand_group("@default");
    ASSERT_FALSE(basic.empty());
    Entries e{"@default"};
    EXPECT_EQ(withSyscall(e, "mkdir", true), e);  // already allowed
    e = withSyscall(e, "ptrace", true);
    EXPECT_TRUE(has(e, "ptrace"));
    e = withSyscall(e, "ptrace", false);
    EXPECT_EQ(e, Entries{"@default"});
    // Removing one member of a group expands that group and keeps the others.
    const Entries without = withSyscall({"@default"}, "mkdir", false);
    EXPECT_FALSE(has(without, "@default"));
    const auto allowed = expandAllowList(without);
    EXPECT_FALSE(allowed.contains("mkdir"));
    EXPECT_EQ(allowed.size(), expandAllowList({"@default"}).size() - 1);
}

TEST(AllowList, WholeGroups) {
    Entries e = withGroup({"read", "write", "mkdir"}, "@basic-io", true);
    EXPECT_TRUE(has(e, "@basic-io"));
    EXPECT_FALSE(has(e, "read"));  // made redundant by the group
    for (const auto& s : moat::policy::expand_group("@basic-io")) EXPECT_TRUE(expandAllowList(e).contains(s)) << s;
    e = withGroup(e, "@basic-io", false);
    for (const auto& s : moat::policy::expand_group("@basic-io")) EXPECT_FALSE(expandAllowList(e).contains(s)) << s;
}

TEST(AllowList, EverySyscallHasADescriptionOrIsInNoGroup) {
    EXPECT_FALSE(syscallDescription("mkdir").empty());
    EXPECT_TRUE(syscallDescription("no_such_call").empty());
}

TEST(SyscallChecklist, ShowsGroupsDescriptionsAndRisks) {
    SyscallChecklist c;
    c.setEntries({"@default"});
    EXPECT_TRUE(c.isChecked("mkdir"));
    EXPECT_FALSE(c.isChecked("ptrace"));
    QTreeWidget* t = c.tree();
    ASSERT_GT(t->topLevelItemCount(), 1);
    EXPECT_TRUE(t->topLevelItem(0)->text(SyscallChecklist::Name).startsWith(QStringLiteral("@default")));
    EXPECT_EQ(t->topLevelItem(0)->checkState(SyscallChecklist::Name), Qt::Checked);
    // Every syscall libseccomp knows is listed at least once, with a description.
    int rows = 0;
    bool sawRisk = false;
    for (int g = 0; g < t->topLevelItemCount(); ++g)
        for (int i = 0; i < t->topLevelItem(g)->childCount(); ++i) {
            const auto* it = t->topLevelItem(g)->child(i);
            ++rows;
            EXPECT_FALSE(it->text(SyscallChecklist::Description).isEmpty()) << it->text(0).toStdString();
            if (it->text(SyscallChecklist::Name).startsWith(QStringLiteral("ptrace"))) {
                EXPECT_EQ(it->text(SyscallChecklist::Risk).toStdString(), moat::policy::risk_of("ptrace"));
                sawRisk = true;
            }
        }
    EXPECT_GE(rows, int(moat::policy::all_syscalls().size()));
    EXPECT_TRUE(sawRisk);
    // Search.
    c.setFilter(QStringLiteral("ptrace"));
    EXPECT_GE(c.visibleSyscallRows(), 1);
    EXPECT_LT(c.visibleSyscallRows(), 10);
    c.setFilter(QStringLiteral("mkdir"));  // not every @default member (its description says "mkdir")
    EXPECT_LT(c.visibleSyscallRows(), 12);
    c.setFilter(QStringLiteral("@aio"));  // a group name shows its members
    EXPECT_EQ(c.visibleSyscallRows(), int(moat::policy::expand_group("@aio").size()));
    c.setFilter(QString());
    EXPECT_GE(c.visibleSyscallRows(), rows);
}

TEST(SyscallChecklist, ClickingABoxEditsTheList) {
    SyscallChecklist c;
    c.setEntries({"@default"});
    Entries seen;
    QObject::connect(&c, &SyscallChecklist::entriesChanged, [&](const Entries& e) { seen = e; });
    // Find ptrace's row and check it as the operator would.
    QTreeWidgetItem* ptrace = nullptr;
    for (int g = 0; g < c.tree()->topLevelItemCount() && !ptrace; ++g)
        for (int i = 0; i < c.tree()->topLevelItem(g)->childCount(); ++i)
            if (c.tree()->topLevelItem(g)->child(i)->data(0, Qt::UserRole).toString() == QLatin1String("ptrace"))
                ptrace = c.tree()->topLevelItem(g)->child(i);
    ASSERT_NE(ptrace, nullptr);
    ptrace->setCheckState(SyscallChecklist::Name, Qt::Checked);
    EXPECT_TRUE(has(seen, "ptrace"));
    EXPECT_TRUE(c.isChecked("ptrace"));
}

TEST(PolicyView, ChecklistAndTomlStayInSync) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) {
        return nlohmann::json{{"ok", true}, {"policies", nlohmann::json::array()}};
    });
    PolicyView view(&backend);
    view.setTomlText(QStringLiteral("name = \"p\"\n[seccomp]\nallow = [\"@default\"]\n"));
    SyscallChecklist* c = view.form()->checklist();
    EXPECT_TRUE(c->isChecked("mkdir"));
    EXPECT_FALSE(c->isChecked("ptrace"));
    // Checklist -> form -> TOML.
    c->toggle("mkdir", false);
    EXPECT_FALSE(has(view.form()->draft().allow, "mkdir"));
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return !view.tomlText().contains(QStringLiteral("\"@default\"")); }));
    auto p = parse(view.tomlText().toStdString());
    EXPECT_FALSE(p.seccomp.allowed.contains("mkdir"));
    EXPECT_TRUE(p.seccomp.allowed.contains("openat"));
    // TOML -> checklist.
    view.setTomlText(QStringLiteral("name = \"p\"\n[seccomp]\nallow = [\"@default\", \"ptrace\"]\n"));
    EXPECT_TRUE(c->isChecked("ptrace"));
    EXPECT_TRUE(c->isChecked("mkdir"));
}

TEST(PolicyHistory, SemanticDiffOfTwoVersions) {
    const std::string v1 = "name = \"web\"\n[limits]\nmemory = \"256MiB\"\n[seccomp]\nallow = [\"@default\"]\n";
    const std::string v2 = "name = \"web\"\n[limits]\nmemory = \"512MiB\"\n[seccomp]\nallow = [\"@default\", \"ptrace\"]\n";
    moat::ui::test::FakeBackend backend([&](const nlohmann::json& r) -> nlohmann::json {
        if (r["op"] == "policies")
            return {{"ok", true},
                    {"policies",
                     {{{"id", 1}, {"name", "web"}, {"version", 1}, {"sha256", "aa"}, {"created_at", "2026-11-29T16:38:33Z"}},
                      {{"id", 2}, {"name", "web"}, {"version", 2}, {"sha256", "bb"}, {"created_at", "2026-11-29T16:39:33Z"}}}}};
        if (r["op"] == "policy") return {{"ok", true}, {"id", r["id"]}, {"toml", r["id"] == 1 ? v1 : v2}};
        return {{"ok", false}, {"code", "bad-request"}, {"error", "?"}};
    });
    PolicyView view(&backend);
    view.refresh();
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return view.model()->rowCount() == 2; }));
    PolicyHistory* h = view.history();
    h->showVersion(2);  // against the previous version, v1
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return !h->diffText().isEmpty(); }));
    EXPECT_TRUE(h->diffText().contains(QStringLiteral("+ allow ptrace"))) << h->diffText().toStdString();
    EXPECT_TRUE(h->diffText().contains(QStringLiteral("limits.memory 256MiB -> 512MiB"))) << h->diffText().toStdString();
    EXPECT_EQ(h->leftText()->toPlainText().toStdString(), v1);
    EXPECT_EQ(h->rightText()->toPlainText().toStdString(), v2);
    EXPECT_FALSE(h->rightText()->extraSelections().isEmpty());
    h->compare(2, 2);
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return h->diffText().contains(QStringLiteral("no semantic difference")); }));
}

TEST(DenialAllow, NarrowRuleWhereTheArgumentsFit) {
    const auto sock = proposeAllow({{"kind", "denial"}, {"syscall", "socket"}, {"args", {1, 1, 0, 0, 0, 0}}});
    ASSERT_TRUE(sock.narrow());
    EXPECT_EQ(sock.rule.args[0].index, "0");
    EXPECT_EQ(sock.rule.args[0].op, "eq");
    EXPECT_EQ(sock.rule.args[0].value, "AF_UNIX");
    const auto mk = proposeAllow({{"kind", "denial"}, {"syscall", "mkdir"}, {"args", {0x1234, 0777, 0, 0, 0, 0}}});
    EXPECT_FALSE(mk.narrow());
    EXPECT_TRUE(proposeAllow({{"kind", "resource"}}).syscall.empty());

    PolicyDraft d = PolicyDraft::fromPolicy(parse("name = \"p\"\n[seccomp]\nallow = [\"@default\"]\n"));
    auto p = parse(applyAllow(d, sock).toToml());
    ASSERT_EQ(p.seccomp.rules.size(), 1u);
    EXPECT_EQ(p.seccomp.rules[0].syscall, "socket");
    EXPECT_EQ(p.seccomp.rules[0].args[0].value, 1u);
    d.allow = withSyscall(d.allow, "mkdir", false);
    p = parse(applyAllow(d, mk).toToml());
    EXPECT_TRUE(p.seccomp.allowed.contains("mkdir"));
}

// A daemon with one policy version, web v3, whose text is `toml`.
std::function<nlohmann::json(const nlohmann::json&)> webV3Backend(const std::string& toml) {
    return [toml](const nlohmann::json& r) -> nlohmann::json {
        if (r["op"] == "policies")
            return {{"ok", true},
                    {"policies", {{{"id", 5}, {"name", "web"}, {"version", 3}, {"sha256", "aa"}, {"created_at", "2026-11-29T16:38:33Z"}}}}};
        if (r["op"] == "policy") return {{"ok", true}, {"id", 5}, {"name", "web"}, {"version", 3}, {"sha256", "aa"}, {"toml", toml}};
        return {{"ok", false}, {"code", "bad-request"}, {"error", "?"}};
    };
}

TEST(PolicyView, AllowDenialOpensTheJobsPolicyWithTheRule) {
    const std::string v1 = "name = \"web\"\n[seccomp]\nallow = [\"@default\"]\n";
    moat::ui::test::FakeBackend backend(webV3Backend(v1));
    PolicyView view(&backend);
    const nlohmann::json denial{{"id", 9}, {"kind", "denial"}, {"job", 2}, {"syscall", "socket"}, {"action", "errno:EPERM"},
                                {"args", {1, 524289, 0, 0, 0, 0}}};
    view.allowDenial(QStringLiteral("web"), 3, QString::fromStdString(denial.dump()));
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return view.tomlText().contains(QStringLiteral("AF_UNIX")); }));
    const auto p = parse(view.tomlText().toStdString());
    ASSERT_EQ(p.seccomp.rules.size(), 1u);
    EXPECT_EQ(p.seccomp.rules[0].syscall, "socket");
    EXPECT_EQ(view.errorCount(), 0);
    // Nothing is saved until the operator does.
    for (const auto& r : backend.requests) EXPECT_NE(r["op"], "policy_put");
}

TEST(SyscallArgs, FlagAndErrnoNames) {
    EXPECT_EQ(argMeaning("openat", 2, 0x80000), "O_RDONLY|O_CLOEXEC");
    EXPECT_EQ(argMeaning("openat", 2, 0x241), "O_WRONLY|O_CREAT|O_TRUNC");
    EXPECT_EQ(argMeaning("openat", 0, uint64_t(int64_t(-100))), "AT_FDCWD");
    EXPECT_EQ(argMeaning("openat", 3, 0644, {uint64_t(-100), 0, 0x41, 0644}), "0644");
    EXPECT_EQ(argMeaning("openat", 3, 0, {uint64_t(-100), 0, 0x80000, 0}), "unused (no O_CREAT)");
    EXPECT_EQ(argMeaning("socket", 0, 2), "AF_INET");
    EXPECT_EQ(argMeaning("socket", 1, 0x80001), "SOCK_STREAM|SOCK_CLOEXEC");
    EXPECT_EQ(argMeaning("mkdir", 1, 0777), "0777");
    EXPECT_EQ(argMeaning("kill", 1, 9), "SIGKILL");
    EXPECT_EQ(argMeaning("mmap", 2, 5), "PROT_READ|PROT_EXEC");
    EXPECT_EQ(argMeaning("unshare", 0, 0x10000000), "CLONE_NEWUSER");
    EXPECT_EQ(argMeaning("read", 0, 3), "");
    EXPECT_EQ(errnoText("errno:EPERM"), "EPERM (1): Operation not permitted");
    EXPECT_EQ(errnoText("kill-process"), "");
}

TEST(DenialDetail, ShowsArgumentNames) {
    const nlohmann::json e{{"id", 1}, {"kind", "denial"}, {"job", 2}, {"syscall", "openat"}, {"nr", 257}, {"arch", "x86_64"},
                           {"action", "errno:EACCES"}, {"args", {uint64_t(-100), 0x7fff0000, 0x80000, 0, 0, 0}},
                           {"time", "2026-11-29T16:38:33Z"}};
    const QString h = eventDetailHtml(e);
    EXPECT_TRUE(h.contains(QStringLiteral("O_RDONLY|O_CLOEXEC"))) << h.toStdString();
    EXPECT_TRUE(h.contains(QStringLiteral("AT_FDCWD")));
    EXPECT_TRUE(h.contains(QStringLiteral("EACCES (13)")));
}

TEST(RuleTable, RoundTripsRulesThroughTomlAndEdits) {
    const std::string text =
        "name = \"r\"\n[seccomp]\nallow = [\"@default\"]\n"
        "[[seccomp.rule]]\nsyscall = \"socket\"\naction = \"allow\"\nargs = [{ index = 0, op = \"eq\", value = \"AF_UNIX\" }]\n"
        "[[seccomp.rule]]\nsyscall = \"ioctl\"\naction = \"errno:ENOTTY\"\n"
        "args = [{ index = 1, op = \"masked_eq\", value = 0x5400, mask = 0xff00 }, { index = 0, op = \"lt\", value = 3 }]\n"
        "[[seccomp.rule]]\nsyscall = \"socket\"\naction = \"allow\"\nargs = [{ index = 0, value = \"AF_INET\" }]\n";
    const auto a = parse(text);
    ASSERT_EQ(a.seccomp.rules.size(), 3u);
    PolicyForm form;
    form.setDraft(PolicyDraft::fromPolicy(a));
    RuleTable* t = form.ruleTable();
    EXPECT_EQ(t->table()->rowCount(), 4);  // one row per condition
    EXPECT_EQ(t->table()->item(2, RuleTable::RuleNo)->text(), QStringLiteral("2"));
    const auto b = parse(form.draft().toToml());
    EXPECT_EQ(a.seccomp.rules, b.seccomp.rules);
    // Editing a cell changes the rule, and the form says so.
    int changes = 0;
    QObject::connect(&form, &PolicyForm::changed, [&] { ++changes; });
    t->table()->item(0, RuleTable::Value)->setText(QStringLiteral("AF_NETLINK"));
    EXPECT_GT(changes, 0);
    EXPECT_EQ(form.draft().rules[0].args[0].value, "AF_NETLINK");
    // Adding a rule and a condition.
    t->addRule();
    const int last = t->table()->rowCount() - 1;
    t->table()->item(last, RuleTable::Syscall)->setText(QStringLiteral("prctl"));
    t->addCondition(last);
    t->table()->item(last + 1, RuleTable::Value)->setText(QStringLiteral("15"));
    const auto c = parse(form.draft().toToml());
    ASSERT_EQ(c.seccomp.rules.size(), 4u);
    EXPECT_EQ(c.seccomp.rules[3].syscall, "prctl");
    ASSERT_EQ(c.seccomp.rules[3].args.size(), 1u);
    EXPECT_EQ(c.seccomp.rules[3].args[0].value, 15u);
    t->removeRow(last + 1);
    EXPECT_TRUE(form.draft().rules[3].args.empty());
}

TEST(StatusColor, FollowsThePalette) {
    const QPalette saved = QGuiApplication::palette();
    QPalette dark = saved;
    dark.setColor(QPalette::Base, QColor(30, 30, 32));
    QGuiApplication::setPalette(dark);
    EXPECT_GT(statusColor(Status::Bad).lightness(), 150);  // light text on a dark base
    QPalette light = saved;
    light.setColor(QPalette::Base, Qt::white);
    QGuiApplication::setPalette(light);
    EXPECT_LT(statusColor(Status::Bad).lightness(), 128);
    QGuiApplication::setPalette(saved);
}

// Issue 13, item 1: a syscall that was never allowed has a box, and Space on
// its row (or a click) ticks it. Qt draws no box and ignores the key until a
// check state is stored in the item.
TEST(SyscallChecklist, ANeverAllowedSyscallCanBeTickedWithSpace) {
    SyscallChecklist c;
    c.setEntries({"@default"});
    c.resize(900, 600);
    c.show();
    for (const char* name : {"ioctl", "sysinfo", "ptrace"}) {
        c.setFilter(QString::fromLatin1(name));
        QTreeWidgetItem* row = nullptr;
        for (int g = 0; g < c.tree()->topLevelItemCount() && !row; ++g)
            for (int i = 0; i < c.tree()->topLevelItem(g)->childCount(); ++i)
                if (c.tree()->topLevelItem(g)->child(i)->data(0, Qt::UserRole).toString() == QLatin1String(name))
                    row = c.tree()->topLevelItem(g)->child(i);
        ASSERT_NE(row, nullptr) << name;
        ASSERT_FALSE(c.isChecked(name)) << name;
        EXPECT_TRUE(row->data(SyscallChecklist::Name, Qt::CheckStateRole).isValid()) << name << " has no box";
        c.tree()->setFocus();
        c.tree()->setCurrentItem(row, SyscallChecklist::Name);
        QTest::keyClick(c.tree(), Qt::Key_Space);
        EXPECT_TRUE(c.isChecked(name)) << name;
        EXPECT_TRUE(has(c.entries(), name)) << name;
    }
}

// Item 11: the search matches names. A syscall's description is its smallest
// group's, and @default's mentions mkdir, so "mkdir" listed getrandom.
TEST(SyscallChecklist, SearchMatchesNamesOnly) {
    SyscallChecklist c;
    c.setFilter(QStringLiteral("mkdir"));
    int shown = 0;
    for (int g = 0; g < c.tree()->topLevelItemCount(); ++g)
        for (int i = 0; i < c.tree()->topLevelItem(g)->childCount(); ++i) {
            const auto* it = c.tree()->topLevelItem(g)->child(i);
            if (it->isHidden()) continue;
            ++shown;
            EXPECT_TRUE(it->data(0, Qt::UserRole).toString().contains(QStringLiteral("mkdir")))
                << it->data(0, Qt::UserRole).toString().toStdString() << " shown for \"mkdir\"";
        }
    EXPECT_GE(shown, 2);  // mkdir, mkdirat
}

// Item 11: unticking and re-ticking a member of @default gives @default back.
TEST(AllowList, RetickingTheLastMissingMemberGivesTheGroupBack) {
    const Entries start{"@default", "ioctl"};
    for (const char* s : {"getrandom", "mkdir", "read"}) {
        const Entries without = withSyscall(start, s, false);
        ASSERT_FALSE(has(without, "@default")) << s;
        EXPECT_EQ(withSyscall(without, s, true), start) << s;
    }
    // Two members out: the first back does not complete the group yet.
    Entries e = withSyscall(withSyscall(start, "mkdir", false), "getrandom", false);
    e = withSyscall(e, "mkdir", true);
    EXPECT_FALSE(has(e, "@default"));
    EXPECT_EQ(withSyscall(e, "getrandom", true), start);
    // Loose names that make up no whole group stay as written.
    EXPECT_EQ(withSyscall({"read"}, "write", true), (Entries{"read", "write"}));
    // Through the checklist, as the operator does it.
    SyscallChecklist c;
    c.setEntries({"@default"});
    c.toggle("getrandom", false);
    EXPECT_GT(c.entries().size(), 10u);
    c.toggle("getrandom", true);
    EXPECT_EQ(c.entries(), Entries{"@default"});
}

// Item 11: long arrays are written wrapped, a few names to a line.
TEST(PolicyDraft, LongArraysAreWrappedAndStillParse) {
    PolicyDraft d;
    d.name = "wide";
    d.allow = withSyscall({"@default"}, "getrandom", false);
    d.allowSet = true;
    ASSERT_GT(d.allow.size(), 40u);
    const std::string text = d.toToml();
    size_t longest = 0, lines = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line); ++lines) longest = std::max(longest, line.size());
    EXPECT_LE(longest, 80u) << text;
    EXPECT_LT(lines, 60u) << "not one name per line";
    const auto p = parse(text);
    EXPECT_EQ(p.seccomp.allowed, [&] {
        auto want = parse("name = \"w\"\n[seccomp]\nallow = [\"@default\"]\n").seccomp.allowed;
        want.erase("getrandom");
        return want;
    }());
    // Short ones stay on one line.
    d.allow = {"@default", "ioctl"};
    EXPECT_NE(d.toToml().find("allow = [\"@default\", \"ioctl\"]\n"), std::string::npos);
}

// Item 11: the header names the policy being typed and marks unsaved edits.
TEST(PolicyView, HeaderFollowsTheNameAndMarksUnsavedEdits) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) {
        return nlohmann::json{{"ok", true}, {"policies", nlohmann::json::array()}};
    });
    PolicyView view(&backend);
    EXPECT_TRUE(view.titleText().contains(QStringLiteral("<b>new-policy</b> — new, not stored"))) << view.titleText().toStdString();
    EXPECT_FALSE(view.isModified());
    EXPECT_FALSE(view.titleText().contains(QStringLiteral("modified")));
    bool modified = false;
    QObject::connect(&view, &PolicyView::modifiedChanged, [&](bool m) { modified = m; });
    QString text = view.tomlText();
    text.replace(QStringLiteral("name = \"new-policy\""), QStringLiteral("name = \"thumbs\""));
    view.setTomlText(text);
    EXPECT_TRUE(view.titleText().contains(QStringLiteral("thumbs"))) << view.titleText().toStdString();
    EXPECT_FALSE(view.titleText().contains(QStringLiteral("new-policy")));
    EXPECT_TRUE(view.titleText().contains(QStringLiteral("not stored")));
    EXPECT_TRUE(view.titleText().contains(QStringLiteral("modified")));
    EXPECT_TRUE(view.isModified());
    EXPECT_TRUE(modified);
    view.newPolicy();
    EXPECT_FALSE(view.isModified());
    EXPECT_FALSE(modified);
}

// Item 4: allowing a denial into the version that is already open still
// opens it with the allow (selecting the selected row changes nothing).
TEST(PolicyView, AllowDenialActsWhenThatVersionIsAlreadySelected) {
    const std::string v1 = "name = \"web\"\n[seccomp]\nallow = [\"@default\"]\n";
    moat::ui::test::FakeBackend backend(webV3Backend(v1));
    PolicyView view(&backend);
    view.selectPolicy(QStringLiteral("web"), 3);
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return view.tomlText() == QString::fromStdString(v1); }));
    const nlohmann::json denial{{"id", 9}, {"kind", "denial"}, {"job", 2}, {"syscall", "sysinfo"}, {"action", "errno:EPERM"},
                                {"args", {0, 0, 0, 0, 0, 0}}};
    view.allowDenial(QStringLiteral("web"), 3, QString::fromStdString(denial.dump()));
    ASSERT_TRUE(moat::ui::test::waitFor([&] { return view.tomlText().contains(QStringLiteral("sysinfo")); }));
    EXPECT_TRUE(view.form()->checklist()->isChecked("sysinfo"));
    EXPECT_TRUE(view.isModified());
}

// Item 11: the checklist gets the height it needs, not a slice of a
// scrolling form.
TEST(PolicyForm, ChecklistTakesTheRoomOfItsPane) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) {
        return nlohmann::json{{"ok", true}, {"policies", nlohmann::json::array()}};
    });
    PolicyView view(&backend);
    view.resize(1400, 860);
    view.show();
    QCoreApplication::processEvents();
    // What is on screen of the list as the form opens, not how tall the list
    // is inside a scroll area that clips it.
    QTreeWidget* t = view.form()->checklist()->tree();
    const int rowHeight = t->visualItemRect(t->topLevelItem(0)).height();
    ASSERT_GT(rowHeight, 0);
    const int visible = t->viewport()->visibleRegion().boundingRect().height();
    EXPECT_GE(visible / rowHeight, 14) << "visible " << visible << " px of " << t->viewport()->height();
}

// Item 11: lint's sentences wrap in the pane instead of running off it.
TEST(PolicyView, LintTextWraps) {
    moat::ui::test::FakeBackend backend([](const nlohmann::json&) {
        return nlohmann::json{{"ok", true}, {"policies", nlohmann::json::array()}};
    });
    PolicyView view(&backend);
    view.resize(700, 800);
    view.show();
    view.setTomlText(QStringLiteral("name = \"p\"\n[network]\nmode = \"host\"\n[seccomp]\nallow = [\"@default\", \"ptrace\", \"bpf\"]\n"));
    QCoreApplication::processEvents();
    QListWidget* lint = view.lintList();
    ASSERT_NE(lint, nullptr);
    ASSERT_GT(lint->count(), 0);
    bool wrapped = false;
    for (int i = 0; i < lint->count(); ++i) {
        const QRect r = lint->visualItemRect(lint->item(i));
        EXPECT_LE(r.right(), lint->viewport()->width()) << lint->item(i)->text().toStdString();
        wrapped |= r.height() > lint->fontMetrics().height() * 3 / 2;
    }
    EXPECT_TRUE(wrapped) << "no lint line is long enough to wrap at this width?";
}

// Allowing a denial that a condition-less rule decided (mkdir -> EACCES)
// changes that rule's action: a second rule with the same conditions and
// another action is refused by the parser, so the proposal was unsavable.
TEST(DenialAllow, ARuleThatDecidedTheDenialIsTurnedIntoAnAllow) {
    const auto mk = proposeAllow({{"kind", "denial"}, {"syscall", "mkdir"}, {"args", {0x1234, 0777, 0, 0, 0, 0}}});
    PolicyDraft d = PolicyDraft::fromPolicy(parse("name = \"p\"\n[seccomp]\nallow = [\"@default\"]\n"
                                                  "[[seccomp.rule]]\nsyscall = \"mkdir\"\naction = \"errno:EACCES\"\n"));
    const std::string text = applyAllow(d, mk).toToml();
    auto r = moat::policy::parse_policy(text, "t.toml");
    ASSERT_TRUE(r.policy) << text;
    ASSERT_EQ(r.policy->seccomp.rules.size(), 1u);
    EXPECT_EQ(r.policy->seccomp.rules[0].action.str(), "allow");
}
