#include "dicom_io/key_image_render.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include <ft2build.h>
#include FT_FREETYPE_H

#ifndef TRIAGE_FONT_FILE
#define TRIAGE_FONT_FILE "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#endif

namespace triage::dicom_io {

namespace {

constexpr int kTextPixels = 15;   // font size of the lines and the banner
constexpr int kLineHeight = 21;   // baseline to baseline
constexpr int kPadding = 6;       // around a text block
constexpr int kOutlineWidth = 2;  // output pixels outside the mask's edge

struct FreeTypeDeleter {
    void operator()(FT_Library l) const { FT_Done_FreeType(l); }
    void operator()(FT_Face f) const { FT_Done_Face(f); }
};
using Library = std::unique_ptr<std::remove_pointer_t<FT_Library>, FreeTypeDeleter>;
using Face = std::unique_ptr<std::remove_pointer_t<FT_Face>, FreeTypeDeleter>;

/// UTF-8 to code points; a malformed byte becomes U+FFFD (the text is ours, but stay safe).
std::u32string decode_utf8(const std::string& s) {
    std::u32string out;
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (extra < 0 || (extra > 0 && i + static_cast<size_t>(extra) >= s.size())) {
            out.push_back(0xFFFD);
            ++i;
            continue;
        }
        char32_t cp = extra == 0 ? c : c & (0x3F >> extra);
        for (int k = 1; k <= extra; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        out.push_back(cp);
        i += static_cast<size_t>(extra) + 1;
    }
    return out;
}

void blend(RgbImage& img, int y, int x, const std::uint8_t colour[3], int alpha) {
    if (y < 0 || x < 0 || y >= img.rows || x >= img.columns || alpha <= 0) return;
    std::uint8_t* p = img.rgb.data() + (static_cast<size_t>(y) * img.columns + x) * 3;
    for (int c = 0; c < 3; ++c) p[c] = static_cast<std::uint8_t>((colour[c] * alpha + p[c] * (255 - alpha)) / 255);
}

/// Draws `text` with its baseline at `baseline`, starting at column `x`; clipped to the image.
void draw_text(RgbImage& img, FT_Face face, const std::string& text, int x, int baseline, const std::uint8_t colour[3]) {
    for (char32_t cp : decode_utf8(text)) {
        if (FT_Load_Char(face, cp, FT_LOAD_RENDER) != 0) continue;
        const FT_GlyphSlot g = face->glyph;
        for (unsigned r = 0; r < g->bitmap.rows; ++r)
            for (unsigned c = 0; c < g->bitmap.width; ++c)
                blend(img, baseline - g->bitmap_top + static_cast<int>(r), x + g->bitmap_left + static_cast<int>(c), colour,
                      g->bitmap.buffer[r * static_cast<unsigned>(g->bitmap.pitch) + c]);
        x += static_cast<int>(g->advance.x >> 6);
    }
}

void fill_rows(RgbImage& img, int first, int count, const std::uint8_t colour[3]) {
    for (int y = first; y < first + count; ++y)
        for (int x = 0; x < img.columns; ++x) std::copy(colour, colour + 3, img.rgb.begin() + (static_cast<long>(y) * img.columns + x) * 3);
}

/// The windowed slice, scaled, with the outline: output pixels outside the (scaled) mask within
/// kOutlineWidth of it.
void draw_slice(RgbImage& img, const RenderInput& in, const KeyImageLayout& l) {
    const double span = in.window_high - in.window_low;
    const int h = in.rows * l.scale, w = in.columns * l.scale;
    auto inside = [&](int y, int x) {
        return in.mask && y >= 0 && x >= 0 && y < h && x < w && in.mask[static_cast<size_t>(y / l.scale) * in.columns + x / l.scale] != 0;
    };
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            float v = in.pixels[static_cast<size_t>(y / l.scale) * in.columns + x / l.scale];
            auto g = static_cast<std::uint8_t>(std::lround(std::clamp((v - in.window_low) / span, 0.0, 1.0) * 255));
            std::uint8_t grey[3] = {g, g, g};
            bool edge = false;
            if (in.mask && !inside(y, x))
                for (int dy = -kOutlineWidth; dy <= kOutlineWidth && !edge; ++dy)
                    for (int dx = -kOutlineWidth; dx <= kOutlineWidth && !edge; ++dx) edge = inside(y + dy, x + dx);
            std::uint8_t* p = img.rgb.data() + (static_cast<size_t>(l.image_top + y) * img.columns + x) * 3;
            std::copy(edge ? kOutline : grey, (edge ? kOutline : grey) + 3, p);
        }
    }
}

}  // namespace

KeyImageLayout key_image_layout(const RenderInput& in) {
    KeyImageLayout l;
    l.scale = std::max(1, 512 / std::max(1, std::max(in.rows, in.columns)));
    l.banner_rows = in.banner.empty() ? 0 : kLineHeight + 2 * kPadding;
    l.text_rows = in.lines.empty() ? 0 : static_cast<int>(in.lines.size()) * kLineHeight + 2 * kPadding;
    l.image_top = l.banner_rows;
    return l;
}

namespace {

core::Status check_input(const RenderInput& in, bool need_mask) {
    if (!in.pixels || (need_mask && !in.mask) || in.rows < 1 || in.columns < 1 || in.rows > 4096 || in.columns > 4096)
        return core::make_error(core::ErrorKind::InvalidInput, "key image: no slice or a slice size out of range");
    if (!(in.window_high > in.window_low))
        return core::make_error(core::ErrorKind::InvalidInput, "key image: empty display window");
    return {};
}

}  // namespace

core::Result<RgbImage> render_slice(const RenderInput& in) {
    if (auto st = check_input(in, false); !st) return st.error();
    KeyImageLayout l;
    l.scale = key_image_layout(in).scale;
    RgbImage img;
    img.columns = in.columns * l.scale;
    img.rows = in.rows * l.scale;
    img.rgb.assign(static_cast<size_t>(img.rows) * img.columns * 3, 0);
    draw_slice(img, in, l);
    return img;
}

std::pair<double, double> foreground_window(const float* pixels, std::size_t count) {
    double s = 0, ss = 0, n = 0;
    for (std::size_t i = 0; i < count; ++i)
        if (pixels[i] > 0) s += pixels[i], ss += double(pixels[i]) * pixels[i], n += 1;
    double mean = n ? s / n : 0, sd = n ? std::sqrt(std::max(ss / n - mean * mean, 0.0)) : 1;
    if (sd < 1e-6) sd = 1;
    return {std::max(0.0, mean - 2 * sd), mean + 3 * sd};
}

core::Result<RgbImage> render_key_image(const RenderInput& in) {
    if (auto st = check_input(in, true); !st) return st.error();
    std::string font = in.font_file.empty() ? TRIAGE_FONT_FILE : in.font_file;
    FT_Library raw_library = nullptr;
    if (FT_Init_FreeType(&raw_library) != 0) return core::make_error(core::ErrorKind::Internal, "key image: FreeType init failed");
    Library library(raw_library);
    FT_Face raw_face = nullptr;
    if (FT_New_Face(library.get(), font.c_str(), 0, &raw_face) != 0)
        return core::make_error(core::ErrorKind::Internal, "key image: cannot load the font " + font);
    Face face(raw_face);
    FT_Set_Pixel_Sizes(face.get(), 0, kTextPixels);

    KeyImageLayout l = key_image_layout(in);
    RgbImage img;
    img.columns = in.columns * l.scale;
    img.rows = l.banner_rows + in.rows * l.scale + l.text_rows;
    img.rgb.assign(static_cast<size_t>(img.rows) * img.columns * 3, 0);
    const std::uint8_t white[3] = {255, 255, 255};
    if (l.banner_rows > 0) {
        fill_rows(img, 0, l.banner_rows, kBannerBackground);
        draw_text(img, face.get(), in.banner, kPadding, kPadding + kTextPixels, white);
    }
    draw_slice(img, in, l);
    int baseline = l.image_top + in.rows * l.scale + kPadding + kTextPixels;
    for (const auto& line : in.lines) {
        draw_text(img, face.get(), line, kPadding, baseline, white);
        baseline += kLineHeight;
    }
    return img;
}

}  // namespace triage::dicom_io
