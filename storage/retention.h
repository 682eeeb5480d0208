#pragma once
// Data retention (config [retention]): which studies are settled (analysis finished, nothing queued,
// running or pending delivery) and since when, and the purges themselves: a study's received
// instances, or the whole study (results, outputs, rows). Each purge is one transaction with its
// audit row; the caller deletes the files it returns after the commit. The audit trail is never
// purged. Thread-safe.
#include <string>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "storage/audit_log.h"
#include "storage/database.h"

namespace triage::storage {

struct SettledStudy {
    std::string study_uid;
    std::string settled_at;  // last delivery sent, else the analysis, else the job's end
    std::int64_t instance_bytes = 0;
};

class Retention {
public:
    Retention(Database& db, AuditLog& audit, const core::Clock& clock) : m_db(db), m_audit(audit), m_clock(clock) {}
    /// Settled studies whose instances are still on disk, settled at or before `cutoff` (ISO 8601),
    /// oldest first.
    core::Result<std::vector<SettledStudy>> instances_to_purge(const std::string& cutoff, int limit);
    /// Settled studies (instances purged or not) settled at or before `cutoff`, oldest first.
    core::Result<std::vector<SettledStudy>> studies_to_purge(const std::string& cutoff, int limit);
    /// Deletes a settled study's instance rows and marks it; returns the instance files (relative to
    /// data_dir) to delete. Nothing when the study is no longer settled (e.g. new instances came).
    core::Result<std::vector<std::string>> purge_instances(const std::string& study_uid, const std::string& reason);
    /// Deletes every row of a settled study except its audit trail; returns the folders (relative to
    /// data_dir) to delete.
    core::Result<std::vector<std::string>> purge_study(const std::string& study_uid, const std::string& reason);

private:
    core::Result<std::vector<SettledStudy>> settled(const std::string& extra_condition, const std::string& cutoff,
                                                    int limit);
    core::Result<bool> still_settled(const std::string& study_uid);
    Database& m_db;
    AuditLog& m_audit;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
