#pragma once
// The node's configuration, read from TOML and validated (CONTRACT.md "Config file").
// Unknown keys are errors; every key but node.data_dir has a default (docs/configuration.md).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/caller_rule.h"

namespace triage::config {

enum class Durability { Os, Fsync };

struct NodeConfig {
    std::string ae_title = "TRIAGE";
    std::string bind = "0.0.0.0";
    int port = 11112;
    std::string data_dir;  // required
    std::string log_level = "info";
    int stop_timeout_seconds = 30;  // SIGTERM: open associations and the running analysis get this long
};

struct IngestConfig {
    std::vector<std::string> allowed_callers;  // empty: nobody may send ("*" must be explicit)
    std::vector<core::CallerRule> caller_rules;  // parsed from allowed_callers
    int max_associations = 16;
    int study_quiet_seconds = 30;
    Durability durability = Durability::Os;
    std::int64_t min_free_mb = 1024;
    int dimse_timeout_seconds = 60;  // idle time within an association before it is aborted
};

struct ModelConfig {
    std::string bundle = "models/unibiomed-mini";  // resolved against the config file's folder
    std::string device = "auto";
    int batch_size = 8;  // slices per inference batch
    int threads = 0;     // CPU threads for inference; 0 = all cores
};

/// [analysis]: what one study's analysis may cost and report (docs/configuration.md).
struct AnalysisConfig {
    double time_budget_seconds = 120;  // per study; the analysis ends with what it has (0 = unlimited)
    int max_findings_per_label = 5;    // per series and label; the lowest-ranked beyond are not reported (0 = no limit)
    int max_findings_per_study = 10;   // over all series of a study (0 = no limit)
    int max_checked_candidates = 30;   // per series: candidates that get the model-based checks, best-ranked first
};

struct Destination {
    std::string name;
    std::string ae_title;
    std::string host;
    int port = 104;
    std::vector<std::string> send = {"seg", "sr"};  // also "keyimages", "kos"
};

/// Retries of deliveries to destinations: exponential backoff with jitter, then a dead letter.
struct DeliveryConfig {
    double retry_base_seconds = 10;   // wait after the first transient failure; doubles each time
    double retry_max_seconds = 600;   // cap of the wait
    int max_attempts = 20;            // attempts before a delivery is marked failed
    int timeout_seconds = 30;         // connect and DIMSE timeout
};

/// Worklist priority (docs/configuration.md): a score 0-100 per analyzed study from its findings,
/// and the analysis-queue priority of studies flagged urgent at reception.
struct PriorityConfig {
    std::map<std::string, double> label_weights = {{"brain tumor", 75}, {"lung tumor", 70}, {"pancreas tumor", 65},
                                                   {"liver tumor", 50}, {"kidney tumor", 50}, {"lung nodule", 30}};
    double default_weight = 40;      // labels not in label_weights
    double large_lesion_mm = 30;     // a lesion at least this long adds large_lesion_bonus
    double large_lesion_bonus = 15;
    double critical_score = 85;      // >= critical; >= urgent_score urgent; > 0 routine; 0 normal
    double urgent_score = 60;
    std::vector<std::string> urgent_callers;  // calling AE titles whose studies are analyzed first
    std::vector<std::string> stat_keywords = {"STAT", "URGENT", "EMERGENCY"};  // in study/procedure description
};

/// Data retention: what is deleted when (docs/operations.md). 0 = keep forever (the default).
struct RetentionConfig {
    double instances_days = 0;        // received instances, counted from the study's last delivery (or analysis)
    double outputs_days = 0;          // the rest of the study: results, SEG/SR files, database rows (not the audit)
    double high_water_percent = 0;    // disk use above this purges the oldest settled studies' instances early
    int check_interval_seconds = 600;
};

/// Webhook fired when a study reaches one of `levels` (JSON POST, retried; no patient name).
struct NotifyConfig {
    std::string url;  // http://host:port/path; "" = off
    std::vector<std::string> levels = {"critical", "urgent"};
    std::string token;  // sent as "Authorization: Bearer <token>" when set
    int timeout_seconds = 5;
    int max_attempts = 5;
};

struct ApiConfig {
    std::string listen = "127.0.0.1:8080";  // "" disables the API
    std::string token;  // bearer token; required when listen is not a loopback address
    int request_timeout_seconds = 10;  // a client that has not sent a whole request by then is dropped
};

struct Config {
    std::string source_path;  // the file it was read from ("" for defaults)
    NodeConfig node;
    IngestConfig ingest;
    ModelConfig model;
    AnalysisConfig analysis;
    std::vector<Destination> destinations;
    DeliveryConfig delivery;
    PriorityConfig priority;
    RetentionConfig retention;
    NotifyConfig notify;
    ApiConfig api;
};

struct Problem {
    std::string key;  // e.g. "ingest.max_associations"
    std::string message;
};

struct LoadResult {
    Config config;
    std::vector<Problem> problems;  // empty when the config is valid
    bool ok() const { return problems.empty(); }
};

/// Reads and validates a TOML file. Never throws; every problem names its key.
LoadResult load_config(const std::string& path);
/// Same, from text (relative paths resolve against `base_dir`).
LoadResult parse_config(const std::string& toml_text, const std::string& base_dir);

const char* to_string(Durability d);

}  // namespace triage::config
