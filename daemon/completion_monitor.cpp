#include "daemon/completion_monitor.h"

#include "core/log.h"

namespace triage::daemon {

int CompletionMonitor::tick() {
    std::string cutoff = core::format_iso8601(m_clock.now() - std::chrono::seconds(m_quiet_seconds));
    auto due = m_index.studies_quiet_since(cutoff);
    if (!due) {
        TRIAGE_LOG_ERROR("db", "completion check failed: {}", due.error().message);
        return 0;
    }
    int queued = 0;
    for (const auto& study : due.value()) {
        if (m_open(study)) continue;
        auto job = m_jobs.complete_study(study, cutoff, "quiet");
        if (!job) {
            TRIAGE_LOG_ERROR("db", "completing study={} failed: {}", study, job.error().message);
            continue;
        }
        if (job.value()) {
            ++queued;
            TRIAGE_LOG_INFO("app", "study={} complete: job={} version {} queued", study,
                            job.value()->id, job.value()->version);
        } else {
            TRIAGE_LOG_DEBUG("app", "study={}: no new job (one is queued, or an instance arrived)", study);
        }
    }
    return queued;
}

}  // namespace triage::daemon
