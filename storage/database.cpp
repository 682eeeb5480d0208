#include "storage/database.h"

#include <chrono>
#include <thread>

#include "core/log.h"
#include "storage/schema.h"

namespace triage::storage {

using core::ErrorKind;
using core::Status;

core::Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
    int primary = rc & 0xff;
    ErrorKind kind = ErrorKind::Internal;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL ||
        primary == SQLITE_IOERR || primary == SQLITE_NOMEM || primary == SQLITE_CANTOPEN) {
        kind = ErrorKind::Transient;
    } else if (primary == SQLITE_CONSTRAINT) {
        kind = ErrorKind::InvalidInput;
    }
    std::string msg = std::string(what) + ": " + sqlite3_errstr(rc);
    if (db && sqlite3_errcode(db) == rc) msg += std::string(" (") + sqlite3_errmsg(db) + ")";
    return core::make_error(kind, msg);
}

core::Result<std::unique_ptr<Database>> Database::open(const std::string& path, SyncMode sync) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
        auto err = sqlite_error(db, rc, "open database " + path);
        sqlite3_close(db);
        return err;
    }
    std::unique_ptr<Database> d(new Database(db, path));
    if (auto st = d->configure(sync); !st) return st.error();
    if (auto st = d->migrate(); !st) return st.error();
    return d;
}

core::Result<std::unique_ptr<Database>> Database::open_existing(const std::string& path) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_close(db);
        return core::make_error(ErrorKind::NotFound, "no database at " + path);
    }
    std::unique_ptr<Database> d(new Database(db, path));
    if (auto st = d->configure(SyncMode::Normal); !st) return st.error();
    int v = d->schema_version();
    if (v != static_cast<int>(migrations().size()))
        return core::make_error(ErrorKind::Permanent,
                                "database " + path + " has schema version " + std::to_string(v) +
                                    ", this build expects " + std::to_string(migrations().size()));
    return d;
}

Database::~Database() {
    m_cache.clear();
    sqlite3_close(m_db);
}

Status Database::configure(SyncMode sync) {
    sqlite3_busy_timeout(m_db, 10000);
    if (auto st = exec("PRAGMA journal_mode=WAL"); !st) return st;
    if (auto st = exec("PRAGMA foreign_keys=ON"); !st) return st;
    return exec(sync == SyncMode::Full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

Status Database::exec(std::string_view sql) {
    std::lock_guard lock(m_mutex);
    char* err = nullptr;
    int rc = sqlite3_exec(m_db, std::string(sql).c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        return sqlite_error(nullptr, rc, "sql failed on " + m_path + ": " + msg);
    }
    return {};
}

int Database::schema_version() {
    int v = -1;
    (void)read([&]() -> Status {
        Statement& s = prepare("PRAGMA user_version");
        auto row = s.step();
        if (row && row.value()) v = static_cast<int>(s.integer(0));
        return {};
    });
    return v;
}

Status Database::migrate() {
    const auto& all = migrations();
    int v = schema_version();
    if (v > static_cast<int>(all.size()))
        return core::make_error(ErrorKind::Permanent,
                                "database " + m_path + " is newer (schema " + std::to_string(v) +
                                    ") than this build");
    for (size_t i = static_cast<size_t>(v); i < all.size(); ++i) {
        auto st = transact([&]() -> Status {
            if (auto s = exec(all[i]); !s) return s;
            return exec("PRAGMA user_version=" + std::to_string(i + 1));
        });
        if (!st) return st;
        TRIAGE_LOG_INFO("db", "migrated {} to schema version {}", m_path, i + 1);
    }
    return {};
}

Status Database::transact(const std::function<Status()>& body) {
    std::lock_guard lock(m_mutex);
    for (int attempt = 0;; ++attempt) {
        int rc = sqlite3_exec(m_db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        if ((rc & 0xff) == SQLITE_BUSY && attempt < 50) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        if (rc != SQLITE_OK) return sqlite_error(m_db, rc, "begin transaction on " + m_path);
        Status st;
        try {
            st = body();
        } catch (const std::exception& e) {
            st = core::make_error(ErrorKind::Internal, std::string("exception in transaction: ") + e.what());
        }
        reset_statements();
        if (st) {
            rc = sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, nullptr);
            if (rc == SQLITE_OK) return {};
            st = sqlite_error(m_db, rc, "commit on " + m_path);
        }
        sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
        return st;
    }
}

Status Database::read(const std::function<Status()>& body) {
    std::lock_guard lock(m_mutex);
    Status st;
    try {
        st = body();
    } catch (const std::exception& e) {
        st = core::make_error(ErrorKind::Internal, std::string("exception in read: ") + e.what());
    }
    reset_statements();
    return st;
}

void Database::reset_statements() {
    // A statement left mid-result keeps its read snapshot open; a later BEGIN IMMEDIATE on this
    // connection would then fail with SQLITE_BUSY_SNAPSHOT once another process has written.
    for (auto& [sql, stmt] : m_cache) stmt->reset();
}

Statement& Database::prepare(std::string_view sql) {
    std::string key(sql);
    auto it = m_cache.find(key);
    if (it != m_cache.end()) return it->second->reset();
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(m_db, key.c_str(), static_cast<int>(key.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    TRIAGE_ASSERT(rc == SQLITE_OK && "SQL in the code must prepare");
    auto& slot = m_cache[key];
    slot = std::make_unique<Statement>(m_db, stmt);
    return *slot;
}

Statement& Statement::reset() {
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
    return *this;
}
Statement& Statement::bind(int i, std::string_view t) {
    sqlite3_bind_text(m_stmt, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    return *this;
}
Statement& Statement::bind(int i, std::int64_t v) {
    sqlite3_bind_int64(m_stmt, i, v);
    return *this;
}
Statement& Statement::bind(int i, double v) {
    sqlite3_bind_double(m_stmt, i, v);
    return *this;
}
Statement& Statement::bind_null(int i) {
    sqlite3_bind_null(m_stmt, i);
    return *this;
}
Statement& Statement::bind(int i, const std::optional<std::string>& t) {
    return t ? bind(i, std::string_view(*t)) : bind_null(i);
}

core::Result<bool> Statement::step() {
    int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    auto err = sqlite_error(m_db, rc, "sql step");
    sqlite3_reset(m_stmt);
    return err;
}

core::Result<int> Statement::run() {
    for (;;) {
        auto r = step();
        if (!r) return r.error();
        if (!r.value()) return sqlite3_changes(m_db);
    }
}

core::Status Statement::for_each(const std::function<void(const Statement&)>& fn) {
    for (;;) {
        auto r = step();
        if (!r) return r.error();
        if (!r.value()) return {};
        fn(*this);
    }
}

std::string Statement::text(int c) const {
    auto p = sqlite3_column_text(m_stmt, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(m_stmt, c)))
             : std::string();
}
std::optional<std::string> Statement::opt_text(int c) const {
    if (is_null(c)) return std::nullopt;
    return text(c);
}
std::int64_t Statement::integer(int c) const { return sqlite3_column_int64(m_stmt, c); }
double Statement::real(int c) const { return sqlite3_column_double(m_stmt, c); }
bool Statement::is_null(int c) const { return sqlite3_column_type(m_stmt, c) == SQLITE_NULL; }

}  // namespace triage::storage
