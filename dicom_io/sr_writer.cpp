// TID 1500 Imaging Measurement Report through DCMTK's cmr templates (DCMTK-NOTES.md): one
// volumetric measurement group per lesion pointing at its SEG segment, the report text as
// qualitative evaluations, the evidence sequence filled by hand.
#include "dcmtk/config/osconfig.h"

#include <cmath>
#include <cstdio>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/cmr/tid1500.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dicom_io/output_common.h"
#include "dicom_io/outputs.h"

namespace triage::dicom_io {

namespace {

core::Error fail(const std::string& what, const OFCondition& c) {
    return core::Error{core::ErrorKind::Internal, "SR: " + what + ": " + c.text()};
}

DSRCodedEntryValue coded(const Code& c) { return DSRCodedEntryValue(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str()); }

const DSRCodedEntryValue kFinding("121071", "DCM", "Finding");
const DSRCodedEntryValue kImpression("121073", "DCM", "Impression");
const DSRCodedEntryValue kComment("121106", "DCM", "Comment");
const DSRCodedEntryValue kPriority("PRIORITY", "99TRIAGE", "Triage priority");

DSRCodedEntryValue procedure(const std::string& modality) {
    if (modality == "MR") return DSRCodedEntryValue("113091000", "SCT", "Magnetic resonance imaging");
    return DSRCodedEntryValue("77477000", "SCT", "Computed tomography");
}

core::Status add_lesion(TID1500_MeasurementReport& report, const SrLesion& l) {
    OFCondition c = report.addVolumetricROIMeasurements();
    if (c.bad()) return fail("measurement group", c);
    auto& group = report.getVolumetricROIMeasurements();
    DSRImageReferenceValue segment(UID_SegmentationStorage, l.seg_sop_instance_uid.c_str());
    segment.getSegmentList().addItem(static_cast<Uint16>(l.segment_number));
    using Value = CMR_TID1411_in_TID1500::MeasurementValue;
    if ((c = group.setTrackingIdentifier(l.tracking_id.c_str())).bad() ||
        (c = group.setTrackingUniqueIdentifier(l.tracking_uid.c_str())).bad() ||
        (c = group.setFinding(coded(l.finding))).bad() ||
        (c = group.setReferencedSegment(segment)).bad() ||
        (c = group.setSourceSeriesForSegmentation(l.source_series_uid.c_str())).bad() ||
        (c = group.addFindingSite(coded(l.site))).bad() ||
        (c = group.addMeasurement(DSRCodedEntryValue("118565006", "SCT", "Volume"),
                                  Value(format_ds(std::round(l.volume_ml * 100) / 100).c_str(), DSRCodedEntryValue("ml", "UCUM", "milliliter")))).bad() ||
        (c = group.addMeasurement(DSRCodedEntryValue("103339001", "SCT", "Long Axis"),
                                  Value(format_ds(std::round(l.diameter_mm * 10) / 10).c_str(), DSRCodedEntryValue("mm", "UCUM", "millimeter")),
                                  OFFalse)).bad() ||
        (c = group.addQualitativeEvaluation(kFinding, l.description.c_str())).bad())
        return fail("lesion '" + l.label + "'", c);
    return {};
}

}  // namespace

core::Result<WrittenObject> write_sr(const SrInput& in, const std::string& path) {
    TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
    OFCondition c;
    const Producer& p = in.producer;
    if ((c = report.setLanguage(CID5000_Languages(CID5000_Languages::English))).bad() ||
        (c = report.getObservationContext().addDeviceObserver(p.device_uid.c_str(), "triage-node", p.manufacturer.c_str(),
                                                              (p.model_name + " " + p.model_version).c_str())).bad() ||
        (c = report.addProcedureReported(procedure(in.modality))).bad() ||
        (c = report.getImageLibrary().createNewImageLibrary()).bad())
        return fail("report header", c);
    for (const auto& l : in.lesions)
        if (auto st = add_lesion(report, l); !st) return st.error();
    if ((c = report.addQualitativeEvaluation(kFinding, in.findings_text.c_str())).bad() ||
        (c = report.addQualitativeEvaluation(kImpression, in.impression_text.c_str())).bad() ||
        (!in.priority_text.empty() && (c = report.addQualitativeEvaluation(kPriority, in.priority_text.c_str())).bad()))
        return fail("report text", c);
    if (p.demonstration_only &&
        (c = report.addQualitativeEvaluation(
             kComment, ("Produced automatically by " + p.model_name + " " + p.model_version +
                        ", a demonstration model trained on synthetic phantoms; not for clinical use.").c_str())).bad())
        return fail("disclaimer", c);
    if (!report.isValid()) return core::make_error(core::ErrorKind::Internal, "SR: the measurement report is not valid");

    DSRDocument doc;
    if ((c = doc.setTreeFromRootTemplate(report, OFTrue)).bad()) return fail("document tree", c);
    auto source = load_source_header(in.source_file);
    if (!source) return source.error();
    DcmDataset& header = *source.value()->getDataset();
    if ((c = doc.readPatientData(header)).bad() || (c = doc.readStudyData(header)).bad())
        return fail("patient and study from " + in.source_file, c);
    // The patient's name is copied as bytes: keep the character set they are encoded in.
    if (OFString charset; header.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset).good() && !charset.empty())
        if ((c = doc.setSpecificCharacterSet(charset, OFFalse)).bad()) return fail("character set " + std::string(charset.c_str()), c);
    doc.createNewSeries();
    doc.setSeriesNumber(std::to_string(in.series_number).c_str());
    doc.setInstanceNumber("1");
    doc.setSeriesDescription(
        truncate_lo("AI measurement report" + std::string(p.demonstration_only ? " (demonstration)" : "")).c_str());
    doc.setManufacturer(p.manufacturer.c_str());
    doc.setManufacturerModelName("triage-node");
    doc.setSoftwareVersions(p.software_version.c_str());
    OFString study_uid;
    doc.getStudyInstanceUID(study_uid);
    for (const auto& e : in.evidence)
        if ((c = doc.getCurrentRequestedProcedureEvidence().addItem(study_uid, e.series_uid.c_str(), e.sop_class_uid.c_str(),
                                                                     e.sop_instance_uid.c_str())).bad())
            return fail("evidence " + e.sop_instance_uid, c);
    if ((c = doc.completeDocument()).bad()) return fail("completion flag", c);

    DcmFileFormat out;
    if ((c = doc.write(*out.getDataset())).bad()) return fail("encoding", c);
    std::string part = path + ".part";
    if ((c = out.saveFile(part.c_str(), EXS_LittleEndianExplicit)).bad()) {
        std::remove(part.c_str());
        return fail("writing " + path, c);
    }
    OFString sop_class, sop_uid, series_uid;
    doc.getSOPClassUID(sop_class);
    doc.getSOPInstanceUID(sop_uid);
    doc.getSeriesInstanceUID(series_uid);
    if (auto st = check_written(part, sop_class.c_str(), 0); !st) {
        std::remove(part.c_str());
        return st.error();
    }
    if (std::rename(part.c_str(), path.c_str()) != 0)
        return core::make_error(core::ErrorKind::Transient, "SR: cannot rename " + part);
    return WrittenObject{path, sop_class.c_str(), sop_uid.c_str(), series_uid.c_str(), 0};
}

}  // namespace triage::dicom_io
