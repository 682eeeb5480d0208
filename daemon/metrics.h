#pragma once
// Process metrics in Prometheus text format: counters and histograms incremented where things
// happen (receiver, analysis, delivery), gauges computed at scrape time by the caller. Thread-safe.
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace triage::daemon {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
public:
    void add(const std::string& name, const Labels& labels, double value = 1);
    void observe(const std::string& name, const Labels& labels, double value);
    /// Declares HELP and TYPE of a metric (counter, gauge, histogram).
    void describe(const std::string& name, const std::string& type, const std::string& help);
    /// The exposition text, with `gauges` (name -> [(labels, value)]) added.
    std::string render(const std::map<std::string, std::vector<std::pair<Labels, double>>>& gauges) const;

private:
    struct Histogram {
        std::vector<double> counts;  // per bucket of kBuckets, cumulative (value <= bound)
        double sum = 0;
        double count = 0;
    };
    mutable std::mutex m_mutex;
    std::map<std::string, std::pair<std::string, std::string>> m_meta;  // name -> (type, help)
    std::map<std::string, std::map<Labels, double>> m_counters;
    std::map<std::string, std::map<Labels, Histogram>> m_histograms;
};

/// The node's registry (one per process, like Prometheus clients' default registry), with every
/// metric the node exports described (docs/operations.md lists them).
Metrics& node_metrics();

/// Escapes a label value for the exposition format.
std::string escape_label(const std::string& v);

}  // namespace triage::daemon
