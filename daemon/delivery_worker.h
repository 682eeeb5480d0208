#pragma once
// One sender per [[destination]]: takes the destination's due deliveries from the database, sends
// them over one association, and records each outcome: sent, retry later (exponential backoff with
// jitter, capped) or failed (permanent error, or max_attempts reached). Destinations never wait on
// each other; pending rows survive restarts because the queue is the database.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "config/config.h"
#include "core/time.h"
#include "storage/delivery_queue.h"

namespace triage::daemon {

class DeliveryWorker {
public:
    DeliveryWorker(config::Destination destination, const config::DeliveryConfig& policy, std::string calling_ae,
                   std::string data_dir, storage::DeliveryQueue& queue, const core::Clock& clock)
        : m_dest(std::move(destination)), m_policy(policy), m_calling_ae(std::move(calling_ae)),
          m_data_dir(std::move(data_dir)), m_queue(queue), m_clock(clock) {}
    ~DeliveryWorker() { stop(); }
    void start();
    void notify();
    /// Finishes the association in flight (bounded by the timeout), then stops. Idempotent.
    void stop();
    /// The wait before attempt `attempts + 1` after `attempts` failures, without jitter.
    static double backoff_seconds(const config::DeliveryConfig& policy, int attempts);

private:
    void loop();
    void send(const std::vector<storage::Delivery>& batch);

    config::Destination m_dest;
    config::DeliveryConfig m_policy;
    std::string m_calling_ae, m_data_dir;
    storage::DeliveryQueue& m_queue;
    const core::Clock& m_clock;
    std::atomic<bool> m_stop{false};
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_wake = false;
    std::thread m_thread;
};

}  // namespace triage::daemon
