// Key images and the Key Object Selection: written from real series (a single-frame CT, an MR and
// an Enhanced multi-frame MR), read back with plain dcmdata/dcmsr, pixels checked where the
// outline, the lesion, the banner and the text must be. Each case leaves its files under
// $TRIAGE_ARTIFACTS/keyobjects-<case> for dciodvfy and pydicom (tests/integration/test_key_objects.py).
#include "dcmtk/config/osconfig.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "corpus.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/instance_meta.h"
#include "dicom_io/key_image_render.h"
#include "dicom_io/key_objects.h"
#include "dicom_io/volume_reader.h"

namespace triage::dicom_io {
namespace {

namespace fs = std::filesystem;

const fs::path kArtifacts = std::getenv("TRIAGE_ARTIFACTS") ? fs::path(std::getenv("TRIAGE_ARTIFACTS"))
                                                             : fs::temp_directory_path() / "triage-test-outputs";

std::string item_string(DcmItem& item, const DcmTagKey& tag) {
    OFString s;
    item.findAndGetOFStringArray(tag, s);
    return s.c_str();
}

Producer producer(bool demonstration) {
    Producer p;
    p.software_version = "test";
    p.model_name = "unit-test-model";
    p.model_version = "0.0.1";
    p.demonstration_only = demonstration;
    return p;
}

struct Box {
    int y0, y1, x0, x1;  // [y0, y1) x [x0, x1) in source pixels
};

struct Case {
    std::string name, folder;
    bool demonstration;
};

class KeyObjects : public ::testing::TestWithParam<Case> {
protected:
    static void SetUpTestSuite() { ASSERT_TRUE(init_dcmtk().ok()); }
};

/// The file of `files` holding SOP instance `uid`.
std::string file_of(const std::vector<std::string>& files, const std::string& uid) {
    for (const auto& f : files)
        if (auto m = read_instance_meta(f); m && m->sop_instance_uid == uid) return f;
    return "";
}

const std::uint8_t* pixel(const Uint8* rgb, int columns, int y, int x) { return rgb + (static_cast<size_t>(y) * columns + x) * 3; }

TEST_P(KeyObjects, KeyImageShowsTheOutlineAndTextAndKosReferencesIt) {
    const Case& c = GetParam();
    auto files = test::corpus_files(test::kCorpus / c.folder, false);
    auto v = read_volume(files);
    ASSERT_TRUE(v.ok()) << v.error().message;
    const int z = v->slices / 2;
    const core::SliceSource& src = v->sources[z];
    Box box{v->rows / 3, v->rows / 2, v->columns / 4, v->columns / 2};
    std::vector<std::uint8_t> mask(static_cast<size_t>(v->rows) * v->columns, 0);
    for (int y = box.y0; y < box.y1; ++y)
        for (int x = box.x0; x < box.x1; ++x) mask[static_cast<size_t>(y) * v->columns + x] = 1;
    fs::path dir = kArtifacts / ("keyobjects-" + c.name);
    fs::create_directories(dir);

    KeyImageInput in;
    in.source_file = file_of(files, src.sop_instance_uid);
    ASSERT_FALSE(in.source_file.empty());
    in.source_frame = src.frame;
    in.mask = &mask;
    in.window_from_slice = v->modality == "MR";
    in.window_low = -175, in.window_high = 250;
    in.lines = {"liver tumor 2", "32 mm (volume 12.5 mL), slice 7 of 40"};
    in.producer = producer(c.demonstration);
    in.series_uid = new_uid();
    in.series_number = 9950;
    auto key = write_key_image(in, (dir / "keyimage.dcm").string());
    ASSERT_TRUE(key.ok()) << key.error().message;

    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(key->path.c_str()).good());
    DcmDataset& ds = *file.getDataset();
    EXPECT_EQ(item_string(ds, DCM_SOPClassUID), UID_SecondaryCaptureImageStorage);
    EXPECT_EQ(item_string(ds, DCM_StudyInstanceUID), v->study_uid);
    EXPECT_EQ(item_string(ds, DCM_SeriesInstanceUID), in.series_uid);
    EXPECT_EQ(item_string(ds, DCM_PhotometricInterpretation), "RGB");
    DcmItem* ref = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SourceImageSequence, ref, 0).good());
    EXPECT_EQ(item_string(*ref, DCM_ReferencedSOPInstanceUID), src.sop_instance_uid);
    EXPECT_EQ(item_string(*ref, DCM_ReferencedFrameNumber), src.frame > 0 ? std::to_string(src.frame) : "");

    RenderInput geometry;
    geometry.rows = v->rows, geometry.columns = v->columns, geometry.lines = in.lines;
    geometry.banner = c.demonstration ? "banner" : "";
    KeyImageLayout l = key_image_layout(geometry);
    Uint16 rows = 0, columns = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, columns);
    ASSERT_EQ(columns, v->columns * l.scale);
    ASSERT_EQ(rows, l.banner_rows + v->rows * l.scale + l.text_rows);
    const Uint8* rgb = nullptr;
    ASSERT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, rgb).good());
    auto is = [](const std::uint8_t* p, const std::uint8_t want[3]) { return p[0] == want[0] && p[1] == want[1] && p[2] == want[2]; };
    // Just outside each edge of the box: outline; just inside: the slice (grey).
    const int top = l.image_top, s = l.scale, cy = (box.y0 + box.y1) / 2 * s, cx = (box.x0 + box.x1) / 2 * s;
    for (auto [y, x] : {std::pair{box.y0 * s - 1, cx}, {box.y1 * s, cx}, {cy, box.x0 * s - 1}, {cy, box.x1 * s}})
        EXPECT_TRUE(is(pixel(rgb, columns, top + y, x), kOutline)) << "outline at " << y << "," << x;
    for (auto [y, x] : {std::pair{box.y0 * s, cx}, {box.y1 * s - 1, cx}, {cy, cx}}) {
        const std::uint8_t* p = pixel(rgb, columns, top + y, x);
        EXPECT_TRUE(p[0] == p[1] && p[1] == p[2]) << "lesion pixel " << y << "," << x << " is not grey";
    }
    int outline = 0, text = 0, banner = 0;
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < columns; ++x) {
            const std::uint8_t* p = pixel(rgb, columns, y, x);
            if (y >= top && y < top + v->rows * s) outline += is(p, kOutline);
            else if (y < top) banner += is(p, kBannerBackground);
            else text += p[0] > 128;
        }
    const int perimeter = 2 * ((box.y1 - box.y0) + (box.x1 - box.x0)) * s;
    EXPECT_GE(outline, perimeter * 2);  // two pixels wide, all around
    EXPECT_LE(outline, perimeter * 2 + 64);
    EXPECT_GT(text, 100) << "no text drawn under the image";
    if (c.demonstration) {
        EXPECT_GT(banner, columns * l.banner_rows / 2) << "no banner";
    }
    EXPECT_EQ(l.banner_rows > 0, c.demonstration);

    KosInput kos;
    kos.source_file = in.source_file;
    kos.description = "AI results";
    kos.producer = in.producer;
    kos.series_number = 9960;
    kos.references = {{key->series_uid, key->sop_class_uid, key->sop_instance_uid, true},
                      {new_uid(), UID_EnhancedSRStorage, new_uid(), false}};
    auto written = write_kos(kos, (dir / "kos.dcm").string());
    ASSERT_TRUE(written.ok()) << written.error().message;
    DcmFileFormat kos_file;
    ASSERT_TRUE(kos_file.loadFile(written->path.c_str()).good());
    DSRDocument doc;
    ASSERT_TRUE(doc.read(*kos_file.getDataset()).good());
    EXPECT_EQ(doc.getDocumentType(), DSRTypes::DT_KeyObjectSelectionDocument);
    OFString study;
    doc.getStudyInstanceUID(study);
    EXPECT_EQ(std::string(study.c_str()), v->study_uid);
    EXPECT_EQ(doc.getCurrentRequestedProcedureEvidence().getNumberOfInstances(), 2u);
    EXPECT_EQ(doc.getTree().getCurrentContentItem().getConceptName().getCodeValue(), "113000");
}

INSTANTIATE_TEST_SUITE_P(Corpus, KeyObjects,
                         ::testing::Values(Case{"ct_axial", "ct/philips-ingenuity-head-study/S2010", true},
                                           Case{"mr_sagittal", "mr/siemens-prisma-t1-sag-hfs", false},
                                           Case{"enhanced_multiframe", "enhanced/siemens-xa30-t1-multiframe", true}),
                         [](const auto& param_info) { return param_info.param.name; });

TEST(KeyImage, MaskOfAnotherSizeIsInvalidInput) {
    ASSERT_TRUE(init_dcmtk().ok());
    auto files = test::corpus_files(test::kCorpus / "ct/philips-ingenuity-head-study/S2010", false);
    ASSERT_FALSE(files.empty());
    std::vector<std::uint8_t> mask(7, 1);
    KeyImageInput in;
    in.source_file = files.front();
    in.mask = &mask;
    in.series_uid = new_uid();
    auto r = write_key_image(in, (fs::temp_directory_path() / "triage-bad-key.dcm").string());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, core::ErrorKind::InvalidInput);
}

}  // namespace
}  // namespace triage::dicom_io
