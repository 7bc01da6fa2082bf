#include "models/event_filter.h"

#include <QDateTime>

#include <chrono>

#include "moat/policy/policy.h"

namespace moat::ui {

namespace {

using Node = EventFilter::Node;
using Field = EventFilter::Field;
using Op = EventFilter::Op;

struct FieldInfo {
    const char* name;
    Field field;
    bool numeric;
};
constexpr FieldInfo kFields[] = {
    {"syscall", Field::Syscall, false}, {"job", Field::Job, true},       {"kind", Field::Kind, false},
    {"action", Field::Action, false},   {"path", Field::Path, false},    {"policy", Field::Policy, false},
    {"module", Field::Module, false},   {"rule", Field::Rule, false},    {"pid", Field::Pid, true},
    {"arch", Field::Arch, false},       {"since", Field::Since, false},  {"until", Field::Until, false},
};

bool isOpChar(QChar c) { return c == u'=' || c == u'!' || c == u'~' || c == u'<' || c == u'>'; }

class Parser {
public:
    Parser(const QString& t, int64_t now) : m_t(t), m_now(now) {}

    std::expected<std::shared_ptr<const Node>, EventFilter::ParseError> run() {
        skipSpace();
        if (m_pos >= m_t.size()) return nullptr;
        auto n = parseOr();
        if (!n) return std::unexpected(n.error());
        skipSpace();
        if (m_pos < m_t.size()) return fail(QStringLiteral("expected \"and\", \"or\" or the end, found \"%1\"").arg(rest()));
        return n;
    }

private:
    using R = std::expected<std::shared_ptr<const Node>, EventFilter::ParseError>;

    std::unexpected<EventFilter::ParseError> fail(const QString& msg) const { return std::unexpected(EventFilter::ParseError{msg, int(m_pos)}); }
    void skipSpace() {
        while (m_pos < m_t.size() && m_t[m_pos].isSpace()) ++m_pos;
    }
    QString rest() const { return m_t.mid(m_pos, 12); }
    bool keyword(const char* word, const char* symbol) {
        skipSpace();
        const QString w = QLatin1String(word);
        if (m_t.mid(m_pos, w.size()).compare(w, Qt::CaseInsensitive) == 0) {
            const qsizetype end = m_pos + w.size();
            if (end >= m_t.size() || m_t[end].isSpace() || m_t[end] == u'(') {
                m_pos = end;
                return true;
            }
        }
        const QString s = QLatin1String(symbol);
        if (m_t.mid(m_pos, s.size()) == s) {
            m_pos += s.size();
            return true;
        }
        return false;
    }
    R combine(Node::Type type, std::vector<std::shared_ptr<const Node>> kids) {
        if (kids.size() == 1) return kids.front();
        auto n = std::make_shared<Node>();
        n->type = type;
        n->children = std::move(kids);
        return n;
    }
    R parseOr() {
        std::vector<std::shared_ptr<const Node>> kids;
        for (;;) {
            auto a = parseAnd();
            if (!a) return a;
            kids.push_back(*a);
            if (!keyword("or", "||")) break;
        }
        return combine(Node::Type::Or, std::move(kids));
    }
    R parseAnd() {
        std::vector<std::shared_ptr<const Node>> kids;
        for (;;) {
            auto a = parseAtom();
            if (!a) return a;
            kids.push_back(*a);
            if (!keyword("and", "&&")) break;
        }
        return combine(Node::Type::And, std::move(kids));
    }
    R parseAtom() {
        skipSpace();
        if (m_pos >= m_t.size()) return fail(QStringLiteral("expected FIELD=VALUE at the end"));
        if (m_t[m_pos] == u'(') {
            ++m_pos;
            auto inner = parseOr();
            if (!inner) return inner;
            skipSpace();
            if (m_pos >= m_t.size() || m_t[m_pos] != u')') return fail(QStringLiteral("missing \")\""));
            ++m_pos;
            return inner;
        }
        const qsizetype fieldPos = m_pos;
        while (m_pos < m_t.size() && (m_t[m_pos].isLetter() || m_t[m_pos] == u'_')) ++m_pos;
        const QString name = m_t.mid(fieldPos, m_pos - fieldPos).toLower();
        if (name.isEmpty()) {
            return fail(QStringLiteral("expected a field name (%1), found \"%2\"")
                            .arg(EventFilter::fieldNames().join(QStringLiteral(", ")), rest()));
        }
        const FieldInfo* info = nullptr;
        for (const auto& f : kFields)
            if (name == QLatin1String(f.name)) info = &f;
        if (!info) {
            m_pos = fieldPos;
            return fail(QStringLiteral("unknown field \"%1\"; fields: %2")
                            .arg(name, EventFilter::fieldNames().join(QStringLiteral(", "))));
        }
        skipSpace();
        const qsizetype opPos = m_pos;
        while (m_pos < m_t.size() && isOpChar(m_t[m_pos])) ++m_pos;
        const QString opText = m_t.mid(opPos, m_pos - opPos);
        Op op;
        if (opText == u"=" || opText == u"==") op = Op::Eq;
        else if (opText == u"!=") op = Op::Ne;
        else if (opText == u"~") op = Op::Contains;
        else if (opText == u"!~") op = Op::NotContains;
        else if (opText == u"<") op = Op::Lt;
        else if (opText == u"<=") op = Op::Le;
        else if (opText == u">") op = Op::Gt;
        else if (opText == u">=") op = Op::Ge;
        else {
            m_pos = opPos;
            return fail(opText.isEmpty() ? QStringLiteral("expected an operator (=, !=, ~, !~, <, >) after \"%1\"").arg(name)
                                         : QStringLiteral("unknown operator \"%1\"").arg(opText));
        }
        skipSpace();
        const qsizetype valuePos = m_pos;
        QString value;
        if (m_pos < m_t.size() && m_t[m_pos] == u'"') {
            ++m_pos;
            while (m_pos < m_t.size() && m_t[m_pos] != u'"') {
                if (m_t[m_pos] == u'\\' && m_pos + 1 < m_t.size()) ++m_pos;
                value += m_t[m_pos++];
            }
            if (m_pos >= m_t.size()) {
                m_pos = valuePos;
                return fail(QStringLiteral("unterminated quoted value"));
            }
            ++m_pos;
        } else {
            while (m_pos < m_t.size() && !m_t[m_pos].isSpace() && m_t[m_pos] != u'(' && m_t[m_pos] != u')' &&
                   !isOpChar(m_t[m_pos]))
                value += m_t[m_pos++];
            if (value.isEmpty()) return fail(QStringLiteral("expected a value after \"%1%2\"").arg(name, opText));
        }
        auto n = std::make_shared<Node>();
        n->field = info->field;
        n->op = op;
        n->value = value;
        const bool ordering = op == Op::Lt || op == Op::Le || op == Op::Gt || op == Op::Ge;
        const bool substring = op == Op::Contains || op == Op::NotContains;
        auto at = [&](const QString& msg) {
            m_pos = valuePos;
            return fail(msg);
        };
        if (info->numeric) {
            if (substring) return at(QStringLiteral("\"%1\" is a number: use =, !=, <, <=, > or >=").arg(name));
            bool ok = false;
            n->number = value.toLongLong(&ok);
            if (!ok || n->number < 0) return at(QStringLiteral("\"%1\" needs a non-negative integer, not \"%2\"").arg(name, value));
        } else if (ordering) {
            return at(QStringLiteral("\"%1\" is text: use =, !=, ~ or !~").arg(name));
        }
        if (info->field == Field::Kind) {
            static const QStringList kinds = {QStringLiteral("lifecycle"), QStringLiteral("resource"),
                                              QStringLiteral("denial"), QStringLiteral("limit")};
            if (substring || !kinds.contains(value))
                return at(QStringLiteral("kind is one of lifecycle, resource, denial, limit (with = or !=)"));
        }
        if (info->field == Field::Action && !substring) {
            std::string why;
            if (!moat::policy::parse_action(value.toStdString(), &why))
                return at(QStringLiteral("not an action: %1").arg(why.empty() ? value : QString::fromStdString(why)));
        }
        if (info->field == Field::Since || info->field == Field::Until) {
            if (op != Op::Eq) return at(QStringLiteral("write %1=TIME").arg(name));
            auto t = parseTime(value);
            if (!t) return at(QStringLiteral("\"%1\" is not a time: write 2026-11-29T16:38:33Z or -5m / -2h / -30s").arg(value));
            n->number = *t;
        }
        return std::shared_ptr<const Node>(n);
    }
    std::optional<int64_t> parseTime(const QString& v) const {
        if (v.startsWith(u'-') && v.size() >= 3) {
            const QChar unit = v.back();
            bool ok = false;
            const qint64 amount = v.mid(1, v.size() - 2).toLongLong(&ok);
            if (!ok || amount < 0) return std::nullopt;
            int64_t mult = unit == u's' ? 1 : unit == u'm' ? 60 : unit == u'h' ? 3600 : unit == u'd' ? 86400 : 0;
            if (!mult) return std::nullopt;
            return m_now - amount * mult * 1'000'000'000;
        }
        QDateTime dt = QDateTime::fromString(v, Qt::ISODateWithMs);
        if (!dt.isValid()) dt = QDateTime::fromString(v, Qt::ISODate);
        if (!dt.isValid()) return std::nullopt;
        return dt.toMSecsSinceEpoch() * 1'000'000;
    }

    const QString& m_t;
    qsizetype m_pos = 0;
    int64_t m_now;
};

bool matchText(Op op, const std::string& have, const QString& want) {
    const QString h = QString::fromStdString(have);
    switch (op) {
        case Op::Eq: return h == want;
        case Op::Ne: return h != want;
        case Op::Contains: return h.contains(want, Qt::CaseInsensitive);
        case Op::NotContains: return !h.contains(want, Qt::CaseInsensitive);
        default: return false;
    }
}

bool matchNum(Op op, int64_t have, int64_t want) {
    switch (op) {
        case Op::Eq: return have == want;
        case Op::Ne: return have != want;
        case Op::Lt: return have < want;
        case Op::Le: return have <= want;
        case Op::Gt: return have > want;
        case Op::Ge: return have >= want;
        default: return false;
    }
}

bool eval(const Node& n, const EventRow& e, const EventFilter::PolicyLookup& policyOf) {
    switch (n.type) {
        case Node::Type::And:
            for (const auto& c : n.children)
                if (!eval(*c, e, policyOf)) return false;
            return true;
        case Node::Type::Or:
            for (const auto& c : n.children)
                if (eval(*c, e, policyOf)) return true;
            return false;
        case Node::Type::Term: break;
    }
    switch (n.field) {
        case Field::Syscall: return matchText(n.op, e.syscall, n.value);
        case Field::Job: return matchNum(n.op, e.job, n.number);
        case Field::Kind: return matchText(n.op, e.kind, n.value);
        case Field::Action: return matchText(n.op, e.action, n.value);
        case Field::Path: return matchText(n.op, e.decoded, n.value);
        case Field::Policy: return matchText(n.op, policyOf ? policyOf(e.job).toStdString() : std::string(), n.value);
        case Field::Module: return matchText(n.op, e.module, n.value);
        case Field::Rule: return matchText(n.op, e.rule, n.value);
        case Field::Pid: return matchNum(n.op, e.pid, n.number);
        case Field::Arch: return matchText(n.op, e.arch, n.value);
        case Field::Since: return e.timeNs >= n.number;
        case Field::Until: return e.timeNs <= n.number;
    }
    return false;
}

}  // namespace

EventFilter::EventFilter() = default;

const QStringList& EventFilter::fieldNames() {
    static const QStringList names = [] {
        QStringList l;
        for (const auto& f : kFields) l << QLatin1String(f.name);
        return l;
    }();
    return names;
}

std::expected<EventFilter, EventFilter::ParseError> EventFilter::parse(const QString& text, int64_t nowNs) {
    if (nowNs == 0)
        nowNs = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count();
    Parser p(text, nowNs);
    auto root = p.run();
    if (!root) return std::unexpected(root.error());
    EventFilter f;
    f.m_text = text.trimmed();
    f.m_root = *root;
    return f;
}

bool EventFilter::matches(const EventRow& e, const PolicyLookup& policyOf) const {
    return !m_root || eval(*m_root, e, policyOf);
}

nlohmann::json EventFilter::serverQuery() const {
    nlohmann::json q = nlohmann::json::object();
    if (!m_root) return q;
    std::vector<const Node*> terms;
    if (m_root->type == Node::Type::Term) terms.push_back(m_root.get());
    else if (m_root->type == Node::Type::And) {
        for (const auto& c : m_root->children)
            if (c->type == Node::Type::Term) terms.push_back(c.get());
    } else {
        return q;  // a disjunction: nothing can be pushed down safely
    }
    for (const Node* t : terms) {
        if (t->field == Field::Since && !q.contains("since_ns")) q["since_ns"] = t->number;
        if (t->field == Field::Until && !q.contains("until_ns")) q["until_ns"] = t->number;
        if (t->op != Op::Eq) continue;
        if (t->field == Field::Job && !q.contains("job")) q["job"] = t->number;
        if (t->field == Field::Kind && !q.contains("kind")) q["kind"] = t->value.toStdString();
        if (t->field == Field::Syscall && !q.contains("syscall")) q["syscall"] = t->value.toStdString();
    }
    return q;
}

}  // namespace moat::ui
