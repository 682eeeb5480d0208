#pragma once
// The append-only audit trail (table audit_events; triggers refuse UPDATE and DELETE).
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "storage/database.h"
#include "storage/records.h"

namespace triage::storage {

class AuditLog {
public:
    AuditLog(Database& db, const core::Clock& clock) : m_db(db), m_clock(clock) {}
    /// Appends one event in its own transaction.
    core::Status append(AuditEvent event);
    /// Appends inside a transaction the caller already holds (Database::transact body).
    core::Status append_in_tx(AuditEvent event);
    /// Events with time >= since (all when empty), oldest first; at most `limit`.
    core::Result<std::vector<AuditEvent>> list(const std::string& since, int limit = 100000);
    /// The events of one study with time >= since (all when empty), oldest first; at most `limit`.
    core::Result<std::vector<AuditEvent>> list_for_study(const std::string& study_uid, const std::string& since,
                                                         int limit = 100000);
    /// The id of the newest event, 0 when there is none. Every audited change (an instance stored,
    /// a job's state, an output, a delivery outcome) makes it grow: the worklist page polls it.
    core::Result<std::int64_t> latest_id();

private:
    Database& m_db;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
