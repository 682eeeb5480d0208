// The worklist page's images: PNG encoding read back by libpng itself, the slice rendering with and
// without the outline, and the foreground window.
#include <gtest/gtest.h>
#include <png.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <tuple>

#include "corpus.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/key_objects.h"
#include "dicom_io/volume_reader.h"
#include "dicom_io/web_images.h"

namespace triage::dicom_io {
namespace {

RgbImage gradient(int rows, int columns) {
    RgbImage img;
    img.rows = rows;
    img.columns = columns;
    img.rgb.resize(static_cast<size_t>(rows) * columns * 3);
    for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<std::uint8_t>((i * 7 + i / 3) % 256);
    return img;
}

/// Decodes with libpng's simplified API into 8-bit RGB.
RgbImage decode(const std::string& png) {
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    EXPECT_NE(png_image_begin_read_from_memory(&image, png.data(), png.size()), 0) << image.message;
    image.format = PNG_FORMAT_RGB;
    RgbImage out;
    out.rows = static_cast<int>(image.height);
    out.columns = static_cast<int>(image.width);
    out.rgb.resize(PNG_IMAGE_SIZE(image));
    EXPECT_NE(png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr), 0) << image.message;
    return out;
}

int yellow_pixels(const RgbImage& img) {
    int n = 0;
    for (size_t i = 0; i + 2 < img.rgb.size(); i += 3)
        n += img.rgb[i] == kOutline[0] && img.rgb[i + 1] == kOutline[1] && img.rgb[i + 2] == kOutline[2];
    return n;
}

TEST(Png, RoundTripsThroughLibpng) {
    for (auto [rows, columns] : {std::pair{1, 1}, std::pair{3, 5}, std::pair{64, 37}, std::pair{512, 512}}) {
        RgbImage img = gradient(rows, columns);
        auto png = encode_png(img);
        ASSERT_TRUE(png.ok()) << png.error().message;
        EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
        RgbImage back = decode(png.value());
        EXPECT_EQ(back.rows, rows);
        EXPECT_EQ(back.columns, columns);
        EXPECT_EQ(back.rgb, img.rgb);
    }
}

TEST(Png, RefusesAnImageThatDoesNotMatchItsSize) {
    RgbImage img = gradient(4, 4);
    img.rgb.pop_back();
    EXPECT_EQ(encode_png(img).error().kind, core::ErrorKind::InvalidInput);
    EXPECT_FALSE(encode_png(RgbImage{}).ok());
}

TEST(SliceRender, OutlinesTheMaskInYellowOnlyWhenGiven) {
    const int n = 32;
    std::vector<float> pixels(n * n);
    std::vector<std::uint8_t> mask(n * n, 0);
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            pixels[static_cast<size_t>(y * n + x)] = static_cast<float>(x * 10);
            mask[static_cast<size_t>(y * n + x)] = std::hypot(x - 16, y - 16) < 5 ? 1 : 0;
        }
    RenderInput in;
    in.pixels = pixels.data();
    in.rows = in.columns = n;
    in.window_low = 0;
    in.window_high = 310;
    auto plain = render_slice(in);
    ASSERT_TRUE(plain.ok()) << plain.error().message;
    EXPECT_EQ(plain->columns, 512);  // scaled like a key image (integer factor up to 512)
    EXPECT_EQ(plain->rows, 512);
    EXPECT_EQ(yellow_pixels(plain.value()), 0);
    for (size_t i = 0; i < plain->rgb.size(); i += 3) {
        ASSERT_EQ(plain->rgb[i], plain->rgb[i + 1]);
        ASSERT_EQ(plain->rgb[i + 1], plain->rgb[i + 2]);
    }
    in.mask = mask.data();
    auto outlined = render_slice(in);
    ASSERT_TRUE(outlined.ok());
    EXPECT_GT(yellow_pixels(outlined.value()), 100);
    // The lesion itself stays visible: its centre pixel is the same grey as without the outline.
    const size_t centre = (static_cast<size_t>(16 * 16 + 8) * 512 + 16 * 16 + 8) * 3;
    EXPECT_EQ(outlined->rgb[centre], plain->rgb[centre]);
    in.window_high = in.window_low;
    EXPECT_EQ(render_slice(in).error().kind, core::ErrorKind::InvalidInput);
}

TEST(SliceRender, ForegroundWindowSpansTheForeground) {
    std::vector<float> pixels = {0, 0, 100, 100, 100, 100};
    auto [low, high] = foreground_window(pixels.data(), pixels.size());
    EXPECT_DOUBLE_EQ(low, 98.0);  // SD 0 -> 1
    EXPECT_DOUBLE_EQ(high, 103.0);
}

}  // namespace
}  // namespace triage::dicom_io

namespace triage::dicom_io {
namespace {

bool all_grey(const RgbImage& img) {
    for (size_t i = 0; i + 2 < img.rgb.size(); i += 3)
        if (img.rgb[i] != img.rgb[i + 1] || img.rgb[i + 1] != img.rgb[i + 2]) return false;
    return true;
}

/// A stored slice of a real series (single-frame CT; one frame of an Enhanced multi-frame MR) as
/// the page gets it: grey, scaled to at least 512 px wide, outlined where the mask says, PNG.
TEST(StoredSlice, RealSeriesRenderThroughTheWindowAndEncode) {
    ASSERT_TRUE(init_dcmtk().ok());
    auto ct = test::corpus_files(test::kCorpus / "ct/philips-ingenuity-head-study/S2010", false);
    auto mf = test::corpus_files(test::kCorpus / "enhanced/siemens-xa30-t1-multiframe", false);
    ASSERT_FALSE(ct.empty());
    ASSERT_FALSE(mf.empty());
    for (const auto& [file, frame, given] : {std::tuple{ct.front(), 0, true}, std::tuple{mf.front(), 2, false}}) {
        StoredSlice s;
        s.file = file;
        s.frame = frame;
        s.window_given = given;
        s.window_low = -160;
        s.window_high = 240;
        const auto t0 = std::chrono::steady_clock::now();
        auto img = render_stored_slice(s);
        ASSERT_TRUE(img.ok()) << file << ": " << img.error().message;
        auto png = encode_png(img.value());
        ASSERT_TRUE(png.ok());
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        std::cout << file << " frame " << frame << ": " << img->columns << "x" << img->rows << ", " << png->size()
                  << " bytes in " << ms << " ms\n";  // informational; never a failure on time
        EXPECT_GE(img->columns, 512);
        EXPECT_TRUE(all_grey(img.value()));
        EXPECT_EQ(decode(png.value()).rgb, img->rgb);
        auto header = read_pixels(file);
        ASSERT_TRUE(header.ok());
        const size_t plane = (*header)[0].size();
        std::vector<std::uint8_t> mask(plane, 0);
        for (size_t k = plane / 2 - 2000; k < plane / 2 + 2000; ++k) mask[k] = 1;
        s.mask = &mask;
        auto outlined = render_stored_slice(s);
        ASSERT_TRUE(outlined.ok());
        EXPECT_GT(yellow_pixels(outlined.value()), 50);
        std::vector<std::uint8_t> wrong(7, 1);
        s.mask = &wrong;
        EXPECT_EQ(render_stored_slice(s).error().kind, core::ErrorKind::InvalidInput);
        s.mask = nullptr;
        s.frame = 100000;
        EXPECT_EQ(render_stored_slice(s).error().kind, core::ErrorKind::InvalidInput);
    }
}

TEST(StoredSlice, KeyImagePixelsReadBackAndOthersAreRefused) {
    ASSERT_TRUE(init_dcmtk().ok());
    auto ct = test::corpus_files(test::kCorpus / "ct/philips-ingenuity-head-study/S2010", false);
    ASSERT_FALSE(ct.empty());
    EXPECT_EQ(read_rgb_instance(ct.front()).error().kind, core::ErrorKind::InvalidInput) << "grey, not RGB";
    EXPECT_FALSE(read_rgb_instance("/nonexistent.dcm").ok());
    auto pixels = read_pixels(ct.front());
    ASSERT_TRUE(pixels.ok());
    std::vector<std::uint8_t> mask((*pixels)[0].size(), 0);
    for (size_t k = mask.size() / 2; k < mask.size() / 2 + 40; ++k) mask[k] = 1;
    KeyImageInput in;
    in.source_file = ct.front();
    in.mask = &mask;
    in.window_low = -160;
    in.window_high = 240;
    in.lines = {"test"};
    in.series_uid = new_uid();
    const auto path = (std::filesystem::temp_directory_path() / "triage-web-key.dcm").string();
    auto written = write_key_image(in, path);
    ASSERT_TRUE(written.ok()) << written.error().message;
    auto rgb = read_rgb_instance(path);
    ASSERT_TRUE(rgb.ok()) << rgb.error().message;
    EXPECT_GE(rgb->columns, 512);
    EXPECT_EQ(rgb->rgb.size(), static_cast<size_t>(rgb->rows) * rgb->columns * 3);
    EXPECT_GT(yellow_pixels(rgb.value()), 10);
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace triage::dicom_io
