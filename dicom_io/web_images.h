#pragma once
// Images for the worklist page (dicom_io; DCMTK and libpng stay inside): PNG encoding of an RGB
// image, a stored slice rendered through a display window with an optional mask outline, and the
// RGB pixels of a stored Secondary Capture (the key images). Thread-safe: no shared state.
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "dicom_io/key_image_render.h"

namespace triage::dicom_io {

/// 8-bit RGB PNG (libpng, no interlace). InvalidInput when the image is empty or its buffer does
/// not hold rows*columns*3 bytes; Internal when libpng fails.
core::Result<std::string> encode_png(const RgbImage& img);

struct StoredSlice {
    std::string file;  // the instance holding the slice
    int frame = 0;     // 1-based frame of a multi-frame instance; 0 = single frame
    const std::vector<std::uint8_t>* mask = nullptr;  // rows*columns, non-zero = outline; null = none
    bool window_given = false;  // false: foreground_window() of the slice (as the MR key images)
    double window_low = 0, window_high = 1;
};

/// The slice in grey through the window, scaled like a key image, the mask outlined in kOutline.
/// InvalidInput when the file cannot be read, the frame does not exist or the mask does not match.
core::Result<RgbImage> render_stored_slice(const StoredSlice& s);

/// The first frame of a stored 8-bit RGB instance (a key image written by write_key_image).
/// InvalidInput when the file is not one.
core::Result<RgbImage> read_rgb_instance(const std::string& file);

}  // namespace triage::dicom_io
