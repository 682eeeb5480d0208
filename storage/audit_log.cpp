#include "storage/audit_log.h"

namespace triage::storage {

core::Status AuditLog::append(AuditEvent event) {
    return m_db.transact([&] { return append_in_tx(std::move(event)); });
}

core::Status AuditLog::append_in_tx(AuditEvent e) {
    if (e.time.empty()) e.time = core::format_iso8601(m_clock.now());
    Statement& s = m_db.prepare(
        "INSERT INTO audit_events(time,event,study_uid,sop_instance_uid,job_id,calling_ae,"
        "called_ae,peer,status,detail) VALUES(?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, e.time).bind(2, e.event).bind(3, e.study_uid).bind(4, e.sop_instance_uid);
    e.job_id ? s.bind(5, *e.job_id) : s.bind_null(5);
    s.bind(6, e.calling_ae).bind(7, e.called_ae).bind(8, e.peer);
    e.status ? s.bind(9, *e.status) : s.bind_null(9);
    s.bind(10, e.detail);
    auto r = s.run();
    if (!r) return r.error();
    return {};
}

namespace {

constexpr const char* kColumns =
    "SELECT id,time,event,study_uid,sop_instance_uid,job_id,calling_ae,called_ae,peer,status,detail FROM audit_events ";

AuditEvent event_row(const Statement& s) {
    AuditEvent e;
    e.id = s.integer(0);
    e.time = s.text(1);
    e.event = s.text(2);
    e.study_uid = s.opt_text(3);
    e.sop_instance_uid = s.opt_text(4);
    if (!s.is_null(5)) e.job_id = s.integer(5);
    e.calling_ae = s.opt_text(6);
    e.called_ae = s.opt_text(7);
    e.peer = s.opt_text(8);
    if (!s.is_null(9)) e.status = s.integer(9);
    e.detail = s.text(10);
    return e;
}

}  // namespace

core::Result<std::vector<AuditEvent>> AuditLog::list(const std::string& since, int limit) {
    return m_db.select<AuditEvent>(std::string(kColumns) + "WHERE time >= ? ORDER BY id LIMIT ?",
                                   [&](Statement& s) { s.bind(1, since).bind(2, limit); }, event_row);
}

core::Result<std::vector<AuditEvent>> AuditLog::list_for_study(const std::string& study_uid, const std::string& since,
                                                               int limit) {
    return m_db.select<AuditEvent>(std::string(kColumns) + "WHERE study_uid = ? AND time >= ? ORDER BY id LIMIT ?",
                                   [&](Statement& s) { s.bind(1, study_uid).bind(2, since).bind(3, limit); }, event_row);
}

core::Result<std::int64_t> AuditLog::latest_id() {
    auto n = m_db.select<std::int64_t>("SELECT coalesce(max(id), 0) FROM audit_events", [](Statement&) {},
                                       [](const Statement& s) { return s.integer(0); });
    if (!n) return n.error();
    return n->empty() ? 0 : n->front();
}

}  // namespace triage::storage
