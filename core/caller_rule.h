#pragma once
// Access rules for calling DICOM peers: "AE", "AE@host", "AE@10.1.0.0/16", "*@host", "*".
// A host is an IPv4/IPv6 literal, a CIDR block, or a name resolved once when the rule is parsed.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace triage::core {

struct IpBlock {
    std::array<unsigned char, 16> addr{};  // IPv4 is stored as IPv4-mapped IPv6
    int prefix_bits = 128;
};

struct CallerRule {
    std::string text;       // as written in the config
    std::string ae_title;   // "*" = any
    bool any_host = true;
    std::vector<IpBlock> hosts;  // any of these
};

/// Parses one rule; InvalidInput with a readable message when malformed or unresolvable.
Result<CallerRule> parse_caller_rule(std::string_view text);

/// True when some rule admits the calling AE title from the peer address (textual IP).
bool caller_allowed(const std::vector<CallerRule>& rules, std::string_view calling_ae,
                    std::string_view peer_ip);

}  // namespace triage::core
