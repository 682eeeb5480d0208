#pragma once
// Applies [retention] on its own thread: purges the instances of studies settled longer than
// instances_days, whole studies settled longer than outputs_days, and, while the disk is fuller
// than high_water_percent, the instances of the oldest settled studies. Never touches a study that
// is receiving, queued, running or waiting for a delivery (storage::Retention decides).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.h"
#include "core/time.h"
#include "storage/retention.h"

namespace triage::daemon {

class RetentionWorker {
public:
    RetentionWorker(const config::RetentionConfig& rules, std::string data_dir, storage::Retention& retention,
                    const core::Clock& clock)
        : m_rules(rules), m_data_dir(std::move(data_dir)), m_retention(retention), m_clock(clock) {}
    ~RetentionWorker() { stop(); }
    void start();
    void stop();
    /// One pass (also used by the thread); returns the number of purges.
    int run_once();

private:
    int purge_by_age();
    int purge_for_space();
    void remove_files(const std::vector<std::string>& relative);

    config::RetentionConfig m_rules;
    std::string m_data_dir;
    storage::Retention& m_retention;
    const core::Clock& m_clock;
    std::atomic<bool> m_stop{false};
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::thread m_thread;
};

}  // namespace triage::daemon
