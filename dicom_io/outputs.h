#pragma once
// The DICOM objects the node writes for an analyzed study: one binary Segmentation per series with
// findings and one TID 1500 Measurement Report per study (docs/conformance-statement.md). Inputs
// are plain data; DCMTK stays inside dicom_io. Every written file is read back and checked before
// these functions report success (DCMTK's saveFile can succeed on an incomplete object).
#include <cstdint>
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "core/volume.h"

namespace triage::dicom_io {

using Code = core::CodedConcept;

/// Who wrote the objects (General Equipment, algorithm identification, SR device observer).
struct Producer {
    std::string manufacturer = "triage-node";
    std::string software_version;  // of the node
    std::string model_name, model_version;
    std::string device_uid;        // SR device observer UID, stable per node
    std::string station_ae;
    bool demonstration_only = false;
};

struct SegmentSpec {
    int number = 0;  // value in the label map, 1-based, contiguous
    std::string label, description;
    Code category, type, region;
    std::string tracking_id, tracking_uid;
};

struct SegInput {
    const core::Volume* geometry = nullptr;     // sorted slices with their sources (voxels not needed)
    const std::vector<std::uint8_t>* labels = nullptr;  // slices*rows*columns, value = segment number
    std::string source_file;                    // any instance of the series: patient/study/FoR module
    std::vector<SegmentSpec> segments;
    Producer producer;
    int series_number = 0;
};

struct WrittenObject {
    std::string path, sop_class_uid, sop_instance_uid, series_uid;
    int frames = 0;
};

core::Result<WrittenObject> write_seg(const SegInput& in, const std::string& path);

struct SrLesion {
    std::string label, description, source_series_uid, tracking_id, tracking_uid;
    Code finding, site;
    std::string seg_sop_instance_uid;
    int segment_number = 0;
    double volume_ml = 0, diameter_mm = 0;
};

/// An instance the report is about (evidence): source images and the SEGs written alongside.
struct Evidence {
    std::string series_uid, sop_class_uid, sop_instance_uid;
};

struct SrInput {
    std::string source_file;  // any instance of the study: patient and study modules
    std::string modality, region;  // procedure reported and the "no findings" sentence
    std::vector<SrLesion> lesions;
    std::string findings_text, impression_text, priority_text;
    std::vector<Evidence> evidence;
    Producer producer;
    int series_number = 0;
};

core::Result<WrittenObject> write_sr(const SrInput& in, const std::string& path);

/// A new UID under DCMTK's site root.
std::string new_uid();

/// A decimal string of at most 16 characters (DICOM DS) as close to `v` as that allows.
std::string format_ds(double v);

}  // namespace triage::dicom_io
