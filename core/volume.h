#pragma once
// A series assembled into a 3D volume in patient space (plain data shared by dicom_io, pipeline
// and daemon). Voxels are float in modality units: HU for CT (rescale applied), raw for MR.
#include <array>
#include <string>
#include <vector>

namespace triage::core {

using Vec3 = std::array<double, 3>;

/// Where a slice of the volume came from (SEG frames reference it).
struct SliceSource {
    std::string sop_instance_uid, sop_class_uid;
    int frame = 0;  // 1-based frame number in a multi-frame instance; 0 for single-frame
    Vec3 position{};  // Image Position (Patient) of the slice
};

struct Volume {
    std::string study_uid, series_uid, frame_of_reference_uid, modality, body_part, series_description;
    int columns = 0, rows = 0, slices = 0;
    Vec3 row_direction{1, 0, 0};     // direction of increasing column index (IOP[0..2])
    Vec3 column_direction{0, 1, 0};  // direction of increasing row index (IOP[3..5])
    Vec3 normal{0, 0, 1};            // row x column; slices are sorted along it
    double column_spacing = 1, row_spacing = 1;  // mm between columns / rows (PixelSpacing[1] / [0])
    double slice_spacing = 1;                    // median distance between sorted slices, mm
    std::vector<double> slice_positions;         // along the normal, ascending
    std::vector<SliceSource> sources;            // one per slice, same order
    std::vector<float> voxels;                   // slices * rows * columns, slice-major
    std::vector<std::string> warnings;           // gaps, tilt, uneven spacing, duplicates

    float at(int z, int y, int x) const {
        return voxels[(static_cast<size_t>(z) * rows + y) * columns + x];
    }
    const float* slice(int z) const { return voxels.data() + static_cast<size_t>(z) * rows * columns; }
};

}  // namespace triage::core
