#include "storage/analysis_store.h"

#include <nlohmann/json.hpp>

namespace triage::storage {

using core::Status;
using nlohmann::json;

Status AnalysisStore::save(const AnalysisRecord& r) {
    std::string now = core::format_iso8601(m_clock.now());
    return m_db.transact([&]() -> Status {
        Statement& a = m_db.prepare(
            "INSERT INTO analyses(job_id,study_uid,model_name,model_version,model_sha256,region,report_findings,"
            "report_impression,seconds_total,seconds_preprocess,seconds_vision,seconds_decode,seconds_mask,created_at,"
            "priority_score,priority_level,priority_reasons,output_errors) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        a.bind(1, r.job_id).bind(2, r.study_uid).bind(3, r.model_name).bind(4, r.model_version);
        a.bind(5, r.model_sha256).bind(6, r.region).bind(7, r.report.findings).bind(8, r.report.impression);
        a.bind(9, r.seconds_total).bind(10, r.seconds_preprocess).bind(11, r.seconds_vision);
        a.bind(12, r.seconds_decode).bind(13, r.seconds_mask).bind(14, now);
        r.priority_score ? a.bind(15, *r.priority_score) : a.bind_null(15);
        r.priority_level.empty() ? a.bind_null(16) : a.bind(16, r.priority_level);
        a.bind(17, json(r.priority_reasons).dump()).bind(18, json(r.output_errors).dump());
        if (auto x = a.run(); !x) return x.error();
        if (r.priority_score) {
            Statement& p = m_db.prepare(
                "UPDATE studies SET priority_score=?, priority_level=?, priority_reasons=? WHERE study_uid=?");
            p.bind(1, *r.priority_score).bind(2, r.priority_level).bind(3, json(r.priority_reasons).dump());
            p.bind(4, r.study_uid);
            if (auto x = p.run(); !x) return x.error();
        }
        for (const auto& s : r.series) {
            Statement& q = m_db.prepare(
                "INSERT INTO series_results(job_id,series_uid,analyzed,skip_reason,warnings,slices,segments_path)"
                " VALUES(?,?,?,?,?,?,?)");
            q.bind(1, r.job_id).bind(2, s.series_uid).bind(3, s.analyzed ? 1 : 0);
            s.skip_reason.empty() ? q.bind_null(4) : q.bind(4, s.skip_reason);
            q.bind(5, json(s.warnings).dump()).bind(6, s.slices_json);
            s.segments_path.empty() ? q.bind_null(7) : q.bind(7, s.segments_path);
            if (auto x = q.run(); !x) return x.error();
        }
        for (const auto& sf : r.findings) {
            const core::Finding& f = sf.finding;
            Statement& q = m_db.prepare(
                "INSERT INTO findings(job_id,study_uid,series_uid,segment,label,code,site_code,volume_ml,diameter_mm,"
                "confidence,mean_value,first_slice,last_slice,key_slice,side,description,grounding)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
            q.bind(1, r.job_id).bind(2, r.study_uid).bind(3, f.series_uid).bind(4, f.segment).bind(5, f.label);
            q.bind(6, sf.code).bind(7, sf.site_code).bind(8, f.volume_ml).bind(9, f.diameter_mm).bind(10, f.confidence);
            q.bind(11, f.mean_value).bind(12, f.first_slice).bind(13, f.last_slice).bind(14, f.key_slice);
            q.bind(15, f.side).bind(16, f.description).bind(17, f.grounding);
            if (auto x = q.run(); !x) return x.error();
        }
        for (const auto& o : r.outputs) {
            Statement& q = m_db.prepare(
                "INSERT INTO outputs(job_id,study_uid,kind,series_uid,source_series_uid,sop_class_uid,sop_instance_uid,"
                "path,frames,created_at) VALUES(?,?,?,?,?,?,?,?,?,?)");
            q.bind(1, r.job_id).bind(2, r.study_uid).bind(3, o.kind).bind(4, o.series_uid);
            o.source_series_uid.empty() ? q.bind_null(5) : q.bind(5, o.source_series_uid);
            q.bind(6, o.sop_class_uid).bind(7, o.sop_instance_uid).bind(8, o.path).bind(9, o.frames).bind(10, now);
            if (auto x = q.run(); !x) return x.error();
            std::int64_t output_id = sqlite3_last_insert_rowid(m_db.handle());
            for (const auto& d : o.destinations) {
                Statement& dq = m_db.prepare(
                    "INSERT INTO deliveries(output_id,destination,state,next_attempt_at,updated_at) VALUES(?,?,'pending',?,?)");
                dq.bind(1, output_id).bind(2, d).bind(3, now).bind(4, now);
                if (auto x = dq.run(); !x) return x.error();
            }
            AuditEvent e;
            e.time = now;
            e.event = "output_written";
            e.study_uid = r.study_uid;
            e.sop_instance_uid = o.sop_instance_uid;
            e.job_id = r.job_id;
            e.detail = json{{"kind", o.kind}, {"path", o.path}, {"frames", o.frames}, {"destinations", o.destinations}}.dump();
            if (auto x = m_audit.append_in_tx(std::move(e)); !x) return x;
        }
        for (const auto& err : r.output_errors) {
            AuditEvent f;
            f.time = now;
            f.event = "output_failed";
            f.study_uid = r.study_uid;
            f.job_id = r.job_id;
            f.detail = json{{"error", err}}.dump();
            if (auto x = m_audit.append_in_tx(std::move(f)); !x) return x;
        }
        AuditEvent e;
        e.time = now;
        e.event = "analysis_saved";
        e.study_uid = r.study_uid;
        e.job_id = r.job_id;
        e.detail = json{{"model", r.model_name}, {"model_version", r.model_version}, {"model_sha256", r.model_sha256},
                        {"findings", r.findings.size()}}.dump();
        return m_audit.append_in_tx(std::move(e));
    });
}

core::Result<bool> AnalysisStore::has_results(std::int64_t job_id) {
    auto n = m_db.select<std::int64_t>("SELECT count(*) FROM analyses WHERE job_id=?",
                                       [&](Statement& s) { s.bind(1, job_id); },
                                       [](const Statement& s) { return s.integer(0); });
    if (!n) return n.error();
    return n->front() > 0;
}

core::Result<std::map<std::string, int>> AnalysisStore::key_image_counts() {
    auto rows = m_db.select<std::pair<std::string, int>>(
        "SELECT o.study_uid, count(*) FROM outputs o WHERE o.kind='keyimage' AND "
        "o.job_id=(SELECT max(a.job_id) FROM analyses a WHERE a.study_uid=o.study_uid) GROUP BY o.study_uid",
        [](Statement&) {}, [](const Statement& s) { return std::pair{s.text(0), static_cast<int>(s.integer(1))}; });
    if (!rows) return rows.error();
    return std::map<std::string, int>(rows->begin(), rows->end());
}

core::Result<std::optional<AnalysisRecord>> AnalysisStore::latest(const std::string& study_uid) {
    auto heads = m_db.select<AnalysisRecord>(
        "SELECT job_id,study_uid,model_name,model_version,model_sha256,region,report_findings,report_impression,"
        "seconds_total,seconds_preprocess,seconds_vision,seconds_decode,seconds_mask,created_at,priority_score,"
        "priority_level,priority_reasons,output_errors FROM analyses "
        "WHERE study_uid=? ORDER BY job_id DESC LIMIT 1",
        [&](Statement& s) { s.bind(1, study_uid); },
        [](const Statement& s) {
            AnalysisRecord r;
            r.job_id = s.integer(0);
            r.study_uid = s.text(1);
            r.model_name = s.text(2);
            r.model_version = s.text(3);
            r.model_sha256 = s.text(4);
            r.region = s.text(5);
            r.report = {s.text(6), s.text(7)};
            r.seconds_total = s.real(8);
            r.seconds_preprocess = s.real(9);
            r.seconds_vision = s.real(10);
            r.seconds_decode = s.real(11);
            r.seconds_mask = s.real(12);
            r.created_at = s.text(13);
            if (!s.is_null(14)) r.priority_score = s.real(14);
            r.priority_level = s.text(15);
            json reasons = json::parse(s.text(16), nullptr, false);
            if (reasons.is_array()) r.priority_reasons = reasons.get<std::vector<std::string>>();
            json errors = json::parse(s.text(17), nullptr, false);
            if (errors.is_array()) r.output_errors = errors.get<std::vector<std::string>>();
            return r;
        });
    if (!heads) return heads.error();
    if (heads->empty()) return std::optional<AnalysisRecord>{};
    AnalysisRecord r = heads->front();
    auto series = m_db.select<SeriesResult>(
        "SELECT series_uid,analyzed,skip_reason,warnings,slices,segments_path FROM series_results WHERE job_id=?",
        [&](Statement& s) { s.bind(1, r.job_id); },
        [](const Statement& s) {
            SeriesResult x{s.text(0), s.integer(1) != 0, s.text(2), {}, s.text(4), s.text(5)};
            json w = json::parse(s.text(3), nullptr, false);
            if (w.is_array()) x.warnings = w.get<std::vector<std::string>>();
            return x;
        });
    if (!series) return series.error();
    r.series = std::move(series.value());
    auto findings = m_db.select<StoredFinding>(
        "SELECT series_uid,segment,label,code,site_code,volume_ml,diameter_mm,confidence,mean_value,first_slice,"
        "last_slice,key_slice,side,description,grounding FROM findings WHERE job_id=? ORDER BY id",
        [&](Statement& s) { s.bind(1, r.job_id); },
        [](const Statement& s) {
            StoredFinding sf;
            core::Finding& f = sf.finding;
            f.series_uid = s.text(0);
            f.segment = static_cast<int>(s.integer(1));
            f.label = s.text(2);
            sf.code = s.text(3);
            sf.site_code = s.text(4);
            f.volume_ml = s.real(5);
            f.diameter_mm = s.real(6);
            f.confidence = s.real(7);
            f.mean_value = s.real(8);
            f.first_slice = static_cast<int>(s.integer(9));
            f.last_slice = static_cast<int>(s.integer(10));
            f.key_slice = static_cast<int>(s.integer(11));
            f.side = s.text(12);
            f.description = s.text(13);
            f.grounding = s.text(14);
            return sf;
        });
    if (!findings) return findings.error();
    r.findings = std::move(findings.value());
    auto outputs = m_db.select<OutputRecord>(
        "SELECT id,kind,series_uid,source_series_uid,sop_class_uid,sop_instance_uid,path,frames FROM outputs "
        "WHERE job_id=? ORDER BY id",
        [&](Statement& s) { s.bind(1, r.job_id); },
        [](const Statement& s) {
            return OutputRecord{s.integer(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6),
                                static_cast<int>(s.integer(7)), {}};
        });
    if (!outputs) return outputs.error();
    r.outputs = std::move(outputs.value());
    return std::optional<AnalysisRecord>(std::move(r));
}

}  // namespace triage::storage
