#include "sqlite.h"

namespace moat::store::sql {

Error make_error(sqlite3* db, std::string_view op) {
    std::string m(op);
    m += ": ";
    if (db) {
        m += sqlite3_errmsg(db);
        // For I/O failures SQLite remembers the errno behind them (ENOSPC, EIO...).
        return Error{std::move(m), sqlite3_system_errno(db)};
    }
    m += "out of memory";
    return Error{std::move(m), 0};
}

Result<bool> Query::step() {
    if (m_bind_rc != SQLITE_OK) {
        m_rc = m_bind_rc;
        return std::unexpected(Error::msg(std::string(m_op) + ": binding parameters: " + sqlite3_errstr(m_bind_rc)));
    }
    m_rc = sqlite3_step(m_st);
    if (m_rc == SQLITE_ROW) return true;
    if (m_rc == SQLITE_DONE) return false;
    return std::unexpected(make_error(m_db, m_op));
}

Result<void> Query::run() {
    auto r = step();
    if (!r) return std::unexpected(r.error());
    return {};
}

namespace {
// Before SQLite's first use in the process (sqlite3_config refuses later, and
// then nothing changes). Memory statistics take a global mutex on every
// sqlite3_malloc and sqlite3_free: ~4 % of the writer's CPU per stored row
// (perf of store_bench), for figures Moat never reads.
void configure_sqlite_once() {
    static const int once = [] { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }();
    (void)once;
}
}  // namespace

Result<Db> Db::open(const std::string& path, int flags) {
    configure_sqlite_once();
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    Db db;
    db.m_db.reset(raw);  // owned even when the open failed: SQLite still allocates a handle
    if (rc != SQLITE_OK) return std::unexpected(make_error(raw, "sqlite3_open_v2(\"" + path + "\")"));
    sqlite3_extended_result_codes(raw, 1);
    return db;
}

Result<Query> Db::query(std::string_view op, const std::string& sql) {
    auto it = m_cache.find(sql);
    if (it == m_cache.end()) {
        sqlite3_stmt* raw = nullptr;
        // PERSISTENT: these statements live for the connection's lifetime.
        int rc = sqlite3_prepare_v3(m_db.get(), sql.c_str(), int(sql.size() + 1), SQLITE_PREPARE_PERSISTENT, &raw,
                                    nullptr);
        std::unique_ptr<sqlite3_stmt, StmtFinalizer> owned(raw);
        if (rc != SQLITE_OK) return std::unexpected(make_error(m_db.get(), std::string(op) + " (prepare)"));
        it = m_cache.emplace(sql, Cached{std::move(owned), std::string(op)}).first;
    }
    return Query(m_db.get(), it->second.stmt.get(), it->second.op);
}

Result<void> Db::exec(std::string_view op, const std::string& sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(m_db.get(), sql.c_str(), nullptr, nullptr, &msg);
    std::unique_ptr<char, decltype(&sqlite3_free)> owned(msg, &sqlite3_free);
    if (rc != SQLITE_OK) {
        std::string m(op);
        m += ": ";
        m += msg ? msg : sqlite3_errstr(rc);
        return std::unexpected(Error{std::move(m), sqlite3_system_errno(m_db.get())});
    }
    return {};
}

Result<int64_t> Db::scalar(std::string_view op, const std::string& sql) {
    auto q = query(op, sql);
    if (!q) return std::unexpected(q.error());
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::unexpected(Error::msg(std::string(op) + ": no result"));
    return q->i64(0);
}

Result<std::string> Db::scalar_text(std::string_view op, const std::string& sql) {
    auto q = query(op, sql);
    if (!q) return std::unexpected(q.error());
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::unexpected(Error::msg(std::string(op) + ": no result"));
    return q->text(0);
}

Result<Transaction> Transaction::begin(Db& db) {
    if (auto r = db.exec("BEGIN IMMEDIATE", "BEGIN IMMEDIATE"); !r) return std::unexpected(r.error());
    return Transaction(db);
}

Result<void> Transaction::commit() {
    if (!m_db) return fail("COMMIT: no transaction");
    auto r = m_db->exec("COMMIT", "COMMIT");
    if (!r) {
        rollback();
        return r;
    }
    m_db = nullptr;
    return {};
}

void Transaction::rollback() noexcept {
    if (!m_db) return;
    // After some errors (SQLITE_FULL, IOERR, NOMEM) SQLite has already rolled the
    // transaction back itself; a second ROLLBACK would only fail.
    if (m_db->in_transaction()) sqlite3_exec(m_db->get(), "ROLLBACK", nullptr, nullptr, nullptr);
    m_db = nullptr;
}

std::string read_only_uri(const std::string& path) {
    static const char* hex = "0123456789ABCDEF";
    std::string out = "file:";
    for (unsigned char c : path) {
        if (c == '%' || c == '?' || c == '#' || c <= 0x20 || c >= 0x7f) {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += char(c);
        }
    }
    return out + "?mode=ro";
}

}  // namespace moat::store::sql
