#include "config/config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "core/log.h"

namespace triage::config {
namespace {

class Reader {
public:
    Reader(std::vector<Problem>& problems) : m_problems(problems) {}

    void problem(std::string key, std::string message) {
        m_problems.push_back({std::move(key), std::move(message)});
    }

    /// Reports keys of `table` that are not in `known`.
    void check_keys(const toml::table& table, const std::string& prefix,
                    const std::set<std::string>& known) {
        for (const auto& [k, v] : table) {
            std::string key(k.str());
            if (!known.count(key)) problem(prefix + key, "unknown key");
        }
    }

    void get(const toml::table& t, const std::string& prefix, const char* key, std::string& out) {
        if (const toml::node* n = t.get(key)) {
            if (auto v = n->as_string()) {
                out = v->get();
            } else {
                problem(prefix + key, "must be a string");
            }
        }
    }

    void get(const toml::table& t, const std::string& prefix, const char* key, int64_t& out) {
        if (const toml::node* n = t.get(key)) {
            if (auto v = n->as_integer()) {
                out = v->get();
            } else {
                problem(prefix + key, "must be an integer");
            }
        }
    }

    void get(const toml::table& t, const std::string& prefix, const char* key, int& out) {
        int64_t v = out;
        get(t, prefix, key, v);
        if (v < INT32_MIN || v > INT32_MAX) return problem(prefix + key, "out of range");
        out = static_cast<int>(v);
    }

    void get(const toml::table& t, const std::string& prefix, const char* key, double& out) {
        if (const toml::node* n = t.get(key)) {
            if (auto v = n->value<double>(); v && (n->is_floating_point() || n->is_integer())) {
                out = *v;
            } else {
                problem(prefix + key, "must be a number");
            }
        }
    }

    void get_strings(const toml::table& t, const std::string& prefix, const char* key,
                     std::vector<std::string>& out) {
        const toml::node* n = t.get(key);
        if (!n) return;
        const toml::array* a = n->as_array();
        if (!a) return problem(prefix + key, "must be an array of strings");
        out.clear();
        for (const auto& e : *a) {
            if (auto s = e.value<std::string>(); s && e.is_string()) {
                out.push_back(*s);
            } else {
                problem(prefix + key, "must be an array of strings");
                return;
            }
        }
    }

    const toml::table* section(const toml::table& root, const char* name) {
        const toml::node* n = root.get(name);
        if (!n) return nullptr;
        if (!n->is_table()) {
            problem(name, "must be a table ([" + std::string(name) + "])");
            return nullptr;
        }
        return n->as_table();
    }

private:
    std::vector<Problem>& m_problems;
};

bool valid_ae(const std::string& ae) {
    if (ae.empty() || ae.size() > 16) return false;
    for (char c : ae)
        if (c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
    return ae.find_first_not_of(' ') != std::string::npos;
}

void read_node(Reader& r, const toml::table& t, NodeConfig& c) {
    r.check_keys(t, "node.", {"ae_title", "bind", "port", "data_dir", "log_level", "stop_timeout_seconds"});
    r.get(t, "node.", "stop_timeout_seconds", c.stop_timeout_seconds);
    if (c.stop_timeout_seconds < 1) r.problem("node.stop_timeout_seconds", "must be >= 1");
    r.get(t, "node.", "ae_title", c.ae_title);
    r.get(t, "node.", "bind", c.bind);
    r.get(t, "node.", "port", c.port);
    r.get(t, "node.", "data_dir", c.data_dir);
    r.get(t, "node.", "log_level", c.log_level);
}

void read_ingest(Reader& r, const toml::table& t, IngestConfig& c) {
    r.check_keys(t, "ingest.", {"allowed_callers", "max_associations", "study_quiet_seconds",
                                "durability", "min_free_mb", "dimse_timeout_seconds"});
    r.get_strings(t, "ingest.", "allowed_callers", c.allowed_callers);
    r.get(t, "ingest.", "max_associations", c.max_associations);
    r.get(t, "ingest.", "study_quiet_seconds", c.study_quiet_seconds);
    r.get(t, "ingest.", "dimse_timeout_seconds", c.dimse_timeout_seconds);
    int64_t mb = c.min_free_mb;
    r.get(t, "ingest.", "min_free_mb", mb);
    c.min_free_mb = mb;
    std::string d = to_string(c.durability);
    r.get(t, "ingest.", "durability", d);
    if (d == "os") {
        c.durability = Durability::Os;
    } else if (d == "fsync") {
        c.durability = Durability::Fsync;
    } else {
        r.problem("ingest.durability", "must be \"os\" or \"fsync\", not \"" + d + "\"");
    }
}

void read_priority(Reader& r, const toml::table& t, PriorityConfig& p) {
    r.check_keys(t, "priority.", {"label_weights", "default_weight", "large_lesion_mm", "large_lesion_bonus",
                                  "critical_score", "urgent_score", "urgent_callers", "stat_keywords"});
    if (const toml::node* n = t.get("label_weights")) {
        const toml::table* w = n->as_table();
        if (!w) {
            r.problem("priority.label_weights", "must be a table of label = weight");
        } else {
            p.label_weights.clear();
            for (const auto& [label, value] : *w) {
                auto v = value.value<double>();
                if (!v || *v < 0 || *v > 100) r.problem("priority.label_weights." + std::string(label.str()), "must be 0-100");
                else p.label_weights[std::string(label.str())] = *v;
            }
        }
    }
    r.get(t, "priority.", "default_weight", p.default_weight);
    r.get(t, "priority.", "large_lesion_mm", p.large_lesion_mm);
    r.get(t, "priority.", "large_lesion_bonus", p.large_lesion_bonus);
    r.get(t, "priority.", "critical_score", p.critical_score);
    r.get(t, "priority.", "urgent_score", p.urgent_score);
    r.get_strings(t, "priority.", "urgent_callers", p.urgent_callers);
    r.get_strings(t, "priority.", "stat_keywords", p.stat_keywords);
    if (!(p.urgent_score > 0 && p.urgent_score <= p.critical_score && p.critical_score <= 100))
        r.problem("priority.urgent_score", "need 0 < urgent_score <= critical_score <= 100");
}

void read_destinations(Reader& r, const toml::node& n, std::vector<Destination>& out) {
    const toml::array* a = n.as_array();
    if (!a) return r.problem("destination", "must be an array of tables ([[destination]])");
    for (size_t i = 0; i < a->size(); ++i) {
        std::string p = "destination[" + std::to_string(i) + "].";
        const toml::table* t = (*a)[i].as_table();
        if (!t) {
            r.problem(p, "must be a table");
            continue;
        }
        Destination d;
        r.check_keys(*t, p, {"name", "ae_title", "host", "port", "send"});
        r.get(*t, p, "name", d.name);
        r.get(*t, p, "ae_title", d.ae_title);
        r.get(*t, p, "host", d.host);
        r.get(*t, p, "port", d.port);
        r.get_strings(*t, p, "send", d.send);
        if (d.name.empty()) r.problem(p + "name", "is required");
        if (!valid_ae(d.ae_title)) r.problem(p + "ae_title", "must be 1-16 characters");
        if (d.host.empty()) r.problem(p + "host", "is required");
        if (d.port < 1 || d.port > 65535) r.problem(p + "port", "must be 1-65535");
        for (const auto& s : d.send)
            if (s != "seg" && s != "sr" && s != "keyimages" && s != "kos")
                r.problem(p + "send", "entries must be \"seg\", \"sr\", \"keyimages\" or \"kos\"");
        for (const auto& other : out)
            if (other.name == d.name) r.problem(p + "name", "duplicate destination name");
        out.push_back(std::move(d));
    }
}

std::string resolve(const std::string& base_dir, const std::string& path) {
    if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
    return base_dir + "/" + path;
}

void validate(Reader& r, Config& c, const std::string& base_dir) {
    if (!valid_ae(c.node.ae_title)) r.problem("node.ae_title", "must be 1-16 characters");
    if (c.node.port < 0 || c.node.port > 65535)
        r.problem("node.port", "must be 0-65535 (0 = any free port)");
    if (c.node.data_dir.empty()) r.problem("node.data_dir", "is required");
    core::LogLevel lvl;
    if (!core::parse_log_level(c.node.log_level, lvl))
        r.problem("node.log_level", "must be debug, info, warn or error");
    c.node.data_dir = resolve(base_dir, c.node.data_dir);
    c.model.bundle = resolve(base_dir, c.model.bundle);
    for (const auto& text : c.ingest.allowed_callers) {
        auto rule = core::parse_caller_rule(text);
        if (rule) {
            c.ingest.caller_rules.push_back(std::move(rule.value()));
        } else {
            r.problem("ingest.allowed_callers", rule.error().message);
        }
    }
    if (c.ingest.max_associations < 1 || c.ingest.max_associations > 1024)
        r.problem("ingest.max_associations", "must be 1-1024");
    if (c.ingest.study_quiet_seconds < 0) r.problem("ingest.study_quiet_seconds", "must be >= 0");
    if (c.ingest.min_free_mb < 0) r.problem("ingest.min_free_mb", "must be >= 0");
    if (c.ingest.dimse_timeout_seconds < 1)
        r.problem("ingest.dimse_timeout_seconds", "must be >= 1");
    if (c.model.batch_size < 1 || c.model.batch_size > 256) r.problem("model.batch_size", "must be 1-256");
    if (c.model.threads < 0) r.problem("model.threads", "must be >= 0 (0 = all cores)");
    if (c.analysis.time_budget_seconds < 0) r.problem("analysis.time_budget_seconds", "must be >= 0 (0 = unlimited)");
    if (c.analysis.max_findings_per_label < 0) r.problem("analysis.max_findings_per_label", "must be >= 0 (0 = no limit)");
    if (c.analysis.max_findings_per_study < 0 || c.analysis.max_findings_per_study > 255)
        r.problem("analysis.max_findings_per_study", "must be 0-255 (0 = no limit)");
    if (c.analysis.max_checked_candidates < 1) r.problem("analysis.max_checked_candidates", "must be >= 1");
    const std::string& dev = c.model.device;
    if (dev != "auto" && dev != "cpu" && dev != "cuda" && dev.rfind("cuda:", 0) != 0)
        r.problem("model.device", "must be auto, cpu, cuda or cuda:N");
}

}  // namespace

const char* to_string(Durability d) { return d == Durability::Fsync ? "fsync" : "os"; }

LoadResult parse_config(const std::string& toml_text, const std::string& base_dir) {
    LoadResult out;
    Reader r(out.problems);
    toml::table root;
    try {
        root = toml::parse(toml_text);
    } catch (const toml::parse_error& e) {
        std::ostringstream msg;
        msg << e.description() << " (line " << e.source().begin.line << ")";
        r.problem("(syntax)", msg.str());
        return out;
    }
    Config& c = out.config;
    r.check_keys(root, "", {"node", "ingest", "model", "analysis", "destination", "delivery", "priority", "retention", "notify", "api"});
    if (auto* t = r.section(root, "node")) read_node(r, *t, c.node);
    if (auto* t = r.section(root, "ingest")) read_ingest(r, *t, c.ingest);
    if (auto* t = r.section(root, "model")) {
        r.check_keys(*t, "model.", {"bundle", "device", "batch_size", "threads"});
        r.get(*t, "model.", "bundle", c.model.bundle);
        r.get(*t, "model.", "device", c.model.device);
        r.get(*t, "model.", "batch_size", c.model.batch_size);
        r.get(*t, "model.", "threads", c.model.threads);
    }
    if (auto* t = r.section(root, "analysis")) {
        AnalysisConfig& a = c.analysis;
        r.check_keys(*t, "analysis.", {"time_budget_seconds", "max_findings_per_label", "max_findings_per_study", "max_checked_candidates"});
        r.get(*t, "analysis.", "time_budget_seconds", a.time_budget_seconds);
        r.get(*t, "analysis.", "max_findings_per_label", a.max_findings_per_label);
        r.get(*t, "analysis.", "max_findings_per_study", a.max_findings_per_study);
        r.get(*t, "analysis.", "max_checked_candidates", a.max_checked_candidates);
    }
    if (const toml::node* n = root.get("destination")) read_destinations(r, *n, c.destinations);
    if (auto* t = r.section(root, "delivery")) {
        DeliveryConfig& d = c.delivery;
        r.check_keys(*t, "delivery.", {"retry_base_seconds", "retry_max_seconds", "max_attempts", "timeout_seconds"});
        r.get(*t, "delivery.", "retry_base_seconds", d.retry_base_seconds);
        r.get(*t, "delivery.", "retry_max_seconds", d.retry_max_seconds);
        r.get(*t, "delivery.", "max_attempts", d.max_attempts);
        r.get(*t, "delivery.", "timeout_seconds", d.timeout_seconds);
        if (d.retry_base_seconds <= 0) r.problem("delivery.retry_base_seconds", "must be > 0");
        if (d.retry_max_seconds < d.retry_base_seconds) r.problem("delivery.retry_max_seconds", "must be >= retry_base_seconds");
        if (d.max_attempts < 1) r.problem("delivery.max_attempts", "must be >= 1");
        if (d.timeout_seconds < 1) r.problem("delivery.timeout_seconds", "must be >= 1");
    }
    if (auto* t = r.section(root, "priority")) read_priority(r, *t, c.priority);
    if (auto* t = r.section(root, "notify")) {
        NotifyConfig& n = c.notify;
        r.check_keys(*t, "notify.", {"url", "levels", "token", "timeout_seconds", "max_attempts"});
        r.get(*t, "notify.", "url", n.url);
        r.get_strings(*t, "notify.", "levels", n.levels);
        r.get(*t, "notify.", "token", n.token);
        r.get(*t, "notify.", "timeout_seconds", n.timeout_seconds);
        r.get(*t, "notify.", "max_attempts", n.max_attempts);
        if (!n.url.empty() && n.url.rfind("http://", 0) != 0)
            r.problem("notify.url", "must start with http:// (use a local relay for HTTPS)");
        for (const auto& l : n.levels)
            if (l != "critical" && l != "urgent" && l != "routine" && l != "normal")
                r.problem("notify.levels", "entries must be critical, urgent, routine or normal");
        if (n.timeout_seconds < 1) r.problem("notify.timeout_seconds", "must be >= 1");
        if (n.max_attempts < 1) r.problem("notify.max_attempts", "must be >= 1");
    }
    if (auto* t = r.section(root, "retention")) {
        RetentionConfig& k = c.retention;
        r.check_keys(*t, "retention.", {"instances_days", "outputs_days", "high_water_percent", "check_interval_seconds"});
        r.get(*t, "retention.", "instances_days", k.instances_days);
        r.get(*t, "retention.", "outputs_days", k.outputs_days);
        r.get(*t, "retention.", "high_water_percent", k.high_water_percent);
        r.get(*t, "retention.", "check_interval_seconds", k.check_interval_seconds);
        if (k.instances_days < 0) r.problem("retention.instances_days", "must be >= 0 (0 = keep forever)");
        if (k.outputs_days < 0) r.problem("retention.outputs_days", "must be >= 0 (0 = keep forever)");
        if (k.outputs_days > 0 && k.instances_days > k.outputs_days)
            r.problem("retention.outputs_days", "must be >= instances_days (a purged study has no instances)");
        if (k.high_water_percent < 0 || k.high_water_percent >= 100) r.problem("retention.high_water_percent", "must be 0-99 (0 = off)");
        if (k.check_interval_seconds < 1) r.problem("retention.check_interval_seconds", "must be >= 1");
    }
    if (auto* t = r.section(root, "api")) {
        r.check_keys(*t, "api.", {"listen", "token", "request_timeout_seconds"});
        r.get(*t, "api.", "listen", c.api.listen);
        r.get(*t, "api.", "token", c.api.token);
        r.get(*t, "api.", "request_timeout_seconds", c.api.request_timeout_seconds);
        if (c.api.request_timeout_seconds < 1) r.problem("api.request_timeout_seconds", "must be >= 1");
    }
    if (!c.api.listen.empty()) {
        size_t colon = c.api.listen.rfind(':');
        std::string host = colon == std::string::npos ? "" : c.api.listen.substr(0, colon);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        bool loopback = host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
        if (host.empty()) r.problem("api.listen", "must be host:port, e.g. 127.0.0.1:8080");
        else if (!loopback && c.api.token.size() < 16)
            r.problem("api.token", "a listener on " + host + " (not loopback) needs a bearer token of 16+ characters");
    }
    validate(r, c, base_dir);
    return out;
}

LoadResult load_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        LoadResult out;
        out.problems.push_back({"(file)", "cannot read config file '" + path + "'"});
        return out;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto slash = path.rfind('/');
    std::string base = slash == std::string::npos ? "." : path.substr(0, slash);
    if (base.empty()) base = "/";
    LoadResult out = parse_config(ss.str(), base);
    out.config.source_path = path;
    return out;
}

}  // namespace triage::config
