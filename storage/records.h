#pragma once
// Plain rows of the node's database (no SQLite types here).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace triage::storage {

/// One stored instance with the attributes the index keeps.
struct InstanceRecord {
    std::string study_uid, series_uid, sop_instance_uid, sop_class_uid, transfer_syntax_uid;
    std::string patient_id, accession, study_date, study_time;
    std::string modality, body_part, series_description, series_number, frame_of_reference_uid;
    std::string instance_number, image_type;
    int rows = 0, columns = 0, frames = 0;
    std::string file_path;  // relative to data_dir
    std::int64_t file_size = 0;
    std::string calling_ae, peer;
    std::string study_description;
    int intake_priority = 0;  // 1: analyze this study before routine work (urgent caller, STAT)
};

/// One row of the append-only audit trail; optional fields are NULL when unset.
struct AuditEvent {
    std::string time;  // ISO 8601 UTC; filled by AuditLog when empty
    std::string event;
    std::optional<std::string> study_uid, sop_instance_uid, calling_ae, called_ae, peer;
    std::optional<std::int64_t> job_id, status;
    std::string detail = "{}";  // JSON object
    std::int64_t id = 0;
};

struct JobRecord {
    std::int64_t id = 0;
    std::string study_uid;
    int version = 0;
    std::string state;  // queued | running | done | failed
    int priority = 0;
    int attempts = 0;
    std::optional<std::string> error, created_at, started_at, finished_at;
};

struct SeriesSummary {
    std::string series_uid, modality, body_part, description, series_number;
    int instance_count = 0;
};

struct StudySummary {
    std::string study_uid, patient_id, accession, study_date;
    std::vector<std::string> modalities;
    int series_count = 0, instance_count = 0;
    std::string state;  // receiving | queued | running | done | failed
    std::optional<std::string> priority_level;
    std::optional<double> priority_score;
    std::vector<std::string> priority_reasons;
    std::string study_description;
    int intake_priority = 0;
    std::optional<std::string> findings_summary;  // of the newest analysis: "liver tumor 34 mm, ..."
    std::optional<std::string> instances_purged_at;  // retention deleted the received instances then
    std::string received_at;  // first instance
    std::string last_received_at;
    std::optional<std::string> completed_at;
};

}  // namespace triage::storage
