// Secondary Capture key image: the key slice rendered by key_image_render (window, outline, text,
// banner) in a plain SC object (RGB, 8 bit, one frame), with the source's patient and study
// modules and a Source Image Sequence pointing at the key slice.
#include "dcmtk/config/osconfig.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcvrda.h"
#include "dcmtk/dcmdata/dcvrtm.h"
#include "dicom_io/key_image_render.h"
#include "dicom_io/key_objects.h"
#include "dicom_io/output_common.h"
#include "dicom_io/volume_reader.h"

namespace triage::dicom_io {

namespace {

core::Error fail(const std::string& what, const OFCondition& c) {
    return core::Error{core::ErrorKind::Internal, "key image: " + what + ": " + c.text()};
}

/// Patient, General Study and Patient Study attributes copied from the source; the type 2 ones
/// are present (empty) even when the source lacks them.
void copy_patient_and_study(DcmDataset& src, DcmDataset& ds) {
    const DcmTagKey copied[] = {DCM_SpecificCharacterSet, DCM_PatientName, DCM_PatientID, DCM_IssuerOfPatientID,
                                DCM_PatientBirthDate, DCM_PatientSex, DCM_PatientAge, DCM_PatientSize,
                                DCM_PatientWeight, DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime,
                                DCM_ReferringPhysicianName, DCM_StudyID, DCM_AccessionNumber, DCM_StudyDescription};
    for (const auto& tag : copied) {
        DcmElement* e = nullptr;
        if (src.findAndGetElement(tag, e, OFFalse, OFTrue).good() && e) ds.insert(e, OFTrue);
    }
    const DcmTagKey type2[] = {DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex, DCM_StudyDate,
                               DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID, DCM_AccessionNumber};
    for (const auto& tag : type2)
        if (!ds.tagExists(tag)) ds.insertEmptyElement(tag);
}

/// Patient Orientation (row direction \ column direction) from Image Orientation (Patient): the
/// letters of the axes a direction mostly follows, largest first; "" when the source has none.
std::string patient_orientation(DcmDataset& src) {
    double iop[6];
    for (int i = 0; i < 6; ++i)
        if (src.findAndGetFloat64(DCM_ImageOrientationPatient, iop[i], static_cast<unsigned long>(i)).bad()) return "";
    auto letters = [](const double* d) {
        const char* pos = "LPH";
        const char* neg = "RAF";
        std::string out;
        int order[3] = {0, 1, 2};
        std::sort(order, order + 3, [&](int a, int b) { return std::fabs(d[a]) > std::fabs(d[b]); });
        for (int k : order)
            if (std::fabs(d[k]) > 0.3) out += d[k] > 0 ? pos[k] : neg[k];
        return out;
    };
    return letters(iop) + "\\" + letters(iop + 3);
}

/// The display window: the given one, or (window_from_slice) mean - 2 SD .. mean + 3 SD of the
/// slice's foreground, as the analysis' z-score normalisation sees it.
std::pair<double, double> display_window(const KeyImageInput& in, const std::vector<float>& pixels) {
    if (!in.window_from_slice) return {in.window_low, in.window_high};
    return foreground_window(pixels.data(), pixels.size());
}

core::Status put_source_reference(DcmDataset& ds, DcmDataset& src, int frame) {
    OFString sop_class, sop_instance;
    src.findAndGetOFString(DCM_SOPClassUID, sop_class);
    src.findAndGetOFString(DCM_SOPInstanceUID, sop_instance);
    DcmItem* item = nullptr;
    DcmItem* purpose = nullptr;
    OFCondition c;
    if ((c = ds.findOrCreateSequenceItem(DCM_SourceImageSequence, item, -2)).bad() ||
        (c = item->putAndInsertString(DCM_ReferencedSOPClassUID, sop_class.c_str())).bad() ||
        (c = item->putAndInsertString(DCM_ReferencedSOPInstanceUID, sop_instance.c_str())).bad() ||
        (frame > 0 && (c = item->putAndInsertString(DCM_ReferencedFrameNumber, std::to_string(frame).c_str())).bad()) ||
        (c = item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, -2)).bad() ||
        (c = purpose->putAndInsertString(DCM_CodeValue, "121322")).bad() ||
        (c = purpose->putAndInsertString(DCM_CodingSchemeDesignator, "DCM")).bad() ||
        (c = purpose->putAndInsertString(DCM_CodeMeaning, "Source image for image processing operation")).bad())
        return fail("source image reference", c);
    return {};
}

core::Status put_image(DcmDataset& ds, const RgbImage& img) {
    OFCondition c;
    if ((c = ds.putAndInsertUint16(DCM_SamplesPerPixel, 3)).bad() ||
        (c = ds.putAndInsertString(DCM_PhotometricInterpretation, "RGB")).bad() ||
        (c = ds.putAndInsertUint16(DCM_PlanarConfiguration, 0)).bad() ||
        (c = ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(img.rows))).bad() ||
        (c = ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(img.columns))).bad() ||
        (c = ds.putAndInsertUint16(DCM_BitsAllocated, 8)).bad() || (c = ds.putAndInsertUint16(DCM_BitsStored, 8)).bad() ||
        (c = ds.putAndInsertUint16(DCM_HighBit, 7)).bad() || (c = ds.putAndInsertUint16(DCM_PixelRepresentation, 0)).bad() ||
        (c = ds.putAndInsertUint8Array(DCM_PixelData, img.rgb.data(), static_cast<unsigned long>(img.rgb.size()))).bad())
        return fail("pixel data", c);
    return {};
}

core::Status put_identity(DcmDataset& ds, const KeyImageInput& in, const std::string& sop_uid, DcmDataset& src) {
    OFString date, time;
    DcmDate::getCurrentDate(date);
    DcmTime::getCurrentTime(time);
    const Producer& p = in.producer;
    std::string series = "AI key images" + std::string(p.demonstration_only ? " (demonstration)" : "");
    const std::pair<DcmTagKey, std::string> values[] = {
        {DCM_SOPClassUID, UID_SecondaryCaptureImageStorage}, {DCM_SOPInstanceUID, sop_uid},
        {DCM_InstanceCreationDate, date.c_str()}, {DCM_InstanceCreationTime, time.c_str()},
        {DCM_Modality, "OT"}, {DCM_SeriesInstanceUID, in.series_uid},
        {DCM_SeriesNumber, std::to_string(in.series_number)}, {DCM_SeriesDescription, truncate_lo(series)},
        {DCM_Manufacturer, p.manufacturer}, {DCM_ManufacturerModelName, "triage-node"},
        {DCM_SoftwareVersions, p.software_version}, {DCM_ConversionType, "WSD"},
        {DCM_SecondaryCaptureDeviceManufacturer, p.manufacturer},
        {DCM_SecondaryCaptureDeviceManufacturerModelName, "triage-node"},
        {DCM_SecondaryCaptureDeviceSoftwareVersions, p.software_version},
        {DCM_DateOfSecondaryCapture, date.c_str()}, {DCM_TimeOfSecondaryCapture, time.c_str()},
        {DCM_InstanceNumber, std::to_string(in.instance_number)}, {DCM_PatientOrientation, patient_orientation(src)},
        {DCM_ContentDate, date.c_str()}, {DCM_ContentTime, time.c_str()}, {DCM_ImageType, "DERIVED\\SECONDARY"},
        {DCM_DerivationDescription, truncate_lo("Key slice with the segmentation by " + p.model_name + " outlined")},
        {DCM_BurnedInAnnotation, "YES"}, {DCM_RecognizableVisualFeatures, "NO"}, {DCM_LossyImageCompression, "00"}};
    for (const auto& [tag, value] : values)
        if (OFCondition c = ds.putAndInsertString(tag, value.c_str()); c.bad()) return fail(DcmTag(tag).getTagName(), c);
    // General Series Laterality is 2C (paired body parts): with the source's Body Part Examined a
    // reader can tell; without it, the laterality is unknown, so present and empty.
    OFString body_part;
    OFCondition c = src.findAndGetOFString(DCM_BodyPartExamined, body_part).good() && !body_part.empty()
                        ? ds.putAndInsertString(DCM_BodyPartExamined, body_part.c_str())
                        : ds.insertEmptyElement(DCM_Laterality);
    if (c.bad()) return fail("Body Part Examined / Laterality", c);
    return {};
}

}  // namespace

std::string key_image_banner(const Producer& p) {
    return "AI RESULT \u2014 " + p.model_name + " " + p.model_version + ", not for diagnosis";
}

core::Result<WrittenObject> write_key_image(const KeyImageInput& in, const std::string& path) {
    auto source = load_source_header(in.source_file);
    if (!source) return source.error();
    DcmDataset& src = *source.value()->getDataset();
    Uint16 rows = 0, columns = 0;
    src.findAndGetUint16(DCM_Rows, rows);
    src.findAndGetUint16(DCM_Columns, columns);
    auto frames = read_pixels(in.source_file);
    if (!frames) return frames.error();
    size_t index = in.source_frame > 0 ? static_cast<size_t>(in.source_frame - 1) : 0;
    const size_t plane = static_cast<size_t>(rows) * columns;
    if (index >= frames->size() || (*frames)[index].size() != plane || !in.mask || in.mask->size() != plane)
        return core::make_error(core::ErrorKind::InvalidInput, "key image: the mask does not match " + in.source_file);
    const std::vector<float>& pixels = (*frames)[index];
    auto [low, high] = display_window(in, pixels);
    RenderInput r{pixels.data(), in.mask->data(), rows, columns, low, high,
                  in.producer.demonstration_only ? key_image_banner(in.producer) : "", in.lines, in.font_file};
    auto img = render_key_image(r);
    if (!img) return img.error();

    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    copy_patient_and_study(src, ds);
    std::string sop_uid = new_uid();
    if (auto st = put_identity(ds, in, sop_uid, src); !st) return st.error();
    if (auto st = put_source_reference(ds, src, in.source_frame); !st) return st.error();
    if (auto st = put_image(ds, img.value()); !st) return st.error();

    std::string part = path + ".part";
    if (OFCondition c = file.saveFile(part.c_str(), EXS_LittleEndianExplicit); c.bad()) {
        std::remove(part.c_str());
        return fail("writing " + path, c);
    }
    if (auto st = check_written(part, UID_SecondaryCaptureImageStorage, 0); !st) {
        std::remove(part.c_str());
        return st.error();
    }
    if (std::rename(part.c_str(), path.c_str()) != 0)
        return core::make_error(core::ErrorKind::Transient, "key image: cannot rename " + part);
    return WrittenObject{path, UID_SecondaryCaptureImageStorage, sop_uid, in.series_uid, 0};
}

}  // namespace triage::dicom_io
