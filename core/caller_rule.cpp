#include "core/caller_rule.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace triage::core {
namespace {

std::optional<std::array<unsigned char, 16>> parse_ip(const std::string& s) {
    std::array<unsigned char, 16> out{};
    in_addr v4{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        out[10] = out[11] = 0xff;
        std::memcpy(out.data() + 12, &v4, 4);
        return out;
    }
    if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return out;
    return std::nullopt;
}

bool is_v4_mapped(const std::array<unsigned char, 16>& a) {
    for (int i = 0; i < 10; ++i)
        if (a[static_cast<size_t>(i)] != 0) return false;
    return a[10] == 0xff && a[11] == 0xff;
}

bool in_block(const IpBlock& b, const std::array<unsigned char, 16>& a) {
    int bits = b.prefix_bits;
    for (size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
        unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
        if ((b.addr[i] & mask) != (a[i] & mask)) return false;
    }
    return true;
}

Result<std::vector<IpBlock>> parse_host(const std::string& host) {
    std::string addr = host;
    int prefix = -1;
    if (auto slash = host.find('/'); slash != std::string::npos) {
        addr = host.substr(0, slash);
        try {
            prefix = std::stoi(host.substr(slash + 1));
        } catch (...) {
            return make_error(ErrorKind::InvalidInput, "bad CIDR prefix in '" + host + "'");
        }
    }
    if (auto ip = parse_ip(addr)) {
        int max_bits = is_v4_mapped(*ip) ? 32 : 128;
        if (prefix < 0) prefix = max_bits;
        if (prefix > max_bits)
            return make_error(ErrorKind::InvalidInput, "CIDR prefix too long in '" + host + "'");
        return std::vector<IpBlock>{IpBlock{*ip, prefix + (128 - max_bits)}};
    }
    if (prefix >= 0) return make_error(ErrorKind::InvalidInput, "bad address in '" + host + "'");
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr)
        return make_error(ErrorKind::InvalidInput, "host '" + host + "' does not resolve");
    std::vector<IpBlock> blocks;
    for (addrinfo* p = res; p; p = p->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        const void* src = p->ai_family == AF_INET
                              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr)
                              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(p->ai_addr)->sin6_addr);
        inet_ntop(p->ai_family, src, buf, sizeof buf);
        if (auto ip = parse_ip(buf)) blocks.push_back(IpBlock{*ip, 128});
    }
    freeaddrinfo(res);
    return blocks;
}

}  // namespace

Result<CallerRule> parse_caller_rule(std::string_view text) {
    CallerRule rule;
    rule.text = std::string(text);
    std::string s(text);
    std::string ae = s, host;
    if (auto at = s.find('@'); at != std::string::npos) {
        ae = s.substr(0, at);
        host = s.substr(at + 1);
        if (host.empty()) return make_error(ErrorKind::InvalidInput, "empty host in '" + s + "'");
    }
    if (ae.empty() || ae.size() > 16 || ae.find('\\') != std::string::npos)
        return make_error(ErrorKind::InvalidInput,
                          "AE title must be 1-16 characters (or '*') in '" + s + "'");
    rule.ae_title = ae;
    if (!host.empty()) {
        auto blocks = parse_host(host);
        if (!blocks) return blocks.error();
        rule.any_host = false;
        rule.hosts = std::move(blocks.value());
    }
    return rule;
}

bool caller_allowed(const std::vector<CallerRule>& rules, std::string_view calling_ae,
                    std::string_view peer_ip) {
    std::string peer(peer_ip);
    if (std::count(peer.begin(), peer.end(), ':') == 1) peer = peer.substr(0, peer.find(':'));  // "a.b.c.d:port"
    auto ip = parse_ip(peer);
    for (const auto& r : rules) {
        if (r.ae_title != "*" && r.ae_title != calling_ae) continue;
        if (r.any_host) return true;
        if (!ip) continue;
        for (const auto& b : r.hosts)
            if (in_block(b, *ip)) return true;
    }
    return false;
}

}  // namespace triage::core
