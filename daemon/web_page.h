#pragma once
// The worklist page's static parts (daemon/web/*, compiled into the binary by daemon/CMakeLists.txt:
// nothing is fetched from a CDN or any other host) and the token form shown without a token.
#include <optional>
#include <string>

#include "daemon/http_server.h"

namespace triage::daemon {

/// `/` (the page), `/ui/app.js`, `/ui/app.css`; nullopt for any other path.
std::optional<HttpResponse> web_asset(const std::string& path);

/// 401 with a small HTML form that asks for the token (GET /?token=...) and shows no data;
/// `wrong` says that the token given was not the right one.
HttpResponse login_page(bool wrong);

}  // namespace triage::daemon
