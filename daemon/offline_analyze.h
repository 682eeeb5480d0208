#pragma once
// `triagectl analyze DIR --out DIR`: the whole pipeline on a folder of DICOM files, without the
// network or the job database. Writes per study OUT/<study>/report.json and one segment map per
// analyzed series; returns the documents (same shape as `triagectl study`).
#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "core/result.h"

namespace triage::daemon {
core::Result<nlohmann::json> analyze_folder(const config::Config& cfg, const std::string& dir, const std::string& out_dir);
}
