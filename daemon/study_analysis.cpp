#include "daemon/study_analysis.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "dicom_io/volume_reader.h"
#include "pipeline/analyzer.h"

namespace triage::daemon {

core::Result<StudyAnalysis> analyze_study(const std::vector<SeriesInput>& series, const pipeline::Model& model,
                                          int batch_size, const config::AnalysisConfig& limits) {
    auto t0 = std::chrono::steady_clock::now();
    StudyAnalysis out;
    pipeline::Analyzer analyzer(model, batch_size);
    pipeline::AnalysisLimits per_series;
    per_series.max_findings_per_label = limits.max_findings_per_label > 0 ? limits.max_findings_per_label : -1;
    per_series.max_checked_candidates = limits.max_checked_candidates;
    per_series.time_budget_seconds = limits.time_budget_seconds;
    if (limits.time_budget_seconds > 0)
        per_series.deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(limits.time_budget_seconds));
    for (const auto& s : series) {
        storage::SeriesResult r;
        r.series_uid = s.series_uid;
        r.skip_reason = dicom_io::series_skip_reason(s.modality, s.sop_class_uid, s.image_type, s.rows, s.frames);
        if (r.skip_reason.empty()) {
            auto volume = dicom_io::read_volume(s.files);
            if (!volume) {
                r.skip_reason = volume.error().message;
            } else if (auto invalid = analyzer.not_validated(volume.value())) {
                r.skip_reason = std::string(core::kOutsideDomain) + *invalid;
            } else {
                per_series.max_findings_per_study =  // what is left of the study's limit
                    limits.max_findings_per_study > 0
                        ? std::max(0, limits.max_findings_per_study - static_cast<int>(out.findings.size()))
                        : -1;
                auto a = analyzer.analyze(volume.value(), per_series);
                if (!a) return a.error();  // inference failures fail the job (retried by reprocess)
                r.analyzed = true;
                r.warnings = volume->warnings;
                r.warnings.insert(r.warnings.end(), a->warnings.begin(), a->warnings.end());
                for (const auto& w : a->warnings) TRIAGE_LOG_WARN("pipeline", "series {}: {}", s.series_uid, w);
                for (const auto& why : a->rejected) r.warnings.push_back(std::string(storage::kNotReported) + why);
                nlohmann::json slices = nlohmann::json::array();
                for (const auto& src : volume->sources) slices.push_back({src.sop_instance_uid, src.frame});
                r.slices_json = slices.dump();
                if (out.region.empty()) out.region = volume->body_part.empty() ? volume->modality : volume->body_part;
                for (const auto& f : a->findings) {
                    storage::StoredFinding sf{f, "", ""};
                    const auto& m = model.manifest();
                    for (const auto& l : m.labels)
                        if (l.text == f.label) sf.code = l.type.value, sf.site_code = l.region.value;
                    if (sf.code.empty()) {  // free text of the model (format 2): the manifest's generic codes, or
                        sf.code = m.generic_label ? m.generic_label->type.value : "49755003";  // "Morphologically abnormal structure"
                        sf.site_code = m.generic_label ? m.generic_label->region.value : "";
                    }
                    out.findings.push_back(sf);
                }
                volume->voxels.clear();
                volume->voxels.shrink_to_fit();
                out.volumes.push_back(std::move(volume.value()));
                out.analyses.push_back(std::move(a.value()));
            }
        }
        if (!r.analyzed) TRIAGE_LOG_INFO("pipeline", "series {} not analyzed: {}", s.series_uid, r.skip_reason);
        out.series.push_back(std::move(r));
    }
    out.report = pipeline::compose_report(out.analyses, out.region, model.manifest());
    if (out.analyses.empty()) {
        out.report.findings = "No CT or MR series of this study could be analyzed.";
        out.report.impression = "Not analyzed.";
    }
    out.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

}  // namespace triage::daemon
