#include "daemon/webhook.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/time.h"
#include "daemon/http_server.h"

namespace triage::daemon {

void WebhookNotifier::start() {
    if (m_cfg.url.empty()) return;
    m_thread = std::thread([this] { loop(); });
}

void WebhookNotifier::stop() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
    for (const auto& item : m_queue)
        TRIAGE_LOG_WARN("notify", "study={} {} notification dropped at shutdown after {} attempt(s)", item.study_uid,
                        item.level, item.attempts);
}

void WebhookNotifier::study_prioritized(const std::string& study_uid, const std::string& accession,
                                        const std::string& level, double score, const std::vector<std::string>& reasons,
                                        const std::string& findings) {
    if (m_cfg.url.empty() || std::find(m_cfg.levels.begin(), m_cfg.levels.end(), level) == m_cfg.levels.end()) return;
    nlohmann::json body{{"event", "study_prioritized"}, {"study_uid", study_uid}, {"accession", accession},
                        {"priority_level", level},      {"priority_score", score}, {"priority_reasons", reasons},
                        {"findings", findings},         {"time", core::format_iso8601(std::chrono::system_clock::now())}};
    {
        std::lock_guard lock(m_mutex);
        m_queue.push_back({study_uid, level, body.dump(), 0, std::chrono::steady_clock::now()});
    }
    m_cv.notify_all();
}

void WebhookNotifier::record(const Item& item, const char* event, int status, const std::string& error) {
    storage::AuditEvent e;
    e.event = event;
    e.study_uid = item.study_uid;
    if (status > 0) e.status = status;
    nlohmann::json d{{"url", m_cfg.url}, {"level", item.level}, {"attempts", item.attempts}};
    if (!error.empty()) d["error"] = error;
    e.detail = d.dump();
    if (auto st = m_audit.append(std::move(e)); !st) TRIAGE_LOG_ERROR("db", "notification not audited: {}", st.error().message);
}

void WebhookNotifier::loop() {
    std::unique_lock lock(m_mutex);
    while (!m_stop) {
        if (m_queue.empty()) {
            m_cv.wait(lock);
            continue;
        }
        auto next = std::min_element(m_queue.begin(), m_queue.end(), [](auto& a, auto& b) { return a.next < b.next; });
        if (next->next > std::chrono::steady_clock::now()) {
            m_cv.wait_until(lock, next->next);
            continue;
        }
        Item item = *next;
        m_queue.erase(next);
        lock.unlock();
        ++item.attempts;
        auto status = http_post_json(m_cfg.url, item.body, m_cfg.token, m_cfg.timeout_seconds);
        bool ok = status && status.value() >= 200 && status.value() < 300;
        std::string error = ok ? "" : status ? "HTTP " + std::to_string(status.value()) : status.error().message;
        if (ok) {
            TRIAGE_LOG_INFO("notify", "study={} {} notification delivered", item.study_uid, item.level);
            record(item, "notification_sent", status.value(), "");
        } else if (item.attempts >= m_cfg.max_attempts) {
            TRIAGE_LOG_ERROR("notify", "study={} {} notification failed after {} attempts: {}", item.study_uid,
                             item.level, item.attempts, error);
            record(item, "notification_failed", status ? status.value() : 0, error);
        } else {
            TRIAGE_LOG_WARN("notify", "study={} notification attempt {} failed ({}); retrying", item.study_uid,
                            item.attempts, error);
            item.next = std::chrono::steady_clock::now() + std::chrono::seconds(1 << std::min(item.attempts, 8));
        }
        lock.lock();
        if (!ok && item.attempts < m_cfg.max_attempts) m_queue.push_back(item);
    }
}

}  // namespace triage::daemon
