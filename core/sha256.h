#pragma once
// SHA-256 (FIPS 180-4) of bytes or a file, as lowercase hex. For model bundle integrity.
#include <string>
#include <string_view>

#include "core/result.h"

namespace triage::core {
std::string sha256_hex(std::string_view data);
Result<std::string> sha256_file(const std::string& path);
}  // namespace triage::core
