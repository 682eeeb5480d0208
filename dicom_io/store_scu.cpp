#include "dicom_io/store_scu.h"

#include "dcmtk/config/osconfig.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

namespace triage::dicom_io {

namespace {

using core::ErrorKind;

struct NetworkCloser {
    void operator()(T_ASC_Network* n) const { ASC_dropNetwork(&n); }
};

/// An open association that is released (or aborted, when the peer misbehaved) on scope exit.
class Association {
public:
    ~Association() {
        if (!m_assoc) return;
        if (m_abort || ASC_releaseAssociation(m_assoc).bad()) ASC_abortAssociation(m_assoc);
        ASC_destroyAssociation(&m_assoc);
    }
    T_ASC_Association* m_assoc = nullptr;
    bool m_abort = false;
};

core::Error net_error(ErrorKind kind, const Peer& peer, const std::string& what) {
    return core::Error{kind, fmt::format("{}@{}:{}: {}", peer.ae_title, peer.host, peer.port, what)};
}

/// Requests an association proposing `sop_classes` (each with explicit and implicit little endian).
core::Status open(const Peer& peer, const std::vector<std::string>& sop_classes,
                  std::unique_ptr<T_ASC_Network, NetworkCloser>& net, Association& out) {
    T_ASC_Network* n = nullptr;
    dcmConnectionTimeout.set(peer.timeout_seconds);
    if (OFCondition c = ASC_initializeNetwork(NET_REQUESTOR, 0, peer.timeout_seconds, &n); c.bad())
        return net_error(ErrorKind::Transient, peer, std::string("network: ") + c.text());
    net.reset(n);
    T_ASC_Parameters* params = nullptr;
    ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
    ASC_setAPTitles(params, peer.calling_ae.c_str(), peer.ae_title.c_str(), nullptr);
    std::string address = fmt::format("{}:{}", peer.host, peer.port);
    ASC_setPresentationAddresses(params, OFStandard::getHostName().c_str(), address.c_str());
    const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
    T_ASC_PresentationContextID id = 1;
    for (const auto& sop_class : sop_classes) {
        ASC_addPresentationContext(params, id, sop_class.c_str(), syntaxes, 2);
        id += 2;
    }
    OFCondition c = ASC_requestAssociation(net.get(), params, &out.m_assoc);
    if (c == DUL_ASSOCIATIONREJECTED) {
        T_ASC_RejectParameters rej;
        ASC_getRejectParameters(params, &rej);
        OFString text;
        ASC_printRejectParameters(text, &rej);
        ASC_destroyAssociation(&out.m_assoc);
        bool permanent = rej.result == ASC_RESULT_REJECTEDPERMANENT;
        return net_error(permanent ? ErrorKind::Permanent : ErrorKind::Transient, peer,
                         "association rejected (" + std::string(text.c_str()) + ")");
    }
    if (c.bad()) {
        if (out.m_assoc) ASC_destroyAssociation(&out.m_assoc);
        else ASC_destroyAssociationParameters(&params);
        return net_error(ErrorKind::Transient, peer, std::string("cannot connect: ") + c.text());
    }
    return {};
}

}  // namespace

ErrorKind classify_store_status(int status) {
    if ((status & 0xff00) == 0xa700 || status == 0x0110 || status == 0x0213 || status < 0) return ErrorKind::Transient;
    return ErrorKind::Permanent;  // 0xA9xx, 0xCxxx, 0x0122 (SOP class not supported), 0x0117, ...
}

core::Result<std::vector<SendOutcome>> send_instances(const Peer& peer, const std::vector<OutgoingInstance>& instances) {
    std::vector<std::string> classes;
    for (const auto& i : instances)
        if (std::find(classes.begin(), classes.end(), i.sop_class_uid) == classes.end()) classes.push_back(i.sop_class_uid);
    std::unique_ptr<T_ASC_Network, NetworkCloser> net;
    Association assoc;
    if (auto st = open(peer, classes, net, assoc); !st) return st.error();
    std::vector<SendOutcome> out;
    for (const auto& i : instances) {
        SendOutcome o;
        T_ASC_PresentationContextID pc = ASC_findAcceptedPresentationContextID(assoc.m_assoc, i.sop_class_uid.c_str());
        DcmFileFormat file;
        if (pc == 0) {
            o.kind = ErrorKind::Permanent;
            o.error = "the peer accepts no presentation context for SOP class " + i.sop_class_uid;
        } else if (OFCondition lc = file.loadFile(i.path.c_str()); lc.bad()) {
            o.kind = ErrorKind::Permanent;
            o.error = "cannot read " + i.path + ": " + lc.text();
        } else {
            T_DIMSE_C_StoreRQ req{};
            req.MessageID = assoc.m_assoc->nextMsgID++;
            OFStandard::strlcpy(req.AffectedSOPClassUID, i.sop_class_uid.c_str(), sizeof req.AffectedSOPClassUID);
            OFStandard::strlcpy(req.AffectedSOPInstanceUID, i.sop_instance_uid.c_str(), sizeof req.AffectedSOPInstanceUID);
            req.DataSetType = DIMSE_DATASET_PRESENT;
            req.Priority = DIMSE_PRIORITY_MEDIUM;
            T_DIMSE_C_StoreRSP rsp{};
            DcmDataset* detail = nullptr;
            OFCondition c = DIMSE_storeUser(assoc.m_assoc, pc, &req, nullptr, file.getDataset(), nullptr, nullptr,
                                            DIMSE_BLOCKING, peer.timeout_seconds, &rsp, &detail);
            delete detail;
            if (c.bad()) {
                // The association is unusable now: this and every later instance is a transient failure.
                assoc.m_abort = true;
                o.error = std::string("C-STORE failed: ") + c.text();
                out.push_back(o);
                while (out.size() < instances.size()) out.push_back({false, -1, ErrorKind::Transient, "association aborted"});
                return out;
            }
            o.status = rsp.DimseStatus;
            o.ok = o.status == 0 || (o.status & 0xf000) == 0xb000;
            if (!o.ok) {
                o.kind = classify_store_status(o.status);
                o.error = fmt::format("C-STORE status 0x{:04X}", o.status);
            }
        }
        out.push_back(o);
    }
    return out;
}

core::Status echo(const Peer& peer) {
    std::unique_ptr<T_ASC_Network, NetworkCloser> net;
    Association assoc;
    if (auto st = open(peer, {UID_VerificationSOPClass}, net, assoc); !st) return st;
    if (ASC_countAcceptedPresentationContexts(assoc.m_assoc->params) == 0)
        return net_error(ErrorKind::Permanent, peer, "the peer does not accept Verification");
    DIC_US status = 0;
    DcmDataset* detail = nullptr;
    OFCondition c = DIMSE_echoUser(assoc.m_assoc, assoc.m_assoc->nextMsgID++, DIMSE_BLOCKING, peer.timeout_seconds,
                                   &status, &detail);
    delete detail;
    if (c.bad()) {
        assoc.m_abort = true;
        return net_error(ErrorKind::Transient, peer, std::string("C-ECHO failed: ") + c.text());
    }
    if (status != 0) return net_error(ErrorKind::Permanent, peer, fmt::format("C-ECHO status 0x{:04X}", status));
    return {};
}

}  // namespace triage::dicom_io
