#pragma once
// One study through the pipeline: pick the series to analyze, build their volumes, run the model,
// and gather findings, per-series outcomes and the report. Used by the analysis worker and by
// `triagectl analyze`. Thread-safe given a shared immutable Model.
#include <string>
#include <vector>

#include "config/config.h"
#include "core/analysis.h"
#include "core/volume.h"
#include "core/result.h"
#include "pipeline/model.h"
#include "storage/analysis_store.h"

namespace triage::daemon {

struct SeriesInput {
    std::string series_uid, modality, sop_class_uid, image_type, body_part, series_description;
    int rows = 0, frames = 0;
    std::vector<std::string> files;  // absolute paths
};

struct StudyAnalysis {
    std::vector<storage::SeriesResult> series;
    std::vector<core::SeriesAnalysis> analyses;  // analyzed series, with segment maps
    std::vector<core::Volume> volumes;           // geometry of the analyzed series (voxels dropped)
    std::vector<storage::StoredFinding> findings;
    core::StudyReport report;
    std::string region;
    double seconds_total = 0;
};

/// `limits` ([analysis]): the study's time budget (its deadline covers every series), the findings
/// limits (per study: over all series) and the cap on candidates that get the model-based checks.
core::Result<StudyAnalysis> analyze_study(const std::vector<SeriesInput>& series, const pipeline::Model& model,
                                          int batch_size, const config::AnalysisConfig& limits = {});

}  // namespace triage::daemon
