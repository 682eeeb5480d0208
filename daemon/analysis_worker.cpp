#include "daemon/analysis_worker.h"

#include <map>

#include "core/file_util.h"
#include "core/log.h"
#include "core/segment_map.h"
#include "daemon/metrics.h"
#include "daemon/priority.h"
#include "daemon/study_analysis.h"
#include "daemon/study_outputs.h"

namespace triage::daemon {

void AnalysisWorker::set_rules(const config::PriorityConfig& priority, const std::vector<config::Destination>& destinations) {
    std::lock_guard lock(m_rules_mutex);
    m_priority = priority;
    m_destinations = destinations;
}

void AnalysisWorker::start() {
    m_thread = std::thread([this] { loop(); });
}

void AnalysisWorker::notify() {
    std::lock_guard lock(m_mutex);
    m_wake = true;
    m_cv.notify_one();
}

bool AnalysisWorker::stop(std::chrono::seconds deadline) {
    m_stop = true;
    notify();
    if (!m_thread.joinable()) return true;
    auto until = std::chrono::steady_clock::now() + deadline;
    while (m_busy && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (m_busy) {
        m_thread.detach();
        return false;
    }
    m_thread.join();
    return true;
}

void AnalysisWorker::loop() {
    while (!m_stop) {
        auto job = m_jobs.claim();
        if (!job) TRIAGE_LOG_ERROR("db", "claiming a job failed: {}", job.error().message);
        if (!job || !job.value()) {
            std::unique_lock lock(m_mutex);
            m_cv.wait_for(lock, std::chrono::seconds(1), [this] { return m_wake; });
            m_wake = false;
            continue;
        }
        const storage::JobRecord& j = *job.value();
        m_busy = true;
        TRIAGE_LOG_INFO("pipeline", "job={} study={} version {} started", j.id, j.study_uid, j.version);
        core::Status st;
        try {
            st = process(j);
        } catch (const std::exception& e) {
            st = core::make_error(core::ErrorKind::Internal, std::string("unexpected: ") + e.what());
        }
        node_metrics().add("triage_jobs_total", {{"outcome", st ? "done" : "failed"}});
        if (auto f = m_jobs.finish(j.id, st.ok(), st ? "" : st.error().message); !f)
            TRIAGE_LOG_ERROR("db", "job={} could not be closed: {}", j.id, f.error().message);
        if (st) {
            TRIAGE_LOG_INFO("pipeline", "job={} study={} done", j.id, j.study_uid);
        } else {
            TRIAGE_LOG_ERROR("pipeline", "job={} study={} failed: {}", j.id, j.study_uid, st.error().message);
        }
        m_busy = false;
    }
}

core::Status AnalysisWorker::process(const storage::JobRecord& job) {
    // Results saved but the job not closed (a crash in between): close it, never redo the outputs.
    if (auto saved = m_results.has_results(job.id); !saved || saved.value()) return saved ? core::Status{} : saved.error();
    auto instances = m_index.list_instances(job.study_uid);
    if (!instances) return instances.error();
    std::vector<SeriesInput> series;
    std::map<std::string, size_t> at;
    for (const auto& i : instances.value()) {
        auto [it, fresh] = at.emplace(i.series_uid, series.size());
        if (fresh)
            series.push_back({i.series_uid, i.modality, i.sop_class_uid, i.image_type, i.body_part,
                              i.series_description, i.rows, i.frames, {}});
        series[it->second].files.push_back(m_cfg.node.data_dir + "/" + i.file_path);
    }
    auto study = analyze_study(series, m_model, m_cfg.model.batch_size, m_cfg.analysis);
    if (!study) return study.error();
    storage::AnalysisRecord r;
    r.job_id = job.id;
    r.study_uid = job.study_uid;
    const auto& m = m_model.manifest();
    r.model_name = m.name;
    r.model_version = m.version;
    r.model_sha256 = m.sha256;
    r.region = study->region;
    r.report = study->report;
    r.seconds_total = study->seconds_total;
    for (const auto& a : study->analyses) {
        r.seconds_preprocess += a.seconds_preprocess, r.seconds_vision += a.seconds_vision;
        r.seconds_decode += a.seconds_decode, r.seconds_mask += a.seconds_mask;
    }
    std::string dir = "results/" + job.study_uid + "/job" + std::to_string(job.id);
    if (auto st = core::make_dirs(m_cfg.node.data_dir + "/" + dir); !st) return st;
    for (size_t k = 0; k < study->analyses.size(); ++k) {
        const auto& a = study->analyses[k];
        const auto& v = study->volumes[k];
        std::string rel = dir + "/" + a.series_uid + ".segmap";
        if (auto st = core::write_segment_map(m_cfg.node.data_dir + "/" + rel, {v.columns, v.rows, v.slices, a.segments}); !st)
            return st;
        for (auto& s : study->series)
            if (s.series_uid == a.series_uid) s.segments_path = rel;
    }
    r.series = study->series;
    r.findings = study->findings;
    config::PriorityConfig rules;
    std::vector<config::Destination> destinations;
    {
        std::lock_guard lock(m_rules_mutex);
        rules = m_priority;
        destinations = m_destinations;
    }
    StudyPriority priority = score_study(r.findings, rules, outside_domain_series(r.series));
    r.priority_score = priority.score;
    r.priority_level = priority.level;
    r.priority_reasons = priority.reasons;
    std::string out_rel = "outputs/" + job.study_uid + "/job" + std::to_string(job.id);
    std::string out_dir = m_cfg.node.data_dir + "/" + out_rel;
    if (auto st = core::make_dirs(out_dir); !st) return st;
    auto outputs = write_study_outputs(study.value(), series, m, make_producer(m, m_cfg.node.ae_title, m_device_uid),
                                       priority_text(priority), out_dir, destinations);
    if (!outputs) return outputs.error();
    for (auto& o : outputs->outputs) o.path = out_rel + o.path.substr(out_dir.size());
    r.outputs = std::move(outputs->outputs);
    r.output_errors = std::move(outputs->errors);
    if (auto st = m_results.save(r); !st) return st;
    if (m_on_results) m_on_results(r);
    for (auto [stage, seconds] : {std::pair{"preprocess", r.seconds_preprocess}, {"vision", r.seconds_vision},
                                  {"decode", r.seconds_decode}, {"mask", r.seconds_mask}, {"total", r.seconds_total}})
        node_metrics().observe("triage_inference_seconds", {{"stage", stage}}, seconds);
    return {};
}

}  // namespace triage::daemon
