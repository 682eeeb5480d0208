#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "core/assert.h"
#include "core/result.h"
#include "core/time.h"

namespace triage::core {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::mutex g_write_mutex;
const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warn: return "warn";
        case LogLevel::Error: return "error";
    }
    return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

bool parse_log_level(std::string_view text, LogLevel& out) {
    for (auto l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error}) {
        if (text == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void log_line(LogLevel level, std::string_view category, std::string_view message) {
    std::string line = fmt::format("{} {:<5} [{}] {}\n", format_iso8601(SystemClock().now()),
                                   level_name(level), category, message);
    std::lock_guard lock(g_write_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

bool RateLimiter::allow(const std::string& key, int* suppressed) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    if (m_slots.size() > 10000) m_slots.clear();  // bound memory against many distinct peers
    Slot& s = m_slots[key];
    if (s.count == 0 || now - s.start >= m_window) {
        if (suppressed) *suppressed = s.dropped;
        s = Slot{now, 1, 0};
        return true;
    }
    if (s.count < m_burst) {
        ++s.count;
        if (suppressed) *suppressed = 0;
        return true;
    }
    ++s.dropped;
    return false;
}

void assert_failed(const char* expr, const char* file, int line) {
    log_line(LogLevel::Error, "app", fmt::format("assertion failed: {} at {}:{}", expr, file, line));
    std::abort();
}

const char* to_string(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::InvalidInput: return "invalid_input";
        case ErrorKind::Transient: return "transient";
        case ErrorKind::Permanent: return "permanent";
        case ErrorKind::NotFound: return "not_found";
        case ErrorKind::Internal: return "internal";
    }
    return "?";
}

}  // namespace triage::core
