#pragma once
// Study completion and the analysis job queue (table jobs).
// State machine: queued -> running -> done | failed; each transition is one conditional UPDATE
// in a transaction and is audited. At most one job per study runs at a time.
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "storage/audit_log.h"
#include "storage/database.h"
#include "storage/records.h"

namespace triage::storage {

class JobQueue {
public:
    JobQueue(Database& db, AuditLog& audit, const core::Clock& clock)
        : m_db(db), m_audit(audit), m_clock(clock) {}

    /// Completes a study: clears its pending flag and enqueues a new job version unless one is
    /// already queued. With `quiet_cutoff` set, does nothing when an instance arrived after it
    /// (a late instance re-armed the timer). `reason` is "quiet" or "forced". Returns the new job,
    /// or nullopt when no job was added. NotFound for an unknown study.
    core::Result<std::optional<JobRecord>> complete_study(const std::string& study_uid,
                                                          const std::optional<std::string>& quiet_cutoff,
                                                          const std::string& reason);
    /// Queues a new analysis version of a known study (triagectl reprocess).
    core::Result<std::optional<JobRecord>> reprocess(const std::string& study_uid);

    /// Moves the oldest highest-priority queued job whose study has none running to running.
    core::Result<std::optional<JobRecord>> claim();
    /// running -> done, or running -> failed with `error`.
    core::Status finish(std::int64_t job_id, bool success, const std::string& error);
    /// At start: jobs left running by a dead process go back to queued. Returns how many.
    core::Result<int> reset_running();

    core::Result<std::vector<JobRecord>> jobs_for_study(const std::string& study_uid);
    struct Stats {
        int queued = 0, running = 0;
        std::optional<std::string> oldest_queued_at;
    };
    /// Queue depth and age (metrics, health).
    core::Result<Stats> stats();

private:
    core::Result<std::optional<JobRecord>> enqueue_in_tx(const std::string& study_uid,
                                                         const std::string& now,
                                                         const std::string& reason);
    core::Result<bool> study_exists(const std::string& study_uid);  // inside a transaction
    core::Status audit_job(const JobRecord& job, const std::string& event, const std::string& now,
                           const std::string& reason = "");

    Database& m_db;
    AuditLog& m_audit;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
