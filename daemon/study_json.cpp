#include "daemon/study_json.h"

#include <algorithm>

namespace triage::daemon {

using nlohmann::json;

namespace {
json opt(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }
}  // namespace

json study_summary_json(const storage::StudySummary& s) {
    return json{{"study_uid", s.study_uid},
                {"patient_id", s.patient_id},
                {"accession", s.accession},
                {"study_date", s.study_date},
                {"modalities", s.modalities},
                {"series_count", s.series_count},
                {"instance_count", s.instance_count},
                {"state", s.state},
                {"priority_level", opt(s.priority_level)},
                {"priority_score", s.priority_score ? json(*s.priority_score) : json(nullptr)},
                {"priority_reasons", s.priority_reasons},
                {"urgent_at_reception", s.intake_priority > 0},
                {"study_description", s.study_description},
                {"findings_summary", opt(s.findings_summary)},
                {"instances_purged_at", opt(s.instances_purged_at)},
                {"received_at", s.received_at},
                {"last_received_at", s.last_received_at},
                {"completed_at", opt(s.completed_at)}};
}

json job_json(const storage::JobRecord& j) {
    return json{{"id", j.id},
                {"version", j.version},
                {"state", j.state},
                {"attempts", j.attempts},
                {"error", opt(j.error)},
                {"created_at", opt(j.created_at)},
                {"started_at", opt(j.started_at)},
                {"finished_at", opt(j.finished_at)}};
}

json audit_event_json(const storage::AuditEvent& e) {
    json out{{"id", e.id}, {"time", e.time}, {"event", e.event}};
    auto put = [&](const char* k, const std::optional<std::string>& v) {
        if (v) out[k] = *v;
    };
    put("study_uid", e.study_uid);
    put("sop_instance_uid", e.sop_instance_uid);
    put("calling_ae", e.calling_ae);
    put("called_ae", e.called_ae);
    put("peer", e.peer);
    if (e.job_id) out["job_id"] = *e.job_id;
    if (e.status) out["status"] = *e.status;
    json detail = json::parse(e.detail, nullptr, false);
    if (detail.is_object())
        for (auto& [k, v] : detail.items())
            if (!out.contains(k)) out[k] = v;
    return out;
}

void sort_worklist(json& studies) {
    auto score = [](const json& s) {
        return s["priority_score"].is_null() ? -1.0 : s["priority_score"].get<double>();
    };
    auto completed = [](const json& s) {
        return s["completed_at"].is_null() ? std::string("~") : s["completed_at"].get<std::string>();
    };
    std::stable_sort(studies.begin(), studies.end(), [&](const json& a, const json& b) {
        if (score(a) != score(b)) return score(a) > score(b);
        return completed(a) < completed(b);
    });
}

core::Result<json> studies_json(storage::InstanceIndex& index, storage::AnalysisStore& results, bool worklist) {
    auto list = index.list_studies();
    if (!list) return list.error();
    auto key_images = results.key_image_counts();
    if (!key_images) return key_images.error();
    json out = json::array();
    for (const auto& s : list.value()) {
        out.push_back(study_summary_json(s));
        auto k = key_images->find(s.study_uid);
        out.back()["key_image_count"] = k == key_images->end() ? 0 : k->second;
    }
    if (worklist) sort_worklist(out);
    return out;
}

void put_analysis(json& d, const storage::AnalysisRecord& a, const std::string& data_dir) {
    d["findings"] = json::array();
    for (const auto& sf : a.findings) {
        const core::Finding& f = sf.finding;
        d["findings"].push_back({{"label", f.label}, {"code", sf.code}, {"site_code", sf.site_code},
                                 {"series_uid", f.series_uid}, {"segment", f.segment}, {"volume_ml", f.volume_ml},
                                 {"diameter_mm", f.diameter_mm}, {"confidence", f.confidence},
                                 {"first_slice", f.first_slice}, {"last_slice", f.last_slice},
                                 {"key_slice", f.key_slice}, {"side", f.side}, {"description", f.description},
                                 {"grounding", f.grounding}});
    }
    d["report"] = a.report.findings + "\n\nImpression: " + a.report.impression;
    d["impression"] = a.report.impression;
    d["model"] = {{"name", a.model_name}, {"version", a.model_version}, {"sha256", a.model_sha256}};
    if (a.priority_score) {
        d["priority_score"] = *a.priority_score;
        d["priority_level"] = a.priority_level;
        d["priority_reasons"] = a.priority_reasons;
    }
    d["analysis"] = {{"job_id", a.job_id}, {"created_at", a.created_at}, {"region", a.region},
                     {"seconds", {{"total", a.seconds_total}, {"preprocess", a.seconds_preprocess},
                                  {"vision", a.seconds_vision}, {"decode", a.seconds_decode}, {"mask", a.seconds_mask}}}};
    d["output_errors"] = a.output_errors;
    d["outputs"] = json::array();
    int key_images = 0;
    for (const auto& o : a.outputs) {
        d["outputs"].push_back({{"kind", o.kind}, {"sop_instance_uid", o.sop_instance_uid},
                                {"path", data_dir.empty() ? o.path : data_dir + "/" + o.path},
                                {"series_uid", o.series_uid}, {"frames", o.frames}});
        key_images += o.kind == "keyimage" ? 1 : 0;
    }
    d["key_image_count"] = key_images;  // GET /api/v1/studies/{uid}/keyimages/{k}.png, k < this
    if (!d.contains("series")) d["series"] = json::array();
    for (const auto& r : a.series) {
        json* entry = nullptr;
        for (auto& s : d["series"])
            if (s["series_uid"] == r.series_uid) entry = &s;
        if (!entry) {
            d["series"].push_back({{"series_uid", r.series_uid}});
            entry = &d["series"].back();
        }
        (*entry)["analyzed"] = r.analyzed;
        json slices = json::parse(r.slices_json, nullptr, false);
        (*entry)["slice_count"] = slices.is_array() ? slices.size() : 0;  // GET .../slices/{n}.png, n < this
        if (r.analyzed && d.value("analyzed_series_uid", json()).is_null() && slices.is_array() && !slices.empty()) {
            d["analyzed_series_uid"] = r.series_uid;  // the page's default series
            d["slice_count"] = slices.size();
        }
        (*entry)["skip_reason"] = r.skip_reason.empty() ? json(nullptr) : json(r.skip_reason);
        (*entry)["warnings"] = (*entry)["not_reported"] = json::array();
        (*entry)["outside_domain"] = (*entry)["time_budget_exceeded"] = false;
        for (const auto& w : r.warnings) {
            if (w.rfind(storage::kNotReported, 0) == 0) (*entry)["not_reported"].push_back(w.substr(storage::kNotReported.size()));
            else (*entry)["warnings"].push_back(w);
            if (w.rfind(core::kOutsideDomain, 0) == 0) (*entry)["outside_domain"] = d["outside_domain"] = true;
            if (w.rfind(core::kTimeBudget, 0) == 0) (*entry)["time_budget_exceeded"] = true;
        }
    }
    if (!d.contains("outside_domain")) d["outside_domain"] = false;
    if (d.value("analyzed_series_uid", json()).is_null()) d["analyzed_series_uid"] = nullptr, d["slice_count"] = 0;
}

json delivery_json(const storage::Delivery& x) {
    return {{"destination", x.destination},
            {"kind", x.kind},
            {"sop_instance_uid", x.sop_instance_uid},
            {"state", x.state},
            {"attempts", x.attempts},
            {"last_status", x.last_status ? json(*x.last_status) : json(nullptr)},
            {"last_error", x.last_error.empty() ? json(nullptr) : json(x.last_error)},
            {"next_attempt_at", x.state == "pending" ? json(x.next_attempt_at) : json(nullptr)},
            {"updated_at", x.updated_at}};
}

core::Result<json> study_detail_json(const StateViews& v, const std::string& study_uid) {
    storage::InstanceIndex& index = v.index;
    storage::JobQueue& jobs = v.jobs;
    auto study = index.get_study(study_uid);
    if (!study) return study.error();
    auto series = index.list_series(study_uid);
    if (!series) return series.error();
    auto job_list = jobs.jobs_for_study(study_uid);
    if (!job_list) return job_list.error();
    json d = study_summary_json(study.value());
    d["series"] = json::array();
    for (const auto& s : series.value())
        d["series"].push_back({{"series_uid", s.series_uid},
                               {"modality", s.modality},
                               {"body_part", s.body_part},
                               {"description", s.description},
                               {"series_number", s.series_number},
                               {"instance_count", s.instance_count},
                               {"analyzed", false},
                               {"skip_reason", nullptr}});
    d["jobs"] = json::array();
    for (const auto& j : job_list.value()) d["jobs"].push_back(job_json(j));
    d["findings"] = json::array();
    d["report"] = "";
    d["model"] = nullptr;
    d["outputs"] = json::array();
    d["deliveries"] = json::array();
    d["key_image_count"] = 0;
    d["analyzed_series_uid"] = nullptr;
    d["slice_count"] = 0;
    auto analysis = v.results.latest(study_uid);
    if (!analysis) return analysis.error();
    if (analysis.value()) put_analysis(d, *analysis.value(), v.data_dir);
    auto deliveries = v.deliveries.for_study(study_uid);
    if (!deliveries) return deliveries.error();
    for (const auto& x : deliveries.value()) d["deliveries"].push_back(delivery_json(x));
    return d;
}

}  // namespace triage::daemon
