// The policy editor's newer parts: the syscall checklist (allow-list editing,
// descriptions, risk flags, search, sync with the form and the TOML tab).
#include <QPlainTextEdit>
#include <QTreeWidget>

#include <gtest/gtest.h>

#include <algorithm>

#include "fake_backend.h"
#include "models/allow_list.h"
#include "moat/policy/lint.h"
#include "moat/policy/parser.h"
#include "moat/policy/syscalls.h"
#include "views/policy_form.h"
#include "views/policy_history.h"
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
