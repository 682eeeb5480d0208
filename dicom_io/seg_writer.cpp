// Binary DICOM Segmentation through DCMTK's dcmseg, following the steps in DCMTK-NOTES.md: every
// step that is not automatic (series number, Frame Content, Common Instance Reference) is done here,
// and the saved file is read back to prove the functional groups are really there.
#include "dcmtk/config/osconfig.h"

#include <cstdio>
#include <memory>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmfg/fgderimg.h"
#include "dcmtk/dcmfg/fgfracon.h"
#include "dcmtk/dcmfg/fgpixmsr.h"
#include "dcmtk/dcmfg/fgplanor.h"
#include "dcmtk/dcmfg/fgplanpo.h"
#include "dcmtk/dcmiod/iodreferences.h"
#include "dcmtk/dcmseg/segdoc.h"
#include "dcmtk/dcmseg/segment.h"
#include "core/log.h"
#include "dicom_io/output_common.h"
#include "dicom_io/outputs.h"

namespace triage::dicom_io {

namespace {

core::Error fail(const std::string& what, const OFCondition& c) {
    return core::Error{core::ErrorKind::Internal, "SEG: " + what + ": " + c.text()};
}

CodeSequenceMacro code_macro(const Code& c) { return CodeSequenceMacro(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str()); }

core::Status add_segment(DcmSegmentation& seg, const SegmentSpec& s, const Producer& p) {
    DcmSegment* raw = nullptr;
    OFCondition c = DcmSegment::create(raw, s.label.c_str(), code_macro(s.category), code_macro(s.type),
                                       DcmSegTypes::SAT_AUTOMATIC, p.model_name.c_str());
    if (c.bad()) return fail("segment '" + s.label + "'", c);
    std::unique_ptr<DcmSegment> segment(raw);
    AlgorithmIdentificationMacro& algo = segment->getSegmentationAlgorithmIdentification();
    algo.getAlgorithmFamilyCode().set("123110", "DCM", "Artificial Intelligence");
    algo.setAlgorithmName(p.model_name.c_str());
    algo.setAlgorithmVersion(p.model_version.c_str());
    if (!s.region.value.empty()) segment->getGeneralAnatomyCode().getAnatomicRegion().set(
            s.region.value.c_str(), s.region.scheme.c_str(), s.region.meaning.c_str());
    if (!s.description.empty()) segment->setSegmentDescription(truncate_lo(s.description).c_str(), OFFalse);
    segment->setTrackingID(s.tracking_id.c_str());
    segment->setTrackingUID(s.tracking_uid.c_str());
    Uint16 number = 0;
    if ((c = seg.addSegment(segment.get(), number)).bad()) return fail("adding segment", c);
    segment.release();  // owned by the segmentation now
    if (number != s.number) return core::make_error(core::ErrorKind::Internal, "SEG: segment numbers out of order");
    return {};
}

std::string ds3(const core::Vec3& v) { return format_ds(v[0]) + "\\" + format_ds(v[1]) + "\\" + format_ds(v[2]); }

}  // namespace

core::Result<WrittenObject> write_seg(const SegInput& in, const std::string& path) {
    const core::Volume& v = *in.geometry;
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    if (in.labels->size() != plane * v.slices || v.sources.size() != static_cast<size_t>(v.slices))
        return core::make_error(core::ErrorKind::Internal, "SEG: label map does not match the series geometry");

    IODGeneralEquipmentModule::EquipmentInfo equipment(in.producer.manufacturer.c_str(), "triage-node",
                                                        "1", in.producer.software_version.c_str());
    ContentIdentificationMacro content("1", "TRIAGE_AI", "AI segmentation", "triage-node^AI");
    DcmSegmentation* raw = nullptr;
    OFCondition c = DcmSegmentation::createBinarySegmentation(raw, static_cast<Uint16>(v.rows),
                                                             static_cast<Uint16>(v.columns), equipment, content);
    if (c.bad()) return fail("create", c);
    std::unique_ptr<DcmSegmentation> seg(raw);
    auto source = load_source_header(in.source_file);
    if (!source) return source.error();
    DcmDataset& header = *source.value()->getDataset();
    if (!header.tagExistsWithValue(DCM_FrameOfReferenceUID)) {
        // A SEG needs a Frame of Reference; a source without one (reduced or anonymised headers) gets
        // a new one here. Frames still map to their sources by SOP Instance UID and position.
        header.putAndInsertString(DCM_FrameOfReferenceUID, new_uid().c_str());
        TRIAGE_LOG_WARN("dicom", "series {} has no Frame of Reference UID; its SEG gets a new one", v.series_uid);
    }
    if ((c = seg->importFromSourceImage(header, OFTrue)).bad())
        return fail("importing " + in.source_file, c);

    std::string series_uid = new_uid(), sop_uid = new_uid();
    seg->getSeries().setSeriesInstanceUID(series_uid.c_str());
    seg->getSeries().setSeriesNumber(std::to_string(in.series_number).c_str());
    seg->getSeries().setSeriesDescription(
        truncate_lo("AI segmentation" + std::string(in.producer.demonstration_only ? " (demonstration)" : "")).c_str());
    seg->getSOPCommon().setSOPInstanceUID(sop_uid.c_str());
    for (const auto& s : in.segments)
        if (auto st = add_segment(*seg, s, in.producer); !st) return st.error();

    FGPixelMeasures measures;
    measures.setPixelSpacing((format_ds(v.row_spacing) + "\\" + format_ds(v.column_spacing)).c_str());
    measures.setSliceThickness(format_ds(v.slice_spacing).c_str());
    FGPlaneOrientationPatient orientation;
    orientation.setImageOrientationPatient(format_ds(v.row_direction[0]).c_str(), format_ds(v.row_direction[1]).c_str(),
                                           format_ds(v.row_direction[2]).c_str(), format_ds(v.column_direction[0]).c_str(),
                                           format_ds(v.column_direction[1]).c_str(), format_ds(v.column_direction[2]).c_str());
    if ((c = seg->addForAllFrames(measures)).bad() || (c = seg->addForAllFrames(orientation)).bad())
        return fail("shared functional groups", c);
    std::string dim_uid = new_uid();
    IODMultiframeDimensionModule& dims = seg->getDimensions();
    if ((c = dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid.c_str(), DCM_SegmentIdentificationSequence,
                                    "ReferencedSegmentNumber")).bad() ||
        (c = dims.addDimensionIndex(DCM_ImagePositionPatient, dim_uid.c_str(), DCM_PlanePositionSequence,
                                    "ImagePositionPatient")).bad())
        return fail("dimension index", c);

    // Which segments each slice holds, in one pass over the label map: frames exist only there.
    std::vector<std::vector<bool>> present(static_cast<size_t>(v.slices), std::vector<bool>(256, false));
    for (int z = 0; z < v.slices; ++z)
        for (const std::uint8_t* p = in.labels->data() + plane * z, *end = p + plane; p != end; ++p) present[z][*p] = true;
    std::vector<Uint8> frame(plane);
    int frames = 0;
    for (const auto& s : in.segments) {
        for (int z = 0; z < v.slices; ++z) {
            if (!present[z][static_cast<size_t>(s.number)]) continue;
            const std::uint8_t* mask = in.labels->data() + plane * z;
            for (size_t k = 0; k < plane; ++k) frame[k] = mask[k] == s.number ? 1 : 0;
            const core::SliceSource& src = v.sources[z];
            FGPlanePosPatient position;
            position.setImagePositionPatient(format_ds(src.position[0]).c_str(), format_ds(src.position[1]).c_str(),
                                             format_ds(src.position[2]).c_str());
            FGFrameContent frame_content;
            frame_content.setDimensionIndexValues(static_cast<Uint32>(s.number), 0);
            frame_content.setDimensionIndexValues(static_cast<Uint32>(z + 1), 1);
            OFVector<ImageSOPInstanceReferenceMacro> refs(1);
            if ((c = refs[0].setReferencedSOPClassUID(src.sop_class_uid.c_str())).bad() ||
                (c = refs[0].setReferencedSOPInstanceUID(src.sop_instance_uid.c_str())).bad() ||
                (src.frame > 0 && (c = refs[0].addReferencedFrameNumber(static_cast<Uint16>(src.frame))).bad()))
                return fail("source reference of slice " + std::to_string(z + 1), c);
            std::unique_ptr<FGDerivationImage> derivation(
                DcmSegmentation::createDerivationImageFG(refs, "Segmentation by " + OFString(in.producer.model_name.c_str())));
            if (!derivation) return core::make_error(core::ErrorKind::Internal, "SEG: derivation image group failed");
            OFVector<FGBase*> groups{&position, &frame_content, derivation.get()};
            if ((c = seg->addFrame(frame.data(), static_cast<Uint16>(s.number), groups)).bad())
                return fail("frame " + std::to_string(frames + 1) + " (" + ds3(src.position) + ")", c);
            ++frames;
        }
    }
    if (frames == 0) return core::make_error(core::ErrorKind::InvalidInput, "SEG: every segment is empty");

    IODReferences references;
    for (const auto& s : v.sources)
        references.add(new IODImageReference("", v.study_uid.c_str(), v.series_uid.c_str(), s.sop_instance_uid.c_str(),
                                             s.sop_class_uid.c_str()));
    seg->getCommonInstanceReference().addReferences(references, v.study_uid.c_str());

    std::string part = path + ".part";
    if ((c = seg->saveFile(part.c_str(), EXS_LittleEndianExplicit)).bad()) {
        std::remove(part.c_str());
        return fail("writing " + path, c);
    }
    if (auto st = check_written(part, UID_SegmentationStorage, frames); !st) {
        std::remove(part.c_str());
        return st.error();
    }
    if (std::rename(part.c_str(), path.c_str()) != 0)
        return core::make_error(core::ErrorKind::Transient, "SEG: cannot rename " + part);
    return WrittenObject{path, UID_SegmentationStorage, sop_uid, series_uid, frames};
}

}  // namespace triage::dicom_io
