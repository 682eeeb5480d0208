#include "daemon/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <thread>

#include "core/log.h"

namespace triage::daemon {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Impl {
    Handler handler;
    HttpLimits limits;
    std::atomic<int> connections{0};  // before ioc: sessions destroyed with ioc still decrement it
    int port = 0;
    net::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    std::thread thread;
    void accept();
};

std::string percent_decode(const std::string& s, bool plus_is_space) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += plus_is_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    return out;
}

namespace {

HttpRequest to_request(const http::request<http::string_body>& r) {
    HttpRequest q;
    q.method = std::string(r.method_string());
    q.target = std::string(r.target());
    size_t mark = q.target.find('?');
    q.path = percent_decode(q.target.substr(0, mark), false);
    if (mark != std::string::npos) {
        std::string rest = q.target.substr(mark + 1);
        for (size_t p = 0; p <= rest.size();) {
            size_t amp = rest.find('&', p);
            std::string kv = rest.substr(p, amp == std::string::npos ? std::string::npos : amp - p);
            size_t eq = kv.find('=');
            if (!kv.empty()) q.query[percent_decode(kv.substr(0, eq), true)] = eq == std::string::npos ? "" : percent_decode(kv.substr(eq + 1), true);
            if (amp == std::string::npos) break;
            p = amp + 1;
        }
    }
    if (auto a = r.find(http::field::authorization); a != r.end()) q.authorization = std::string(a->value());
    if (auto c = r.find(http::field::cookie); c != r.end()) q.cookie = std::string(c->value());
    return q;
}

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, HttpServer::Impl& impl) : m_stream(std::move(socket)), m_impl(impl) {
        ++m_impl.connections;
    }
    ~Session() { --m_impl.connections; }

    void read() {
        m_parser.emplace();
        m_parser->header_limit(static_cast<std::uint32_t>(m_impl.limits.header_bytes));
        m_parser->body_limit(m_impl.limits.body_bytes);
        m_stream.expires_after(std::chrono::seconds(m_impl.limits.request_timeout_seconds));
        http::async_read(m_stream, m_buffer, *m_parser, beast::bind_front_handler(&Session::on_read, shared_from_this()));
    }

private:
    void on_read(beast::error_code ec, std::size_t) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
            ec == net::error::connection_reset || ec == net::error::eof)
            return close();
        if (ec == http::error::header_limit) return reply({431, "application/json", R"({"error":"request header too large"})"}, false);
        if (ec == http::error::body_limit) return reply({413, "application/json", R"({"error":"request body too large"})"}, false);
        if (ec) return reply({400, "application/json", R"({"error":"malformed HTTP request"})"}, false);
        const auto& req = m_parser->get();
        HttpResponse res;
        try {
            res = m_impl.handler(to_request(req));
        } catch (const std::exception& e) {
            // The path only: a query may carry the token (GET /?token=...), which is never logged.
            std::string path(req.target());
            TRIAGE_LOG_ERROR("api", "{} {}: {}", std::string(req.method_string()), path.substr(0, path.find('?')), e.what());
            res = {500, "application/json", R"({"error":"internal error"})"};
        }
        reply(res, req.keep_alive());
    }

    void reply(const HttpResponse& r, bool keep_alive) {
        m_response = {};
        m_response.result(static_cast<http::status>(r.status));
        m_response.set(http::field::server, "triage-node");
        m_response.set(http::field::content_type, r.content_type);
        m_response.set(http::field::cache_control, "no-store");
        if (r.status == 401) m_response.set(http::field::www_authenticate, "Bearer");
        for (const auto& [name, value] : r.headers) m_response.insert(name, value);
        m_response.body() = r.body;
        m_response.keep_alive(keep_alive);
        m_response.prepare_payload();
        m_stream.expires_after(std::chrono::seconds(m_impl.limits.request_timeout_seconds));
        http::async_write(m_stream, m_response, beast::bind_front_handler(&Session::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec || !m_response.keep_alive()) return close();
        read();
    }

    void close() {
        beast::error_code ignored;
        m_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        m_stream.close();
    }

    beast::tcp_stream m_stream;
    HttpServer::Impl& m_impl;
    beast::flat_buffer m_buffer;
    std::optional<http::request_parser<http::string_body>> m_parser;
    http::response<http::string_body> m_response;
};

}  // namespace

void HttpServer::Impl::accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        if (!ec) {
            if (connections.load() >= limits.max_connections) {
                beast::error_code ignored;
                socket.close(ignored);  // over the cap: refuse rather than queue
            } else {
                std::make_shared<Session>(std::move(socket), *this)->read();
            }
        }
        accept();
    });
}

core::Result<std::pair<std::string, int>> split_listen(const std::string& listen) {
    auto bad = [&](const std::string& why) {
        return core::make_error(core::ErrorKind::InvalidInput, "\"" + listen + "\": " + why);
    };
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) return bad("expected host:port");
    std::string host = listen.substr(0, colon);
    if (host.front() == '[') {
        if (host.back() != ']') return bad("IPv6 address needs [ ]");
        host = host.substr(1, host.size() - 2);
    }
    int port = -1;
    try {
        size_t used = 0;
        port = std::stoi(listen.substr(colon + 1), &used);
        if (used != listen.size() - colon - 1) port = -1;
    } catch (const std::exception&) {
    }
    if (port < 0 || port > 65535) return bad("port must be 0-65535");
    return std::pair{host, port};
}

core::Result<int> http_post_json(const std::string& url, const std::string& body, const std::string& bearer,
                                 int timeout_seconds) {
    const std::string scheme = "http://";
    if (url.rfind(scheme, 0) != 0) return core::make_error(core::ErrorKind::InvalidInput, "not an http:// URL: " + url);
    size_t slash = url.find('/', scheme.size());
    std::string authority = url.substr(scheme.size(), slash == std::string::npos ? std::string::npos : slash - scheme.size());
    std::string target = slash == std::string::npos ? "/" : url.substr(slash);
    auto hp = split_listen(authority.find(':') == std::string::npos ? authority + ":80" : authority);
    if (!hp) return hp.error();
    try {
        net::io_context ioc;
        tcp::resolver resolver(ioc);
        beast::tcp_stream stream(ioc);
        stream.expires_after(std::chrono::seconds(timeout_seconds));
        stream.connect(resolver.resolve(hp->first, std::to_string(hp->second)));
        http::request<http::string_body> req{http::verb::post, target, 11};
        req.set(http::field::host, authority);
        req.set(http::field::user_agent, "triage-node");
        req.set(http::field::content_type, "application/json");
        if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
        req.body() = body;
        req.prepare_payload();
        http::write(stream, req);
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        http::read(stream, buffer, res);
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        return static_cast<int>(res.result_int());
    } catch (const std::exception& e) {
        return core::make_error(core::ErrorKind::Transient, url + ": " + e.what());
    }
}

HttpServer::HttpServer(Handler handler, HttpLimits limits) : m_impl(std::make_unique<Impl>()) {
    m_impl->handler = std::move(handler);
    m_impl->limits = limits;
}

HttpServer::~HttpServer() { stop(); }

core::Status HttpServer::start(const std::string& listen) {
    auto hp = split_listen(listen);
    if (!hp) return hp.error();
    beast::error_code ec;
    auto address = net::ip::make_address(hp->first == "localhost" ? "127.0.0.1" : hp->first, ec);
    if (ec) return core::make_error(core::ErrorKind::InvalidInput, "api.listen: not an IP address: " + hp->first);
    tcp::endpoint endpoint(address, static_cast<unsigned short>(hp->second));
    auto& a = m_impl->acceptor;
    a.open(endpoint.protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(endpoint, ec);
    if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return core::make_error(core::ErrorKind::Permanent, "api.listen " + listen + ": " + ec.message());
    m_impl->port = a.local_endpoint().port();
    m_impl->accept();
    m_impl->thread = std::thread([this] { m_impl->ioc.run(); });
    return {};
}

void HttpServer::stop() {
    if (!m_impl->thread.joinable()) return;
    net::post(m_impl->ioc, [this] {
        beast::error_code ignored;
        m_impl->acceptor.close(ignored);
    });
    m_impl->ioc.stop();
    m_impl->thread.join();
}

int HttpServer::port() const { return m_impl->port; }

}  // namespace triage::daemon
