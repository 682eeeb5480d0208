#pragma once
// The index of received studies, series and instances (tables studies/series/instances).
// Thread-safe through its Database.
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "storage/audit_log.h"
#include "storage/database.h"
#include "storage/records.h"

namespace triage::storage {

struct StoredInstance {
    bool duplicate = false;                   // the SOP Instance UID was already indexed
    std::optional<std::string> previous_path;  // its earlier file, when different from the new one
};

class InstanceIndex {
public:
    InstanceIndex(Database& db, AuditLog& audit, const core::Clock& clock)
        : m_db(db), m_audit(audit), m_clock(clock) {}

    /// Indexes one instance whose file is already in place, marks its study as receiving and
    /// appends an "instance_stored" audit event, all in one transaction.
    core::Result<StoredInstance> record_instance(const InstanceRecord& r, const std::string& called_ae);

    /// Studies that received instances since their last completion and none after `cutoff`.
    core::Result<std::vector<std::string>> studies_quiet_since(const std::string& cutoff);

    core::Result<std::vector<StudySummary>> list_studies();
    core::Result<StudySummary> get_study(const std::string& study_uid);
    core::Result<std::vector<SeriesSummary>> list_series(const std::string& study_uid);
    /// Relative file paths of every instance of a study (series order, then instance number).
    core::Result<std::vector<std::string>> instance_paths(const std::string& study_uid);
    /// Every instance of a study with what series selection needs.
    core::Result<std::vector<InstanceRecord>> list_instances(const std::string& study_uid);
    /// The indexed relative path of one instance, or nullopt when it is not indexed.
    core::Result<std::optional<std::string>> instance_path(const std::string& sop_instance_uid);

private:
    core::Status upsert_study_and_series(const InstanceRecord& r, const std::string& now);

    Database& m_db;
    AuditLog& m_audit;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
