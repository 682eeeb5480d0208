#pragma once
// What the radiologist sees in any viewer (docs/conformance-statement.md, "Key images" and "IHE
// AIR"): per reported finding a Secondary Capture key image of its key slice with the mask
// outlined and a short text burned in, and per analyzed study a Key Object Selection document
// that points at the key images, the SEGs and the SR. Inputs are plain data; DCMTK stays inside
// dicom_io. Every file is written to `path + ".part"`, read back, then renamed. Thread-safe.
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "dicom_io/outputs.h"

namespace triage::dicom_io {

struct KeyImageInput {
    std::string source_file;  // the instance holding the key slice: pixels, patient/study, reference
    int source_frame = 0;     // 1-based frame of a multi-frame source; 0 = single frame
    const std::vector<std::uint8_t>* mask = nullptr;  // rows*columns of the key slice; non-zero = finding
    // Display window in modality units (CT: the analysis window of the series). When
    // `window_from_slice` (MR, z-score normalised by the analysis), the window is mean - 2 SD to
    // mean + 3 SD of the slice's foreground (values > 0) instead.
    double window_low = 0, window_high = 1;
    bool window_from_slice = false;
    std::vector<std::string> lines;  // label, size, slice (UTF-8, burned in under the image)
    Producer producer;               // demonstration_only adds the "AI RESULT" banner
    std::string series_uid;          // the key-image series (shared by the study's key images)
    int series_number = 0, instance_number = 1;
    std::string font_file;           // "" = DejaVu Sans (fonts-dejavu-core)
};

/// Secondary Capture Image Storage, RGB 8 bit, uncompressed. Errors: InvalidInput when the source
/// cannot be read or the mask does not match its size; Internal when encoding fails.
core::Result<WrittenObject> write_key_image(const KeyImageInput& in, const std::string& path);

/// The banner of a demonstration model's key image: "AI RESULT — <name> <version>, not for diagnosis".
std::string key_image_banner(const Producer& p);

/// An instance the KOS selects.
struct KosReference {
    std::string series_uid, sop_class_uid, sop_instance_uid;
    bool image = true;  // IMAGE content item (key images); false: COMPOSITE (SEG, SR)
};

struct KosInput {
    std::string source_file;  // any instance of the study: patient and study modules
    std::vector<KosReference> references;  // at least one
    std::string description;  // Key Object Description text
    Producer producer;
    int series_number = 0;
};

/// Key Object Selection Document Storage, title (113000, DCM, "Of Interest"), every reference also
/// in the Current Requested Procedure Evidence Sequence.
core::Result<WrittenObject> write_kos(const KosInput& in, const std::string& path);

}  // namespace triage::dicom_io
