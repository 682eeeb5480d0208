#include "daemon/metrics.h"

#include <fmt/format.h>

namespace triage::daemon {

namespace {

const std::vector<double> kBuckets = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

std::string label_text(const Labels& labels, const std::string& extra = "") {
    std::string out;
    for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=\"" + escape_label(v) + "\"";
    if (!extra.empty()) out += (out.empty() ? "" : ",") + extra;
    return out.empty() ? "" : "{" + out + "}";
}

std::string number(double v) { return fmt::format("{}", v); }

}  // namespace

Metrics& node_metrics() {
    static Metrics* m = [] {
        auto* r = new Metrics;  // never destroyed: threads may still count during exit
        r->describe("triage_instances_received_total", "counter", "C-STORE requests answered, by calling AE and status");
        r->describe("triage_associations_total", "counter", "associations, by outcome (accepted, rejected)");
        r->describe("triage_studies_completed_total", "counter", "studies completed (quiet time passed)");
        r->describe("triage_jobs_total", "counter", "analysis jobs finished, by outcome (done, failed)");
        r->describe("triage_inference_seconds", "histogram", "analysis time per study, by stage");
        r->describe("triage_deliveries_total", "counter", "delivery attempts, by destination and outcome");
        r->describe("triage_queue_jobs", "gauge", "analysis jobs by state");
        r->describe("triage_queue_oldest_age_seconds", "gauge", "age of the oldest queued analysis job");
        r->describe("triage_deliveries", "gauge", "deliveries by destination and state");
        r->describe("triage_delivery_retry_backlog", "gauge", "pending deliveries that failed at least once");
        r->describe("triage_disk_free_bytes", "gauge", "free space under data_dir");
        r->describe("triage_up", "gauge", "1 when a component is healthy (scp, db, model, disk)");
        return r;
    }();
    return *m;
}

std::string escape_label(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

void Metrics::add(const std::string& name, const Labels& labels, double value) {
    std::lock_guard lock(m_mutex);
    m_counters[name][labels] += value;
}

void Metrics::observe(const std::string& name, const Labels& labels, double value) {
    std::lock_guard lock(m_mutex);
    Histogram& h = m_histograms[name][labels];
    if (h.counts.empty()) h.counts.assign(kBuckets.size(), 0);
    for (size_t i = 0; i < kBuckets.size(); ++i)
        if (value <= kBuckets[i]) ++h.counts[i];
    h.sum += value;
    ++h.count;
}

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
    std::lock_guard lock(m_mutex);
    m_meta[name] = {type, help};
}

std::string Metrics::render(const std::map<std::string, std::vector<std::pair<Labels, double>>>& gauges) const {
    std::lock_guard lock(m_mutex);
    std::string out;
    for (const auto& [name, meta] : m_meta) {
        out += "# HELP " + name + " " + meta.second + "\n# TYPE " + name + " " + meta.first + "\n";
        if (auto c = m_counters.find(name); c != m_counters.end())
            for (const auto& [labels, v] : c->second) out += name + label_text(labels) + " " + number(v) + "\n";
        if (auto g = gauges.find(name); g != gauges.end())
            for (const auto& [labels, v] : g->second) out += name + label_text(labels) + " " + number(v) + "\n";
        if (auto h = m_histograms.find(name); h != m_histograms.end()) {
            for (const auto& [labels, hist] : h->second) {
                for (size_t i = 0; i < kBuckets.size(); ++i)
                    out += name + "_bucket" + label_text(labels, "le=\"" + number(kBuckets[i]) + "\"") + " " +
                           number(hist.counts[i]) + "\n";
                out += name + "_bucket" + label_text(labels, "le=\"+Inf\"") + " " + number(hist.count) + "\n";
                out += name + "_sum" + label_text(labels) + " " + number(hist.sum) + "\n";
                out += name + "_count" + label_text(labels) + " " + number(hist.count) + "\n";
            }
        }
    }
    return out;
}

}  // namespace triage::daemon
