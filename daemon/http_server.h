#pragma once
// A small HTTP/1.1 server (Boost.Beast on one Asio thread, all I/O asynchronous): one handler
// function answers every request. Defensive by construction: header and body size limits (431 /
// 413), a deadline per request so a slow or silent client is dropped, malformed requests answered
// 400 and closed, a cap on open connections. Beast stays inside http_server.cpp.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace triage::daemon {

struct HttpRequest {
    std::string method, target, path;        // target = path + "?" + query
    std::map<std::string, std::string> query;  // decoded
    std::string authorization;
    std::string cookie;  // the Cookie header as sent ("a=1; b=2"), "" when none
};

struct HttpResponse {
    HttpResponse(int status_ = 200, std::string content_type_ = "application/json", std::string body_ = {})
        : status(status_), content_type(std::move(content_type_)), body(std::move(body_)) {}
    int status;
    std::string content_type;
    std::string body;  // bytes (a PNG as well as text)
    std::vector<std::pair<std::string, std::string>> headers;  // extra fields (Location, Set-Cookie...)
};

struct HttpLimits {
    std::size_t header_bytes = 8 * 1024;
    std::size_t body_bytes = 64 * 1024;
    int request_timeout_seconds = 10;
    int max_connections = 64;
};

class HttpServer {
public:
    using Handler = std::function<HttpResponse(const HttpRequest&)>;
    HttpServer(Handler handler, HttpLimits limits = {});
    ~HttpServer();
    /// Binds "host:port" ("[::1]:8080" for IPv6; port 0 = any) and starts serving on its own thread.
    core::Status start(const std::string& listen);
    void stop();
    int port() const;

    struct Impl;

private:
    std::unique_ptr<Impl> m_impl;
};

/// POSTs a JSON body to an http:// URL (no TLS) and returns the response status; Transient errors
/// for connection failures and timeouts, InvalidInput for a malformed URL.
core::Result<int> http_post_json(const std::string& url, const std::string& body, const std::string& bearer,
                                 int timeout_seconds);

/// %XX sequences decoded (a malformed one is kept as it is); '+' becomes a space when plus_is_space
/// (query strings), not in paths or cookie values.
std::string percent_decode(const std::string& s, bool plus_is_space);

/// Splits "host:port" / "[v6]:port"; InvalidInput with the reason when malformed.
core::Result<std::pair<std::string, int>> split_listen(const std::string& listen);

}  // namespace triage::daemon
