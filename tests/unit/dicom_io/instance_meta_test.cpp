#include <gtest/gtest.h>

#include <filesystem>

#include "corpus.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/dimse_status.h"
#include "dicom_io/header_scan.h"
#include "dicom_io/instance_meta.h"

using namespace triage;
using namespace triage::dicom_io;
namespace fs = std::filesystem;

namespace {
using test::kCorpus;

std::vector<fs::path> files_under(const fs::path& dir) {
    auto files = test::corpus_files(dir, true);
    return std::vector<fs::path>(files.begin(), files.end());
}
}  // namespace

TEST(InstanceMeta, ReadsAKnownCtSlice) {
    ASSERT_TRUE(init_dcmtk());
    auto m = read_instance_meta((kCorpus / "ts/ct-ge-hispeed-chest/CTImage.dcm").string());
    if (!fs::exists(kCorpus / "ts/ct-ge-hispeed-chest/CTImage.dcm")) GTEST_SKIP() << "corpus file moved";
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->modality, "CT");
    EXPECT_EQ(m->rows, 512);
    EXPECT_EQ(m->columns, 512);
    EXPECT_EQ(m->frames, 1);
    EXPECT_EQ(m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
}

TEST(InstanceMeta, EveryWellFormedCorpusFileHasUsableIdentity) {
    ASSERT_TRUE(init_dcmtk());
    int checked = 0;
    for (const char* dir : {"ct", "mr", "enhanced", "nonimage", "ts", "seg", "sr", "charset"}) {
        for (const auto& f : files_under(kCorpus / dir)) {
            auto m = read_instance_meta(f.string());
            // Four codec fixtures carry no Study/Series UID: refused as not belonging to a study.
            if (!m && m.error().message == "missing StudyInstanceUID") {
                EXPECT_NE(f.string().find("/ts/misc-pydicom"), std::string::npos) << f;
                EXPECT_EQ(store_status_for(m.error()), kStatusDataSetMismatch);
                continue;
            }
            ASSERT_TRUE(m) << f << ": " << m.error().message;
            EXPECT_FALSE(m->transfer_syntax_uid.empty()) << f;
            ++checked;
        }
    }
    EXPECT_GT(checked, 400);
}

TEST(InstanceMeta, MalformedFilesGiveAnErrorOrAResultNeverACrash) {
    ASSERT_TRUE(init_dcmtk());
    int refused = 0, total = 0;
    for (const auto& f : files_under(kCorpus / "malformed")) {
        auto m = read_instance_meta(f.string());
        ++total;
        if (!m) {
            ++refused;
            EXPECT_NE(store_status_for(m.error()), kStatusSuccess);
            EXPECT_FALSE(m.error().message.empty());
        }
    }
    EXPECT_GT(total, 15);
    EXPECT_GT(refused, 0);
}

TEST(InstanceMeta, GarbageAndMissingFilesAreErrors) {
    ASSERT_TRUE(init_dcmtk());
    auto tmp = fs::temp_directory_path() / "triage-garbage.dcm";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    std::fputs("this is not DICOM at all", f);
    std::fclose(f);
    auto m = read_instance_meta(tmp.string());
    EXPECT_FALSE(m);
    fs::remove(tmp);
    EXPECT_FALSE(read_instance_meta("/nonexistent/x.dcm"));
}

TEST(InstanceMeta, UsableUid) {
    EXPECT_TRUE(usable_uid("1.2.840.10008.5.1.4.1.1.2"));
    EXPECT_FALSE(usable_uid(""));
    EXPECT_FALSE(usable_uid(".."));
    EXPECT_FALSE(usable_uid("1.2/../../etc"));
    EXPECT_FALSE(usable_uid(std::string(65, '1')));
}

TEST(DimseStatus, OneMappingForEveryErrorKind) {
    using core::ErrorKind;
    EXPECT_EQ(store_status_for({ErrorKind::Transient, ""}), 0xA700);
    EXPECT_EQ(store_status_for({ErrorKind::Internal, ""}), 0xA700);
    EXPECT_EQ(store_status_for({ErrorKind::InvalidInput, ""}), 0xA900);
    EXPECT_EQ(store_status_for({ErrorKind::Permanent, ""}), 0xC000);
}

TEST(HeaderScan, AgreesWithDcmtkOnEveryCorpusFileItAccepts) {
    ASSERT_TRUE(init_dcmtk());
    int fast = 0;
    for (const auto& f : files_under(kCorpus)) {
        auto scanned = scan_header(f.string());
        if (!scanned) continue;
        ++fast;
        auto ref = read_with_dcmtk(f.string());
        ASSERT_TRUE(ref) << f;
        const InstanceMeta& a = *scanned;
        const InstanceMeta& b = ref.value();
        for (auto [x, y] : {std::pair{&a.sop_class_uid, &b.sop_class_uid}, {&a.sop_instance_uid, &b.sop_instance_uid},
                            {&a.study_uid, &b.study_uid}, {&a.series_uid, &b.series_uid},
                            {&a.transfer_syntax_uid, &b.transfer_syntax_uid}, {&a.patient_id, &b.patient_id},
                            {&a.accession, &b.accession}, {&a.study_date, &b.study_date},
                            {&a.study_time, &b.study_time}, {&a.modality, &b.modality},
                            {&a.body_part, &b.body_part}, {&a.series_description, &b.series_description},
                            {&a.study_description, &b.study_description},
                            {&a.procedure_description, &b.procedure_description},
                            {&a.series_number, &b.series_number},
                            {&a.frame_of_reference_uid, &b.frame_of_reference_uid},
                            {&a.instance_number, &b.instance_number}, {&a.image_type, &b.image_type}}) {
            EXPECT_EQ(*x, *y) << f;
        }
        EXPECT_EQ(a.rows, b.rows) << f;
        EXPECT_EQ(a.columns, b.columns) << f;
        EXPECT_EQ(a.frames, b.frames) << f;
    }
    EXPECT_GT(fast, 350);  // the fast path covers the common syntaxes
}
