#include "daemon/app.h"

#include <dirent.h>
#include <cstdio>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include "core/analysis.h"
#include "core/file_util.h"
#include "core/log.h"
#include "daemon/analysis_worker.h"
#include "daemon/api.h"
#include "daemon/completion_monitor.h"
#include "daemon/delivery_worker.h"
#include "daemon/http_server.h"
#include "daemon/metrics.h"
#include "daemon/retention_worker.h"
#include "daemon/service_notify.h"
#include "daemon/webhook.h"
#include "daemon/node_sink.h"
#include "dicom_io/dcmtk_setup.h"
#include "dicom_io/outputs.h"
#include "dicom_io/store_scp.h"
#include "pipeline/analyzer.h"
#include "pipeline/model.h"
#include "storage/analysis_store.h"
#include "storage/database.h"
#include "storage/delivery_queue.h"
#include "storage/job_queue.h"

namespace triage::daemon {

std::string database_path(const config::Config& cfg) { return cfg.node.data_dir + "/triage.db"; }
std::string incoming_dir(const config::Config& cfg) { return cfg.node.data_dir + "/incoming"; }

namespace {

/// Files left in incoming/ by a crash: an instance indexed but not yet moved is moved into
/// place; anything else was never acknowledged and is removed. Looks up only those files' rows.
void recover_incoming(const config::Config& cfg, storage::InstanceIndex& index) {
    DIR* d = ::opendir(incoming_dir(cfg).c_str());
    if (!d) return;
    int moved = 0, removed = 0;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string temp = incoming_dir(cfg) + "/" + name;
        auto meta = dicom_io::read_instance_meta(temp);
        if (meta) {
            std::string rel = NodeSink::instance_rel_path(*meta);
            std::string final_path = cfg.node.data_dir + "/" + rel;
            auto indexed = index.instance_path(meta->sop_instance_uid);
            if (indexed && indexed.value() == rel && ::access(final_path.c_str(), F_OK) != 0) {
                (void)core::make_dirs(final_path.substr(0, final_path.rfind('/')));
                if (core::rename_file(temp, final_path, true)) {
                    ++moved;
                    continue;
                }
            }
        }
        ::unlink(temp.c_str());
        ++removed;
    }
    ::closedir(d);
    if (moved || removed)
        TRIAGE_LOG_INFO("app", "recovery: {} indexed instance(s) moved into place, {} partial file(s) removed",
                        moved, removed);
}

/// Creates data_dir and incoming/, and takes the data dir lock (one triaged per data dir).
core::Result<int> prepare_data_dir(const config::Config& cfg) {
    for (const auto& dir : {cfg.node.data_dir, incoming_dir(cfg)})
        if (auto st = core::make_dirs(dir); !st) return st.error();
    std::string path = cfg.node.data_dir + "/triaged.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0)
        return core::make_error(core::ErrorKind::Permanent,
                                "another triaged uses data_dir " + cfg.node.data_dir);
    return fd;
}

/// The node's device UID (SR device observer), made once and kept in data_dir/device-uid.
core::Result<std::string> node_device_uid(const config::Config& cfg) {
    std::string path = cfg.node.data_dir + "/device-uid";
    std::string uid;
    if (std::ifstream in(path); in && std::getline(in, uid) && !uid.empty()) return uid;
    uid = dicom_io::new_uid();
    std::string part = path + ".part";
    if (!(std::ofstream(part) << uid << "\n"))
        return core::make_error(core::ErrorKind::Permanent, "cannot write " + part);
    if (auto st = core::rename_file(part, path, true); !st) return st.error();
    return uid;
}

void audit_simple(storage::AuditLog& audit, const std::string& event, nlohmann::json detail) {
    storage::AuditEvent e;
    e.event = event;
    e.detail = detail.dump();
    (void)audit.append(std::move(e));
}

/// The configured model, or nullptr (logged) when none is configured or it does not load: the node
/// then still receives and queues, and analyzes after a restart with a good bundle.
std::unique_ptr<pipeline::Model> load_model(const config::Config& cfg) {
    if (cfg.model.bundle.empty()) {
        TRIAGE_LOG_WARN("pipeline", "model.bundle is empty: studies are received and queued, not analyzed");
        return nullptr;
    }
    auto loaded = pipeline::Model::load(cfg.model.bundle, cfg.model.device, cfg.model.threads);
    if (!loaded) {
        TRIAGE_LOG_ERROR("pipeline", "{}; studies are received and queued but not analyzed until the model loads",
                         loaded.error().message);
        return nullptr;
    }
    return std::move(loaded.value());
}

}  // namespace

bool check_model(const config::Config& cfg) {
    if (cfg.model.bundle.empty()) return true;
    auto model = pipeline::Model::load(cfg.model.bundle, "cpu", 1);
    if (!model) std::fprintf(stderr, "model.bundle: %s\n", model.error().message.c_str());
    return model.ok();
}

namespace {
std::atomic<int> g_stray_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
}  // namespace

int run_node(const config::Config& cfg) {
    // Signals are taken synchronously by this thread: blocked before any of our threads starts. A
    // library may have started threads before main() with signals unblocked (OpenBLAS does): a
    // handler catches what is delivered there, so it is handled the same way instead of killing
    // the process without a drain.
    sigset_t sigs;
    sigemptyset(&sigs);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    struct sigaction sa {};
    sa.sa_handler = [](int s) { g_stray_signal.store(s); };
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaction(s, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    auto lock = prepare_data_dir(cfg);
    if (!lock) {
        TRIAGE_LOG_ERROR("app", "{}", lock.error().message);
        return 1;
    }
    if (auto st = dicom_io::init_dcmtk(); !st) {
        TRIAGE_LOG_ERROR("dicom", "{}", st.error().message);
        return 1;
    }
    bool fsync = cfg.ingest.durability == config::Durability::Fsync;
    auto db = storage::Database::open(database_path(cfg), fsync ? storage::SyncMode::Full : storage::SyncMode::Normal);
    if (!db) {
        TRIAGE_LOG_ERROR("db", "{}", db.error().message);
        return 1;
    }
    core::SystemClock clock;
    storage::AuditLog audit(**db, clock);
    storage::InstanceIndex index(**db, audit, clock);
    storage::JobQueue jobs(**db, audit, clock);

    recover_incoming(cfg, index);
    if (auto n = jobs.reset_running(); n && n.value() > 0)
        TRIAGE_LOG_WARN("app", "{} job(s) left running by a previous process re-queued", n.value());
    audit_simple(audit, "node_started", {{"config", cfg.source_path}, {"ae_title", cfg.node.ae_title},
                                          {"durability", config::to_string(cfg.ingest.durability)}});

    NodeSink sink(cfg, index, audit);
    dicom_io::ScpSettings scp_settings{cfg.node.ae_title, cfg.node.bind, cfg.node.port,
                                       cfg.ingest.max_associations, cfg.ingest.dimse_timeout_seconds,
                                       incoming_dir(cfg), cfg.ingest.caller_rules};
    if (cfg.ingest.caller_rules.empty())
        TRIAGE_LOG_WARN("app", "ingest.allowed_callers is empty: every association will be rejected");
    dicom_io::StoreScp scp(scp_settings, sink);
    if (auto st = scp.start(); !st) {
        TRIAGE_LOG_ERROR("dicom", "{}", st.error().message);
        return 1;
    }
    storage::AnalysisStore results(**db, audit, clock);
    storage::DeliveryQueue deliveries(**db, audit, clock);
    std::vector<std::unique_ptr<DeliveryWorker>> senders;
    auto start_senders = [&](const config::Config& c) {
        for (auto& s : senders) s->stop();  // the association in flight finishes first
        senders.clear();
        std::vector<std::string> names;
        for (const auto& d : c.destinations) names.push_back(d.name);
        if (auto n = deliveries.fail_unconfigured(names); !n)
            TRIAGE_LOG_ERROR("delivery", "cannot fail the deliveries of removed destinations: {}", n.error().message);
        else if (n.value() > 0)
            TRIAGE_LOG_WARN("delivery", "{} pending deliveries failed: their destination is no longer configured "
                                        "(triagectl retry after adding it back)", n.value());
        for (const auto& d : c.destinations) {
            senders.push_back(std::make_unique<DeliveryWorker>(d, c.delivery, c.node.ae_title, c.node.data_dir,
                                                               deliveries, clock));
            senders.back()->start();
        }
    };
    start_senders(cfg);
    WebhookNotifier webhook(cfg.notify, audit);
    webhook.start();
    std::unique_ptr<pipeline::Model> model = load_model(cfg);
    std::unique_ptr<AnalysisWorker> worker;
    if (model) {
        auto device_uid = node_device_uid(cfg);
        if (!device_uid) {
            TRIAGE_LOG_ERROR("app", "{}", device_uid.error().message);
            return 1;
        }
        worker = std::make_unique<AnalysisWorker>(cfg, index, jobs, results, *model, device_uid.value());
        worker->on_results([&](const storage::AnalysisRecord& r) {
            for (auto& s : senders) s->notify();
            for (const auto& s : r.series) {  // the audit says why a result is not to be trusted as usual
                std::vector<std::string> notes = s.warnings;
                if (!s.analyzed) notes.push_back(s.skip_reason);  // a series outside the domain is not analyzed
                for (const auto& w : notes)
                    if (w.rfind(core::kOutsideDomain, 0) == 0 || w.rfind(core::kTimeBudget, 0) == 0)
                        audit_simple(audit, w.rfind(core::kOutsideDomain, 0) == 0 ? "analysis_outside_domain" : "analysis_time_budget",
                                     {{"study_uid", r.study_uid}, {"series_uid", s.series_uid}, {"why", w}});
            }
            std::string summary, accession;
            for (const auto& f : r.findings)
                summary += fmt::format("{}{} {:.0f} mm", summary.empty() ? "" : ", ", f.finding.label, f.finding.diameter_mm);
            if (auto s = index.get_study(r.study_uid)) accession = s->accession;
            webhook.study_prioritized(r.study_uid, accession, r.priority_level, r.priority_score.value_or(0),
                                      r.priority_reasons, summary.empty() ? "no findings" : summary);
        });
        worker->start();
    }
    CompletionMonitor monitor(index, jobs, clock,
                              [&](const std::string& s) { return sink.study_has_open_association(s); });
    monitor.set_quiet_seconds(cfg.ingest.study_quiet_seconds);

    auto health = [&] {
        Health h;
        h.scp_listening = scp.port() > 0;
        h.db_writable = (*db)->transact([] { return core::Status{}; }).ok();
        h.model_loaded = model != nullptr || cfg.model.bundle.empty();
        auto free = core::free_bytes(cfg.node.data_dir);
        h.disk_free_mb = free ? static_cast<double>(free.value()) / (1024.0 * 1024.0) : 0;
        h.disk_ok = free && h.disk_free_mb >= static_cast<double>(cfg.ingest.min_free_mb);
        return h;
    };
    StateViews views{index, jobs, results, deliveries, cfg.node.data_dir};
    // The page's slices use the key images' window: the model's CT window of the series' region,
    // else (MR, no model) each slice's foreground.
    StudyImages images(views, [&](const storage::SeriesSummary& s) -> std::optional<std::pair<double, double>> {
        if (!model || s.modality != "CT" || model->manifest().ct_windows.empty()) return std::nullopt;
        core::Volume v;
        v.modality = s.modality;
        v.body_part = s.body_part;
        v.series_description = s.description;
        try {
            return pipeline::ct_window(model->manifest(), v);
        } catch (const std::out_of_range&) {
            return std::nullopt;
        }
    });
    ApiContext api_ctx{views, audit, node_metrics(), health, cfg.api.token, &images};
    HttpLimits limits;
    limits.request_timeout_seconds = cfg.api.request_timeout_seconds;
    HttpServer api([&](const HttpRequest& r) { return handle_api(api_ctx, r); }, limits);
    if (!cfg.api.listen.empty()) {
        if (auto st = api.start(cfg.api.listen); !st) {
            TRIAGE_LOG_ERROR("api", "{}", st.error().message);
            return 1;
        }
        TRIAGE_LOG_INFO("api", "HTTP API on {} port {}", cfg.api.listen, api.port());
    }
    TRIAGE_LOG_INFO("app", "triaged ready: AE {} port {} data_dir {}", cfg.node.ae_title, scp.port(),
                    cfg.node.data_dir);
    storage::Retention retention_store(**db, audit, clock);
    RetentionWorker retention(cfg.retention, cfg.node.data_dir, retention_store, clock);
    retention.start();
    ServiceNotifier notifier;
    auto status_line = [&] {
        auto q = jobs.stats();
        int pending = 0;
        if (auto c = deliveries.counts(); c)
            for (const auto& x : c.value()) pending += x.state == "pending" ? static_cast<int>(x.count) : 0;
        return fmt::format("AE {} port {}; {} queued, {} running; {} deliveries pending{}", cfg.node.ae_title,
                           scp.port(), q ? q->queued : -1, q ? q->running : -1, pending, model ? "" : "; no model loaded");
    };
    notifier.ready(status_line());
    auto last_status = std::chrono::steady_clock::now();

    // SIGHUP: applies what is safe to change while running; an invalid file keeps the running config.
    auto reload = [&] {
        auto fresh = config::load_config(cfg.source_path);
        if (!fresh.ok()) {
            TRIAGE_LOG_ERROR("app", "SIGHUP: config has {} problem(s), keeping the running one (first: {}: {})",
                             fresh.problems.size(), fresh.problems[0].key, fresh.problems[0].message);
            return;
        }
        const config::Config& c = fresh.config;
        scp.set_callers(c.ingest.caller_rules);
        monitor.set_quiet_seconds(c.ingest.study_quiet_seconds);
        sink.set_priority_rules(c.priority);
        if (worker) worker->set_rules(c.priority, c.destinations);
        start_senders(c);
        TRIAGE_LOG_INFO("app", "SIGHUP: reloaded allowed_callers, study_quiet_seconds, [priority], [[destination]] and "
                               "[delivery]; [node], [ingest] limits, [model] and [api] need a restart");
        audit_simple(audit, "config_reloaded", {{"config", cfg.source_path}, {"destinations", c.destinations.size()}});
    };
    for (;;) {
        timespec timeout{0, 500 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, nullptr, &timeout);
        if (sig <= 0) sig = g_stray_signal.exchange(0);
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig == SIGHUP) {
            notifier.reloading();
            reload();
            notifier.ready(status_line());
        }
        notifier.tick();
        if (std::chrono::steady_clock::now() - last_status > std::chrono::seconds(10)) {
            notifier.status(status_line());
            last_status = std::chrono::steady_clock::now();
        }
        if (int completed = monitor.tick(); completed > 0) {
            node_metrics().add("triage_studies_completed_total", {}, completed);
            if (worker) worker->notify();
        }
    }
    TRIAGE_LOG_INFO("app", "stopping: no new associations, draining open ones");
    notifier.stopping();
    const auto deadline = std::chrono::seconds(cfg.node.stop_timeout_seconds);
    api.stop();
    retention.stop();
    scp.stop(deadline);
    // The running analysis finishes within the deadline; queued jobs wait for the next start.
    if (worker && !worker->stop(deadline)) {
        audit_simple(audit, "node_stopped", {{"interrupted_analysis", true}});
        TRIAGE_LOG_WARN("app", "the running analysis did not finish within {} s; its job is re-queued at the next "
                               "start. Stopped.", cfg.node.stop_timeout_seconds);
        std::fflush(nullptr);
        std::_Exit(0);  // the analysis thread still uses the model: skip destructors
    }
    for (auto& s : senders) s->stop();  // pending deliveries resume at the next start
    audit_simple(audit, "node_stopped", nlohmann::json::object());
    TRIAGE_LOG_INFO("app", "stopped cleanly");
    return 0;
}

}  // namespace triage::daemon
