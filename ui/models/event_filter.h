#pragma once
// The investigation filter language, checked as the operator types:
//
//   filter := or
//   or     := and ( ("or" | "||") and )*
//   and    := atom ( ("and" | "&&") atom )*
//   atom   := "(" or ")" | FIELD OP VALUE
//   OP     := "=" | "!=" | "~" (contains) | "!~" | "<" | "<=" | ">" | ">=" (numbers only)
//   VALUE  := a bare word (no spaces, parentheses or operator characters) or "quoted"
//
// Fields: syscall, job, kind, action, path (the decoded path or address),
// policy (the job's policy name), module, rule, pid, arch, since, until
// (RFC 3339 time like 2026-11-29T16:38:33Z, or a relative "-5m"/"-2h").
//
// Equality terms that the daemon can answer (job, kind, syscall, since, until)
// are pushed into the `events` query when the whole filter is a conjunction;
// everything is also checked client-side, so the result is the same either way.
#include <QString>
#include <QStringList>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/event_row.h"

namespace moat::ui {

class EventFilter final {
public:
    struct ParseError {
        QString message;
        int position = 0;  // 0-based character offset of the problem
    };
    // The policy name of a job, "" when unknown.
    using PolicyLookup = std::function<QString(int64_t job)>;

    EventFilter();
    static std::expected<EventFilter, ParseError> parse(const QString& text, int64_t nowNs = 0);

    bool isEmpty() const { return !m_root; }
    bool matches(const EventRow& e, const PolicyLookup& policyOf = {}) const;
    // The fields to add to an `events` request.
    nlohmann::json serverQuery() const;
    const QString& text() const { return m_text; }
    static const QStringList& fieldNames();

    enum class Field { Syscall, Job, Kind, Action, Path, Policy, Module, Rule, Pid, Arch, Since, Until };
    enum class Op { Eq, Ne, Contains, NotContains, Lt, Le, Gt, Ge };
    struct Node {
        enum class Type { And, Or, Term } type = Type::Term;
        std::vector<std::shared_ptr<const Node>> children;
        Field field = Field::Syscall;
        Op op = Op::Eq;
        QString value;
        int64_t number = 0;  // job, pid; ns for since/until
    };

private:
    QString m_text;
    std::shared_ptr<const Node> m_root;
};

}  // namespace moat::ui
