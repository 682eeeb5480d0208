#include "daemon/api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/time.h"
#include "daemon/web_page.h"

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
    auto out = studies_json(ctx.views.index, ctx.views.results, worklist);
    if (!out) return from_error(out.error());
    return json_response(200, out.value());
}

const std::string kCookie = "triage_token";

/// Percent-encodes what a cookie value may not hold (RFC 6265 cookie-octet); percent_decode() reads it back.
std::string cookie_encode(const std::string& v) {
    std::string out;
    for (unsigned char c : v) {
        if (std::isalnum(c) || std::string_view("-._~+/=").find(static_cast<char>(c)) != std::string_view::npos) {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

/// Whether a `triage_token` cookie of the Cookie header holds the token.
bool cookie_has_token(const std::string& header, const std::string& token) {
    bool found = false;
    for (size_t p = 0; p < header.size();) {
        size_t end = header.find(';', p);
        std::string pair = header.substr(p, end == std::string::npos ? std::string::npos : end - p);
        size_t first = pair.find_first_not_of(' ');
        size_t eq = pair.find('=');
        if (first != std::string::npos && eq != std::string::npos && pair.substr(first, eq - first) == kCookie) {
            std::string value = pair.substr(eq + 1);
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
            found = same(percent_decode(value, false), token) || found;
        }
        if (end == std::string::npos) break;
        p = end + 1;
    }
    return found;
}

HttpResponse login_redirect(const std::string& token) {
    HttpResponse r{303, "text/plain; charset=utf-8", "See /\n"};
    r.headers = {{"Location", "/"},
                 {"Set-Cookie", kCookie + "=" + cookie_encode(token) + "; HttpOnly; SameSite=Strict; Path=/"}};
    return r;
}

HttpResponse png_response(const core::Result<std::string>& png) {
    if (!png) return from_error(png.error());
    return {200, "image/png", png.value()};
}

/// A non-negative index of at most 6 digits followed by ".png", or -1.
int png_index(const std::string& s) {
    const std::string ext = ".png";
    if (s.size() <= ext.size() || s.size() > 6 + ext.size() || s.compare(s.size() - ext.size(), ext.size(), ext) != 0) return -1;
    std::string digits = s.substr(0, s.size() - ext.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoi(digits);
}

/// /api/v1/studies/{uid}[/slices/{n}.png | /keyimages/{k}.png]
HttpResponse study_routes(const ApiContext& ctx, const HttpRequest& req, const std::string& rest) {
    std::vector<std::string> parts;
    for (size_t p = 0;;) {
        size_t slash = rest.find('/', p);
        parts.push_back(rest.substr(p, slash == std::string::npos ? std::string::npos : slash - p));
        if (slash == std::string::npos) break;
        p = slash + 1;
    }
    if (parts.size() == 1 && !parts[0].empty()) {
        auto d = study_detail_json(ctx.views, parts[0]);
        if (!d) return from_error(d.error());
        return json_response(200, d.value());
    }
    if (parts.size() != 3 || parts[0].empty() || !ctx.images) return error(404, "no such endpoint: " + req.path);
    int n = png_index(parts[2]);
    if (n < 0) return error(404, "no such image: " + parts[2]);
    auto q = [&](const char* k) {
        auto it = req.query.find(k);
        return it == req.query.end() ? std::string() : it->second;
    };
    if (parts[1] == "slices") return png_response(ctx.images->slice_png(parts[0], q("series"), n, q("overlay") != "0"));
    if (parts[1] == "keyimages") return png_response(ctx.images->key_image_png(parts[0], n));
    return error(404, "no such endpoint: " + req.path);
}

HttpResponse changes(const ApiContext& ctx) {
    auto id = ctx.audit.latest_id();
    if (!id) return from_error(id.error());
    return json_response(200, {{"version", id.value()}});
}

HttpResponse audit(const ApiContext& ctx, const HttpRequest& req) {
    std::string from;
    if (auto since = req.query.find("since"); since != req.query.end() && !since->second.empty()) {
        auto t = core::parse_iso8601(since->second);
        if (!t) return error(400, "since must be ISO 8601, e.g. 2026-11-27T10:00:00Z");
        from = core::format_iso8601(*t);
    }
    auto study = req.query.find("study");
    auto events = study == req.query.end() ? ctx.audit.list(from) : ctx.audit.list_for_study(study->second, from);
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

Access authorize(const std::string& token, const HttpRequest& req) {
    if (token.empty()) return Access::Allowed;
    if (auto t = req.query.find("token"); req.path == "/" && t != req.query.end())
        return same(t->second, token) ? Access::Login : Access::Denied;
    if (same(req.authorization, "Bearer " + token) || cookie_has_token(req.cookie, token)) return Access::Allowed;
    return Access::Denied;
}

HttpResponse handle_api(const ApiContext& ctx, const HttpRequest& req) {
    const std::string& p = req.path;
    switch (authorize(ctx.token, req)) {
        case Access::Allowed: break;
        case Access::Login: return login_redirect(ctx.token);
        case Access::Denied:
            if (p == "/") return login_page(req.query.count("token") > 0);
            return error(401, "token required (Authorization: Bearer, or the cookie set by GET /?token=)");
    }
    if (req.method != "GET" && req.method != "HEAD") return error(405, "only GET is supported");
    if (auto page = web_asset(p)) return *page;
    if (p == "/api/v1/changes") return changes(ctx);
    if (p == "/healthz") return healthz(ctx);
    if (p == "/metrics") return {200, "text/plain; version=0.0.4", render_metrics(ctx)};
    if (p == "/api/v1/worklist") return studies(ctx, true);
    if (p == "/api/v1/studies") return studies(ctx, false);
    if (p == "/api/v1/audit") return audit(ctx, req);
    const std::string prefix = "/api/v1/studies/";
    if (p.rfind(prefix, 0) == 0 && p.size() > prefix.size()) return study_routes(ctx, req, p.substr(prefix.size()));
    return error(404, "no such endpoint: " + p);
}

}  // namespace triage::daemon
