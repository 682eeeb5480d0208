#include "storage/job_queue.h"

#include <nlohmann/json.hpp>

namespace triage::storage {

using core::ErrorKind;
using core::Status;

namespace {
constexpr const char* kJobColumns =
    "id,study_uid,version,state,priority,attempts,error,created_at,started_at,finished_at";

JobRecord read_job(const Statement& s) {
    JobRecord j;
    j.id = s.integer(0);
    j.study_uid = s.text(1);
    j.version = static_cast<int>(s.integer(2));
    j.state = s.text(3);
    j.priority = static_cast<int>(s.integer(4));
    j.attempts = static_cast<int>(s.integer(5));
    j.error = s.opt_text(6);
    j.created_at = s.opt_text(7);
    j.started_at = s.opt_text(8);
    j.finished_at = s.opt_text(9);
    return j;
}
}  // namespace

core::Result<JobQueue::Stats> JobQueue::stats() {
    auto rows = m_db.select<Stats>(
        "SELECT (SELECT count(*) FROM jobs WHERE state='queued'), (SELECT count(*) FROM jobs WHERE state='running'),"
        " (SELECT min(created_at) FROM jobs WHERE state='queued')",
        [](Statement&) {},
        [](const Statement& s) {
            return Stats{static_cast<int>(s.integer(0)), static_cast<int>(s.integer(1)), s.opt_text(2)};
        });
    if (!rows) return rows.error();
    return rows->front();
}

core::Result<bool> JobQueue::study_exists(const std::string& study_uid) {
    Statement& e = m_db.prepare("SELECT 1 FROM studies WHERE study_uid=?");
    e.bind(1, study_uid);
    return e.step();
}

Status JobQueue::audit_job(const JobRecord& job, const std::string& event, const std::string& now,
                           const std::string& reason) {
    AuditEvent e;
    e.time = now;
    e.event = event;
    e.study_uid = job.study_uid;
    e.job_id = job.id;
    nlohmann::json d{{"version", job.version}, {"state", job.state}, {"attempts", job.attempts}};
    if (job.error) d["error"] = *job.error;
    if (!reason.empty()) d["reason"] = reason;
    e.detail = d.dump();
    return m_audit.append_in_tx(std::move(e));
}

core::Result<std::optional<JobRecord>> JobQueue::enqueue_in_tx(const std::string& study_uid,
                                                               const std::string& now,
                                                               const std::string& reason) {
    Statement& q = m_db.prepare("SELECT 1 FROM jobs WHERE study_uid=? AND state='queued'");
    q.bind(1, study_uid);
    auto queued = q.step();
    if (!queued) return queued.error();
    if (queued.value()) return std::optional<JobRecord>{};  // the queued job will see everything
    Statement& ins = m_db.prepare(
        std::string("INSERT INTO jobs(study_uid,version,state,created_at,priority) VALUES(?1,"
                    "(SELECT COALESCE(MAX(version),0)+1 FROM jobs WHERE study_uid=?1),'queued',?3,"
                    "(SELECT intake_priority FROM studies WHERE study_uid=?1)) RETURNING ") + kJobColumns);
    ins.bind(1, study_uid).bind(2, study_uid).bind(3, now);
    auto row = ins.step();
    if (!row) return row.error();
    JobRecord job = read_job(ins);
    if (auto r = ins.run(); !r) return r.error();
    if (auto st = audit_job(job, "job_queued", now, reason); !st) return st.error();
    return std::optional<JobRecord>(job);
}

core::Result<std::optional<JobRecord>> JobQueue::complete_study(
    const std::string& study_uid, const std::optional<std::string>& quiet_cutoff,
    const std::string& reason) {
    std::optional<JobRecord> out;
    std::string now = core::format_iso8601(m_clock.now());
    bool found = false;
    auto st = m_db.transact([&]() -> Status {
        out.reset();
        Statement& u = m_db.prepare(
            "UPDATE studies SET completion_pending=0, completed_at=? WHERE study_uid=? AND "
            "(?3 IS NULL OR (completion_pending=1 AND last_received_at<=?3))");
        u.bind(1, now).bind(2, study_uid).bind(3, quiet_cutoff);
        auto changed = u.run();
        if (!changed) return changed.error();
        if (changed.value() == 0) {
            auto exists = study_exists(study_uid);
            if (!exists) return exists.error();
            found = exists.value();
            return {};
        }
        found = true;
        AuditEvent ev;
        ev.time = now;
        ev.event = "study_completed";
        ev.study_uid = study_uid;
        ev.detail = nlohmann::json{{"reason", reason}}.dump();
        if (auto a = m_audit.append_in_tx(std::move(ev)); !a) return a;
        auto job = enqueue_in_tx(study_uid, now, reason);
        if (!job) return job.error();
        out = job.value();
        return {};
    });
    if (!st) return st.error();
    if (!found) return core::make_error(ErrorKind::NotFound, "no study " + study_uid);
    return out;
}

core::Result<std::optional<JobRecord>> JobQueue::reprocess(const std::string& study_uid) {
    std::optional<JobRecord> out;
    std::string now = core::format_iso8601(m_clock.now());
    bool found = false;
    auto st = m_db.transact([&]() -> Status {
        auto exists = study_exists(study_uid);
        if (!exists) return exists.error();
        found = exists.value();
        if (!found) return {};
        auto job = enqueue_in_tx(study_uid, now, "reprocess");
        if (!job) return job.error();
        out = job.value();
        return {};
    });
    if (!st) return st.error();
    if (!found) return core::make_error(ErrorKind::NotFound, "no study " + study_uid);
    return out;
}

core::Result<std::optional<JobRecord>> JobQueue::claim() {
    std::optional<JobRecord> out;
    std::string now = core::format_iso8601(m_clock.now());
    auto st = m_db.transact([&]() -> Status {
        out.reset();
        Statement& u = m_db.prepare(
            std::string("UPDATE jobs SET state='running', attempts=attempts+1, started_at=?, "
                        "finished_at=NULL, error=NULL WHERE id=(SELECT id FROM jobs j WHERE "
                        "state='queued' AND NOT EXISTS (SELECT 1 FROM jobs r WHERE "
                        "r.study_uid=j.study_uid AND r.state='running') ORDER BY priority DESC, "
                        "id LIMIT 1) AND state='queued' RETURNING ") + kJobColumns);
        u.bind(1, now);
        auto row = u.step();
        if (!row) return row.error();
        if (!row.value()) return {};
        out = read_job(u);
        if (auto r = u.run(); !r) return r.error();
        return audit_job(*out, "job_running", now);
    });
    if (!st) return st.error();
    return out;
}

Status JobQueue::finish(std::int64_t job_id, bool success, const std::string& error) {
    std::string now = core::format_iso8601(m_clock.now());
    return m_db.transact([&]() -> Status {
        Statement& u = m_db.prepare(
            std::string("UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=? AND "
                        "state='running' RETURNING ") + kJobColumns);
        u.bind(1, success ? "done" : "failed");
        success ? u.bind_null(2) : u.bind(2, error);
        u.bind(3, now).bind(4, job_id);
        auto row = u.step();
        if (!row) return row.error();
        if (!row.value())
            return core::make_error(ErrorKind::InvalidInput,
                                    "job " + std::to_string(job_id) + " is not running");
        JobRecord job = read_job(u);
        if (auto r = u.run(); !r) return r.error();
        return audit_job(job, success ? "job_done" : "job_failed", now);
    });
}

core::Result<int> JobQueue::reset_running() {
    int count = 0;
    std::string now = core::format_iso8601(m_clock.now());
    auto st = m_db.transact([&]() -> Status {
        std::vector<JobRecord> reset;
        Statement& u = m_db.prepare(std::string("UPDATE jobs SET state='queued', started_at=NULL "
                                                "WHERE state='running' RETURNING ") + kJobColumns);
        if (auto s = u.for_each([&](const Statement& row) { reset.push_back(read_job(row)); }); !s)
            return s;
        count = static_cast<int>(reset.size());
        for (const auto& j : reset)
            if (auto a = audit_job(j, "job_requeued_after_restart", now); !a) return a;
        return {};
    });
    if (!st) return st.error();
    return count;
}

core::Result<std::vector<JobRecord>> JobQueue::jobs_for_study(const std::string& study_uid) {
    return m_db.select<JobRecord>(std::string("SELECT ") + kJobColumns +
                                      " FROM jobs WHERE study_uid=? ORDER BY version",
                                  [&](Statement& s) { s.bind(1, study_uid); }, read_job);
}

}  // namespace triage::storage
