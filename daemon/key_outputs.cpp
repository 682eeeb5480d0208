#include "daemon/key_outputs.h"

#include <fmt/format.h>

#include <map>
#include <tuple>

#include "core/log.h"
#include "dicom_io/instance_meta.h"
#include "pipeline/analyzer.h"

namespace triage::daemon {

namespace {

/// SOP Instance UID -> file, for the instances of one series.
std::map<std::string, std::string> files_by_uid(const std::vector<std::string>& files) {
    std::map<std::string, std::string> out;
    for (const auto& f : files)
        if (auto m = dicom_io::read_instance_meta(f)) out.emplace(m->sop_instance_uid, f);
    return out;
}

std::vector<std::uint8_t> slice_mask(const core::SeriesAnalysis& a, const core::Volume& v, int z, int segment) {
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    std::vector<std::uint8_t> mask(plane, 0);
    const std::uint8_t* labels = a.segments.data() + plane * static_cast<size_t>(z);
    for (size_t k = 0; k < plane; ++k) mask[k] = labels[k] == segment ? 1 : 0;
    return mask;
}

}  // namespace

std::vector<std::string> key_image_lines(const core::Finding& f, const std::string& name, int slices) {
    return {fmt::format("{}: {:.0f} mm, {:.1f} mL", name, f.diameter_mm, f.volume_ml),
            fmt::format("slice {} of {} (lesion on slices {}-{})", f.key_slice + 1, slices, f.first_slice + 1,
                        f.last_slice + 1)};
}

std::vector<KeyImage> write_key_images(const core::SeriesAnalysis& analysis, const core::Volume& volume,
                                       const std::vector<std::string>& names, const std::vector<std::string>& files,
                                       const pipeline::Manifest& manifest, const dicom_io::Producer& producer,
                                       KeyImageSeries& series, const std::string& dir, std::vector<std::string>& errors) {
    std::vector<KeyImage> out;
    if (analysis.findings.empty()) return out;
    const auto by_uid = files_by_uid(files);
    const size_t plane = static_cast<size_t>(volume.rows) * volume.columns;
    for (size_t k = 0; k < analysis.findings.size(); ++k) {
        const core::Finding& f = analysis.findings[k];
        const std::string what = "key image of " + names[k];
        if (f.key_slice < 0 || f.key_slice >= volume.slices || analysis.segments.size() != plane * volume.slices) {
            errors.push_back(what + " not written: no key slice");
            continue;
        }
        const core::SliceSource& src = volume.sources[static_cast<size_t>(f.key_slice)];
        auto file = by_uid.find(src.sop_instance_uid);
        if (file == by_uid.end()) {
            errors.push_back(what + " not written: the key slice's instance is not stored");
            continue;
        }
        std::vector<std::uint8_t> mask = slice_mask(analysis, volume, f.key_slice, f.segment);
        dicom_io::KeyImageInput in;
        in.source_file = file->second;
        in.source_frame = src.frame;
        in.mask = &mask;
        if (volume.modality == "CT") {
            std::tie(in.window_low, in.window_high) = pipeline::ct_window(manifest, volume);
        } else {
            in.window_from_slice = true;
        }
        in.lines = key_image_lines(f, names[k], volume.slices);
        in.producer = producer;
        in.series_uid = series.series_uid;
        in.series_number = series.series_number;
        in.instance_number = series.next_instance;
        auto written = dicom_io::write_key_image(in, fmt::format("{}/key-{}.dcm", dir, series.next_instance));
        if (!written) {
            TRIAGE_LOG_ERROR("dicom", "{} not written: {}", what, written.error().message);
            errors.push_back(what + " not written: " + written.error().message);
            continue;
        }
        ++series.next_instance;
        out.push_back({names[k], written.value()});
    }
    return out;
}

}  // namespace triage::daemon
