#include "daemon/node_sink.h"

#include "daemon/metrics.h"
#include "daemon/priority.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "core/log.h"

namespace triage::daemon {

using core::ErrorKind;

namespace {
core::RateLimiter g_reject_log(5, std::chrono::seconds(60));

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

storage::AuditEvent assoc_event(const std::string& name, const dicom_io::AssociationInfo& a) {
    storage::AuditEvent e;
    e.event = name;
    e.calling_ae = a.calling_ae;
    e.called_ae = a.called_ae;
    e.peer = a.peer;
    return e;
}
}  // namespace

NodeSink::NodeSink(const config::Config& cfg, storage::InstanceIndex& index, storage::AuditLog& audit)
    : m_data_dir(cfg.node.data_dir),
      m_fsync(cfg.ingest.durability == config::Durability::Fsync),
      m_min_free_bytes(static_cast<std::uint64_t>(cfg.ingest.min_free_mb) * 1024 * 1024),
      m_index(index),
      m_audit(audit),
      m_priority(cfg.priority) {}

void NodeSink::set_priority_rules(const config::PriorityConfig& rules) {
    std::lock_guard lock(m_rules_mutex);
    m_priority = rules;
}

std::string NodeSink::instance_rel_path(const dicom_io::InstanceMeta& m) {
    return "instances/" + m.study_uid + "/" + m.series_uid + "/" + m.sop_instance_uid + ".dcm";
}

core::Status NodeSink::admit(const dicom_io::AssociationInfo&) {
    auto free = core::free_bytes(m_data_dir);
    bool low = free && free.value() < m_min_free_bytes;
    if (low != m_disk_low.exchange(low)) {
        if (low) {
            TRIAGE_LOG_ERROR("dicom", "free space under {} is below ingest.min_free_mb ({} MB): "
                             "refusing instances with 0xA700", m_data_dir, m_min_free_bytes >> 20);
        } else {
            TRIAGE_LOG_INFO("dicom", "free space under {} is back above ingest.min_free_mb", m_data_dir);
        }
        auto e = storage::AuditEvent{};
        e.event = low ? "disk_low" : "disk_ok";
        e.detail = nlohmann::json{{"free_bytes", free ? free.value() : 0},
                                  {"min_free_bytes", m_min_free_bytes}}.dump();
        (void)m_audit.append(std::move(e));
    }
    if (low) return core::make_error(ErrorKind::Transient, "free disk space below ingest.min_free_mb");
    return {};
}

core::Status NodeSink::ensure_dir(const std::string& dir) {
    {
        std::lock_guard lock(m_mutex);
        if (m_known_dirs.count(dir)) return {};
    }
    if (auto st = core::make_dirs(dir); !st) return st;
    std::lock_guard lock(m_mutex);
    if (m_known_dirs.size() > 100000) m_known_dirs.clear();
    m_known_dirs.insert(dir);
    return {};
}

core::Status NodeSink::store(const std::string& temp_path, const dicom_io::InstanceMeta& m,
                             const dicom_io::AssociationInfo& assoc) {
    std::string rel = instance_rel_path(m);
    std::string final_path = m_data_dir + "/" + rel;
    if (auto st = ensure_dir(final_path.substr(0, final_path.rfind('/'))); !st) return st;
    struct stat sb {};
    if (::stat(temp_path.c_str(), &sb) != 0)
        return core::make_error(ErrorKind::Internal, "received file vanished: " + temp_path);
    if (m_fsync)
        if (auto st = core::fsync_path(temp_path); !st) return st;

    int urgent = 0;
    {
        std::lock_guard lock(m_rules_mutex);
        urgent = intake_priority(m_priority, assoc.calling_ae, m.study_description + " / " + m.procedure_description);
    }
    storage::InstanceRecord r{m.study_uid, m.series_uid, m.sop_instance_uid, m.sop_class_uid,
                              m.transfer_syntax_uid, m.patient_id, m.accession, m.study_date,
                              m.study_time, m.modality, m.body_part, m.series_description,
                              m.series_number, m.frame_of_reference_uid, m.instance_number,
                              m.image_type, m.rows, m.columns, m.frames, rel,
                              static_cast<std::int64_t>(sb.st_size), assoc.calling_ae, assoc.peer,
                              m.study_description, urgent};
    // Index first, then move the file in: a crash in between leaves the file in incoming/,
    // where start-up recovery (App::recover_incoming) finishes the move.
    track(assoc.id, m.study_uid);
    auto stored = m_index.record_instance(r, assoc.called_ae);
    if (!stored) return stored.error();
    if (auto st = core::rename_file(temp_path, final_path, m_fsync); !st) {
        TRIAGE_LOG_ERROR("dicom", "indexed instance could not be moved into place: {}", st.error().message);
        return st;
    }
    if (stored->duplicate) {
        TRIAGE_LOG_INFO("dicom", "re-sent instance {} replaced (study {})", m.sop_instance_uid, m.study_uid);
        if (stored->previous_path) ::unlink((m_data_dir + "/" + *stored->previous_path).c_str());
    }
    node_metrics().add("triage_instances_received_total", {{"calling_ae", assoc.calling_ae}, {"status", "0000"}});
    return {};
}

void NodeSink::instance_rejected(const dicom_io::AssociationInfo& a, const std::string& sop_uid,
                                 std::uint16_t status, const std::string& reason) {
    node_metrics().add("triage_instances_received_total", {{"calling_ae", a.calling_ae}, {"status", fmt::format("{:04X}", status)}});
    int dropped = 0;
    if (g_reject_log.allow(a.calling_ae + "@" + a.peer, &dropped))
        TRIAGE_LOG_WARN("dicom", "instance {} from {}@{} refused with 0x{:04X}: {}{}", sop_uid,
                        a.calling_ae, a.peer, status, reason,
                        dropped ? fmt::format(" ({} similar messages suppressed)", dropped) : "");
    auto e = assoc_event("instance_rejected", a);
    e.sop_instance_uid = sop_uid;
    e.status = status;
    e.detail = nlohmann::json{{"reason", reason}}.dump();
    (void)m_audit.append(std::move(e));
}

void NodeSink::association_accepted(const dicom_io::AssociationInfo& a) {
    node_metrics().add("triage_associations_total", {{"outcome", "accepted"}});
    TRIAGE_LOG_DEBUG("dicom", "association {} accepted from {}@{}", a.id, a.calling_ae, a.peer);
    (void)m_audit.append(assoc_event("association_accepted", a));
}

void NodeSink::association_rejected(const dicom_io::AssociationInfo& a, const std::string& reason) {
    node_metrics().add("triage_associations_total", {{"outcome", "rejected"}});
    int dropped = 0;
    if (g_reject_log.allow("assoc:" + a.peer, &dropped))
        TRIAGE_LOG_WARN("dicom", "association from {}@{} to {} rejected: {}", a.calling_ae, a.peer,
                        a.called_ae, reason);
    auto e = assoc_event("association_rejected", a);
    e.detail = nlohmann::json{{"reason", reason}}.dump();
    (void)m_audit.append(std::move(e));
}

void NodeSink::association_ended(const dicom_io::AssociationInfo& a, const dicom_io::AssociationStats& s) {
    untrack(a.id);
    auto e = assoc_event(s.aborted ? "association_aborted" : "association_released", a);
    e.detail = nlohmann::json{{"instances", s.stored},
                              {"rejected", s.rejected},
                              {"duration_s", seconds_since(a.started)}}.dump();
    TRIAGE_LOG_INFO("dicom", "association {} from {}@{} {}: {} stored, {} refused", a.id,
                    a.calling_ae, a.peer, s.aborted ? "aborted" : "released", s.stored, s.rejected);
    (void)m_audit.append(std::move(e));
}

void NodeSink::track(std::uint64_t assoc_id, const std::string& study_uid) {
    std::lock_guard lock(m_mutex);
    if (m_assoc_studies[assoc_id].insert(study_uid).second) ++m_open_per_study[study_uid];
}

void NodeSink::untrack(std::uint64_t assoc_id) {
    std::lock_guard lock(m_mutex);
    auto it = m_assoc_studies.find(assoc_id);
    if (it == m_assoc_studies.end()) return;
    for (const auto& s : it->second)
        if (--m_open_per_study[s] <= 0) m_open_per_study.erase(s);
    m_assoc_studies.erase(it);
}

bool NodeSink::study_has_open_association(const std::string& study_uid) {
    std::lock_guard lock(m_mutex);
    return m_open_per_study.count(study_uid) > 0;
}

}  // namespace triage::daemon
