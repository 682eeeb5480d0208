#include "daemon/study_outputs.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/log.h"
#include "daemon/key_outputs.h"

namespace triage::daemon {

namespace {

const pipeline::LabelInfo* label_info(const pipeline::Manifest& m, const std::string& text) {
    for (const auto& l : m.labels)
        if (l.text == text) return &l;
    return m.generic_label ? &*m.generic_label : nullptr;  // a free-text label (format-2 model): generic codes
}

std::vector<std::string> destinations_for(const std::string& kind, const std::vector<config::Destination>& all) {
    std::vector<std::string> out;
    for (const auto& d : all)
        if (std::find(d.send.begin(), d.send.end(), kind) != d.send.end()) out.push_back(d.name);
    return out;
}

/// The study's Key Object Selection over everything written so far (key images as IMAGE items,
/// SEG and SR as COMPOSITE items).
core::Result<storage::OutputRecord> write_study_kos(const std::vector<storage::OutputRecord>& written_so_far,
                                                    const std::string& source_file, const dicom_io::Producer& producer,
                                                    const std::string& dir) {
    dicom_io::KosInput kos;
    kos.source_file = source_file;
    kos.producer = producer;
    kos.series_number = 9960;
    int keys = 0, segs = 0;
    for (const auto& o : written_so_far) {
        kos.references.push_back({o.series_uid, o.sop_class_uid, o.sop_instance_uid, o.kind == "keyimage"});
        keys += o.kind == "keyimage", segs += o.kind == "seg";
    }
    kos.description = fmt::format("Results of {} {}: {} key image(s), {} segmentation(s) and the measurement report.",
                                  producer.model_name, producer.model_version, keys, segs) +
                      (producer.demonstration_only ? " Demonstration model, not for diagnosis." : "");
    auto written = dicom_io::write_kos(kos, dir + "/kos.dcm");
    if (!written) return written.error();
    return storage::OutputRecord{0, "kos", written->series_uid, "", written->sop_class_uid, written->sop_instance_uid,
                                 written->path, 0, {}};
}

}  // namespace

dicom_io::Producer make_producer(const pipeline::Manifest& manifest, const std::string& ae_title,
                                 const std::string& device_uid) {
    dicom_io::Producer p;
    p.software_version = TRIAGE_VERSION;
    p.model_name = manifest.name;
    p.model_version = manifest.version;
    p.device_uid = device_uid;
    p.station_ae = ae_title;
    p.demonstration_only = manifest.demonstration_only;
    return p;
}

core::Result<StudyOutputs> write_study_outputs(
    const StudyAnalysis& study, const std::vector<SeriesInput>& inputs, const pipeline::Manifest& manifest,
    const dicom_io::Producer& producer, const std::string& priority_text, const std::string& dir,
    const std::vector<config::Destination>& destinations) {
    if (inputs.empty() || inputs.front().files.empty())
        return core::make_error(core::ErrorKind::Internal, "no source instances for the outputs");
    StudyOutputs result;
    std::vector<storage::OutputRecord>& out = result.outputs;
    auto failed = [&](const std::string& what, const core::Error& e) {
        TRIAGE_LOG_ERROR("dicom", "{} not written: {}", what, e.message);
        result.errors.push_back(what + " not written: " + e.message);
    };
    dicom_io::SrInput sr;
    sr.source_file = inputs.front().files.front();
    sr.region = study.region;
    sr.modality = study.volumes.empty() ? "" : study.volumes.front().modality;
    sr.findings_text = study.report.findings;
    sr.impression_text = study.report.impression;
    sr.priority_text = priority_text;
    sr.producer = producer;
    sr.series_number = 9900;
    std::map<std::string, int> label_count;  // "liver tumor", "liver tumor 2", ... across the study
    KeyImageSeries key_series{dicom_io::new_uid()};
    for (size_t k = 0; k < study.analyses.size(); ++k) {
        const core::SeriesAnalysis& a = study.analyses[k];
        const core::Volume& v = study.volumes[k];
        std::set<std::string> seen;
        for (const auto& s : v.sources)
            if (seen.insert(s.sop_instance_uid).second) sr.evidence.push_back({v.series_uid, s.sop_class_uid, s.sop_instance_uid});
        if (a.findings.empty()) continue;
        dicom_io::SegInput seg;
        seg.geometry = &v;
        seg.labels = &a.segments;
        seg.producer = producer;
        seg.series_number = 9901 + static_cast<int>(out.size());
        for (const auto& in : inputs)
            if (in.series_uid == a.series_uid && !in.files.empty()) seg.source_file = in.files.front();
        std::vector<dicom_io::SrLesion> lesions;
        std::vector<std::string> names;
        for (const auto& f : a.findings) {
            const pipeline::LabelInfo* info = label_info(manifest, f.label);
            if (!info) return core::make_error(core::ErrorKind::Internal, "label '" + f.label + "' is not in the vocabulary");
            int n = ++label_count[f.label];
            std::string name = n == 1 ? f.label : f.label + " " + std::to_string(n);
            names.push_back(name);
            dicom_io::SegmentSpec spec{f.segment, name, f.description, info->category, info->type, info->region,
                                       name, dicom_io::new_uid()};
            seg.segments.push_back(spec);
            lesions.push_back({name, f.description, v.series_uid, name, spec.tracking_uid, info->type, info->region, "",
                               f.segment, f.volume_ml, f.diameter_mm});
        }
        std::sort(seg.segments.begin(), seg.segments.end(), [](auto& x, auto& y) { return x.number < y.number; });
        std::vector<std::string> series_files;
        for (const auto& in : inputs)
            if (in.series_uid == a.series_uid) series_files = in.files;
        for (const auto& key : write_key_images(a, v, names, series_files, manifest, producer, key_series, dir, result.errors))
            out.push_back({0, "keyimage", key.object.series_uid, a.series_uid, key.object.sop_class_uid,
                           key.object.sop_instance_uid, key.object.path, 0, destinations_for("keyimages", destinations)});
        auto written = dicom_io::write_seg(seg, dir + "/seg-" + a.series_uid + ".dcm");
        if (!written) {  // the rest of the study's outputs still go out; the report text keeps the finding
            failed("SEG of series " + a.series_uid, written.error());
            continue;
        }
        for (auto& l : lesions) l.seg_sop_instance_uid = written->sop_instance_uid;
        sr.lesions.insert(sr.lesions.end(), lesions.begin(), lesions.end());
        sr.evidence.push_back({written->series_uid, written->sop_class_uid, written->sop_instance_uid});
        out.push_back({0, "seg", written->series_uid, a.series_uid, written->sop_class_uid, written->sop_instance_uid,
                       written->path, written->frames, destinations_for("seg", destinations)});
    }
    auto written = dicom_io::write_sr(sr, dir + "/sr.dcm");
    if (!written) {
        failed("SR", written.error());
    } else {
        out.push_back({0, "sr", written->series_uid, "", written->sop_class_uid, written->sop_instance_uid,
                       written->path, 0, destinations_for("sr", destinations)});
    }
    if (auto kos = write_study_kos(out, sr.source_file, producer, dir)) {
        out.push_back(std::move(*kos));
        out.back().destinations = destinations_for("kos", destinations);
    } else if (!out.empty()) {
        failed("KOS", kos.error());
    }
    return result;
}

}  // namespace triage::daemon
