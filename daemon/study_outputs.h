#pragma once
// The DICOM objects of an analyzed study: one SEG per analyzed series with findings, one TID 1500
// SR per study (CONTRACT.md "DICOM outputs"), written into a folder, with the destinations each
// one goes to.
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

/// Writes the outputs into `dir` (absolute paths in the returned records) and names, per output,
/// the destinations whose `send` lists its kind.
core::Result<std::vector<storage::OutputRecord>> write_study_outputs(
    const StudyAnalysis& study, const std::vector<SeriesInput>& inputs, const pipeline::Manifest& manifest,
    const dicom_io::Producer& producer, const std::string& priority_text, const std::string& dir,
    const std::vector<config::Destination>& destinations);

}  // namespace triage::daemon
