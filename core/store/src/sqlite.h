#pragma once
// Thin RAII layer over the SQLite C API, private to moat_store.
//
// Every sqlite3* is owned by a Db, every sqlite3_stmt* by the Db's statement
// cache; a Query borrows a cached statement and resets it (and clears its
// bindings) when it goes out of scope, so an early return on any error path
// leaves neither a leaked handle nor a statement stuck mid-step holding a
// read transaction open.
//
// Errors name the operation and carry SQLite's own text, e.g.
// `INSERT INTO events: database or disk is full`; sys_errno is the OS errno
// behind an I/O failure when SQLite reports one.
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "moat/common/error.h"

namespace moat::store::sql {

struct DbCloser {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
    void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
};

// "op: <sqlite3_errmsg>" for the connection's last failure.
Error make_error(sqlite3* db, std::string_view op);

// True when rc (a primary or extended result code) is in the SQLITE_CONSTRAINT family.
inline bool is_constraint(int rc) { return (rc & 0xff) == SQLITE_CONSTRAINT; }

// One bound, stepping use of a cached prepared statement. Not copyable; the
// statement is reset and its bindings cleared on destruction.
class Query final {
public:
    Query(sqlite3* db, sqlite3_stmt* st, std::string_view op) noexcept : m_db(db), m_st(st), m_op(op) {}
    Query(Query&& o) noexcept
        : m_db(o.m_db), m_st(std::exchange(o.m_st, nullptr)), m_op(o.m_op), m_bind_rc(o.m_bind_rc), m_rc(o.m_rc) {}
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;
    Query& operator=(Query&&) = delete;
    ~Query() {
        if (m_st) {
            sqlite3_reset(m_st);
            sqlite3_clear_bindings(m_st);
        }
    }

    // Binders record the first failure; step()/run() report it.
    Query& bind(int i, int64_t v) { return note(sqlite3_bind_int64(m_st, i, v)); }
    Query& bind(int i, int v) { return note(sqlite3_bind_int64(m_st, i, v)); }
    Query& bind(int i, uint64_t v) {
        // SQLite integers are signed 64-bit; counters never reach 2^63, clamp defensively.
        return note(sqlite3_bind_int64(m_st, i, v > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(v)));
    }
    Query& bind(int i, std::string_view v) {
        return note(sqlite3_bind_text64(m_st, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    }
    Query& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    // Without SQLite's copy: v must stay valid and unchanged until the next
    // step() has returned (the writer's hot insert; the Query's destructor
    // clears the bindings, so none outlives it).
    Query& bind_static(int i, std::string_view v) {
        return note(sqlite3_bind_text64(m_st, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
    }
    Query& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Query& bind(int i, std::nullopt_t) { return note(sqlite3_bind_null(m_st, i)); }
    template <class T>
    Query& bind(int i, const std::optional<T>& v) {
        return v ? bind(i, *v) : bind(i, std::nullopt);
    }

    // true: a row is available; false: done. rc() holds the raw result code.
    Result<bool> step();
    // Steps once expecting no row (INSERT/UPDATE/DDL).
    Result<void> run();
    int rc() const noexcept { return m_rc; }
    // Ready to be bound and stepped again (one statement for many rows). The
    // bindings stay: the caller binds every parameter again before stepping.
    void reset() noexcept {
        sqlite3_reset(m_st);
        m_bind_rc = SQLITE_OK;
    }

    bool is_null(int col) const { return sqlite3_column_type(m_st, col) == SQLITE_NULL; }
    int64_t i64(int col) const { return sqlite3_column_int64(m_st, col); }
    std::optional<int64_t> opt_i64(int col) const {
        if (is_null(col)) return std::nullopt;
        return i64(col);
    }
    std::string text(int col) const {
        auto* p = reinterpret_cast<const char*>(sqlite3_column_text(m_st, col));  // SQLite's text is UTF-8 bytes
        return p ? std::string(p, size_t(sqlite3_column_bytes(m_st, col))) : std::string();
    }
    std::optional<std::string> opt_text(int col) const {
        if (is_null(col)) return std::nullopt;
        return text(col);
    }

private:
    Query& note(int rc) {
        if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) m_bind_rc = rc;
        return *this;
    }

    sqlite3* m_db;
    sqlite3_stmt* m_st;
    std::string_view m_op;  // points at a string literal or the cache key
    int m_bind_rc = SQLITE_OK;
    int m_rc = SQLITE_OK;
};

// One connection plus its prepared-statement cache. Not thread-safe: the
// owner serialises use (the store's writer and reader mutexes).
class Db final {
public:
    // flags: SQLITE_OPEN_* ; uri=true allows "file:...?mode=ro".
    static Result<Db> open(const std::string& path, int flags);

    Db() = default;
    Db(Db&&) noexcept = default;
    Db& operator=(Db&&) noexcept = default;
    ~Db() {
        // Statements must be finalized before the connection closes; clear the
        // cache explicitly rather than relying on member order.
        m_cache.clear();
        m_db.reset();
    }

    sqlite3* get() const noexcept { return m_db.get(); }
    explicit operator bool() const noexcept { return bool(m_db); }

    // A cached prepared statement for sql, labelled op in errors.
    Result<Query> query(std::string_view op, const std::string& sql);
    // Runs one or more statements without results (DDL, PRAGMA, BEGIN...).
    Result<void> exec(std::string_view op, const std::string& sql);
    // Runs a single-value query (PRAGMA user_version ...).
    Result<int64_t> scalar(std::string_view op, const std::string& sql);
    Result<std::string> scalar_text(std::string_view op, const std::string& sql);

    bool in_transaction() const noexcept { return m_db && !sqlite3_get_autocommit(m_db.get()); }
    int64_t last_insert_rowid() const noexcept { return sqlite3_last_insert_rowid(m_db.get()); }
    int64_t changes() const noexcept { return sqlite3_changes64(m_db.get()); }

private:
    struct Cached {
        std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt;
        std::string op;
    };
    std::unique_ptr<sqlite3, DbCloser> m_db;
    std::unordered_map<std::string, Cached> m_cache;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back on destruction unless committed.
// IMMEDIATE takes the write lock up front so a transaction never fails half-way
// with SQLITE_BUSY when it upgrades from reading to writing.
class Transaction final {
public:
    static Result<Transaction> begin(Db& db);
    Transaction(Transaction&& o) noexcept : m_db(std::exchange(o.m_db, nullptr)) {}
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction() { rollback(); }
    Result<void> commit();
    void rollback() noexcept;

private:
    explicit Transaction(Db& db) : m_db(&db) {}
    Db* m_db;
};

// "file:PATH?mode=ro" with PATH percent-encoded where a character would end
// or alter the path part of an SQLite URI (open with SQLITE_OPEN_URI).
std::string read_only_uri(const std::string& path);

}  // namespace moat::store::sql
