#include <gtest/gtest.h>

#include "models/event_filter.h"

using moat::ui::EventFilter;
using moat::ui::EventRow;

namespace {

constexpr int64_t kNow = 1'800'000'000'000'000'000;

EventRow denial(int64_t job, const char* syscall, const char* path, const char* action = "errno:EPERM") {
    EventRow e;
    e.id = 1;
    e.job = job;
    e.kind = "denial";
    e.syscall = syscall;
    e.decoded = path;
    e.action = action;
    e.module = "libc.so.6+0xf7f37";
    e.rule = "seccomp.default_action";
    e.pid = 42;
    e.timeNs = kNow - 60'000'000'000;  // a minute ago
    return e;
}

}  // namespace

TEST(EventFilter, AcceptsWhatTheDocsShow) {
    for (const char* text : {"", "   ", "syscall=mkdir and job=3", "path~/tmp", "action=errno:EPERM", "kind=denial",
                             "since=2026-11-29T16:38:33Z", "since=-5m and until=-1m", "job>=3 and job<10",
                             "syscall=openat or syscall=mkdir", "(syscall=openat or syscall=mkdir) and job=3",
                             "path~\"/with space\"", "SYSCALL=mkdir AND job=1", "syscall!=read && kind=denial || kind=limit",
                             "module~libc", "rule=seccomp.rule[0]", "policy=demo-mkdir", "action=kill-process",
                             "arch=x86_64 and pid=42", "path!~/proc"}) {
        auto f = EventFilter::parse(QString::fromLatin1(text), kNow);
        EXPECT_TRUE(f.has_value()) << text << ": " << (f ? "" : f.error().message.toStdString());
    }
}

TEST(EventFilter, RejectsWithAPosition) {
    struct Case {
        const char* text;
        int position;
    };
    for (const Case& c : {Case{"syscal=mkdir", 0}, Case{"syscall", 7}, Case{"syscall=", 8}, Case{"job=abc", 4},
                          Case{"job~3", 4}, Case{"kind=denials", 5}, Case{"action=errno:EPREM", 7},
                          Case{"syscall=mkdir and", 17}, Case{"syscall=mkdir job=3", 14}, Case{"(syscall=mkdir", 14},
                          Case{"since=yesterday", 6}, Case{"path<3", 5}, Case{"syscall=\"open", 8}, Case{"=mkdir", 0},
                          Case{"syscall=mkdir or", 16}, Case{"job=-1", 4}}) {
        auto f = EventFilter::parse(QString::fromLatin1(c.text), kNow);
        ASSERT_FALSE(f.has_value()) << c.text << " was accepted";
        EXPECT_EQ(f.error().position, c.position) << c.text << ": " << f.error().message.toStdString();
        EXPECT_FALSE(f.error().message.isEmpty());
    }
}

TEST(EventFilter, Matches) {
    auto f = EventFilter::parse(QStringLiteral("syscall=mkdir and job=3"), kNow);
    ASSERT_TRUE(f);
    EXPECT_TRUE(f->matches(denial(3, "mkdir", "/tmp/x")));
    EXPECT_FALSE(f->matches(denial(4, "mkdir", "/tmp/x")));
    EXPECT_FALSE(f->matches(denial(3, "openat", "/tmp/x")));

    auto p = EventFilter::parse(QStringLiteral("path~/TMP or action=kill-process"), kNow);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->matches(denial(1, "mkdir", "/tmp/moat-demo")));  // ~ ignores case
    EXPECT_TRUE(p->matches(denial(1, "mkdir", "/home", "kill-process")));
    EXPECT_FALSE(p->matches(denial(1, "mkdir", "/home")));

    auto t = EventFilter::parse(QStringLiteral("since=-5m"), kNow);
    ASSERT_TRUE(t);
    EXPECT_TRUE(t->matches(denial(1, "mkdir", "/x")));
    auto old = EventFilter::parse(QStringLiteral("until=-2m"), kNow);
    ASSERT_TRUE(old);
    EXPECT_FALSE(old->matches(denial(1, "mkdir", "/x")));

    auto pol = EventFilter::parse(QStringLiteral("policy=demo-mkdir"), kNow);
    ASSERT_TRUE(pol);
    auto lookup = [](int64_t job) { return job == 7 ? QStringLiteral("demo-mkdir") : QString(); };
    EXPECT_TRUE(pol->matches(denial(7, "mkdir", "/x"), lookup));
    EXPECT_FALSE(pol->matches(denial(8, "mkdir", "/x"), lookup));

    auto empty = EventFilter::parse(QString(), kNow);
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->isEmpty());
    EXPECT_TRUE(empty->matches(denial(1, "read", "")));
}

TEST(EventFilter, PushesOnlyConjunctionsToTheDaemon) {
    auto f = EventFilter::parse(QStringLiteral("syscall=mkdir and job=3 and kind=denial and since=-1m and path~/tmp"), kNow);
    ASSERT_TRUE(f);
    const auto q = f->serverQuery();
    EXPECT_EQ(q.value("syscall", ""), "mkdir");
    EXPECT_EQ(q.value("job", 0), 3);
    EXPECT_EQ(q.value("kind", ""), "denial");
    EXPECT_EQ(q.value("since_ns", int64_t(0)), kNow - 60'000'000'000);
    EXPECT_FALSE(q.contains("path"));

    auto o = EventFilter::parse(QStringLiteral("syscall=mkdir or job=3"), kNow);
    ASSERT_TRUE(o);
    EXPECT_TRUE(o->serverQuery().empty());
    auto ne = EventFilter::parse(QStringLiteral("job!=3"), kNow);
    ASSERT_TRUE(ne);
    EXPECT_FALSE(ne->serverQuery().contains("job"));
}
