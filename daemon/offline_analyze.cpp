#include "daemon/offline_analyze.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "core/file_util.h"
#include "core/log.h"
#include "core/segment_map.h"
#include "daemon/study_analysis.h"
#include "daemon/priority.h"
#include "daemon/study_json.h"
#include "daemon/study_outputs.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/instance_meta.h"

namespace triage::daemon {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
struct StudyFiles {
    dicom_io::InstanceMeta first;
    std::map<std::string, SeriesInput> series;
};
}  // namespace

core::Result<json> analyze_folder(const config::Config& cfg, const std::string& dir, const std::string& out_dir) {
    if (auto st = dicom_io::init_dcmtk(); !st) return st.error();
    if (!fs::is_directory(dir)) return core::make_error(core::ErrorKind::NotFound, "no folder " + dir);
    std::map<std::string, StudyFiles> studies;
    int skipped = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        auto meta = dicom_io::read_instance_meta(e.path().string());
        if (!meta) {
            ++skipped;
            continue;
        }
        StudyFiles& s = studies[meta->study_uid];
        if (s.series.empty()) s.first = meta.value();
        auto [it, fresh] = s.series.try_emplace(meta->series_uid);
        if (fresh)
            it->second = {meta->series_uid, meta->modality, meta->sop_class_uid, meta->image_type, meta->body_part,
                          meta->series_description, meta->rows, meta->frames, {}};
        it->second.files.push_back(e.path().string());
    }
    if (skipped) TRIAGE_LOG_WARN("app", "{} file(s) under {} are not usable DICOM and were ignored", skipped, dir);
    if (studies.empty()) return core::make_error(core::ErrorKind::NotFound, "no DICOM study under " + dir);
    auto model = pipeline::Model::load(cfg.model.bundle, cfg.model.device, cfg.model.threads);
    if (!model) return model.error();
    json docs = json::array();
    for (auto& [uid, s] : studies) {
        std::vector<SeriesInput> series;
        for (auto& [_, x] : s.series) series.push_back(std::move(x));
        auto a = analyze_study(series, *model.value(), cfg.model.batch_size, cfg.analysis);
        if (!a) return a.error();
        std::string study_dir = out_dir + "/" + uid;
        if (auto st = core::make_dirs(study_dir); !st) return st.error();
        storage::AnalysisRecord r;
        r.study_uid = uid;
        r.model_name = model.value()->manifest().name;
        r.model_version = model.value()->manifest().version;
        r.model_sha256 = model.value()->manifest().sha256;
        r.region = a->region;
        r.report = a->report;
        r.series = a->series;
        r.findings = a->findings;
        r.seconds_total = a->seconds_total;
        json d{{"study_uid", uid}, {"patient_id", s.first.patient_id}, {"accession", s.first.accession},
               {"state", "done"}, {"jobs", json::array()}, {"outputs", json::array()}, {"deliveries", json::array()},
               {"priority_level", nullptr}, {"priority_score", nullptr}};
        d["segment_maps"] = json::array();
        for (size_t k = 0; k < a->analyses.size(); ++k) {
            const auto& v = a->volumes[k];
            std::string path = study_dir + "/" + v.series_uid + ".segmap";
            if (auto st = core::write_segment_map(path, {v.columns, v.rows, v.slices, a->analyses[k].segments}); !st)
                return st.error();
            d["segment_maps"].push_back({{"series_uid", v.series_uid}, {"path", path}});
        }
        const auto& manifest = model.value()->manifest();
        StudyPriority priority = score_study(r.findings, cfg.priority, outside_domain_series(r.series));
        r.priority_score = priority.score;
        r.priority_level = priority.level;
        r.priority_reasons = priority.reasons;
        auto outputs = write_study_outputs(a.value(), series, manifest,
                                           make_producer(manifest, cfg.node.ae_title, dicom_io::new_uid()),
                                           priority_text(priority), study_dir, {});
        if (!outputs) return outputs.error();
        r.outputs = std::move(outputs->outputs);
        r.output_errors = std::move(outputs->errors);
        put_analysis(d, r, "");
        std::ofstream(study_dir + "/report.json") << d.dump(2) << "\n";
        docs.push_back(d);
    }
    return docs.size() == 1 ? docs[0] : docs;
}

}  // namespace triage::daemon
