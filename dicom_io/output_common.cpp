#include "dicom_io/output_common.h"

#include "dcmtk/config/osconfig.h"

#include <fmt/format.h>

#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dicom_io/outputs.h"

namespace triage::dicom_io {

std::string new_uid() {
    char buf[100];
    return dcmGenerateUniqueIdentifier(buf, SITE_INSTANCE_UID_ROOT);
}

std::string truncate_lo(const std::string& text) {
    if (text.size() <= 64) return text;
    auto cut = text.rfind(' ', 61);
    return text.substr(0, cut == std::string::npos || cut < 32 ? 61 : cut) + "...";
}

std::string format_ds(double v) {
    if (v == 0) return "0";
    for (int precision = 15; precision > 1; --precision) {
        std::string s = fmt::format("{:.{}g}", v, precision);
        if (s.size() <= 16) return s;
    }
    return fmt::format("{:.1e}", v);
}

namespace {
/// False when an item looks like a code (has a code value or meaning) but lacks a part of the
/// Code Sequence Macro that DCMTK's writers require.
bool valid_code_items(DcmSequenceOfItems& seq) {
    for (unsigned long k = 0; k < seq.card(); ++k) {
        DcmItem* item = seq.getItem(k);
        bool value = item->tagExistsWithValue(DCM_CodeValue) || item->tagExistsWithValue(DCM_LongCodeValue) ||
                     item->tagExistsWithValue(DCM_URNCodeValue);
        bool looks_like_code = value || item->tagExists(DCM_CodeMeaning) || item->tagExists(DCM_CodingSchemeDesignator);
        if (looks_like_code && !(value && item->tagExistsWithValue(DCM_CodeMeaning) &&
                                 (item->tagExistsWithValue(DCM_CodingSchemeDesignator) ||
                                  item->tagExistsWithValue(DCM_URNCodeValue))))
            return false;
    }
    return true;
}
}  // namespace

core::Result<std::unique_ptr<DcmFileFormat>> load_source_header(const std::string& path) {
    auto file = std::make_unique<DcmFileFormat>();
    if (OFCondition c = file->loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                               ERM_autoDetect, DCM_PixelData);
        c.bad())
        return core::make_error(core::ErrorKind::InvalidInput, "cannot read " + path + ": " + c.text());
    DcmDataset& ds = *file->getDataset();
    std::vector<DcmTagKey> broken_codes;
    for (unsigned long i = 0; i < ds.card(); ++i) {
        DcmElement* e = ds.getElement(i);
        if (!e) continue;
        if (e->isLeaf()) {
            if (e->checkValue("1-n").bad()) e->putString("");
        } else if (e->ident() == EVR_SQ && !valid_code_items(*static_cast<DcmSequenceOfItems*>(e))) {
            broken_codes.push_back(e->getTag());  // e.g. a Procedure Code Sequence without a scheme
        }
    }
    for (const auto& tag : broken_codes) ds.findAndDeleteElement(tag);
    return file;
}

core::Status check_written(const std::string& path, const char* sop_class_uid, int frames) {
    DcmFileFormat file;
    if (OFCondition c = file.loadFile(path.c_str()); c.bad())
        return core::make_error(core::ErrorKind::Internal, "cannot read back " + path + ": " + c.text());
    DcmDataset& ds = *file.getDataset();
    OFString sop_class, number_of_frames;
    ds.findAndGetOFString(DCM_SOPClassUID, sop_class);
    if (sop_class != sop_class_uid)
        return core::make_error(core::ErrorKind::Internal, path + " was written with SOP class " + sop_class.c_str());
    if (frames == 0) return {};
    ds.findAndGetOFString(DCM_NumberOfFrames, number_of_frames);
    DcmSequenceOfItems* per_frame = nullptr;
    ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame);
    if (number_of_frames != std::to_string(frames).c_str() || !per_frame ||
        per_frame->card() != static_cast<unsigned long>(frames))
        return core::make_error(core::ErrorKind::Internal,
                                fmt::format("{} lacks its per-frame functional groups ({} frames expected)", path, frames));
    return {};
}

}  // namespace triage::dicom_io
