#pragma once
// The DICOM objects of an analyzed study: one SEG per analyzed series with findings, one TID 1500
// SR per study (CONTRACT.md "DICOM outputs"), one key image per finding and one Key Object
// Selection per study, written into a folder, with the destinations each one goes to (by `send`).
#include <string>
#include <vector>

#include "config/config.h"
#include "core/result.h"
#include "daemon/study_analysis.h"
#include "dicom_io/outputs.h"
#include "pipeline/model.h"
#include "storage/analysis_store.h"

namespace triage::daemon {

dicom_io::Producer make_producer(const pipeline::Manifest& manifest, const std::string& ae_title,
                                 const std::string& device_uid);

struct StudyOutputs {
    std::vector<storage::OutputRecord> outputs;
    std::vector<std::string> errors;  // objects that could not be written (the others still are)
};

/// Writes the outputs into `dir` (absolute paths in the returned records) and names, per output,
/// the destinations whose `send` lists its kind. A SEG or SR that cannot be written (a source
/// header DCMTK refuses) is reported in `errors`; the rest are written.
core::Result<StudyOutputs> write_study_outputs(
    const StudyAnalysis& study, const std::vector<SeriesInput>& inputs, const pipeline::Manifest& manifest,
    const dicom_io::Producer& producer, const std::string& priority_text, const std::string& dir,
    const std::vector<config::Destination>& destinations);

}  // namespace triage::daemon
