#pragma once
// The JSON documents of CONTRACT.md (triagectl --json and, later, the HTTP API).
#include <nlohmann/json.hpp>
#include <string>

#include "core/result.h"
#include "storage/analysis_store.h"
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
/// The `study UID` document. NotFound for an unknown study.
core::Result<nlohmann::json> study_detail_json(storage::InstanceIndex& index, storage::JobQueue& jobs,
                                               storage::AnalysisStore& results, const std::string& study_uid);
/// The analysis part of the `study` document (findings, report, model, series outcomes) into `d`.
void put_analysis(nlohmann::json& d, const storage::AnalysisRecord& a);

}  // namespace triage::daemon
