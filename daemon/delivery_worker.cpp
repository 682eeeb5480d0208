#include "daemon/delivery_worker.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "core/log.h"
#include "daemon/metrics.h"
#include "dicom_io/store_scu.h"

namespace triage::daemon {

using Outcome = storage::Attempt::Outcome;

void DeliveryWorker::start() {
    m_thread = std::thread([this] { loop(); });
}

void DeliveryWorker::notify() {
    std::lock_guard lock(m_mutex);
    m_wake = true;
    m_cv.notify_one();
}

void DeliveryWorker::stop() {
    m_stop = true;
    notify();
    if (m_thread.joinable()) m_thread.join();
}

double DeliveryWorker::backoff_seconds(const config::DeliveryConfig& policy, int attempts) {
    double wait = policy.retry_base_seconds * std::pow(2.0, std::max(0, attempts - 1));
    return std::min(wait, policy.retry_max_seconds);
}

void DeliveryWorker::loop() {
    while (!m_stop) {
        auto batch = m_queue.due(m_dest.name, 64);
        if (!batch) TRIAGE_LOG_ERROR("delivery", "destination={} cannot read its queue: {}", m_dest.name, batch.error().message);
        if (batch && !batch->empty()) {
            send(batch.value());
            continue;
        }
        double wait = 5;
        if (auto next = m_queue.seconds_until_due(m_dest.name); next && next.value()) wait = std::clamp(*next.value(), 0.05, 5.0);
        std::unique_lock lock(m_mutex);
        m_cv.wait_for(lock, std::chrono::duration<double>(wait), [this] { return m_wake; });
        m_wake = false;
    }
}

void DeliveryWorker::send(const std::vector<storage::Delivery>& batch) {
    std::vector<dicom_io::OutgoingInstance> instances;
    for (const auto& d : batch) instances.push_back({m_data_dir + "/" + d.path, d.sop_class_uid, d.sop_instance_uid});
    dicom_io::Peer peer{m_dest.ae_title, m_dest.host, m_calling_ae, m_dest.port, m_policy.timeout_seconds};
    auto result = dicom_io::send_instances(peer, instances);
    thread_local std::mt19937 rng(std::random_device{}());
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    for (size_t i = 0; i < batch.size(); ++i) {
        const storage::Delivery& d = batch[i];
        dicom_io::SendOutcome o;
        if (result) {
            o = result.value()[i];
        } else {
            o.kind = result.error().kind;
            o.error = result.error().message;
        }
        storage::Attempt a;
        a.status = o.status;
        a.error = o.error;
        int attempts = d.attempts + 1;
        if (o.ok) {
            a.outcome = Outcome::Sent;
            TRIAGE_LOG_INFO("delivery", "destination={} {} {} sent (status 0x{:04X})", m_dest.name, d.kind,
                            d.sop_instance_uid, o.status);
        } else if (o.kind == core::ErrorKind::Transient && attempts < m_policy.max_attempts) {
            a.outcome = Outcome::Retry;
            double wait = backoff_seconds(m_policy, attempts) * jitter(rng);
            a.next_attempt = m_clock.now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(wait));
            TRIAGE_LOG_WARN("delivery", "destination={} {} {} attempt {} failed, retry in {:.0f} s: {}", m_dest.name, d.kind,
                            d.sop_instance_uid, attempts, wait, o.error);
        } else {
            a.outcome = Outcome::Failed;
            if (o.kind == core::ErrorKind::Transient) a.error = fmt::format("gave up after {} attempts: {}", attempts, o.error);
            TRIAGE_LOG_ERROR("delivery", "destination={} {} {} failed: {}", m_dest.name, d.kind, d.sop_instance_uid, a.error);
        }
        node_metrics().add("triage_deliveries_total",
                           {{"destination", m_dest.name},
                            {"outcome", a.outcome == Outcome::Sent ? "sent" : a.outcome == Outcome::Retry ? "retry" : "failed"}});
        if (auto st = m_queue.record(d, a); !st)
            TRIAGE_LOG_ERROR("db", "delivery {} outcome not recorded: {}", d.id, st.error().message);
    }
}

}  // namespace triage::daemon
