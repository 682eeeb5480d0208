#include "daemon/retention_worker.h"

#include <filesystem>

#include "core/file_util.h"
#include "core/log.h"

namespace triage::daemon {

namespace fs = std::filesystem;

namespace {
std::string days_ago(const core::Clock& clock, double days) {
    return core::format_iso8601(clock.now() -
                                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                    std::chrono::duration<double>(days * 86400.0)));
}
}  // namespace

void RetentionWorker::start() {
    if (m_rules.instances_days <= 0 && m_rules.outputs_days <= 0 && m_rules.high_water_percent <= 0) return;
    m_thread = std::thread([this] {
        while (!m_stop) {
            run_once();
            std::unique_lock lock(m_mutex);
            m_cv.wait_for(lock, std::chrono::seconds(m_rules.check_interval_seconds), [this] { return m_stop.load(); });
        }
    });
}

void RetentionWorker::stop() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
}

int RetentionWorker::run_once() { return purge_by_age() + purge_for_space(); }

void RetentionWorker::remove_files(const std::vector<std::string>& relative) {
    for (const auto& rel : relative) {
        std::error_code ec;
        fs::path p = fs::path(m_data_dir) / rel;
        fs::remove_all(p, ec);
        if (ec) TRIAGE_LOG_WARN("retention", "cannot delete {}: {}", p.string(), ec.message());
        // Empty series/study folders go too.
        for (fs::path dir = p.parent_path(); dir != fs::path(m_data_dir) && dir.has_parent_path(); dir = dir.parent_path())
            if (!fs::remove(dir, ec)) break;
    }
}

int RetentionWorker::purge_by_age() {
    int purged = 0;
    if (m_rules.instances_days > 0) {
        auto due = m_retention.instances_to_purge(days_ago(m_clock, m_rules.instances_days), 1000);
        if (!due) TRIAGE_LOG_ERROR("retention", "{}", due.error().message);
        for (const auto& s : due ? due.value() : std::vector<storage::SettledStudy>{}) {
            auto files = m_retention.purge_instances(s.study_uid, "age");
            if (!files || files->empty()) continue;
            remove_files(files.value());
            TRIAGE_LOG_INFO("retention", "study={} {} instance file(s) deleted (settled {})", s.study_uid, files->size(),
                            s.settled_at);
            ++purged;
        }
    }
    if (m_rules.outputs_days > 0) {
        auto due = m_retention.studies_to_purge(days_ago(m_clock, m_rules.outputs_days), 1000);
        if (!due) TRIAGE_LOG_ERROR("retention", "{}", due.error().message);
        for (const auto& s : due ? due.value() : std::vector<storage::SettledStudy>{}) {
            auto dirs = m_retention.purge_study(s.study_uid, "age");
            if (!dirs || dirs->empty()) continue;
            remove_files(dirs.value());
            TRIAGE_LOG_INFO("retention", "study={} purged with its results (settled {})", s.study_uid, s.settled_at);
            ++purged;
        }
    }
    return purged;
}

int RetentionWorker::purge_for_space() {
    int purged = 0;
    if (m_rules.high_water_percent <= 0) return 0;
    for (;;) {
        auto used = core::used_percent(m_data_dir);
        if (!used || used.value() <= m_rules.high_water_percent) break;
        auto oldest = m_retention.instances_to_purge(core::format_iso8601(m_clock.now()), 1);
        if (!oldest || oldest->empty()) {
            TRIAGE_LOG_WARN("retention", "disk {:.1f}% used (high water {:.0f}%) and no settled study left to purge",
                            used ? used.value() : 0.0, m_rules.high_water_percent);
            break;
        }
        const auto& s = oldest->front();
        auto files = m_retention.purge_instances(s.study_uid, "disk_high_water");
        if (!files || files->empty()) break;
        remove_files(files.value());
        TRIAGE_LOG_WARN("retention", "disk {:.1f}% used: instances of study={} deleted early ({} file(s))", used.value(),
                        s.study_uid, files->size());
        ++purged;
    }
    return purged;
}

}  // namespace triage::daemon
