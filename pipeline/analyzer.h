#pragma once
// Study pipeline on one volume: preprocessing as the manifest says, grounded recognition on every
// slice (batched), masks back on the native grid, 3D lesions (connected components), measurements,
// per-lesion descriptions; and the study report composed from the findings. Stateless apart from
// the shared, immutable Model: thread-safe.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "core/volume.h"
#include "pipeline/model.h"

namespace triage::pipeline {

/// Body region of a volume as the manifest names it: for CT the window, "CHEST" when BodyPartExamined
/// or the series description names the chest (manifest chest_keywords), else the default window;
/// for MR "MR".
std::string body_region(const Manifest& m, const core::Volume& v);
/// Window [low, high] HU for a CT volume: the window of its body_region.
std::pair<double, double> ct_window(const Manifest& m, const core::Volume& v);

/// The listed slices preprocessed and resized to input_size (count x S x S floats).
std::vector<float> preprocess(const Manifest& m, const core::Volume& v, const std::vector<int>& slices);
/// Slices [z0, z1) preprocessed.
std::vector<float> preprocess(const Manifest& m, const core::Volume& v, int z0, int z1);

/// What the caller allows one series' analysis (config [analysis], docs/configuration.md).
struct AnalysisLimits {
    int max_findings_per_label = 5;   // the lowest-ranked beyond go to not_reported (-1: no limit)
    int max_findings_per_study = 10;  // what is left of the study's limit for this series (-1: no limit)
    int max_checked_candidates = 30;  // candidates that get the model-based checks, best-ranked first
    double time_budget_seconds = 0;   // only for the wording; the deadline decides
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

class Analyzer {
public:
    Analyzer(const Model& model, int batch_size) : m_model(model), m_batch(batch_size < 1 ? 1 : batch_size) {}
    /// One series: answers per slice, 3D lesions, gates (pipeline/lesions.h), naming, limits. Stops
    /// at limits.deadline with what it has and says so (warnings, time_budget_exceeded). Fails only
    /// when inference fails.
    core::Result<core::SeriesAnalysis> analyze(const core::Volume& v, const AnalysisLimits& limits = {}) const;
    /// Why the model is not to be run on this series at all (the manifest's domain: modality, body
    /// region, orientation), or nothing.
    std::optional<std::string> not_validated(const core::Volume& v) const;

private:
    const Model& m_model;
    int m_batch;
};

/// The study report: one paragraph per finding and an impression; "No findings" for the examined
/// region when there are none. States that a demonstration model produced it when it did.
core::StudyReport compose_report(const std::vector<core::SeriesAnalysis>& series, const std::string& region,
                                 const Manifest& manifest);

}  // namespace triage::pipeline
