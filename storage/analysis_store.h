#pragma once
// Analysis results per job (tables analyses, series_results, findings). Thread-safe.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "core/time.h"
#include "storage/audit_log.h"
#include "storage/database.h"

namespace triage::storage {

/// A SeriesResult warning that starts with this lists a lesion candidate the model segmented but the
/// node did not report, and why; `triagectl study` shows those apart (`not_reported`).
inline constexpr std::string_view kNotReported = "candidate not reported: ";

struct SeriesResult {
    std::string series_uid;
    bool analyzed = false;
    std::string skip_reason;
    std::vector<std::string> warnings;
    std::string slices_json = "[]";  // [[sop_instance_uid, frame], ...] in sorted order
    std::string segments_path;
};

struct StoredFinding {
    core::Finding finding;
    std::string code, site_code;
};

/// A DICOM object written for a job (SEG or SR) and where it is to be delivered.
struct OutputRecord {
    std::int64_t id = 0;
    std::string kind;  // seg | sr | keyimage | kos
    std::string series_uid, source_series_uid, sop_class_uid, sop_instance_uid;
    std::string path;  // relative to data_dir
    int frames = 0;
    std::vector<std::string> destinations;  // saved as pending deliveries; not read back
};

struct AnalysisRecord {
    std::int64_t job_id = 0;
    std::string study_uid, model_name, model_version, model_sha256, region;
    core::StudyReport report;
    double seconds_total = 0, seconds_preprocess = 0, seconds_vision = 0, seconds_decode = 0, seconds_mask = 0;
    std::vector<SeriesResult> series;
    std::vector<StoredFinding> findings;
    std::vector<OutputRecord> outputs;
    std::vector<std::string> output_errors;  // SEG/SR that could not be written
    std::optional<double> priority_score;  // worklist priority from the findings (also set on the study)
    std::string priority_level;
    std::vector<std::string> priority_reasons;
    std::string created_at;
};

class AnalysisStore {
public:
    AnalysisStore(Database& db, AuditLog& audit, const core::Clock& clock) : m_db(db), m_audit(audit), m_clock(clock) {}
    /// Saves one job's results, outputs and pending deliveries in one transaction, and audits it.
    /// A job's results are saved once: a job re-run after a crash between saving and finishing
    /// finds them with has_results() and is only finished.
    core::Status save(const AnalysisRecord& r);
    core::Result<bool> has_results(std::int64_t job_id);
    /// The results of the study's newest job that produced any; nullopt when none.
    core::Result<std::optional<AnalysisRecord>> latest(const std::string& study_uid);
    /// Per study, how many key images its newest analysis wrote (studies with none are absent).
    core::Result<std::map<std::string, int>> key_image_counts();

private:
    Database& m_db;
    AuditLog& m_audit;
    const core::Clock& m_clock;
};

}  // namespace triage::storage
