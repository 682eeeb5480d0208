#pragma once
// The JSON documents of CONTRACT.md (triagectl --json and, later, the HTTP API).
#include <nlohmann/json.hpp>
#include <string>

#include "core/result.h"
#include "storage/analysis_store.h"
#include "storage/delivery_queue.h"
#include "storage/instance_index.h"
#include "storage/job_queue.h"
#include "storage/records.h"

namespace triage::daemon {

nlohmann::json study_summary_json(const storage::StudySummary& s);
nlohmann::json job_json(const storage::JobRecord& j);
nlohmann::json audit_event_json(const storage::AuditEvent& e);
/// Orders `studies` (study_summary_json entries) for the worklist: priority score (highest
/// first, unscored last), then completion time (oldest first).
void sort_worklist(nlohmann::json& studies);
nlohmann::json delivery_json(const storage::Delivery& d);

/// The `studies` / `worklist` documents: study_summary_json of every study plus `key_image_count`
/// (key images of its newest analysis, 0 when none), in worklist order when `worklist`.
core::Result<nlohmann::json> studies_json(storage::InstanceIndex& index, storage::AnalysisStore& results, bool worklist);

/// The stores a study document is read from.
struct StateViews {
    storage::InstanceIndex& index;
    storage::JobQueue& jobs;
    storage::AnalysisStore& results;
    storage::DeliveryQueue& deliveries;
    std::string data_dir;  // output paths are shown absolute
};

/// The `study UID` document. NotFound for an unknown study.
core::Result<nlohmann::json> study_detail_json(const StateViews& views, const std::string& study_uid);
/// The analysis part of the `study` document (findings, report, model, outputs, series outcomes)
/// into `d`; output paths relative to `data_dir` ("" = already absolute).
void put_analysis(nlohmann::json& d, const storage::AnalysisRecord& a, const std::string& data_dir);

}  // namespace triage::daemon
