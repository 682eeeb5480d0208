#pragma once
// One SQLite connection in WAL mode with the schema migrated to the current version.
// Thread-safe: every call on a Database (and its Statements, through transact()) is serialized
// by one mutex. Several processes may open the same file (triagectl beside triaged).
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/result.h"

namespace triage::storage {

enum class SyncMode { Normal, Full };  // Normal: safe against process crash; Full: power loss too

class Statement;

class Database {
public:
    /// Opens (creating if needed) and migrates the database. Errors name the file.
    static core::Result<std::unique_ptr<Database>> open(const std::string& path, SyncMode sync);
    /// Opens an existing database for reading and writing without creating it (triagectl).
    static core::Result<std::unique_ptr<Database>> open_existing(const std::string& path);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// Runs `body` inside BEGIN IMMEDIATE … COMMIT (ROLLBACK when it returns an error),
    /// retrying while the database is busy. The body must only use statements of this Database.
    core::Status transact(const std::function<core::Status()>& body);
    /// Runs `body` under the connection mutex without a transaction (reads).
    core::Status read(const std::function<core::Status()>& body);

    /// Runs a SELECT under read(): `bind(stmt)` binds the parameters, `row(stmt)` makes one T.
    template <class T, class Bind, class Row>
    core::Result<std::vector<T>> select(std::string_view sql, Bind bind, Row row);

    /// A cached prepared statement (valid only inside transact()/read()).
    Statement& prepare(std::string_view sql);
    core::Status exec(std::string_view sql);
    int schema_version();
    const std::string& path() const { return m_path; }
    sqlite3* handle() { return m_db; }

private:
    Database(sqlite3* db, std::string path) : m_db(db), m_path(std::move(path)) {}
    core::Status migrate();
    core::Status configure(SyncMode sync);
    void reset_statements();

    sqlite3* m_db;
    std::string m_path;
    std::recursive_mutex m_mutex;
    std::unordered_map<std::string, std::unique_ptr<Statement>> m_cache;
};

/// A prepared statement; reset automatically by bind_all()/the next use.
class Statement {
public:
    Statement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
    ~Statement() { sqlite3_finalize(m_stmt); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& reset();
    Statement& bind(int index, std::string_view text);
    Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
    Statement& bind(int index, const std::string& text) { return bind(index, std::string_view(text)); }
    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
    Statement& bind(int index, double value);
    Statement& bind_null(int index);
    Statement& bind(int index, const std::optional<std::string>& text);

    /// Steps once: true when a row is available, false when done, error otherwise.
    core::Result<bool> step();
    /// Steps to completion (for INSERT/UPDATE); returns sqlite3_changes().
    core::Result<int> run();
    /// Steps through every row, calling `fn` on each.
    core::Status for_each(const std::function<void(const Statement&)>& fn);

    std::string text(int col) const;
    std::optional<std::string> opt_text(int col) const;
    std::int64_t integer(int col) const;
    double real(int col) const;
    bool is_null(int col) const;

private:
    sqlite3* m_db;
    sqlite3_stmt* m_stmt;
};

template <class T, class Bind, class Row>
core::Result<std::vector<T>> Database::select(std::string_view sql, Bind bind, Row row) {
    std::vector<T> out;
    auto st = read([&]() -> core::Status {
        Statement& s = prepare(sql);
        bind(s);
        return s.for_each([&](const Statement& r) { out.push_back(row(r)); });
    });
    if (!st) return st.error();
    return out;
}

/// Converts a SQLite result code to an Error (busy/full/ioerr are Transient).
core::Error sqlite_error(sqlite3* db, int rc, std::string_view what);

}  // namespace triage::storage
