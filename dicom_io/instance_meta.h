#pragma once
// What the receiver reads from a stored instance's header: identity and indexing attributes.
#include <string>

#include "core/result.h"

namespace triage::dicom_io {

struct InstanceMeta {
    std::string sop_class_uid, sop_instance_uid, study_uid, series_uid, transfer_syntax_uid;
    std::string patient_id, accession, study_date, study_time;
    std::string modality, body_part, series_description, series_number, frame_of_reference_uid;
    std::string instance_number, image_type;
    std::string study_description, procedure_description;  // (0008,1030), (0032,1060): STAT keywords
    int rows = 0, columns = 0, frames = 0;
};

/// Reads the header of a DICOM file (pixel data is not loaded). Errors:
/// Permanent when the file cannot be parsed as DICOM; InvalidInput when a required UID
/// (SOP Class/Instance, Study, Series) is missing or not usable.
core::Result<InstanceMeta> read_instance_meta(const std::string& path);

/// The same, always with DCMTK's full parser (reference for the fast path; tests compare them).
core::Result<InstanceMeta> read_with_dcmtk(const std::string& path);

/// True when `uid` is safe as a path component and plausibly a UID (1-64 chars of [0-9A-Za-z.-_],
/// not "." or "..").
bool usable_uid(const std::string& uid);

}  // namespace triage::dicom_io
