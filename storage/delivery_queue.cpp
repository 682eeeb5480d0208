#include "storage/delivery_queue.h"

#include <functional>

#include <nlohmann/json.hpp>

namespace triage::storage {

using core::Status;
using nlohmann::json;

namespace {

constexpr const char* kColumns =
    "d.id,d.output_id,d.destination,o.study_uid,o.kind,o.sop_class_uid,o.sop_instance_uid,o.path,d.state,d.attempts,"
    "d.next_attempt_at,d.updated_at,d.last_status,d.last_error FROM deliveries d JOIN outputs o ON o.id=d.output_id ";

Delivery row(const Statement& s) {
    Delivery d;
    d.id = s.integer(0);
    d.output_id = s.integer(1);
    d.destination = s.text(2);
    d.study_uid = s.text(3);
    d.kind = s.text(4);
    d.sop_class_uid = s.text(5);
    d.sop_instance_uid = s.text(6);
    d.path = s.text(7);
    d.state = s.text(8);
    d.attempts = static_cast<int>(s.integer(9));
    d.next_attempt_at = s.text(10);
    d.updated_at = s.text(11);
    if (!s.is_null(12)) d.last_status = s.integer(12);
    d.last_error = s.text(13);
    return d;
}

/// One UPDATE of deliveries (?1 = now, `bind` the rest) and its audit row `event` with `detail` plus
/// the count, in one transaction; no audit row when nothing changed unless `audit_none`.
core::Result<int> update_audited(Database& db, AuditLog& audit, const core::Clock& clock, const char* sql,
                                 const std::function<void(Statement&)>& bind, const char* event, json detail, bool audit_none) {
    std::string now = core::format_iso8601(clock.now());
    int count = 0;
    auto st = db.transact([&]() -> Status {
        Statement& q = db.prepare(sql);
        q.bind(1, now);
        bind(q);
        auto changed = q.run();
        if (!changed) return changed.error();
        count = changed.value();
        if (count == 0 && !audit_none) return {};
        AuditEvent e;
        e.time = now;
        e.event = event;
        detail["count"] = count;
        e.detail = detail.dump();
        return audit.append_in_tx(std::move(e));
    });
    if (!st) return st.error();
    return count;
}

}  // namespace

core::Result<std::vector<Delivery>> DeliveryQueue::due(const std::string& destination, int limit) {
    std::string now = core::format_iso8601(m_clock.now());
    return m_db.select<Delivery>(
        std::string("SELECT ") + kColumns +
            "WHERE d.destination=? AND d.state='pending' AND d.next_attempt_at<=? ORDER BY d.next_attempt_at, d.id LIMIT ?",
        [&](Statement& s) { s.bind(1, destination).bind(2, now).bind(3, limit); }, row);
}

core::Result<std::optional<double>> DeliveryQueue::seconds_until_due(const std::string& destination) {
    auto next = m_db.select<std::string>(
        "SELECT min(next_attempt_at) FROM deliveries WHERE destination=? AND state='pending'",
        [&](Statement& s) { s.bind(1, destination); }, [](const Statement& s) { return s.text(0); });
    if (!next) return next.error();
    auto t = core::parse_iso8601(next->front());
    if (!t) return std::optional<double>{};
    return std::optional<double>(std::chrono::duration<double>(*t - m_clock.now()).count());
}

Status DeliveryQueue::record(const Delivery& d, const Attempt& a) {
    std::string now = core::format_iso8601(m_clock.now());
    const char* state = a.outcome == Attempt::Outcome::Sent ? "sent" : a.outcome == Attempt::Outcome::Failed ? "failed" : "pending";
    return m_db.transact([&]() -> Status {
        Statement& q = m_db.prepare(
            "UPDATE deliveries SET state=?, attempts=attempts+1, next_attempt_at=?, last_status=?, last_error=?, "
            "updated_at=? WHERE id=? AND state='pending'");
        q.bind(1, state).bind(2, a.outcome == Attempt::Outcome::Retry ? core::format_iso8601(a.next_attempt) : now);
        a.status < 0 ? q.bind_null(3) : q.bind(3, a.status);
        a.error.empty() ? q.bind_null(4) : q.bind(4, a.error);
        q.bind(5, now).bind(6, d.id);
        auto changed = q.run();
        if (!changed) return changed.error();
        if (changed.value() == 0) return {};  // re-queued or already recorded meanwhile
        AuditEvent e;
        e.time = now;
        e.event = "delivery_attempt";
        e.study_uid = d.study_uid;
        e.sop_instance_uid = d.sop_instance_uid;
        if (a.status >= 0) e.status = a.status;
        json detail{{"destination", d.destination}, {"kind", d.kind}, {"attempt", d.attempts + 1}, {"outcome", state}};
        if (!a.error.empty()) detail["error"] = a.error;
        if (a.outcome == Attempt::Outcome::Retry) detail["next_attempt_at"] = core::format_iso8601(a.next_attempt);
        e.detail = detail.dump();
        return m_audit.append_in_tx(std::move(e));
    });
}

core::Result<int> DeliveryQueue::retry_failed(const std::optional<std::string>& destination) {
    return update_audited(
        m_db, m_audit, m_clock,
        "UPDATE deliveries SET state='pending', attempts=0, next_attempt_at=?1, updated_at=?1 "
        "WHERE state='failed' AND (?2 IS NULL OR destination=?2)",
        [&](Statement& q) { destination ? q.bind(2, *destination) : q.bind_null(2); }, "deliveries_requeued",
        json{{"destination", destination ? json(*destination) : json(nullptr)}}, true);
}

core::Result<int> DeliveryQueue::fail_unconfigured(const std::vector<std::string>& configured) {
    return update_audited(
        m_db, m_audit, m_clock,
        "UPDATE deliveries SET state='failed', updated_at=?1, "
        "last_error='destination ' || destination || ' is no longer configured' "
        "WHERE state='pending' AND destination NOT IN (SELECT value FROM json_each(?2))",
        [&](Statement& q) { q.bind(2, json(configured).dump()); }, "deliveries_unconfigured",
        json{{"configured", configured}}, false);
}

core::Result<std::vector<Delivery>> DeliveryQueue::for_study(const std::string& study_uid) {
    return m_db.select<Delivery>(std::string("SELECT ") + kColumns + "WHERE o.study_uid=? ORDER BY d.id",
                                 [&](Statement& s) { s.bind(1, study_uid); }, row);
}

core::Result<std::vector<DeliveryQueue::Count>> DeliveryQueue::counts() {
    return m_db.select<Count>(
        "SELECT destination, state, state='pending' AND attempts>0, count(*) FROM deliveries GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        [](Statement&) {},
        [](const Statement& s) { return Count{s.text(0), s.text(1), s.integer(2) != 0, s.integer(3)}; });
}

}  // namespace triage::storage
