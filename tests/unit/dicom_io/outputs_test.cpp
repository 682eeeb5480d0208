// SEG and SR writers: geometry round trip through DCMTK on real series (tilted, unevenly spaced,
// sagittal, Enhanced multi-frame) with asymmetric label maps, so that a flip, a one-slice shift or
// a swapped segment shows up. Each case also leaves its SEG, SR and expected label map under
// $TRIAGE_ARTIFACTS (default: a folder in /tmp) for the pydicom / dciodvfy / dcmjs checks in
// tests/integration/test_outputs.py, which runs these cases itself.
#include "dcmtk/config/osconfig.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/segment_map.h"
#include "corpus.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dcmtk/dcmsr/dsrimgvl.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/outputs.h"
#include "dicom_io/volume_reader.h"

namespace triage::dicom_io {
namespace {

namespace fs = std::filesystem;
using test::corpus_files;
using test::kCorpus;

const fs::path kArtifacts = std::getenv("TRIAGE_ARTIFACTS") ? fs::path(std::getenv("TRIAGE_ARTIFACTS"))
                                                             : fs::temp_directory_path() / "triage-test-outputs";

/// Segment 1: a box in the upper-left quarter of the first half of the slices; segment 2: an L in
/// the lower right of the second half (so flips and shifts change the result).
std::vector<std::uint8_t> asymmetric_labels(const core::Volume& v) {
    std::vector<std::uint8_t> labels(static_cast<size_t>(v.slices) * v.rows * v.columns, 0);
    auto at = [&](int z, int y, int x) -> std::uint8_t& {
        return labels[(static_cast<size_t>(z) * v.rows + y) * v.columns + x];
    };
    int half = std::max(1, v.slices / 2);
    for (int z = 0; z < half; ++z)
        for (int y = v.rows / 8; y < v.rows / 3; ++y)
            for (int x = v.columns / 8; x < v.columns / 2; ++x) at(z, y, x) = 1;
    for (int z = half; z < v.slices; ++z)
        for (int y = v.rows / 2; y < v.rows * 7 / 8; ++y)
            for (int x = v.columns / 2; x < v.columns * 7 / 8; ++x)
                if (y > v.rows * 3 / 4 || x < v.columns * 5 / 8) at(z, y, x) = 2;
    return labels;
}

Producer producer() {
    Producer p;
    p.software_version = "test";
    p.model_name = "unit-test-model";
    p.model_version = "0.0.1";
    p.device_uid = new_uid();
    p.demonstration_only = true;
    return p;
}

SegmentSpec segment(int n, const std::string& label) {
    return {n, label, label + " from a unit test",
            {"SCT", "49755003", "Morphologically abnormal structure"},
            {"SCT", "108369006", "Neoplasm"},
            {"SCT", "39607008", "Lung"},
            label, new_uid()};
}

std::string item_string(DcmItem& item, const DcmTagKey& tag) {
    OFString s;
    item.findAndGetOFStringArray(tag, s);
    return s.c_str();
}

DcmItem* first_item(DcmItem& parent, const DcmTagKey& seq) {
    DcmItem* item = nullptr;
    parent.findAndGetSequenceItem(seq, item, 0);
    return item;
}

/// Reads a SEG back with plain dcmdata (not dcmseg) and rebuilds the label map on the source
/// volume's slices, matching each frame by its referenced SOP instance (and frame) and checking
/// that its Image Position equals the source slice's.
std::vector<std::uint8_t> read_back(const std::string& path, const core::Volume& v) {
    DcmFileFormat file;
    EXPECT_TRUE(file.loadFile(path.c_str()).good());
    DcmDataset& ds = *file.getDataset();
    Uint16 rows = 0, columns = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, columns);
    EXPECT_EQ(rows, v.rows);
    EXPECT_EQ(columns, v.columns);
    EXPECT_EQ(item_string(ds, DCM_StudyInstanceUID), v.study_uid);
    if (v.frame_of_reference_uid.empty()) {  // reduced headers: the SEG gets a Frame of Reference of its own
        EXPECT_FALSE(item_string(ds, DCM_FrameOfReferenceUID).empty());
    } else {
        EXPECT_EQ(item_string(ds, DCM_FrameOfReferenceUID), v.frame_of_reference_uid);
    }
    EXPECT_NE(item_string(ds, DCM_SeriesInstanceUID), v.series_uid);
    std::map<std::pair<std::string, int>, int> slice_of;
    for (int z = 0; z < v.slices; ++z) slice_of[{v.sources[z].sop_instance_uid, v.sources[z].frame}] = z;
    const Uint8* bits = nullptr;
    unsigned long bytes = 0;
    EXPECT_TRUE(ds.findAndGetUint8Array(DCM_PixelData, bits, &bytes).good());
    DcmSequenceOfItems* frames = nullptr;
    EXPECT_TRUE(ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames).good());
    std::vector<std::uint8_t> labels(static_cast<size_t>(v.slices) * v.rows * v.columns, 0);
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    for (unsigned long f = 0; frames && f < frames->card(); ++f) {
        DcmItem* fg = frames->getItem(f);
        Uint16 segment_number = 0;
        first_item(*fg, DCM_SegmentIdentificationSequence)->findAndGetUint16(DCM_ReferencedSegmentNumber, segment_number);
        DcmItem* source = first_item(*first_item(*fg, DCM_DerivationImageSequence), DCM_SourceImageSequence);
        std::string sop = item_string(*source, DCM_ReferencedSOPInstanceUID);
        Sint32 ref_frame = 0;
        source->findAndGetSint32(DCM_ReferencedFrameNumber, ref_frame);
        auto z = slice_of.find({sop, ref_frame});
        EXPECT_NE(z, slice_of.end()) << "frame " << f + 1 << " references an unknown slice " << sop;
        if (z == slice_of.end()) continue;
        DcmItem* pos = first_item(*fg, DCM_PlanePositionSequence);
        for (int k = 0; k < 3; ++k) {
            Float64 value = 0;
            pos->findAndGetFloat64(DCM_ImagePositionPatient, value, k);
            EXPECT_NEAR(value, v.sources[z->second].position[k], 1e-3) << "frame " << f + 1;
        }
        for (size_t p = 0; p < plane; ++p) {
            size_t bit = f * plane + p;
            if (bits[bit / 8] >> (bit % 8) & 1) labels[z->second * plane + p] = static_cast<std::uint8_t>(segment_number);
        }
    }
    return labels;
}

struct Case {
    std::string name, folder;
};

class SegRoundTrip : public ::testing::TestWithParam<Case> {
protected:
    static void SetUpTestSuite() { ASSERT_TRUE(init_dcmtk().ok()); }
};

TEST_P(SegRoundTrip, FramesMapBackVoxelForVoxel) {
    const Case& c = GetParam();
    auto files = corpus_files(kCorpus / c.folder, false);
    auto volume = read_volume(files);
    ASSERT_TRUE(volume.ok()) << volume.error().message;
    const core::Volume& v = volume.value();
    auto labels = asymmetric_labels(v);
    fs::path dir = kArtifacts / c.name;
    fs::create_directories(dir);
    SegInput in{&v, &labels, files.front(), {segment(1, "lung tumor"), segment(2, "lung nodule")}, producer(), 9901};
    auto seg = write_seg(in, (dir / "seg.dcm").string());
    ASSERT_TRUE(seg.ok()) << seg.error().message;
    EXPECT_EQ(read_back(seg->path, v), labels);

    // What the Python checks compare against: the label map and each slice's source.
    ASSERT_TRUE(core::write_segment_map((dir / "expected.segmap").string(), {v.columns, v.rows, v.slices, labels}).ok());
    nlohmann::json slices = nlohmann::json::array();
    for (const auto& s : v.sources) slices.push_back({s.sop_instance_uid, s.frame});
    std::ofstream(dir / "expected.json") << nlohmann::json{{"slices", slices}, {"source", kCorpus / c.folder}}.dump();

    SrInput sr;
    sr.source_file = files.front();
    sr.modality = v.modality;
    sr.region = "HEAD";
    for (int n : {1, 2})
        sr.lesions.push_back({in.segments[n - 1].label, "a test lesion", v.series_uid, in.segments[n - 1].tracking_id,
                              in.segments[n - 1].tracking_uid, {"SCT", "108369006", "Neoplasm"},
                              {"SCT", "39607008", "Lung"}, seg->sop_instance_uid, n, 1.25 * n, 10.5 * n});
    sr.findings_text = "Two test lesions.";
    sr.impression_text = "Test.";
    sr.evidence.push_back({seg->series_uid, seg->sop_class_uid, seg->sop_instance_uid});
    for (const auto& s : v.sources) sr.evidence.push_back({v.series_uid, s.sop_class_uid, s.sop_instance_uid});
    sr.producer = producer();
    auto written = write_sr(sr, (dir / "sr.dcm").string());
    ASSERT_TRUE(written.ok()) << written.error().message;

    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(written->path.c_str()).good());
    DSRDocument doc;
    ASSERT_TRUE(doc.read(*file.getDataset()).good());
    EXPECT_EQ(doc.getCompletionFlag(), DSRTypes::CF_Complete);
    EXPECT_EQ(doc.getVerificationFlag(), DSRTypes::VF_Unverified);
    DSRDocumentTree& tree = doc.getTree();
    int groups = 0;
    if (tree.gotoNamedNode(DSRCodedEntryValue("125007", "DCM", "Measurement Group"))) {
        do {
            ++groups;
        } while (tree.gotoNextNamedNode(DSRCodedEntryValue("125007", "DCM", "Measurement Group"), OFFalse));
    }
    EXPECT_EQ(groups, 2);
    ASSERT_TRUE(tree.gotoNamedNode(DSRCodedEntryValue("121191", "DCM", "Referenced Segment")));
    DSRImageReferenceValue* ref = tree.getCurrentContentItem().getImageReferencePtr();
    ASSERT_NE(ref, nullptr);
    EXPECT_EQ(std::string(ref->getSOPInstanceUID().c_str()), seg->sop_instance_uid);
    EXPECT_EQ(std::string(ref->getSOPClassUID().c_str()), UID_SegmentationStorage);
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, SegRoundTrip,
    ::testing::Values(Case{"ct_tilt_uneven", "ct/ge-hispeed-dual-head-tilt"},
                      Case{"ct_tilt_iop_only", "ct/siemens-somatom-as-tilt"},
                      Case{"ct_inconsistent_increment", "ct/ge-lightspeed16-inconsistent-increment"},
                      Case{"ct_gaps_and_duplicates", "ct/ge-discovery-ct750hd-missing-and-duplicate-slices"},
                      Case{"ct_philips_axial", "ct/philips-ingenuity-head-study/S2010"},
                      Case{"mr_sagittal", "mr/siemens-prisma-t1-sag-hfs"},
                      Case{"mr_oblique_3d", "mr/ge-signa-pioneer-t1-mprage"},
                      Case{"mr_repeated_dynamics", "mr/philips-achieva-epi"},
                      Case{"ct_implicit_3_slices", "seg/dcmqi-liver/source-ct"},
                      Case{"ct_tiny_16x16", "seg/highdicom-ct/source-ct"},
                      Case{"enhanced_single_instance", "enhanced/siemens-xa30-t1-multiframe"},
                      Case{"enhanced_split_instances", "enhanced/siemens-xa10-multiframe"}),
    [](const auto& param_info) { return param_info.param.name; });

TEST(FormatDs, AtMostSixteenCharactersAndClose) {
    for (double v : {0.0, 1.0, -123.456789012345, 0.000123456789, 98765.4321, -0.5, 1e-9, 3.0e7}) {
        std::string s = format_ds(v);
        EXPECT_LE(s.size(), 16u) << s;
        EXPECT_NEAR(std::stod(s), v, std::abs(v) * 1e-6 + 1e-12) << s;
    }
}

}  // namespace
}  // namespace triage::dicom_io

namespace triage::dicom_io {
namespace {

// Patient names in other character sets reach the SR byte for byte, with their character set.
TEST(SrWriter, KeepsPatientNameBytesAndCharacterSet) {
    ASSERT_TRUE(init_dcmtk().ok());
    auto files = test::corpus_files(test::kCorpus / "charset/fo-dicom", false);
    ASSERT_GE(files.size(), 8u);
    fs::path dir = fs::temp_directory_path() / "triage-sr-charset";
    fs::create_directories(dir);
    for (const auto& f : files) {
        SrInput sr;
        sr.source_file = f;
        sr.modality = "CT";
        sr.region = "CHEST";
        sr.findings_text = "No findings in the examined chest.";
        sr.impression_text = "No findings.";
        sr.producer = producer();
        auto written = write_sr(sr, (dir / (fs::path(f).filename().string() + ".sr.dcm")).string());
        ASSERT_TRUE(written.ok()) << f << ": " << written.error().message;
        DcmFileFormat src, out;
        ASSERT_TRUE(src.loadFile(f.c_str()).good());
        ASSERT_TRUE(out.loadFile(written->path.c_str()).good());
        for (const DcmTagKey& tag : {DCM_SpecificCharacterSet, DCM_PatientName, DCM_PatientID}) {
            OFString a, b;
            src.getDataset()->findAndGetOFStringArray(tag, a);
            out.getDataset()->findAndGetOFStringArray(tag, b);
            EXPECT_EQ(std::string(b.c_str()), std::string(a.c_str())) << f << " " << DcmTag(tag).getTagName();
        }
    }
}

}  // namespace
}  // namespace triage::dicom_io
