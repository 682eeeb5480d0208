#pragma once
// The receiver's sink: puts each received instance in place durably, indexes it, audits
// associations and instances, guards the disk, and knows which studies an open association
// is still delivering (for study completion). Thread-safe.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "config/config.h"
#include "dicom_io/instance_sink.h"
#include "storage/audit_log.h"
#include "storage/instance_index.h"

namespace triage::daemon {

class NodeSink final : public dicom_io::InstanceSink {
public:
    NodeSink(const config::Config& cfg, storage::InstanceIndex& index, storage::AuditLog& audit);

    core::Status admit(const dicom_io::AssociationInfo& assoc) override;
    core::Status store(const std::string& temp_path, const dicom_io::InstanceMeta& meta,
                       const dicom_io::AssociationInfo& assoc) override;
    void instance_rejected(const dicom_io::AssociationInfo& assoc, const std::string& sop_instance_uid,
                           std::uint16_t status, const std::string& reason) override;
    void association_accepted(const dicom_io::AssociationInfo& assoc) override;
    void association_rejected(const dicom_io::AssociationInfo& assoc, const std::string& reason) override;
    void association_ended(const dicom_io::AssociationInfo& assoc,
                           const dicom_io::AssociationStats& stats) override;

    /// True while an association that delivered part of `study_uid` is open.
    bool study_has_open_association(const std::string& study_uid);

    /// Replaces the priority rules (SIGHUP) used to flag urgent studies at reception.
    void set_priority_rules(const config::PriorityConfig& rules);

    /// Relative path of an instance's file under data_dir.
    static std::string instance_rel_path(const dicom_io::InstanceMeta& meta);

private:
    void track(std::uint64_t assoc_id, const std::string& study_uid);
    void untrack(std::uint64_t assoc_id);
    core::Status ensure_dir(const std::string& dir);

    std::string m_data_dir;
    bool m_fsync;
    std::uint64_t m_min_free_bytes;
    storage::InstanceIndex& m_index;
    storage::AuditLog& m_audit;
    std::atomic<bool> m_disk_low{false};
    std::mutex m_rules_mutex;
    config::PriorityConfig m_priority;

    std::mutex m_mutex;
    std::map<std::uint64_t, std::set<std::string>> m_assoc_studies;
    std::map<std::string, int> m_open_per_study;
    std::set<std::string> m_known_dirs;
};

}  // namespace triage::daemon
