#pragma once
// Builds analyzable volumes from the stored instances of a series: decodes every transfer syntax
// in the corpus (JPEG, JPEG-LS, RLE through DCMTK; JPEG 2000 through OpenJPEG), applies the
// modality rescale, handles Enhanced multi-frame instances, sorts slices by position along the
// slice normal (never by file name or Instance Number) and reports gaps, duplicate positions,
// gantry tilt and uneven spacing. Thread-safe (no shared state).
#include <string>
#include <vector>

#include "core/result.h"
#include "core/volume.h"

namespace triage::dicom_io {

/// Why a series is not a volume to analyze ("" = analyze it), from header facts: modality other
/// than CT/MR, localizer/scout, secondary capture, derived, mosaic, SR/SEG/other non-image class.
std::string series_skip_reason(const std::string& modality, const std::string& sop_class_uid,
                               const std::string& image_type, int rows, int frames);

/// Reads and assembles the given files (all of one series). InvalidInput with a clear reason when
/// the series cannot form a volume (mixed geometry, missing positions, colour, fewer than 2 slices...).
core::Result<core::Volume> read_volume(const std::vector<std::string>& files);

/// The rescaled pixel values of every frame of one file (golden-pixel tests, debugging).
core::Result<std::vector<std::vector<float>>> read_pixels(const std::string& file);

}  // namespace triage::dicom_io
