#pragma once
// Deliveries of outputs to destinations (table deliveries): pending -> sent | failed, with the
// attempt count, the next attempt time and the last response. Every attempt is audited in the same
// transaction as its state change. Thread-safe.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/time.h"
#include "storage/audit_log.h"
#include "storage/database.h"

namespace triage::storage {

struct Delivery {
    std::int64_t id = 0, output_id = 0;
    std::string destination, study_uid, kind, sop_class_uid, sop_instance_uid, path;  // path relative to data_dir
    std::string state;  // pending | sent | failed
    int attempts = 0;
    std::string next_attempt_at, updated_at;
    std::optional<std::int64_t> last_status;
    std::string last_error;
};

/// The outcome of one attempt, as the sender classified it.
struct Attempt {
    enum class Outcome { Sent, Retry, Failed } outcome = Outcome::Retry;
    int status = -1;  // DIMSE status, -1 = none
    std::string error;
    core::TimePoint next_attempt;  // for Retry
};

class DeliveryQueue {
public:
    DeliveryQueue(Database& db, AuditLog& audit, const core::Clock& clock) : m_db(db), m_audit(audit), m_clock(clock) {}
    /// Pending deliveries to `destination` whose next attempt is due, oldest first.
    core::Result<std::vector<Delivery>> due(const std::string& destination, int limit);
    /// Seconds until the next pending delivery to `destination` is due (nullopt: none pending).
    core::Result<std::optional<double>> seconds_until_due(const std::string& destination);
    core::Status record(const Delivery& d, const Attempt& a);
    /// Failed deliveries (of one destination, or all) back to pending with a fresh attempt count.
    core::Result<int> retry_failed(const std::optional<std::string>& destination);
    /// Pending deliveries to a destination no longer in `configured` fail with that reason (they
    /// would wait forever and keep their study from retention); retry_failed brings them back.
    core::Result<int> fail_unconfigured(const std::vector<std::string>& configured);
    core::Result<std::vector<Delivery>> for_study(const std::string& study_uid);
    struct Count {
        std::string destination, state;
        bool retrying = false;  // pending after at least one failed attempt
        std::int64_t count = 0;
    };
    /// Deliveries per destination and state (metrics, status).
    core::Result<std::vector<Count>> counts();

private:
    Database& m_db;
    AuditLog& m_audit;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
