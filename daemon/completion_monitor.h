#pragma once
// Decides when a study is complete: no instance for study_quiet_seconds and no open association
// that delivered part of it. Then exactly one job is enqueued (JobQueue::complete_study).
// The pending flag lives in SQLite, so restarts neither lose nor double-fire a completion.
#include <functional>
#include <string>

#include "core/time.h"
#include "storage/instance_index.h"
#include "storage/job_queue.h"

namespace triage::daemon {

class CompletionMonitor {
public:
    using OpenCheck = std::function<bool(const std::string& study_uid)>;
    CompletionMonitor(storage::InstanceIndex& index, storage::JobQueue& jobs, const core::Clock& clock,
                      OpenCheck has_open_association)
        : m_index(index), m_jobs(jobs), m_clock(clock), m_open(std::move(has_open_association)) {}

    void set_quiet_seconds(int s) { m_quiet_seconds = s; }
    /// One pass: completes every quiet study. Returns how many jobs were queued.
    int tick();

private:
    storage::InstanceIndex& m_index;
    storage::JobQueue& m_jobs;
    const core::Clock& m_clock;
    OpenCheck m_open;
    int m_quiet_seconds = 30;
};

}  // namespace triage::daemon
