#include "dicom_io/volume_reader.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "dicom_io/j2k_decoder.h"

namespace triage::dicom_io {

using core::ErrorKind;
using core::Vec3;

namespace {

struct Frame {
    core::SliceSource src;
    Vec3 row{}, col{};
    double row_spacing = 0, column_spacing = 0;
    int rows = 0, columns = 0;
    std::vector<float> pixels;
};

core::Error invalid(const std::string& msg) { return core::make_error(ErrorKind::InvalidInput, msg); }

/// The functional group item `seq` for a frame: per-frame first, then shared.
DcmItem* functional_group(DcmItem& ds, unsigned long frame, const DcmTagKey& seq) {
    DcmItem* group = nullptr;
    DcmItem* item = nullptr;
    if (ds.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, group, static_cast<signed long>(frame)).good() &&
        group->findAndGetSequenceItem(seq, item, 0).good())
        return item;
    if (ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, group, 0).good() &&
        group->findAndGetSequenceItem(seq, item, 0).good())
        return item;
    return nullptr;
}

bool get_doubles(DcmItem* item, const DcmTagKey& tag, double* out, int n) {
    if (!item) return false;
    for (int i = 0; i < n; ++i)
        if (item->findAndGetFloat64(tag, out[i], static_cast<unsigned long>(i)).bad()) return false;
    return true;
}

/// Geometry and rescale of one frame, from its functional groups or the top-level attributes.
core::Status frame_geometry(DcmDataset& ds, unsigned long f, Frame& out, double& slope, double& intercept) {
    slope = 1;
    intercept = 0;
    DcmItem* pvt = functional_group(ds, f, DCM_PixelValueTransformationSequence);
    DcmItem* src = pvt ? pvt : &ds;
    if (src->findAndGetFloat64(DCM_RescaleSlope, slope).bad() || slope == 0) slope = 1;
    if (src->findAndGetFloat64(DCM_RescaleIntercept, intercept).bad()) intercept = 0;
    double ipp[3], iop[6], ps[2];
    bool ok_pos = get_doubles(functional_group(ds, f, DCM_PlanePositionSequence), DCM_ImagePositionPatient, ipp, 3) ||
                  get_doubles(&ds, DCM_ImagePositionPatient, ipp, 3);
    bool ok_ori = get_doubles(functional_group(ds, f, DCM_PlaneOrientationSequence), DCM_ImageOrientationPatient, iop, 6) ||
                  get_doubles(&ds, DCM_ImageOrientationPatient, iop, 6);
    bool ok_ps = get_doubles(functional_group(ds, f, DCM_PixelMeasuresSequence), DCM_PixelSpacing, ps, 2) ||
                 get_doubles(&ds, DCM_PixelSpacing, ps, 2);
    if (!ok_pos || !ok_ori) return invalid("no Image Position/Orientation (Patient)");
    if (!ok_ps || ps[0] <= 0 || ps[1] <= 0) return invalid("no usable Pixel Spacing");
    out.src.position = {ipp[0], ipp[1], ipp[2]};
    out.row = {iop[0], iop[1], iop[2]};
    out.col = {iop[3], iop[4], iop[5]};
    out.row_spacing = ps[0];
    out.column_spacing = ps[1];
    return {};
}

struct PixelFormat {
    Uint16 bits_allocated = 16, bits_stored = 16, representation = 0;
};

float stored_value(Uint32 raw, const PixelFormat& pf) {
    Uint32 mask = pf.bits_stored >= 32 ? 0xFFFFFFFFu : ((1u << pf.bits_stored) - 1);
    raw &= mask;
    if (pf.representation == 1 && (raw >> (pf.bits_stored - 1)) & 1) return static_cast<float>(static_cast<int64_t>(raw) - (int64_t{1} << pf.bits_stored));
    return static_cast<float>(raw);
}

/// Decodes all frames' stored values (before rescale) into `out` (frames * rows * columns).
core::Status decode_pixels(DcmDataset& ds, PixelFormat pf, size_t frame_len, unsigned long frames,
                           std::vector<float>& out) {
    E_TransferSyntax xfer = ds.getOriginalXfer();
    out.assign(frame_len * frames, 0.0f);
    if (xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000) {
        DcmElement* el = nullptr;
        if (ds.findAndGetElement(DCM_PixelData, el).bad()) return invalid("no Pixel Data");
        DcmPixelSequence* seq = nullptr;
        E_TransferSyntax repXfer;
        const DcmRepresentationParameter* param = nullptr;
        if (static_cast<DcmPixelData*>(el)->getEncapsulatedRepresentation(xfer, param, seq).bad() || !seq)
            return invalid("JPEG 2000 data set without encapsulated pixel data");
        (void)repXfer;
        auto fragments = j2k_frame_fragments(*seq, frames);
        if (!fragments) return fragments.error();
        for (unsigned long f = 0; f < frames; ++f) {
            auto decoded = decode_j2k(fragments.value()[f], frame_len, pf.representation == 1);
            if (!decoded) return decoded.error();
            std::copy(decoded->begin(), decoded->end(), out.begin() + static_cast<long>(f * frame_len));
        }
        return {};
    }
    if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
        !ds.canWriteXfer(EXS_LittleEndianExplicit))
        return invalid(std::string("cannot decode transfer syntax ") + DcmXfer(xfer).getXferName());
    // DCMTK's lossy JPEG decoders may rewrite the pixel description (e.g. to unsigned): reread it.
    ds.findAndGetUint16(DCM_PixelRepresentation, pf.representation);
    ds.findAndGetUint16(DCM_BitsStored, pf.bits_stored);
    const size_t n = frame_len * frames;
    if (pf.bits_allocated == 8) {
        const Uint8* p = nullptr;
        unsigned long count = 0;
        if (ds.findAndGetUint8Array(DCM_PixelData, p, &count).bad() || count < n) return invalid("pixel data too short");
        for (size_t i = 0; i < n; ++i) out[i] = stored_value(p[i], pf);
    } else if (pf.bits_allocated == 16) {
        const Uint16* p = nullptr;
        unsigned long count = 0;
        if (ds.findAndGetUint16Array(DCM_PixelData, p, &count).bad() || count < n) return invalid("pixel data too short");
        for (size_t i = 0; i < n; ++i) out[i] = stored_value(p[i], pf);
    } else {
        return invalid(fmt::format("BitsAllocated {} not supported", pf.bits_allocated));
    }
    return {};
}

core::Result<std::vector<Frame>> load_frames(const std::string& path, core::Volume& v, bool need_geometry = true) {
    DcmFileFormat ff;
    if (OFCondition c = ff.loadFile(path.c_str()); c.bad()) return invalid(path + ": " + c.text());
    DcmDataset& ds = *ff.getDataset();
    Uint16 spp = 1, rows = 0, cols = 0;
    PixelFormat pf;
    ds.findAndGetUint16(DCM_SamplesPerPixel, spp);
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    ds.findAndGetUint16(DCM_BitsAllocated, pf.bits_allocated);
    if (ds.findAndGetUint16(DCM_BitsStored, pf.bits_stored).bad()) pf.bits_stored = pf.bits_allocated;
    ds.findAndGetUint16(DCM_PixelRepresentation, pf.representation);
    if (spp != 1) return invalid("colour images are not analyzed");
    if (rows == 0 || cols == 0 || pf.bits_stored == 0 || pf.bits_stored > pf.bits_allocated)
        return invalid("no usable image pixel description");
    Sint32 nframes = 1;
    if (ds.findAndGetSint32(DCM_NumberOfFrames, nframes).bad() || nframes < 1) nframes = 1;
    const size_t frame_len = static_cast<size_t>(rows) * cols;
    std::vector<float> stored;
    if (auto st = decode_pixels(ds, pf, frame_len, static_cast<unsigned long>(nframes), stored); !st)
        return core::make_error(st.error().kind, path + ": " + st.error().message);
    OFString s;
    auto text = [&](const DcmTagKey& tag) { return ds.findAndGetOFString(tag, s).good() ? std::string(s.c_str()) : std::string(); };
    if (v.series_uid.empty()) {
        v.study_uid = text(DCM_StudyInstanceUID);
        v.series_uid = text(DCM_SeriesInstanceUID);
        v.frame_of_reference_uid = text(DCM_FrameOfReferenceUID);
        v.modality = text(DCM_Modality);
        v.body_part = text(DCM_BodyPartExamined);
        v.series_description = text(DCM_SeriesDescription);
    }
    std::vector<Frame> frames(static_cast<size_t>(nframes));
    for (unsigned long f = 0; f < frames.size(); ++f) {
        Frame& fr = frames[f];
        double slope = 1, intercept = 0;
        if (auto st = frame_geometry(ds, f, fr, slope, intercept); !st && need_geometry)
            return core::make_error(st.error().kind, path + ": " + st.error().message);
        fr.src.sop_instance_uid = text(DCM_SOPInstanceUID);
        fr.src.sop_class_uid = text(DCM_SOPClassUID);
        fr.src.frame = nframes > 1 ? static_cast<int>(f + 1) : 0;
        fr.rows = rows;
        fr.columns = cols;
        fr.pixels.resize(frame_len);
        for (size_t i = 0; i < frame_len; ++i)
            fr.pixels[i] = static_cast<float>(stored[f * frame_len + i] * slope + intercept);
    }
    return frames;
}

Vec3 cross(const Vec3& a, const Vec3& b) {
    return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }

/// Sorts along the normal, drops duplicate positions and notes gaps, tilt and uneven spacing.
void arrange(std::vector<Frame>& frames, core::Volume& v) {
    std::stable_sort(frames.begin(), frames.end(), [&](const Frame& a, const Frame& b) {
        return dot(a.src.position, v.normal) < dot(b.src.position, v.normal);
    });
    std::vector<Frame> kept;
    int duplicates = 0;
    for (auto& f : frames) {
        if (!kept.empty() && std::abs(dot(f.src.position, v.normal) - dot(kept.back().src.position, v.normal)) < 0.01) {
            ++duplicates;
            continue;
        }
        kept.push_back(std::move(f));
    }
    frames = std::move(kept);
    if (duplicates) v.warnings.push_back(fmt::format("{} slice(s) at duplicate positions ignored", duplicates));
    std::vector<double> gaps;
    double max_tilt = 0;
    for (size_t i = 1; i < frames.size(); ++i) {
        Vec3 d{frames[i].src.position[0] - frames[i - 1].src.position[0],
               frames[i].src.position[1] - frames[i - 1].src.position[1],
               frames[i].src.position[2] - frames[i - 1].src.position[2]};
        gaps.push_back(dot(d, v.normal));
        max_tilt = std::max(max_tilt, std::acos(std::min(1.0, std::abs(dot(d, v.normal)) / norm(d))) * 180 / M_PI);
    }
    if (gaps.empty()) return;
    std::vector<double> sorted = gaps;
    std::sort(sorted.begin(), sorted.end());
    v.slice_spacing = sorted[sorted.size() / 2];
    if (sorted.back() > 1.5 * v.slice_spacing)
        v.warnings.push_back(fmt::format("gap in the slice stack: {:.2f} mm where the median spacing is {:.2f} mm",
                                         sorted.back(), v.slice_spacing));
    if (sorted.back() > 1.1 * sorted.front())
        v.warnings.push_back(fmt::format("uneven slice spacing: {:.2f} to {:.2f} mm", sorted.front(), sorted.back()));
    if (max_tilt > 0.5) v.warnings.push_back(fmt::format("gantry tilt or sheared stack: {:.1f} degrees", max_tilt));
}

}  // namespace

std::string series_skip_reason(const std::string& modality, const std::string& sop_class_uid,
                               const std::string& image_type, int rows, int frames) {
    if (modality != "CT" && modality != "MR") return "modality " + (modality.empty() ? "unknown" : modality) + " is not analyzed";
    static const char* kImageClasses[] = {UID_CTImageStorage, UID_MRImageStorage, UID_EnhancedCTImageStorage,
                                          UID_EnhancedMRImageStorage, UID_LegacyConvertedEnhancedCTImageStorage,
                                          UID_LegacyConvertedEnhancedMRImageStorage};
    if (std::none_of(std::begin(kImageClasses), std::end(kImageClasses),
                     [&](const char* u) { return sop_class_uid == u; }))
        return "SOP class " + sop_class_uid + " is not a CT/MR image";
    std::string upper = image_type;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    for (const char* word : {"LOCALIZER", "SCOUT", "MOSAIC", "VFRAME", "SCREEN SAVE", "DOSE"})
        if (upper.find(word) != std::string::npos) return std::string("image type ") + word + " is not analyzed";
    if (upper.rfind("DERIVED", 0) == 0) return "derived images are not analyzed";
    if (rows == 0 || frames == 0) return "no pixel data";
    return "";
}

core::Result<core::Volume> read_volume(const std::vector<std::string>& files) {
    core::Volume v;
    std::vector<Frame> frames;
    for (const auto& f : files) {
        auto loaded = load_frames(f, v);
        if (!loaded) return loaded.error();
        for (auto& fr : loaded.value()) frames.push_back(std::move(fr));
    }
    if (frames.size() < 2) return invalid("a volume needs at least 2 slices");
    const Frame& first = frames.front();
    v.row_direction = first.row;
    v.column_direction = first.col;
    v.normal = cross(first.row, first.col);
    if (norm(v.normal) < 0.5) return invalid("degenerate Image Orientation (Patient)");
    for (const auto& f : frames) {
        if (f.rows != first.rows || f.columns != first.columns)
            return invalid("slices of different sizes in one series");
        if (dot(f.row, first.row) < 0.999 || dot(f.col, first.col) < 0.999)
            return invalid("slices of different orientations in one series");
    }
    arrange(frames, v);  // invalidates `first`
    if (frames.size() < 2) return invalid("fewer than 2 distinct slice positions");
    v.columns = frames.front().columns;
    v.rows = frames.front().rows;
    v.column_spacing = frames.front().column_spacing;
    v.row_spacing = frames.front().row_spacing;
    v.slices = static_cast<int>(frames.size());
    v.voxels.reserve(static_cast<size_t>(v.slices) * v.rows * v.columns);
    for (auto& f : frames) {
        v.slice_positions.push_back(dot(f.src.position, v.normal));
        v.sources.push_back(f.src);
        v.voxels.insert(v.voxels.end(), f.pixels.begin(), f.pixels.end());
    }
    return v;
}

core::Result<std::vector<std::vector<float>>> read_pixels(const std::string& file) {
    core::Volume scratch;
    auto frames = load_frames(file, scratch, false);
    if (!frames) return frames.error();
    std::vector<std::vector<float>> out;
    for (auto& f : frames.value()) out.push_back(std::move(f.pixels));
    return out;
}

}  // namespace triage::dicom_io
