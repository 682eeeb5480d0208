#pragma once
// The one inference worker: claims queued jobs (highest priority, oldest first), analyzes the
// study, writes segment maps and the DICOM outputs (SEG, SR), stores results, outputs and pending
// deliveries in one transaction, and moves the job to done or failed. Owns no model:
// the loaded Model is shared and immutable.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.h"
#include "pipeline/model.h"
#include "storage/analysis_store.h"
#include "storage/instance_index.h"
#include "storage/job_queue.h"

namespace triage::daemon {

class AnalysisWorker {
public:
    AnalysisWorker(const config::Config& cfg, storage::InstanceIndex& index, storage::JobQueue& jobs,
                   storage::AnalysisStore& results, const pipeline::Model& model, std::string device_uid)
        : m_cfg(cfg), m_index(index), m_jobs(jobs), m_results(results), m_model(model),
          m_device_uid(std::move(device_uid)), m_priority(cfg.priority), m_destinations(cfg.destinations) {}
    /// Called after a job's results and outputs are saved (senders, notifications). Before start().
    void on_results(std::function<void(const storage::AnalysisRecord&)> fn) { m_on_results = std::move(fn); }
    /// Priority rules and destinations for the next jobs (SIGHUP).
    void set_rules(const config::PriorityConfig& priority, const std::vector<config::Destination>& destinations);
    ~AnalysisWorker() { stop(); }
    void start();
    /// Wakes the worker (a job was queued).
    void notify();
    /// Lets the running job finish, then stops. Idempotent. False when the job was still running
    /// at `deadline` (the thread is left to the process exit; the job is re-queued at next start).
    bool stop(std::chrono::seconds deadline = std::chrono::hours(24));
    bool busy() const { return m_busy.load(); }

private:
    void loop();
    core::Status process(const storage::JobRecord& job);

    const config::Config& m_cfg;
    storage::InstanceIndex& m_index;
    storage::JobQueue& m_jobs;
    storage::AnalysisStore& m_results;
    const pipeline::Model& m_model;
    std::string m_device_uid;
    std::mutex m_rules_mutex;
    config::PriorityConfig m_priority;
    std::vector<config::Destination> m_destinations;
    std::function<void(const storage::AnalysisRecord&)> m_on_results;
    std::atomic<bool> m_stop{false}, m_busy{false};
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_wake = false;
    std::thread m_thread;
};

}  // namespace triage::daemon
