#include "dicom_io/store_scp.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scpthrd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "core/log.h"
#include "dicom_io/dimse_status.h"

namespace triage::dicom_io {

using core::ErrorKind;

namespace {

core::RateLimiter g_peer_log(5, std::chrono::seconds(60));

/// Accepted transfer syntaxes, in order of preference when a context proposes several:
/// compressed first (a sender proposing them holds such files: taking them avoids a transcode,
/// and DCMTK senders cannot decompress JPEG 2000), then the uncompressed ones.
const std::vector<std::string>& storage_transfer_syntaxes() {
    static const std::vector<std::string> ts = {
        UID_JPEG2000LosslessOnlyTransferSyntax, UID_JPEGLSLosslessTransferSyntax,
        UID_JPEGProcess14SV1TransferSyntax, UID_JPEGProcess14TransferSyntax,
        UID_RLELosslessTransferSyntax,
        UID_JPEG2000TransferSyntax, UID_JPEGLSLossyTransferSyntax, UID_JPEGProcess1TransferSyntax,
        UID_JPEGProcess2_4TransferSyntax, UID_JPEGProcess6_8TransferSyntax,
        UID_JPEGProcess10_12TransferSyntax,
        UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
        UID_DeflatedExplicitVRLittleEndianTransferSyntax, UID_BigEndianExplicitTransferSyntax};
    // Not offered: syntaxes DCMTK 3.6.7's DIMSE layer cannot receive at all (HTJ2K .4.201-.203,
    // Deflated Image Frame Compression .8.1): refusing the context beats aborting mid-transfer.
    return ts;
}

const std::vector<std::string>& echo_transfer_syntaxes() {
    static const std::vector<std::string> ts = {UID_LittleEndianExplicitTransferSyntax,
                                                UID_LittleEndianImplicitTransferSyntax,
                                                UID_BigEndianExplicitTransferSyntax};
    return ts;
}

/// Storage SOP classes: every class DCMTK knows, and any other standard storage class
/// (1.2.840.10008.5.1.4.1.1.*), so that newer classes (e.g. Label Map Segmentation) are taken.
bool is_storage_sop_class(const std::string& uid) {
    static const std::set<std::string> known = [] {
        std::set<std::string> s;
        for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; ++i) s.insert(dcmAllStorageSOPClassUIDs[i]);
        return s;
    }();
    return known.count(uid) || uid.rfind("1.2.840.10008.5.1.4.1.1.", 0) == 0;
}

std::string trim(const char* s) {
    std::string r(s ? s : "");
    while (!r.empty() && r.back() == ' ') r.pop_back();
    while (!r.empty() && r.front() == ' ') r.erase(r.begin());
    return r;
}

/// One association, run on a pool thread.
class ScpWorker final : public DcmThreadSCP {
public:
    ScpWorker(StoreScp& owner, std::uint64_t id, std::string peer) : m_owner(owner) {
        m_info.id = id;
        m_info.peer = std::move(peer);
    }

    OFCondition serve(T_ASC_Association* assoc) {
        m_assoc = assoc;
        m_info.started = std::chrono::steady_clock::now();
        OFCondition c = run(assoc);
        if (m_accepted) {
            m_owner.sink().association_ended(m_info, m_stats);
        } else {
            m_owner.sink().association_rejected(m_info, m_reject_reason);
        }
        return c;
    }

protected:
    void notifyAssociationRequest(const T_ASC_Parameters& params, DcmSCPActionType&) override {
        m_info.calling_ae = trim(params.DULparams.callingAPTitle);
        m_info.called_ae = trim(params.DULparams.calledAPTitle);
        m_reject_reason = "no acceptable presentation contexts";
    }
    OFBool checkCalledAETitleAccepted(const OFString& called) override {
        if (trim(called.c_str()) == m_owner.settings().ae_title) return OFTrue;
        m_reject_reason = "called AE title not recognized";
        return OFFalse;
    }
    OFBool checkCallingAETitleAccepted(const OFString&) override {
        if (m_owner.caller_allowed(m_info.calling_ae, m_info.peer)) return OFTrue;
        m_reject_reason = "calling AE title not recognized (not in ingest.allowed_callers)";
        return OFFalse;
    }
    void notifyAssociationAcknowledge() override {
        m_accepted = true;
        m_owner.sink().association_accepted(m_info);
    }
    void notifyAbortRequest() override { m_stats.aborted = true; }

    /// Accepts Verification and every storage class, choosing the transfer syntax by our
    /// preference among those proposed (no 128-context limit of DCMTK's profiles).
    OFCondition negotiateAssociation() override {
        T_ASC_Parameters* params = m_assoc->params;
        for (int i = 0; i < ASC_countPresentationContexts(params); ++i) {
            T_ASC_PresentationContext pc;
            if (ASC_getPresentationContext(params, i, &pc).bad()) continue;
            std::string sop = pc.abstractSyntax;
            bool echo = sop == UID_VerificationSOPClass;
            if (!echo && !is_storage_sop_class(sop)) {
                ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
                continue;
            }
            const char* chosen = nullptr;
            for (const auto& ts : echo ? echo_transfer_syntaxes() : storage_transfer_syntaxes()) {
                for (int k = 0; k < pc.transferSyntaxCount && !chosen; ++k)
                    if (ts == pc.proposedTransferSyntaxes[k]) chosen = ts.c_str();
                if (chosen) break;
            }
            if (chosen) {
                ASC_acceptPresentationContext(params, pc.presentationContextID, chosen);
            } else {
                ASC_refusePresentationContext(params, pc.presentationContextID,
                                              ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
            }
        }
        return EC_Normal;
    }
    void notifyDIMSEError(const OFCondition&) override { m_stats.aborted = true; }

    /// Like DcmSCP's loop, but wakes every second to honour a shutdown deadline.
    void handleAssociation() override {
        OFCondition cond = EC_Normal;
        auto idle_since = std::chrono::steady_clock::now();
        const auto idle_limit = std::chrono::seconds(m_owner.settings().dimse_timeout_seconds);
        while (cond.good()) {
            T_DIMSE_Message msg;
            T_ASC_PresentationContextID pres_id = 0;
            cond = DIMSE_receiveCommand(m_assoc, DIMSE_NONBLOCKING, 1, &pres_id, &msg, nullptr);
            if (cond == DIMSE_NODATAAVAILABLE) {
                if (m_owner.aborting() || std::chrono::steady_clock::now() - idle_since > idle_limit) {
                    m_stats.aborted = true;
                    ASC_abortAssociation(m_assoc);
                    return;
                }
                cond = EC_Normal;
                continue;
            }
            if (cond.good()) {
                DcmPresentationContextInfo info;
                getPresentationContextInfo(m_assoc, pres_id, info);
                cond = handleIncomingCommand(&msg, info);
                idle_since = std::chrono::steady_clock::now();
            }
        }
        if (cond == DUL_PEERREQUESTEDRELEASE) {
            ASC_acknowledgeRelease(m_assoc);
        } else {
            m_stats.aborted = true;
            if (cond != DUL_PEERABORTEDASSOCIATION) ASC_abortAssociation(m_assoc);
        }
    }

    OFCondition handleIncomingCommand(T_DIMSE_Message* msg,
                                      const DcmPresentationContextInfo& info) override {
        if (msg->CommandField == DIMSE_C_STORE_RQ)
            return handle_store(msg->msg.CStoreRQ, info.presentationContextID);
        return DcmThreadSCP::handleIncomingCommand(msg, info);
    }

private:
    OFCondition handle_store(T_DIMSE_C_StoreRQ& req, T_ASC_PresentationContextID pres_id) {
        std::string sop_uid = trim(req.AffectedSOPInstanceUID);
        core::Status outcome = m_owner.sink().admit(m_info);
        OFCondition cond;
        std::string temp;
        if (!outcome) {
            DcmDataset* discard = nullptr;  // still read the data set to keep the association usable
            cond = receiveSTORERequest(req, pres_id, discard);
            delete discard;
        } else {
            temp = m_owner.next_temp_path(sop_uid);
            cond = receiveSTORERequest(req, pres_id, OFString(temp.c_str()));
            if (cond.good()) {
                outcome = store_received(req, temp);
            } else {
                outcome = core::make_error(ErrorKind::Transient,
                                           std::string("receiving data set failed: ") + cond.text());
            }
            ::unlink(temp.c_str());  // gone already when stored
        }
        std::uint16_t status = outcome ? kStatusSuccess : store_status_for(outcome.error());
        if (outcome) {
            ++m_stats.stored;
        } else {
            ++m_stats.rejected;
            m_owner.sink().instance_rejected(m_info, sop_uid, status, outcome.error().message);
        }
        if (cond.bad() && !outcome) {
            // The data set did not arrive; answering may still work (e.g. disk full while writing).
            OFCondition c2 = sendSTOREResponse(pres_id, req, status);
            return c2.bad() ? cond : c2;
        }
        return sendSTOREResponse(pres_id, req, status);
    }

    core::Status store_received(const T_DIMSE_C_StoreRQ& req, const std::string& temp) {
        auto meta = read_instance_meta(temp);
        if (!meta) return meta.error();
        if (meta->sop_class_uid != trim(req.AffectedSOPClassUID))
            return core::make_error(ErrorKind::InvalidInput,
                                    "SOP Class UID of the data set differs from the request");
        if (meta->sop_instance_uid != trim(req.AffectedSOPInstanceUID))
            return core::make_error(ErrorKind::InvalidInput,
                                    "SOP Instance UID of the data set differs from the request");
        return m_owner.sink().store(temp, meta.value(), m_info);
    }

    StoreScp& m_owner;
    T_ASC_Association* m_assoc = nullptr;
    AssociationInfo m_info;
    AssociationStats m_stats;
    bool m_accepted = false;
    std::string m_reject_reason;
};

}  // namespace

struct StoreScp::SharedConfig {
    DcmSharedSCPConfig shared;
};

StoreScp::StoreScp(ScpSettings settings, InstanceSink& sink)
    : m_settings(std::move(settings)), m_sink(sink), m_callers(m_settings.callers) {}

StoreScp::~StoreScp() { stop(std::chrono::seconds(0)); }

void StoreScp::set_callers(std::vector<core::CallerRule> callers) {
    std::lock_guard lock(m_mutex);
    m_callers = std::move(callers);
}

bool StoreScp::caller_allowed(const std::string& calling_ae, const std::string& peer) {
    std::lock_guard lock(m_mutex);
    return core::caller_allowed(m_callers, calling_ae, peer);
}

std::string StoreScp::next_temp_path(const std::string& sop_instance_uid) {
    std::string name = usable_uid(sop_instance_uid) ? sop_instance_uid : "unnamed";
    return m_settings.incoming_dir + "/" + name + "." + std::to_string(::getpid()) + "-" +
           std::to_string(++m_counter) + ".part";
}

core::Status StoreScp::start() {
    DcmSCPConfig cfg;
    cfg.setAETitle(m_settings.ae_title.c_str());
    cfg.setMaxReceivePDULength(ASC_MAXIMUMPDUSIZE);
    cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    cfg.setDIMSETimeout(static_cast<Uint32>(m_settings.dimse_timeout_seconds));
    cfg.setACSETimeout(30);
    m_config = std::make_unique<SharedConfig>(SharedConfig{DcmSharedSCPConfig(cfg)});
    if (auto st = open_listener(); !st) return st;
    // DCMTK reads each association request from a socket we accepted ("external socket");
    // set at initialisation, it also keeps DCMTK from opening a listener of its own. It gets a
    // placeholder socket of its own there, so that ASC_dropNetwork can never close an fd we own.
    {
        std::lock_guard lock(m_dul_mutex);
        m_placeholder_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        dcmExternalSocketHandle.set(m_placeholder_fd);
        OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, m_port, 30, &m_net);
        dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
        if (c.bad()) return core::make_error(ErrorKind::Internal, std::string("ASC_initializeNetwork: ") + c.text());
    }
    for (int i = 0; i < m_settings.max_associations; ++i) m_workers.emplace_back([this] { worker_loop(); });
    m_acceptor = std::thread([this] { accept_loop(); });
    TRIAGE_LOG_INFO("dicom", "listening as {} on {}:{} ({} workers)", m_settings.ae_title,
                    m_settings.bind, m_port, m_settings.max_associations);
    return {};
}

core::Status StoreScp::open_listener() {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(static_cast<uint16_t>(m_settings.port));
    std::string bind = m_settings.bind == "0.0.0.0" || m_settings.bind.empty() ? "::" : m_settings.bind;
    in_addr v4{};
    if (inet_pton(AF_INET, bind.c_str(), &v4) == 1) bind = "::ffff:" + bind;
    if (inet_pton(AF_INET6, bind.c_str(), &addr.sin6_addr) != 1)
        return core::make_error(ErrorKind::InvalidInput, "node.bind: not an IP address: " + m_settings.bind);
    m_listen_fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, zero = 0;
    ::setsockopt(m_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(m_listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(m_listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(m_listen_fd, 128) != 0) {
        std::string err = std::strerror(errno);
        ::close(m_listen_fd);
        m_listen_fd = -1;
        return core::make_error(ErrorKind::Transient, "cannot listen on " + m_settings.bind + ":" +
                                                          std::to_string(m_settings.port) + ": " + err);
    }
    socklen_t len = sizeof addr;
    ::getsockname(m_listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    m_port = ntohs(addr.sin6_port);
    return {};
}

T_ASC_Association* StoreScp::receive_request(int fd, int timeout_s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_s * 1000) <= 0) {  // nothing sent: drop the connection
        ::close(fd);
        return nullptr;
    }
    T_ASC_Association* assoc = nullptr;
    std::lock_guard lock(m_dul_mutex);  // dcmExternalSocketHandle is process-wide
    dcmExternalSocketHandle.set(fd);
    OFCondition c = ASC_receiveAssociation(m_net, &assoc, ASC_MAXIMUMPDUSIZE, nullptr, nullptr,
                                           OFFalse, DUL_BLOCK, timeout_s);
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    if (c.bad()) {
        if (g_peer_log.allow("accept"))
            TRIAGE_LOG_WARN("dicom", "receiving an association request failed: {}", c.text());
        if (assoc) {
            ASC_dropAssociation(assoc);  // closes the socket
            ASC_destroyAssociation(&assoc);
        } else {
            ::close(fd);
        }
        return nullptr;
    }
    return assoc;
}

void StoreScp::accept_loop() {
    while (!m_stop) {
        pollfd p{m_listen_fd, POLLIN, 0};
        if (::poll(&p, 1, 250) <= 0) continue;
        sockaddr_in6 from{};
        socklen_t len = sizeof from;
        int fd = ::accept4(m_listen_fd, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
        if (fd < 0) continue;
        char buf[INET6_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET6, &from.sin6_addr, buf, sizeof buf);
        std::string peer = buf;
        if (peer.rfind("::ffff:", 0) == 0 && peer.find('.') != std::string::npos) peer = peer.substr(7);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::unique_lock lock(m_mutex);
        if (m_active.load() + static_cast<int>(m_queue.size()) >= m_settings.max_associations) {
            lock.unlock();
            if (T_ASC_Association* assoc = receive_request(fd, 5)) reject_busy(assoc, peer);
            continue;
        }
        m_queue.push_back({fd, peer});
        m_cv.notify_one();
    }
}

void StoreScp::reject_busy(T_ASC_Association* assoc, const std::string& peer) {
    AssociationInfo info;
    info.calling_ae = trim(assoc->params->DULparams.callingAPTitle);
    info.called_ae = trim(assoc->params->DULparams.calledAPTitle);
    info.peer = peer;
    info.started = std::chrono::steady_clock::now();
    T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT,
                               ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
    ASC_rejectAssociation(assoc, &rej);
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    m_sink.association_rejected(info, m_stop ? "shutting down" : "too many associations");
}

void StoreScp::worker_loop() {
    for (;;) {
        Pending next;
        {
            std::unique_lock lock(m_mutex);
            m_cv.wait(lock, [this] { return m_stop || !m_queue.empty(); });
            if (m_queue.empty()) return;
            next = m_queue.front();
            m_queue.pop_front();
            ++m_active;
        }
        try {
            if (T_ASC_Association* assoc = receive_request(next.fd, 30)) {
                ScpWorker worker(*this, ++m_counter, next.peer);
                worker.setSharedConfig(m_config->shared);
                worker.serve(assoc);  // the worker's destructor drops and frees the association
            }
        } catch (const std::exception& e) {
            TRIAGE_LOG_ERROR("dicom", "association worker failed: {}", e.what());
        }
        --m_active;
    }
}

void StoreScp::stop(std::chrono::seconds drain) {
    if (m_stop.exchange(true)) return;
    if (m_acceptor.joinable()) m_acceptor.join();
    if (m_listen_fd >= 0) ::close(m_listen_fd);  // new connections are refused from here on
    m_listen_fd = -1;
    auto deadline = std::chrono::steady_clock::now() + drain;
    {
        std::lock_guard lock(m_mutex);
        m_cv.notify_all();
    }
    while (m_active.load() > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    m_abort = true;
    for (auto& t : m_workers) t.join();
    m_workers.clear();
    if (m_net) ASC_dropNetwork(&m_net);
    m_net = nullptr;
    if (m_placeholder_fd >= 0 && ::fcntl(m_placeholder_fd, F_GETFD) != -1) ::close(m_placeholder_fd);
    m_placeholder_fd = -1;
}

}  // namespace triage::dicom_io
