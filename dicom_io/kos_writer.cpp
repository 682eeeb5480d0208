// Key Object Selection document (TID 2010) through DCMTK's dcmsr: title "Of Interest", a Key
// Object Description, one IMAGE item per key image, one COMPOSITE item per SEG and SR; the
// Current Requested Procedure Evidence Sequence lists the same instances.
#include "dcmtk/config/osconfig.h"

#include <cstdio>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dicom_io/key_objects.h"
#include "dicom_io/output_common.h"

namespace triage::dicom_io {

namespace {

core::Error fail(const std::string& what, const OFCondition& c) {
    return core::Error{core::ErrorKind::Internal, "KOS: " + what + ": " + c.text()};
}

core::Status build_tree(DSRDocumentTree& tree, const KosInput& in) {
    OFCondition c;
    if ((c = tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container, DSRCodedEntryValue("113000", "DCM", "Of Interest"))).bad())
        return fail("document title", c);
    if (!in.description.empty() &&
        ((c = tree.addChildContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text,
                                       DSRCodedEntryValue("113012", "DCM", "Key Object Description"))).bad() ||
         (c = tree.getCurrentContentItem().setStringValue(in.description.c_str())).bad()))
        return fail("description", c);
    bool first = in.description.empty();
    for (const auto& r : in.references) {
        DSRTypes::E_ValueType type = r.image ? DSRTypes::VT_Image : DSRTypes::VT_Composite;
        if (tree.addContentItem(DSRTypes::RT_contains, type, first ? DSRTypes::AM_belowCurrent : DSRTypes::AM_afterCurrent) == 0)
            return core::make_error(core::ErrorKind::Internal, "KOS: cannot add the reference to " + r.sop_instance_uid);
        first = false;
        c = r.image ? tree.getCurrentContentItem().setImageReference(
                          DSRImageReferenceValue(r.sop_class_uid.c_str(), r.sop_instance_uid.c_str()))
                    : tree.getCurrentContentItem().setCompositeReference(
                          DSRCompositeReferenceValue(r.sop_class_uid.c_str(), r.sop_instance_uid.c_str()));
        if (c.bad()) return fail("reference to " + r.sop_instance_uid, c);
    }
    return {};
}

}  // namespace

core::Result<WrittenObject> write_kos(const KosInput& in, const std::string& path) {
    if (in.references.empty()) return core::make_error(core::ErrorKind::InvalidInput, "KOS: nothing to reference");
    DSRDocument doc(DSRTypes::DT_KeyObjectSelectionDocument);
    if (auto st = build_tree(doc.getTree(), in); !st) return st.error();
    auto source = load_source_header(in.source_file);
    if (!source) return source.error();
    DcmDataset& header = *source.value()->getDataset();
    OFCondition c;
    if ((c = doc.readPatientData(header)).bad() || (c = doc.readStudyData(header)).bad())
        return fail("patient and study from " + in.source_file, c);
    if (OFString charset; header.findAndGetOFStringArray(DCM_SpecificCharacterSet, charset).good() && !charset.empty())
        if ((c = doc.setSpecificCharacterSet(charset, OFFalse)).bad()) return fail("character set", c);
    const Producer& p = in.producer;
    doc.createNewSeries();
    doc.setSeriesNumber(std::to_string(in.series_number).c_str());
    doc.setInstanceNumber("1");
    doc.setSeriesDescription(truncate_lo("AI key objects" + std::string(p.demonstration_only ? " (demonstration)" : "")).c_str());
    doc.setManufacturer(p.manufacturer.c_str());
    doc.setManufacturerModelName("triage-node");
    doc.setSoftwareVersions(p.software_version.c_str());
    OFString study_uid;
    doc.getStudyInstanceUID(study_uid);
    for (const auto& r : in.references)
        if ((c = doc.getCurrentRequestedProcedureEvidence().addItem(study_uid, r.series_uid.c_str(), r.sop_class_uid.c_str(),
                                                                     r.sop_instance_uid.c_str())).bad())
            return fail("evidence " + r.sop_instance_uid, c);

    DcmFileFormat out;
    if ((c = doc.write(*out.getDataset())).bad()) return fail("encoding", c);
    std::string part = path + ".part";
    if ((c = out.saveFile(part.c_str(), EXS_LittleEndianExplicit)).bad()) {
        std::remove(part.c_str());
        return fail("writing " + path, c);
    }
    OFString sop_uid, series_uid;
    doc.getSOPInstanceUID(sop_uid);
    doc.getSeriesInstanceUID(series_uid);
    if (auto st = check_written(part, UID_KeyObjectSelectionDocumentStorage, 0); !st) {
        std::remove(part.c_str());
        return st.error();
    }
    if (std::rename(part.c_str(), path.c_str()) != 0)
        return core::make_error(core::ErrorKind::Transient, "KOS: cannot rename " + part);
    return WrittenObject{path, UID_KeyObjectSelectionDocumentStorage, sop_uid.c_str(), series_uid.c_str(), 0};
}

}  // namespace triage::dicom_io
