#include "storage/instance_index.h"

#include <nlohmann/json.hpp>

namespace triage::storage {

using core::Status;

Status InstanceIndex::upsert_study_and_series(const InstanceRecord& r, const std::string& now) {
    Statement& st = m_db.prepare(
        "INSERT INTO studies(study_uid,patient_id,accession,study_date,study_time,"
        "first_received_at,last_received_at,completion_pending,study_description,intake_priority) "
        "VALUES(?,?,?,?,?,?,?,1,?,?) "
        "ON CONFLICT(study_uid) DO UPDATE SET last_received_at=excluded.last_received_at,"
        "completion_pending=1,intake_priority=max(intake_priority,excluded.intake_priority),"
        "study_description=CASE WHEN study_description='' THEN excluded.study_description ELSE study_description END");
    st.bind(1, r.study_uid).bind(2, r.patient_id).bind(3, r.accession).bind(4, r.study_date);
    st.bind(5, r.study_time).bind(6, now).bind(7, now).bind(8, r.study_description).bind(9, r.intake_priority);
    if (auto x = st.run(); !x) return x.error();
    Statement& se = m_db.prepare(
        "INSERT INTO series(series_uid,study_uid,modality,body_part,series_description,"
        "series_number,frame_of_reference_uid,first_received_at,last_received_at) "
        "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(series_uid) DO UPDATE SET "
        "last_received_at=excluded.last_received_at");
    se.bind(1, r.series_uid).bind(2, r.study_uid).bind(3, r.modality).bind(4, r.body_part);
    se.bind(5, r.series_description).bind(6, r.series_number).bind(7, r.frame_of_reference_uid);
    se.bind(8, now).bind(9, now);
    if (auto x = se.run(); !x) return x.error();
    return {};
}

core::Result<StoredInstance> InstanceIndex::record_instance(const InstanceRecord& r,
                                                            const std::string& called_ae) {
    StoredInstance out;
    std::string now = core::format_iso8601(m_clock.now());
    auto st = m_db.transact([&]() -> Status {
        out = StoredInstance{};
        Statement& q = m_db.prepare("SELECT file_path FROM instances WHERE sop_instance_uid=?");
        q.bind(1, r.sop_instance_uid);
        auto row = q.step();
        if (!row) return row.error();
        if (row.value()) {
            out.duplicate = true;
            if (std::string old = q.text(0); old != r.file_path) out.previous_path = old;
        }
        if (auto s = upsert_study_and_series(r, now); !s) return s;
        Statement& in = m_db.prepare(
            "INSERT INTO instances(sop_instance_uid,series_uid,study_uid,sop_class_uid,"
            "transfer_syntax_uid,instance_number,image_type,rows,columns,frames,file_path,"
            "file_size,received_at,calling_ae,peer) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(sop_instance_uid) DO UPDATE SET series_uid=excluded.series_uid,"
            "study_uid=excluded.study_uid,sop_class_uid=excluded.sop_class_uid,"
            "transfer_syntax_uid=excluded.transfer_syntax_uid,"
            "instance_number=excluded.instance_number,image_type=excluded.image_type,"
            "rows=excluded.rows,columns=excluded.columns,frames=excluded.frames,"
            "file_path=excluded.file_path,file_size=excluded.file_size,"
            "received_at=excluded.received_at,calling_ae=excluded.calling_ae,peer=excluded.peer,"
            "receive_count=receive_count+1");
        in.bind(1, r.sop_instance_uid).bind(2, r.series_uid).bind(3, r.study_uid);
        in.bind(4, r.sop_class_uid).bind(5, r.transfer_syntax_uid).bind(6, r.instance_number);
        in.bind(7, r.image_type).bind(8, r.rows).bind(9, r.columns).bind(10, r.frames);
        in.bind(11, r.file_path).bind(12, r.file_size).bind(13, now).bind(14, r.calling_ae);
        in.bind(15, r.peer);
        if (auto x = in.run(); !x) return x.error();
        AuditEvent e;
        e.time = now;
        e.event = "instance_stored";
        e.study_uid = r.study_uid;
        e.sop_instance_uid = r.sop_instance_uid;
        e.calling_ae = r.calling_ae;
        e.called_ae = called_ae;
        e.peer = r.peer;
        e.status = 0;
        e.detail = nlohmann::json{{"series_uid", r.series_uid},
                                  {"sop_class_uid", r.sop_class_uid},
                                  {"transfer_syntax_uid", r.transfer_syntax_uid},
                                  {"size", r.file_size},
                                  {"duplicate", out.duplicate}}
                       .dump();
        return m_audit.append_in_tx(std::move(e));
    });
    if (!st) return st.error();
    return out;
}

core::Result<std::vector<std::string>> InstanceIndex::studies_quiet_since(const std::string& cutoff) {
    return m_db.select<std::string>(
        "SELECT study_uid FROM studies WHERE completion_pending=1 AND last_received_at<=? "
        "ORDER BY last_received_at",
        [&](Statement& s) { s.bind(1, cutoff); }, [](const Statement& r) { return r.text(0); });
}

namespace {
// Columns shared by list_studies() and get_study(); state derives from the pending flag and the
// newest job version.
constexpr const char* kStudySelect =
    "SELECT s.study_uid,s.patient_id,s.accession,s.study_date,s.first_received_at,"
    "s.last_received_at,s.completed_at,s.priority_level,s.priority_score,s.priority_reasons,s.study_description,"
    "s.intake_priority,"
    "(SELECT COUNT(*) FROM series x WHERE x.study_uid=s.study_uid),"
    "(SELECT COUNT(*) FROM instances i WHERE i.study_uid=s.study_uid),"
    "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series x "
    "  WHERE x.study_uid=s.study_uid AND modality<>'' ORDER BY modality)),"
    "CASE WHEN s.completion_pending=1 THEN 'receiving' ELSE COALESCE((SELECT state FROM jobs j "
    "  WHERE j.study_uid=s.study_uid ORDER BY version DESC LIMIT 1),'receiving') END,"
    "(SELECT CASE WHEN a.job_id IS NULL THEN NULL ELSE COALESCE((SELECT group_concat(f.label || ' ' || "
    "  CAST(round(f.diameter_mm) AS INTEGER) || ' mm', ', ') FROM findings f WHERE f.job_id=a.job_id), "
    "  'no findings') END FROM (SELECT max(job_id) AS job_id FROM analyses WHERE study_uid=s.study_uid) a),"
    "s.instances_purged_at "
    "FROM studies s ";

StudySummary read_study(const Statement& s) {
    StudySummary r;
    r.study_uid = s.text(0);
    r.patient_id = s.text(1);
    r.accession = s.text(2);
    r.study_date = s.text(3);
    r.received_at = s.text(4);
    r.last_received_at = s.text(5);
    r.completed_at = s.opt_text(6);
    r.priority_level = s.opt_text(7);
    if (!s.is_null(8)) r.priority_score = s.real(8);
    nlohmann::json reasons = nlohmann::json::parse(s.text(9), nullptr, false);
    if (reasons.is_array()) r.priority_reasons = reasons.get<std::vector<std::string>>();
    r.study_description = s.text(10);
    r.intake_priority = static_cast<int>(s.integer(11));
    r.series_count = static_cast<int>(s.integer(12));
    r.instance_count = static_cast<int>(s.integer(13));
    std::string mods = s.text(14);
    for (size_t p = 0; !mods.empty() && p != std::string::npos;) {
        size_t q = mods.find('\\', p);
        r.modalities.push_back(mods.substr(p, q == std::string::npos ? q : q - p));
        p = q == std::string::npos ? q : q + 1;
    }
    r.state = s.text(15);
    r.findings_summary = s.opt_text(16);
    r.instances_purged_at = s.opt_text(17);
    return r;
}
}  // namespace

core::Result<std::vector<StudySummary>> InstanceIndex::list_studies() {
    return m_db.select<StudySummary>(std::string(kStudySelect) + "ORDER BY s.first_received_at",
                                     [](Statement&) {}, read_study);
}

core::Result<StudySummary> InstanceIndex::get_study(const std::string& study_uid) {
    auto rows = m_db.select<StudySummary>(std::string(kStudySelect) + "WHERE s.study_uid=?",
                                          [&](Statement& s) { s.bind(1, study_uid); }, read_study);
    if (!rows) return rows.error();
    if (rows->empty()) return core::make_error(core::ErrorKind::NotFound, "no study " + study_uid);
    return rows->front();
}

core::Result<std::vector<SeriesSummary>> InstanceIndex::list_series(const std::string& study_uid) {
    return m_db.select<SeriesSummary>(
        "SELECT x.series_uid,x.modality,x.body_part,x.series_description,x.series_number,"
        "(SELECT COUNT(*) FROM instances i WHERE i.series_uid=x.series_uid) FROM series x "
        "WHERE x.study_uid=? ORDER BY CAST(x.series_number AS INTEGER), x.series_uid",
        [&](Statement& s) { s.bind(1, study_uid); },
        [](const Statement& r) {
            return SeriesSummary{r.text(0), r.text(1), r.text(2), r.text(3), r.text(4),
                                 static_cast<int>(r.integer(5))};
        });
}

core::Result<std::vector<std::string>> InstanceIndex::instance_paths(const std::string& study_uid) {
    return m_db.select<std::string>(
        "SELECT file_path FROM instances WHERE study_uid=? ORDER BY series_uid, "
        "CAST(instance_number AS INTEGER), sop_instance_uid",
        [&](Statement& s) { s.bind(1, study_uid); }, [](const Statement& r) { return r.text(0); });
}

core::Result<std::vector<InstanceRecord>> InstanceIndex::list_instances(const std::string& study_uid) {
    return m_db.select<InstanceRecord>(
        "SELECT i.sop_instance_uid,i.series_uid,i.sop_class_uid,i.image_type,i.rows,i.frames,i.file_path,"
        "x.modality,x.body_part,x.series_description FROM instances i JOIN series x ON x.series_uid=i.series_uid "
        "WHERE i.study_uid=? ORDER BY CAST(x.series_number AS INTEGER), i.series_uid, i.sop_instance_uid",
        [&](Statement& s) { s.bind(1, study_uid); },
        [&](const Statement& s) {
            InstanceRecord r;
            r.study_uid = study_uid;
            r.sop_instance_uid = s.text(0);
            r.series_uid = s.text(1);
            r.sop_class_uid = s.text(2);
            r.image_type = s.text(3);
            r.rows = static_cast<int>(s.integer(4));
            r.frames = static_cast<int>(s.integer(5));
            r.file_path = s.text(6);
            r.modality = s.text(7);
            r.body_part = s.text(8);
            r.series_description = s.text(9);
            return r;
        });
}

core::Result<std::optional<std::string>> InstanceIndex::instance_path(const std::string& sop_instance_uid) {
    auto rows = m_db.select<std::string>("SELECT file_path FROM instances WHERE sop_instance_uid=?",
                                         [&](Statement& s) { s.bind(1, sop_instance_uid); },
                                         [](const Statement& r) { return r.text(0); });
    if (!rows) return rows.error();
    return rows->empty() ? std::optional<std::string>{} : std::optional<std::string>(rows->front());
}

}  // namespace triage::storage
