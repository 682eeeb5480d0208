#include "daemon/web_page.h"

#include "daemon/web_assets.h"  // generated from daemon/web/ (daemon/CMakeLists.txt)

namespace triage::daemon {

namespace {

/// The page loads only from the node itself and cannot be framed by another site.
const char* const kPolicy = "default-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'";

HttpResponse page(int status, const char* type, std::string_view body) {
    HttpResponse r{status, type, std::string(body)};
    r.headers = {{"Content-Security-Policy", kPolicy}, {"X-Content-Type-Options", "nosniff"},
                 {"Referrer-Policy", "no-referrer"}};
    return r;
}

}  // namespace

std::optional<HttpResponse> web_asset(const std::string& path) {
    if (path == "/" || path == "/index.html") return page(200, "text/html; charset=utf-8", web::index_html);
    if (path == "/ui/app.js") return page(200, "text/javascript; charset=utf-8", web::app_js);
    if (path == "/ui/app.css") return page(200, "text/css; charset=utf-8", web::app_css);
    return std::nullopt;
}

HttpResponse login_page(bool wrong) {
    std::string body(web::login_html);
    const std::string mark = "<!--message-->";
    if (auto at = body.find(mark); at != std::string::npos)
        body.replace(at, mark.size(), wrong ? "<p class=\"error\">That token is not the right one.</p>" : "");
    return page(401, "text/html; charset=utf-8", body);
}

}  // namespace triage::daemon
