#pragma once
// Helpers shared by the SEG and SR writers (dicom_io internal).
#include "dcmtk/config/osconfig.h"

#include <memory>
#include <string>

#include "core/result.h"
#include "dcmtk/dcmdata/dcfilefo.h"

namespace triage::dicom_io {

/// `text` cut to the 64 characters of a LO element (on a word boundary when possible).
std::string truncate_lo(const std::string& text);

/// The header of a source instance (no pixel data) with the values that break their VR (real
/// scanners write e.g. PatientAge "0Y") emptied and top-level code sequences with incomplete
/// codes (a Procedure Code Sequence without a scheme) dropped, so that DCMTK's strict IOD writers
/// accept the patient and study modules copied from it. The source file itself is never changed.
core::Result<std::unique_ptr<DcmFileFormat>> load_source_header(const std::string& path);

/// Reads `path` back and checks the SOP class and, for multi-frame objects, that Number of Frames
/// and the per-frame functional groups agree with `frames` (0 = not multi-frame).
core::Status check_written(const std::string& path, const char* sop_class_uid, int frames);

}  // namespace triage::dicom_io
