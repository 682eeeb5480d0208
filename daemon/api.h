#pragma once
// The HTTP API of CONTRACT.md: /healthz, /metrics, /api/v1/worklist, /api/v1/studies,
// /api/v1/studies/{uid}, /api/v1/audit?since= — the same JSON documents as triagectl — and the
// worklist page (docs/operations.md): / and /ui/*, /api/v1/changes, /api/v1/audit?study=, slice
// and key-image PNGs. Read-only; a token, when configured, is required on every endpoint (and
// configuration refuses a non-loopback listener without one): `Authorization: Bearer` or the
// `triage_token` cookie that `GET /?token=` sets.
#include <functional>
#include <string>

#include "daemon/http_server.h"
#include "daemon/metrics.h"
#include "daemon/study_images.h"
#include "daemon/study_json.h"
#include "storage/audit_log.h"

namespace triage::daemon {

struct Health {
    bool scp_listening = false, db_writable = false, model_loaded = false, disk_ok = false;
    double disk_free_mb = 0;
    bool ok() const { return scp_listening && db_writable && model_loaded && disk_ok; }
};

struct ApiContext {
    StateViews views;
    storage::AuditLog& audit;
    Metrics& metrics;
    std::function<Health()> health;
    std::string token;  // "" = no authentication (loopback only)
    StudyImages* images = nullptr;  // the page's PNG endpoints (404 when null); not owned
};

/// What a request may do. Allowed: no token configured, or the right bearer token or
/// `triage_token` cookie. Login: `GET /?token=` with the right token (answer 303 + the cookie).
/// Denied: anything else, a wrong `?token=` included. Compares in constant time.
enum class Access { Allowed, Login, Denied };
Access authorize(const std::string& token, const HttpRequest& req);

HttpResponse handle_api(const ApiContext& ctx, const HttpRequest& req);

/// The Prometheus text: counters from `metrics` plus gauges read now (queue, deliveries, disk).
std::string render_metrics(const ApiContext& ctx);

}  // namespace triage::daemon
