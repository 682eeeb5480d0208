#include "daemon/ctl.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/time.h"
#include "daemon/app.h"
#include "daemon/offline_analyze.h"
#include "daemon/study_json.h"
#include "dicom_io/store_scu.h"
#include "pipeline/bpe_tokenizer.h"
#include "storage/audit_log.h"
#include "storage/database.h"
#include "storage/instance_index.h"
#include "storage/job_queue.h"

namespace triage::daemon {

using nlohmann::json;

namespace {

constexpr const char* kUsage =
    "usage: triagectl --config FILE COMMAND [--json]\n"
    "commands:\n"
    "  studies                      one entry per received study\n"
    "  study UID                    everything about one study\n"
    "  worklist                     studies by priority, then completion time\n"
    "  audit [--since ISO8601]      audit events, oldest first\n"
    "  complete UID                 force study completion now\n"
    "  reprocess UID                queue a new analysis of a study\n"
    "  retry [--destination NAME]   re-queue failed deliveries\n"
    "  echo NAME                    C-ECHO a configured destination\n"
    "  analyze DIR --out DIR        run the pipeline offline on a folder\n"
    "       triagectl tokenize --bundle DIR [--] TEXT...  token ids of each TEXT, one JSON array a line (no config)\n"
    "       triagectl tokenize --bundle DIR --decode IDS  text of a JSON array of ids\n";

struct Ctx {
    std::unique_ptr<storage::Database> db;
    core::SystemClock clock;
    std::unique_ptr<storage::AuditLog> audit;
    std::unique_ptr<storage::InstanceIndex> index;
    std::unique_ptr<storage::JobQueue> jobs;
    std::unique_ptr<storage::AnalysisStore> results;
    std::unique_ptr<storage::DeliveryQueue> deliveries;
    config::Config config;
    bool json_out = false;
};

int fail(const core::Error& e) {
    std::fprintf(stderr, "triagectl: %s\n", e.message.c_str());
    return e.kind == core::ErrorKind::NotFound ? kCtlNotFound : kCtlFailed;
}

void print_studies_table(const json& studies) {
    int w = 9;
    for (const auto& s : studies) w = std::max(w, static_cast<int>(s["study_uid"].get<std::string>().size()));
    std::printf("%-*s %-12s %-12s %-8s %5s %6s %-9s %-8s %5s %-24s %s\n", w, "STUDY UID", "PATIENT", "ACCESSION",
                "MOD", "SER", "INST", "STATE", "PRIO", "SCORE", "RECEIVED", "FINDINGS");
    for (const auto& s : studies) {
        std::string mods;
        for (const auto& m : s["modalities"]) mods += (mods.empty() ? "" : ",") + m.get<std::string>();
        std::string prio = s["priority_level"].is_null() ? "-" : s["priority_level"].get<std::string>();
        std::string score = s["priority_score"].is_null() ? "-" : fmt::format("{:.0f}", s["priority_score"].get<double>());
        std::string findings = s["findings_summary"].is_null() ? "" : s["findings_summary"].get<std::string>();
        std::printf("%-*s %-12s %-12s %-8s %5d %6d %-9s %-8s %5s %-24s %s\n", w,
                    s["study_uid"].get<std::string>().c_str(), s["patient_id"].get<std::string>().c_str(),
                    s["accession"].get<std::string>().c_str(), mods.c_str(), s["series_count"].get<int>(),
                    s["instance_count"].get<int>(), s["state"].get<std::string>().c_str(), prio.c_str(), score.c_str(),
                    s["received_at"].get<std::string>().c_str(), findings.c_str());
    }
}

int cmd_studies(Ctx& c, bool worklist) {
    auto studies = studies_json(*c.index, *c.results, worklist);
    if (!studies) return fail(studies.error());
    const json& out = studies.value();
    if (c.json_out) {
        std::cout << out.dump(2) << "\n";
    } else {
        print_studies_table(out);
    }
    return kCtlOk;
}

int cmd_study(Ctx& c, const std::string& uid) {
    auto detail = study_detail_json({*c.index, *c.jobs, *c.results, *c.deliveries, c.config.node.data_dir}, uid);
    if (!detail) return fail(detail.error());
    const json& d = detail.value();
    if (c.json_out) {
        std::cout << d.dump(2) << "\n";
        return kCtlOk;
    }
    std::printf("study     %s\npatient   %s\naccession %s\nstate     %s\n", uid.c_str(),
                d["patient_id"].get<std::string>().c_str(), d["accession"].get<std::string>().c_str(),
                d["state"].get<std::string>().c_str());
    if (!d["priority_level"].is_null()) {
        std::printf("priority  %s (score %.0f)\n", d["priority_level"].get<std::string>().c_str(),
                    d["priority_score"].get<double>());
        for (const auto& r : d["priority_reasons"]) std::printf("          - %s\n", r.get<std::string>().c_str());
    }
    std::printf("series:\n");
    for (const auto& s : d["series"])
        std::printf("  %-8s %4d  %s  %s%s\n", s.value("modality", "").c_str(), s.value("instance_count", 0),
                    s["series_uid"].get<std::string>().c_str(), s.value("description", "").c_str(),
                    s["skip_reason"].is_string() ? ("  [not analyzed: " + s["skip_reason"].get<std::string>() + "]").c_str()
                                                 : (s.value("analyzed", false) ? "  [analyzed]" : ""));
    std::printf("findings:\n");
    for (const auto& f : d["findings"])
        std::printf("  %-15s %6.1f mm %7.2f mL  conf %.2f  slices %d-%d\n", f["label"].get<std::string>().c_str(),
                    f["diameter_mm"].get<double>(), f["volume_ml"].get<double>(), f["confidence"].get<double>(),
                    f["first_slice"].get<int>() + 1, f["last_slice"].get<int>() + 1);
    if (d["model"].is_object())
        std::printf("model:\n  %s %s\n", d["model"]["name"].get<std::string>().c_str(),
                    d["model"]["version"].get<std::string>().c_str());
    std::printf("jobs:\n");
    for (const auto& j : d["jobs"])
        std::printf("  #%lld v%d %-8s attempts=%d %s\n", j["id"].get<long long>(), j["version"].get<int>(),
                    j["state"].get<std::string>().c_str(), j["attempts"].get<int>(),
                    j["error"].is_null() ? "" : j["error"].get<std::string>().c_str());
    std::printf("outputs:\n");
    for (const auto& o : d["outputs"])
        std::printf("  %-8s %s  %s\n", o["kind"].get<std::string>().c_str(), o["sop_instance_uid"].get<std::string>().c_str(),
                    o["path"].get<std::string>().c_str());
    std::printf("deliveries:\n");
    for (const auto& x : d["deliveries"])
        std::printf("  %-12s %-8s %-7s attempts=%d %s\n", x["destination"].get<std::string>().c_str(),
                    x["kind"].get<std::string>().c_str(), x["state"].get<std::string>().c_str(), x["attempts"].get<int>(),
                    x["last_error"].is_null() ? "" : x["last_error"].get<std::string>().c_str());
    std::string report = d["report"].get<std::string>();
    std::printf("report:\n  %s\n", report.empty() ? "(not analyzed yet)" : report.c_str());
    return kCtlOk;
}

int cmd_audit(Ctx& c, const std::string& since) {
    std::string from;
    if (!since.empty()) {
        auto t = core::parse_iso8601(since);
        if (!t) {
            std::fprintf(stderr, "triagectl: --since must be ISO 8601, e.g. 2026-11-27T10:00:00Z\n");
            return kCtlUsage;
        }
        from = core::format_iso8601(*t);
    }
    auto events = c.audit->list(from);
    if (!events) return fail(events.error());
    json out = json::array();
    for (const auto& e : events.value()) out.push_back(audit_event_json(e));
    if (c.json_out) {
        std::cout << out.dump(2) << "\n";
        return kCtlOk;
    }
    for (const auto& e : out) {
        json rest = e;
        rest.erase("time");
        rest.erase("event");
        std::printf("%s  %-22s %s\n", e["time"].get<std::string>().c_str(),
                    e["event"].get<std::string>().c_str(), rest.dump().c_str());
    }
    return kCtlOk;
}

int cmd_enqueue(Ctx& c, const std::string& uid, bool force_complete) {
    auto job = force_complete ? c.jobs->complete_study(uid, std::nullopt, "forced")
                              : c.jobs->reprocess(uid);
    if (!job) return fail(job.error());
    json out{{"study_uid", uid}, {"job", nullptr}};
    if (job.value()) out["job"] = job_json(*job.value());
    if (c.json_out) {
        std::cout << out.dump(2) << "\n";
    } else if (job.value()) {
        std::printf("study %s: job #%lld version %d queued\n", uid.c_str(),
                    static_cast<long long>(job.value()->id), job.value()->version);
    } else {
        std::printf("study %s: a queued job already covers it\n", uid.c_str());
    }
    return kCtlOk;
}

int cmd_retry(Ctx& c, const std::optional<std::string>& destination) {
    if (destination && std::none_of(c.config.destinations.begin(), c.config.destinations.end(),
                                    [&](const auto& d) { return d.name == *destination; })) {
        std::fprintf(stderr, "triagectl: no destination named '%s' in the config\n", destination->c_str());
        return kCtlNotFound;
    }
    auto n = c.deliveries->retry_failed(destination);
    if (!n) return fail(n.error());
    if (c.json_out) {
        std::cout << json{{"requeued", n.value()}}.dump(2) << "\n";
    } else {
        std::printf("%d failed deliver%s re-queued\n", n.value(), n.value() == 1 ? "y" : "ies");
    }
    return kCtlOk;
}

int cmd_echo(const config::Config& cfg, const std::string& name, bool json_out) {
    auto d = std::find_if(cfg.destinations.begin(), cfg.destinations.end(), [&](const auto& x) { return x.name == name; });
    if (d == cfg.destinations.end()) {
        std::fprintf(stderr, "triagectl: no destination named '%s' in the config\n", name.c_str());
        return kCtlNotFound;
    }
    auto st = dicom_io::echo({d->ae_title, d->host, cfg.node.ae_title, d->port, cfg.delivery.timeout_seconds});
    if (json_out) {
        json out{{"destination", name}, {"ok", st.ok()}};
        if (!st) out["error"] = st.error().message;
        std::cout << out.dump(2) << "\n";
    } else if (st) {
        std::printf("%s (%s@%s:%d): C-ECHO ok\n", name.c_str(), d->ae_title.c_str(), d->host.c_str(), d->port);
    }
    if (!st) return fail(st.error());
    return kCtlOk;
}

int cmd_analyze(const std::string& config_path, const std::string& dir, const std::string& out_dir, bool json_out) {
    auto loaded = config::load_config(config_path);
    if (!loaded.ok()) {
        for (const auto& p : loaded.problems)
            std::fprintf(stderr, "triagectl: config %s: %s\n", p.key.c_str(), p.message.c_str());
        return kCtlFailed;
    }
    auto docs = analyze_folder(loaded.config, dir, out_dir);
    if (!docs) return fail(docs.error());
    if (json_out) {
        std::cout << docs->dump(2) << "\n";
        return kCtlOk;
    }
    for (const auto& d : docs->is_array() ? docs.value() : json::array({docs.value()})) {
        std::printf("study %s\n", d["study_uid"].get<std::string>().c_str());
        for (const auto& f : d["findings"]) std::printf("  %s\n", f["description"].get<std::string>().c_str());
        std::printf("%s\n\n", d["report"].get<std::string>().c_str());
    }
    return kCtlOk;
}

// The bundle's tokenizer on each text (ids as one JSON array a line, no BOS) or, with --decode, on
// one JSON array of ids.
int cmd_tokenize(const std::string& bundle, const std::vector<std::string>& args, bool decode) {
    if (decode && args.size() != 1) {
        std::fprintf(stderr, "triagectl: --decode takes one JSON array of ids\n%s", kUsage);
        return kCtlUsage;
    }
    const json ids = decode ? json::parse(args[0], nullptr, false) : json::array();
    if (!ids.is_array() || !std::all_of(ids.begin(), ids.end(), [](const json& v) { return v.is_number_integer(); })) {
        std::fprintf(stderr, "triagectl: --decode wants a JSON array of integer ids\n%s", kUsage);
        return kCtlUsage;
    }
    auto tok = pipeline::load_bundle_tokenizer(bundle);
    if (!tok) {
        std::fprintf(stderr, "triagectl: %s\n", tok.error().message.c_str());
        return kCtlFailed;
    }
    if (!decode) {
        for (const std::string& text : args) std::cout << json(tok->encode(text)).dump() << "\n";
        return kCtlOk;
    }
    std::vector<int> list;  // ids outside int range name no token: -1 is skipped like them
    for (const json& v : ids) list.push_back(v.get<long long>() < 0 || v.get<long long>() > INT32_MAX ? -1 : v.get<int>());
    std::cout << tok->decode(list) << "\n";
    return kCtlOk;
}

int load(const std::string& config_path, Ctx& c) {
    auto loaded = config::load_config(config_path);
    if (!loaded.ok()) {
        for (const auto& p : loaded.problems)
            std::fprintf(stderr, "triagectl: config %s: %s\n", p.key.c_str(), p.message.c_str());
        return kCtlFailed;
    }
    c.config = loaded.config;
    return kCtlOk;
}

int open_ctx(const std::string& config_path, Ctx& c) {
    if (int rc = load(config_path, c); rc != kCtlOk) return rc;
    const config::Config& cfg = c.config;
    auto db = storage::Database::open_existing(database_path(cfg));
    if (!db) return fail(db.error());
    c.db = std::move(db.value());
    c.audit = std::make_unique<storage::AuditLog>(*c.db, c.clock);
    c.index = std::make_unique<storage::InstanceIndex>(*c.db, *c.audit, c.clock);
    c.jobs = std::make_unique<storage::JobQueue>(*c.db, *c.audit, c.clock);
    c.results = std::make_unique<storage::AnalysisStore>(*c.db, *c.audit, c.clock);
    c.deliveries = std::make_unique<storage::DeliveryQueue>(*c.db, *c.audit, c.clock);
    return kCtlOk;
}

}  // namespace

int run_ctl(const std::vector<std::string>& args) {
    std::string config_path, since, out_dir, bundle;
    bool decode = false;
    std::optional<std::string> destination;
    std::vector<std::string> positional;
    Ctx c;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--config" && i + 1 < args.size()) {
            config_path = args[++i];
        } else if (a == "--json") {
            c.json_out = true;
        } else if (a == "--since" && i + 1 < args.size()) {
            since = args[++i];
        } else if (a == "--destination" && i + 1 < args.size()) {
            destination = args[++i];
        } else if (a == "--out" && i + 1 < args.size()) {
            out_dir = args[++i];
        } else if (a == "--bundle" && i + 1 < args.size()) {
            bundle = args[++i];
        } else if (a == "--decode") {
            decode = true;
        } else if (a == "--") {  // the rest are positional (a TEXT may start with "-")
            positional.insert(positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
            break;
        } else if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return kCtlOk;
        } else if (a.rfind("--", 0) == 0) {
            std::fprintf(stderr, "triagectl: unknown option %s\n%s", a.c_str(), kUsage);
            return kCtlUsage;
        } else {
            positional.push_back(a);
        }
    }
    if (!positional.empty() && positional[0] == "tokenize") {
        if (bundle.empty() || positional.size() < 2) {
            std::fprintf(stderr, "triagectl: bad command line for 'tokenize'\n%s", kUsage);
            return kCtlUsage;
        }
        return cmd_tokenize(bundle, {positional.begin() + 1, positional.end()}, decode);
    }
    if (config_path.empty() || positional.empty()) {
        std::fputs(kUsage, stderr);
        return kCtlUsage;
    }
    const std::string cmd = positional[0];
    auto want = [&](size_t n) { return positional.size() == n; };
    bool known = (cmd == "studies" || cmd == "worklist" || cmd == "audit") ? want(1)
                 : (cmd == "study" || cmd == "complete" || cmd == "reprocess") ? want(2)
                 : cmd == "analyze" ? (want(2) && !out_dir.empty())
                 : cmd == "retry" ? want(1)
                 : cmd == "echo" ? want(2) : false;
    if (!known) {
        std::fprintf(stderr, "triagectl: bad command line for '%s'\n%s", cmd.c_str(), kUsage);
        return kCtlUsage;
    }
    if (cmd == "analyze") return cmd_analyze(config_path, positional[1], out_dir, c.json_out);
    if (cmd == "echo") {
        if (int rc = load(config_path, c); rc != kCtlOk) return rc;
        return cmd_echo(c.config, positional[1], c.json_out);
    }
    if (int rc = open_ctx(config_path, c); rc != kCtlOk) return rc;
    if (cmd == "studies") return cmd_studies(c, false);
    if (cmd == "worklist") return cmd_studies(c, true);
    if (cmd == "study") return cmd_study(c, positional[1]);
    if (cmd == "audit") return cmd_audit(c, since);
    if (cmd == "retry") return cmd_retry(c, destination);
    return cmd_enqueue(c, positional[1], cmd == "complete");
}

}  // namespace triage::daemon
