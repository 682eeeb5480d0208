#include "daemon/api.h"

#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/time.h"

namespace triage::daemon {

using nlohmann::json;

namespace {

HttpResponse json_response(int status, const json& body) { return {status, "application/json", body.dump(2) + "\n"}; }

HttpResponse error(int status, const std::string& message) { return json_response(status, {{"error", message}}); }

HttpResponse from_error(const core::Error& e) {
    return error(e.kind == core::ErrorKind::NotFound ? 404 : e.kind == core::ErrorKind::InvalidInput ? 400 : 500,
                 e.message);
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
bool same(const std::string& a, const std::string& b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
    return diff == 0;
}

HttpResponse studies(const ApiContext& ctx, bool worklist) {
    auto list = ctx.views.index.list_studies();
    if (!list) return from_error(list.error());
    json out = json::array();
    for (const auto& s : list.value()) out.push_back(study_summary_json(s));
    if (worklist) sort_worklist(out);
    return json_response(200, out);
}

HttpResponse audit(const ApiContext& ctx, const HttpRequest& req) {
    std::string from;
    if (auto since = req.query.find("since"); since != req.query.end() && !since->second.empty()) {
        auto t = core::parse_iso8601(since->second);
        if (!t) return error(400, "since must be ISO 8601, e.g. 2026-11-27T10:00:00Z");
        from = core::format_iso8601(*t);
    }
    auto events = ctx.audit.list(from);
    if (!events) return from_error(events.error());
    json out = json::array();
    for (const auto& e : events.value()) out.push_back(audit_event_json(e));
    return json_response(200, out);
}

HttpResponse healthz(const ApiContext& ctx) {
    Health h = ctx.health();
    return json_response(h.ok() ? 200 : 503, {{"status", h.ok() ? "ok" : "degraded"},
                                              {"scp_listening", h.scp_listening},
                                              {"db_writable", h.db_writable},
                                              {"model_loaded", h.model_loaded},
                                              {"disk_ok", h.disk_ok},
                                              {"disk_free_mb", h.disk_free_mb}});
}

}  // namespace

std::string render_metrics(const ApiContext& ctx) {
    std::map<std::string, std::vector<std::pair<Labels, double>>> gauges;
    if (auto q = ctx.views.jobs.stats(); q) {
        gauges["triage_queue_jobs"] = {{{{"state", "queued"}}, double(q->queued)}, {{{"state", "running"}}, double(q->running)}};
        double age = 0;
        if (q->oldest_queued_at)
            if (auto t = core::parse_iso8601(*q->oldest_queued_at))
                age = std::chrono::duration<double>(std::chrono::system_clock::now() - *t).count();
        gauges["triage_queue_oldest_age_seconds"] = {{{}, age}};
    }
    if (auto c = ctx.views.deliveries.counts(); c) {
        std::map<std::string, double> backlog;
        for (const auto& x : c.value()) {
            gauges["triage_deliveries"].push_back({{{"destination", x.destination}, {"state", x.state}}, double(x.count)});
            if (x.retrying) backlog[x.destination] += static_cast<double>(x.count);
        }
        for (const auto& [d, n] : backlog) gauges["triage_delivery_retry_backlog"].push_back({{{"destination", d}}, n});
    }
    Health h = ctx.health();
    gauges["triage_disk_free_bytes"] = {{{}, h.disk_free_mb * 1024 * 1024}};
    gauges["triage_up"] = {{{{"component", "scp"}}, h.scp_listening ? 1.0 : 0.0},
                           {{{"component", "db"}}, h.db_writable ? 1.0 : 0.0},
                           {{{"component", "model"}}, h.model_loaded ? 1.0 : 0.0},
                           {{{"component", "disk"}}, h.disk_ok ? 1.0 : 0.0}};
    return ctx.metrics.render(gauges);
}

HttpResponse handle_api(const ApiContext& ctx, const HttpRequest& req) {
    if (!ctx.token.empty() && !same(req.authorization, "Bearer " + ctx.token)) return error(401, "bearer token required");
    if (req.method != "GET" && req.method != "HEAD") return error(405, "only GET is supported");
    const std::string& p = req.path;
    if (p == "/healthz") return healthz(ctx);
    if (p == "/metrics") return {200, "text/plain; version=0.0.4", render_metrics(ctx)};
    if (p == "/api/v1/worklist") return studies(ctx, true);
    if (p == "/api/v1/studies") return studies(ctx, false);
    if (p == "/api/v1/audit") return audit(ctx, req);
    const std::string prefix = "/api/v1/studies/";
    if (p.rfind(prefix, 0) == 0 && p.size() > prefix.size() && p.find('/', prefix.size()) == std::string::npos) {
        auto d = study_detail_json(ctx.views, p.substr(prefix.size()));
        if (!d) return from_error(d.error());
        return json_response(200, d.value());
    }
    return error(404, "no such endpoint: " + p);
}

}  // namespace triage::daemon
