#pragma once
// [notify]: a JSON POST to a webhook when an analyzed study reaches a configured priority level
// (e.g. to page the on-call radiologist). The body carries study and accession, priority, reasons
// and findings — never the patient's name. Retried with backoff on its own thread (in memory: a
// notification still pending at shutdown is logged as dropped); every outcome audited.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.h"
#include "storage/audit_log.h"

namespace triage::daemon {

class WebhookNotifier {
public:
    WebhookNotifier(config::NotifyConfig cfg, storage::AuditLog& audit) : m_cfg(std::move(cfg)), m_audit(audit) {}
    ~WebhookNotifier() { stop(); }
    void start();
    void stop();
    /// Queues a notification when `level` is one of the configured levels.
    void study_prioritized(const std::string& study_uid, const std::string& accession, const std::string& level,
                           double score, const std::vector<std::string>& reasons, const std::string& findings);

private:
    struct Item {
        std::string study_uid, level, body;
        int attempts = 0;
        std::chrono::steady_clock::time_point next;
    };
    void loop();
    void record(const Item& item, const char* event, int status, const std::string& error);

    config::NotifyConfig m_cfg;
    storage::AuditLog& m_audit;
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<Item> m_queue;
    bool m_stop = false;
    std::thread m_thread;
};

}  // namespace triage::daemon
