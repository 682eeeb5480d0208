#pragma once
// Key images of an analyzed series (one Secondary Capture per finding, of its key slice) and the
// study's Key Object Selection, written beside the SEG and SR (docs/conformance-statement.md).
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "core/volume.h"
#include "dicom_io/key_objects.h"
#include "pipeline/model.h"

namespace triage::daemon {

/// The study-wide part of the key images: one series for all of them.
struct KeyImageSeries {
    std::string series_uid;
    int series_number = 9950;
    int next_instance = 1;
};

struct KeyImage {
    std::string name;  // the finding's name as in the SEG/SR ("liver tumor 2")
    dicom_io::WrittenObject object;
};

/// One key image per finding of `analysis` (names[k] is findings[k]'s display name), into `dir`.
/// `files` are the series' instances (the key slice's file is found by its SOP Instance UID).
/// CT is shown through the analysis window of the series, MR through its slice's foreground
/// statistics. A finding whose image cannot be written is reported in `errors`; the rest are written.
std::vector<KeyImage> write_key_images(const core::SeriesAnalysis& analysis, const core::Volume& volume,
                                       const std::vector<std::string>& names, const std::vector<std::string>& files,
                                       const pipeline::Manifest& manifest, const dicom_io::Producer& producer,
                                       KeyImageSeries& series, const std::string& dir, std::vector<std::string>& errors);

/// The two text lines under a key image: name and size; key slice and the lesion's extent.
std::vector<std::string> key_image_lines(const core::Finding& f, const std::string& name, int slices);

}  // namespace triage::daemon
