#pragma once
// What the DICOM receiver needs from the rest of the node (implemented in daemon/).
// Every method is called from SCP worker threads, concurrently: implementations are thread-safe.
#include <chrono>
#include <cstdint>
#include <string>

#include "core/result.h"
#include "dicom_io/instance_meta.h"

namespace triage::dicom_io {

struct AssociationInfo {
    std::uint64_t id = 0;  // unique per process run
    std::string calling_ae, called_ae, peer;
    std::chrono::steady_clock::time_point started;
};

struct AssociationStats {
    int stored = 0;    // instances answered with success
    int rejected = 0;  // instances answered with a failure status
    bool aborted = false;
};

class InstanceSink {
public:
    virtual ~InstanceSink() = default;
    /// Whether a new instance may be received now (disk guard). An error refuses it with 0xA700.
    virtual core::Status admit(const AssociationInfo& assoc) = 0;
    /// Stores a received, parsed instance whose bytes are in `temp_path` (moving the file into
    /// place). Success means the instance is durable and indexed. The receiver removes
    /// `temp_path` afterwards if it is still there.
    virtual core::Status store(const std::string& temp_path, const InstanceMeta& meta,
                               const AssociationInfo& assoc) = 0;
    virtual void instance_rejected(const AssociationInfo& assoc, const std::string& sop_instance_uid,
                                   std::uint16_t status, const std::string& reason) = 0;
    virtual void association_accepted(const AssociationInfo& assoc) = 0;
    virtual void association_rejected(const AssociationInfo& assoc, const std::string& reason) = 0;
    virtual void association_ended(const AssociationInfo& assoc, const AssociationStats& stats) = 0;
};

}  // namespace triage::dicom_io
