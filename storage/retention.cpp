#include "storage/retention.h"

#include <nlohmann/json.hpp>

namespace triage::storage {

using core::Status;
using nlohmann::json;

namespace {

// A study is settled when it is complete, has been processed, and nothing about it is queued,
// running or waiting for delivery.
constexpr const char* kSettled =
    "SELECT s.study_uid, COALESCE("
    "  (SELECT max(d.updated_at) FROM deliveries d JOIN outputs o ON o.id=d.output_id WHERE o.study_uid=s.study_uid),"
    "  (SELECT max(a.created_at) FROM analyses a WHERE a.study_uid=s.study_uid),"
    "  (SELECT max(j.finished_at) FROM jobs j WHERE j.study_uid=s.study_uid)) AS settled_at,"
    "  (SELECT COALESCE(sum(i.file_size), 0) FROM instances i WHERE i.study_uid=s.study_uid) "
    "FROM studies s WHERE s.completion_pending=0"
    " AND EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid=s.study_uid)"
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid=s.study_uid AND j.state IN ('queued','running'))"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d JOIN outputs o ON o.id=d.output_id"
    "                 WHERE o.study_uid=s.study_uid AND d.state='pending')";

}  // namespace

core::Result<std::vector<SettledStudy>> Retention::settled(const std::string& extra_condition, const std::string& cutoff,
                                                           int limit) {
    return m_db.select<SettledStudy>(
        "SELECT * FROM (" + std::string(kSettled) + extra_condition + ") WHERE settled_at <= ? ORDER BY settled_at LIMIT ?",
        [&](Statement& s) { s.bind(1, cutoff).bind(2, limit); },
        [](const Statement& s) { return SettledStudy{s.text(0), s.text(1), s.integer(2)}; });
}

core::Result<std::vector<SettledStudy>> Retention::instances_to_purge(const std::string& cutoff, int limit) {
    return settled(" AND s.instances_purged_at IS NULL", cutoff, limit);
}

core::Result<std::vector<SettledStudy>> Retention::studies_to_purge(const std::string& cutoff, int limit) {
    return settled("", cutoff, limit);
}

core::Result<bool> Retention::still_settled(const std::string& study_uid) {
    Statement& q = m_db.prepare("SELECT 1 FROM (" + std::string(kSettled) + " AND s.study_uid=?)");
    q.bind(1, study_uid);
    return q.step();
}

core::Result<std::vector<std::string>> Retention::purge_instances(const std::string& study_uid, const std::string& reason) {
    std::vector<std::string> files;
    std::string now = core::format_iso8601(m_clock.now());
    auto st = m_db.transact([&]() -> Status {
        files.clear();
        auto settled = still_settled(study_uid);
        if (!settled) return settled.error();
        if (!settled.value()) return {};
        std::int64_t bytes = 0;
        Statement& q = m_db.prepare("SELECT file_path, file_size FROM instances WHERE study_uid=?");
        q.bind(1, study_uid);
        if (auto x = q.for_each([&](const Statement& s) {
                files.push_back(s.text(0));
                bytes += s.integer(1);
            });
            !x)
            return x;
        Statement& d = m_db.prepare("DELETE FROM instances WHERE study_uid=?");
        d.bind(1, study_uid);
        if (auto x = d.run(); !x) return x.error();
        Statement& u = m_db.prepare("UPDATE studies SET instances_purged_at=? WHERE study_uid=?");
        u.bind(1, now).bind(2, study_uid);
        if (auto x = u.run(); !x) return x.error();
        AuditEvent e;
        e.time = now;
        e.event = "instances_purged";
        e.study_uid = study_uid;
        e.detail = json{{"reason", reason}, {"instances", files.size()}, {"bytes", bytes}}.dump();
        return m_audit.append_in_tx(std::move(e));
    });
    if (!st) return st.error();
    return files;
}

core::Result<std::vector<std::string>> Retention::purge_study(const std::string& study_uid, const std::string& reason) {
    std::vector<std::string> dirs;
    std::string now = core::format_iso8601(m_clock.now());
    auto st = m_db.transact([&]() -> Status {
        dirs.clear();
        auto settled = still_settled(study_uid);
        if (!settled) return settled.error();
        if (!settled.value()) return {};
        for (const char* sql : {
                 "DELETE FROM deliveries WHERE output_id IN (SELECT id FROM outputs WHERE study_uid=?)",
                 "DELETE FROM outputs WHERE study_uid=?",
                 "DELETE FROM findings WHERE study_uid=?",
                 "DELETE FROM series_results WHERE job_id IN (SELECT id FROM jobs WHERE study_uid=?)",
                 "DELETE FROM analyses WHERE study_uid=?",
                 "DELETE FROM jobs WHERE study_uid=?",
                 "DELETE FROM instances WHERE study_uid=?",
                 "DELETE FROM series WHERE study_uid=?",
                 "DELETE FROM studies WHERE study_uid=?",
             }) {
            Statement& d = m_db.prepare(sql);
            d.bind(1, study_uid);
            if (auto x = d.run(); !x) return x.error();
        }
        for (const char* top : {"instances/", "results/", "outputs/"}) dirs.push_back(top + study_uid);
        AuditEvent e;
        e.time = now;
        e.event = "study_purged";
        e.study_uid = study_uid;
        e.detail = json{{"reason", reason}}.dump();
        return m_audit.append_in_tx(std::move(e));
    });
    if (!st) return st.error();
    return dirs;
}

}  // namespace triage::storage
