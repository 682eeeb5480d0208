#pragma once
// Renders a key image (dicom_io internal, no DCMTK): one slice through a grey window, the finding's
// mask outlined in yellow outside its edge (the lesion itself stays visible), an optional banner
// above the image and text lines below it. Text is drawn with FreeType from a TrueType font
// (DejaVu Sans from Debian's fonts-dejavu-core by default). Thread-safe: no shared state.
#include <cstdint>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace triage::dicom_io {

/// 8-bit RGB, interleaved (R,G,B per pixel, rows top to bottom).
struct RgbImage {
    int rows = 0, columns = 0;
    std::vector<std::uint8_t> rgb;
};

struct RenderInput {
    const float* pixels = nullptr;        // rows*columns values in modality units
    const std::uint8_t* mask = nullptr;   // rows*columns; non-zero = the finding (render_slice: may be null)
    int rows = 0, columns = 0;
    double window_low = 0, window_high = 1;  // values at or below low are black, at or above high white
    std::string banner;                   // UTF-8; "" = no banner
    std::vector<std::string> lines;       // UTF-8 text lines under the image
    std::string font_file;                // "" = the build's default (TRIAGE_FONT_FILE)
};

/// The outline colour: pure yellow never occurs in the grey image, so a reader can find it.
inline constexpr std::uint8_t kOutline[3] = {255, 255, 0};
/// The banner's background (dark red).
inline constexpr std::uint8_t kBannerBackground[3] = {150, 0, 0};

/// Layout of a rendered key image: the slice is scaled by `scale` (nearest neighbour, an integer
/// so that every source pixel stays a square block) and placed at row `image_top`.
struct KeyImageLayout {
    int scale = 1, image_top = 0, banner_rows = 0, text_rows = 0;
};
KeyImageLayout key_image_layout(const RenderInput& in);

/// InvalidInput on bad sizes or a window with high <= low; Internal when the font cannot be loaded.
core::Result<RgbImage> render_key_image(const RenderInput& in);

/// The slice alone (no banner, no text, no font), scaled like a key image; `in.mask` may be null
/// (no outline). InvalidInput on bad sizes or an empty window.
core::Result<RgbImage> render_slice(const RenderInput& in);

/// The window for a slice without a stored one (MR, z-score normalised by the analysis): mean - 2 SD
/// to mean + 3 SD of the foreground (values > 0), low clamped at 0.
std::pair<double, double> foreground_window(const float* pixels, std::size_t count);

}  // namespace triage::dicom_io
