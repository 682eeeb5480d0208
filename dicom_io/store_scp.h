#pragma once
// The node's DICOM receiver: C-ECHO and C-STORE SCP for CT/MR department storage classes and
// every transfer syntax in the corpus, stored bit-for-bit as received.
// Own accept loop feeding a fixed pool of worker threads (DcmSCPPool leaks a thread stack per
// association in DCMTK 3.6.7, see DCMTK-NOTES.md). Associations beyond max_associations are
// rejected transiently; callers not in the access rules are rejected as "calling AE not
// recognized"; a wrong called AE as "called AE not recognized".
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/caller_rule.h"
#include "core/result.h"
#include "dicom_io/instance_sink.h"

struct T_ASC_Network;
struct T_ASC_Association;

namespace triage::dicom_io {

struct ScpSettings {
    std::string ae_title = "TRIAGE";
    std::string bind = "0.0.0.0";
    int port = 11112;  // 0: any free port (see StoreScp::port())
    int max_associations = 16;
    int dimse_timeout_seconds = 60;
    std::string incoming_dir;  // temp files while receiving; same file system as the store
    std::vector<core::CallerRule> callers;
};

class StoreScp {
public:
    StoreScp(ScpSettings settings, InstanceSink& sink);
    ~StoreScp();
    StoreScp(const StoreScp&) = delete;
    StoreScp& operator=(const StoreScp&) = delete;

    /// Binds, listens and starts the threads. Errors name the address.
    core::Status start();
    /// The bound TCP port (after start()).
    int port() const { return m_port; }
    /// Stops accepting, lets open associations finish for up to `drain`, then aborts them
    /// between instances (an instance being received is finished first). Idempotent.
    void stop(std::chrono::seconds drain);
    /// Replaces the access rules (config reload); thread-safe.
    void set_callers(std::vector<core::CallerRule> callers);
    int active_associations() const { return m_active.load(); }

    // Used by the worker threads.
    bool caller_allowed(const std::string& calling_ae, const std::string& peer);
    const ScpSettings& settings() const { return m_settings; }
    InstanceSink& sink() { return m_sink; }
    bool aborting() const { return m_abort.load(); }
    std::string next_temp_path(const std::string& sop_instance_uid);

private:
    void accept_loop();
    void worker_loop();
    void reject_busy(T_ASC_Association* assoc, const std::string& peer);
    core::Status open_listener();
    /// Reads the A-ASSOCIATE-RQ from an accepted socket; nullptr (socket closed) on failure.
    T_ASC_Association* receive_request(int fd, int timeout_s);

    ScpSettings m_settings;
    InstanceSink& m_sink;
    struct SharedConfig;
    std::unique_ptr<SharedConfig> m_config;
    T_ASC_Network* m_net = nullptr;
    int m_listen_fd = -1;
    int m_placeholder_fd = -1;  // handed to DCMTK at network initialisation only
    int m_port = 0;
    std::atomic<bool> m_stop{false}, m_abort{false};
    std::atomic<int> m_active{0};
    std::atomic<std::uint64_t> m_counter{0};
    std::mutex m_mutex;
    std::condition_variable m_cv;
    struct Pending {
        int fd = -1;
        std::string peer;  // textual IP address
    };
    std::deque<Pending> m_queue;  // accepted sockets waiting for a worker
    std::mutex m_dul_mutex;
    std::vector<core::CallerRule> m_callers;
    std::thread m_acceptor;
    std::vector<std::thread> m_workers;
};

}  // namespace triage::dicom_io
