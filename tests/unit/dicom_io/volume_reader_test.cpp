#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "corpus.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/volume_reader.h"

using namespace triage;
using namespace triage::dicom_io;
namespace fs = std::filesystem;

namespace {
using test::kCorpus;

std::vector<std::string> folder(const fs::path& dir) { return test::corpus_files(dir, false); }

std::vector<std::vector<float>> pixels(const fs::path& f) {
    auto p = read_pixels(f.string());
    EXPECT_TRUE(p) << f << ": " << (p ? "" : p.error().message);
    return p ? p.value() : std::vector<std::vector<float>>{};
}

double max_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    if (a.size() != b.size()) return 1e9;
    double m = 0;
    for (size_t f = 0; f < a.size(); ++f) {
        if (a[f].size() != b[f].size()) return 1e9;
        for (size_t i = 0; i < a[f].size(); ++i) m = std::max(m, std::abs(double(a[f][i]) - b[f][i]));
    }
    return m;
}

/// Mean absolute difference: the measure for lossy syntaxes (edges differ most).
double mean_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    if (a.size() != b.size() || a.empty()) return 1e9;
    double sum = 0;
    size_t n = 0;
    for (size_t f = 0; f < a.size(); ++f) {
        if (a[f].size() != b[f].size()) return 1e9;
        for (size_t i = 0; i < a[f].size(); ++i, ++n) sum += std::abs(double(a[f][i]) - b[f][i]);
    }
    return sum / double(n);
}

double correlation(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n = 0;
    for (size_t f = 0; f < std::min(a.size(), b.size()); ++f) {
        for (size_t i = 0; i < std::min(a[f].size(), b[f].size()); ++i, ++n) {
            sa += a[f][i], sb += b[f][i], saa += double(a[f][i]) * a[f][i], sbb += double(b[f][i]) * b[f][i];
            sab += double(a[f][i]) * b[f][i];
        }
    }
    return (n * sab - sa * sb) / std::sqrt((n * saa - sa * sa) * (n * sbb - sb * sb));
}

bool has_warning(const core::Volume& v, const std::string& word) {
    return std::any_of(v.warnings.begin(), v.warnings.end(),
                       [&](const std::string& w) { return w.find(word) != std::string::npos; });
}

class VolumeReader : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(init_dcmtk()); }
};
}  // namespace

TEST_F(VolumeReader, LosslessSyntaxesDecodeBitIdenticalToTheUncompressedTwin) {
    const fs::path dir = kCorpus / "ts/ct-ge-hispeed-chest";
    auto golden = pixels(dir / "CTImage.dcm");
    ASSERT_EQ(golden.size(), 1u);
    for (const char* ts : {"1.2.840.10008.1.2.dcm", "1.2.840.10008.1.2.1.dcm", "1.2.840.10008.1.2.2.dcm",
                           "1.2.840.10008.1.2.1.99.dcm", "1.2.840.10008.1.2.4.90.dcm", "1.2.840.10008.1.2.4.80.dcm",
                           "1.2.840.10008.1.2.4.57.dcm", "1.2.840.10008.1.2.4.70.dcm", "1.2.840.10008.1.2.5.dcm"}) {
        for (const auto& f : folder(dir)) {
            if (f.size() >= std::strlen(ts) && f.compare(f.size() - std::strlen(ts), std::string::npos, ts) == 0 &&
                f.find("_" + std::string(ts)) != std::string::npos) {
                EXPECT_EQ(max_abs_diff(pixels(f), golden), 0.0) << f;
            }
        }
    }
    // Lossy syntaxes decode to the same grid, close to the original.
    for (const char* ts : {"1.2.840.10008.1.2.4.91.dcm", "1.2.840.10008.1.2.4.81.dcm"}) {
        for (const auto& f : folder(dir)) {
            if (f.find(std::string("_") + ts) != std::string::npos) {
                EXPECT_LT(mean_abs_diff(pixels(f), golden), 10) << f;
            }
        }
    }
}

TEST_F(VolumeReader, SmallMrAndEnhancedMultiFrameInEveryEncoding) {
    auto mr = pixels(kCorpus / "ts/mr-small-pydicom/MR_small.dcm");
    for (const auto& f : folder(kCorpus / "ts/mr-small-pydicom")) EXPECT_EQ(max_abs_diff(pixels(f), mr), 0.0) << f;
    auto emri = pixels(kCorpus / "ts/mr-small-enhanced-pydicom-data/emri_small.dcm");
    ASSERT_EQ(emri.size(), 10u);
    for (const auto& f : folder(kCorpus / "ts/mr-small-enhanced-pydicom-data"))
        EXPECT_EQ(max_abs_diff(pixels(f), emri), 0.0) << f;
    auto toshiba = pixels(kCorpus / "ts/wg04-toshiba-ct/CT2_RLE");
    for (const char* f : {"CT2_J2KR", "CT2_JLSL", "CT2_JPLL"})
        EXPECT_EQ(max_abs_diff(pixels(kCorpus / "ts/wg04-toshiba-ct" / f), toshiba), 0.0) << f;
    for (const char* f : {"CT2_J2KI", "CT2_JLSN"})
        EXPECT_LT(mean_abs_diff(pixels(kCorpus / "ts/wg04-toshiba-ct" / f), toshiba), 30) << f;
}

TEST_F(VolumeReader, EncapsulatedMultiFrameWithAndWithoutOffsetTable) {
    auto ref = pixels(kCorpus / "enhanced/nema-ct-multiframe/eCT_Supplemental.dcm");
    ASSERT_EQ(ref.size(), 2u);
    for (const auto& f : folder(kCorpus / "enhanced/nema-ct-multiframe/encapsulated")) {
        auto p = pixels(f);
        ASSERT_EQ(p.size(), 2u) << f;
        bool lossy = f.find(".51") != std::string::npos || f.find(".81") != std::string::npos;
        if (lossy) {  // the 12-bit JPEG file carries an offset of 1023 (dcmdjpeg decodes it alike)
            EXPECT_GT(correlation(p, ref), 0.99) << f;
        } else {
            EXPECT_EQ(max_abs_diff(p, ref), 0.0) << f;
        }
    }
}

TEST_F(VolumeReader, TiltedUnevenSeriesIsSortedByPositionAndReported) {
    auto v = read_volume(folder(kCorpus / "ct/ge-hispeed-dual-head-tilt"));
    ASSERT_TRUE(v) << v.error().message;
    EXPECT_EQ(v->slices, 28);
    EXPECT_EQ(v->rows, 512);
    EXPECT_TRUE(has_warning(*v, "tilt"));
    EXPECT_TRUE(has_warning(*v, "uneven"));
    EXPECT_TRUE(std::is_sorted(v->slice_positions.begin(), v->slice_positions.end()));
    EXPECT_EQ(v->voxels.size(), size_t(28) * 512 * 512);
    float mn = *std::min_element(v->voxels.begin(), v->voxels.end());
    EXPECT_LT(mn, -900);  // rescale applied: air is about -1000 HU
}

TEST_F(VolumeReader, DuplicatesAndGapsAreReported) {
    auto v = read_volume(folder(kCorpus / "ct/ge-discovery-ct750hd-missing-and-duplicate-slices"));
    ASSERT_TRUE(v) << v.error().message;
    EXPECT_EQ(v->slices, 10);
    EXPECT_TRUE(has_warning(*v, "duplicate"));
    EXPECT_TRUE(has_warning(*v, "gap"));
}

TEST_F(VolumeReader, EnhancedMrVolumeFromOneInstance) {
    auto v = read_volume(folder(kCorpus / "enhanced/siemens-xa30-t1-multiframe"));
    ASSERT_TRUE(v) << v.error().message;
    EXPECT_EQ(v->slices, 96);
    EXPECT_EQ(v->sources.front().frame >= 1, true);
    EXPECT_EQ(v->modality, "MR");
}

TEST_F(VolumeReader, UnusableSeriesGetAReason) {
    EXPECT_FALSE(read_volume({(kCorpus / "ts/ct-ge-hispeed-chest/CTImage.dcm").string()}));
    auto uih = read_volume(folder(kCorpus / "mr/uih-umr770-dti"));
    EXPECT_FALSE(uih);
    EXPECT_EQ(series_skip_reason("CT", "1.2.840.10008.5.1.4.1.1.2", "ORIGINAL\\PRIMARY\\LOCALIZER", 512, 1),
              "image type LOCALIZER is not analyzed");
    EXPECT_NE(series_skip_reason("OT", "1.2.840.10008.5.1.4.1.1.7", "", 512, 1), "");
    EXPECT_NE(series_skip_reason("SR", "1.2.840.10008.5.1.4.1.1.88.22", "", 0, 0), "");
    EXPECT_NE(series_skip_reason("MR", "1.2.840.10008.5.1.4.1.1.4", "ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC", 216, 1), "");
    EXPECT_EQ(series_skip_reason("CT", "1.2.840.10008.5.1.4.1.1.2", "ORIGINAL\\PRIMARY\\AXIAL", 512, 1), "");
}
