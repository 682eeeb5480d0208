#pragma once
// Logging facade: one line per event on stderr (journald keeps it), with level and category.
// Thread-safe. Never log patient names, birth dates or free text from data sets.
#include <fmt/format.h>

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace triage::core {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view text, LogLevel& out);
void log_line(LogLevel level, std::string_view category, std::string_view message);

template <class... Args>
void log(LogLevel level, std::string_view category, fmt::format_string<Args...> f, Args&&... args) {
    if (level < log_level()) return;
    log_line(level, category, fmt::format(f, std::forward<Args>(args)...));
}

/// Allows at most `burst` events per key in each `window`; used for anything a remote peer can
/// trigger, so that a misbehaving modality cannot flood the log. Thread-safe.
class RateLimiter {
public:
    RateLimiter(int burst, std::chrono::seconds window) : m_burst(burst), m_window(window) {}
    /// True when the event may be logged; `suppressed` receives how many were dropped before.
    bool allow(const std::string& key, int* suppressed = nullptr);

private:
    struct Slot {
        std::chrono::steady_clock::time_point start;
        int count = 0;
        int dropped = 0;
    };
    int m_burst;
    std::chrono::seconds m_window;
    std::mutex m_mutex;
    std::unordered_map<std::string, Slot> m_slots;
};

}  // namespace triage::core

#define TRIAGE_LOG_DEBUG(cat, ...) ::triage::core::log(::triage::core::LogLevel::Debug, cat, __VA_ARGS__)
#define TRIAGE_LOG_INFO(cat, ...) ::triage::core::log(::triage::core::LogLevel::Info, cat, __VA_ARGS__)
#define TRIAGE_LOG_WARN(cat, ...) ::triage::core::log(::triage::core::LogLevel::Warn, cat, __VA_ARGS__)
#define TRIAGE_LOG_ERROR(cat, ...) ::triage::core::log(::triage::core::LogLevel::Error, cat, __VA_ARGS__)
