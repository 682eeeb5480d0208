#include "dicom_io/instance_meta.h"

#include "dicom_io/header_scan.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcxfer.h>

namespace triage::dicom_io {

using core::ErrorKind;

namespace {
std::string get(DcmItem& item, const DcmTagKey& tag) {
    OFString v;
    if (item.findAndGetOFStringArray(tag, v).good()) return std::string(v.c_str());
    return {};
}
int get_int(DcmItem& item, const DcmTagKey& tag) {
    Uint16 u = 0;
    if (item.findAndGetUint16(tag, u).good()) return u;
    Sint32 s = 0;
    if (item.findAndGetSint32(tag, s).good()) return s;
    OFString v;
    if (item.findAndGetOFString(tag, v).good()) return std::atoi(v.c_str());
    return 0;
}
}  // namespace

bool usable_uid(const std::string& uid) {
    if (uid.empty() || uid.size() > 64 || uid == "." || uid == "..") return false;
    for (char c : uid) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '_';
        if (!ok) return false;
    }
    return true;
}

core::Result<InstanceMeta> read_with_dcmtk(const std::string& path) {
    DcmFileFormat ff;
    // Long values (pixel data) stay on disk: only the header is needed.
    OFCondition cond = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
    if (cond.bad())
        return core::make_error(ErrorKind::Permanent, std::string("unparsable DICOM: ") + cond.text());
    DcmDataset& ds = *ff.getDataset();
    DcmItem& meta = *ff.getMetaInfo();
    InstanceMeta m;
    m.sop_class_uid = get(ds, DCM_SOPClassUID);
    m.sop_instance_uid = get(ds, DCM_SOPInstanceUID);
    m.study_uid = get(ds, DCM_StudyInstanceUID);
    m.series_uid = get(ds, DCM_SeriesInstanceUID);
    m.transfer_syntax_uid = get(meta, DCM_TransferSyntaxUID);
    if (m.transfer_syntax_uid.empty())
        m.transfer_syntax_uid = DcmXfer(ds.getOriginalXfer()).getXferID();
    m.patient_id = get(ds, DCM_PatientID);
    m.accession = get(ds, DCM_AccessionNumber);
    m.study_date = get(ds, DCM_StudyDate);
    m.study_time = get(ds, DCM_StudyTime);
    m.modality = get(ds, DCM_Modality);
    m.body_part = get(ds, DCM_BodyPartExamined);
    m.series_description = get(ds, DCM_SeriesDescription);
    m.study_description = get(ds, DCM_StudyDescription);
    m.procedure_description = get(ds, DCM_RequestedProcedureDescription);
    m.series_number = get(ds, DCM_SeriesNumber);
    m.frame_of_reference_uid = get(ds, DCM_FrameOfReferenceUID);
    m.instance_number = get(ds, DCM_InstanceNumber);
    m.image_type = get(ds, DCM_ImageType);
    m.rows = get_int(ds, DCM_Rows);
    m.columns = get_int(ds, DCM_Columns);
    m.frames = get_int(ds, DCM_NumberOfFrames);
    if (m.frames == 0 && ds.tagExists(DCM_PixelData)) m.frames = 1;
    return m;
}

core::Result<InstanceMeta> read_instance_meta(const std::string& path) {
    std::optional<InstanceMeta> fast = scan_header(path);
    core::Result<InstanceMeta> m = fast ? core::Result<InstanceMeta>(std::move(*fast)) : read_with_dcmtk(path);
    if (!m) return m;
    for (auto [name, value] : {std::pair{"SOPClassUID", &m->sop_class_uid},
                               {"SOPInstanceUID", &m->sop_instance_uid},
                               {"StudyInstanceUID", &m->study_uid},
                               {"SeriesInstanceUID", &m->series_uid}}) {
        if (value->empty())
            return core::make_error(ErrorKind::InvalidInput, std::string("missing ") + name);
        if (!usable_uid(*value))
            return core::make_error(ErrorKind::InvalidInput, std::string("unusable ") + name);
    }
    return m;
}

}  // namespace triage::dicom_io
