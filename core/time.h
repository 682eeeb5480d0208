#pragma once
// Wall-clock time for the node: a Clock interface (real or fake for tests) and ISO 8601 UTC text.
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace triage::core {

using TimePoint = std::chrono::system_clock::time_point;

/// Source of the current time. Implementations are thread-safe.
class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
public:
    TimePoint now() const override { return std::chrono::system_clock::now(); }
};

/// A clock that only moves when told to (tests).
class FakeClock final : public Clock {
public:
    explicit FakeClock(TimePoint start) : m_ms(to_ms(start)) {}
    TimePoint now() const override { return TimePoint(std::chrono::milliseconds(m_ms.load())); }
    void advance(std::chrono::milliseconds d) { m_ms += d.count(); }

private:
    static long long to_ms(TimePoint t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    }
    std::atomic<long long> m_ms;
};

/// "2026-11-27T22:00:01.123Z" (millisecond precision, UTC). Sorts lexicographically by time.
std::string format_iso8601(TimePoint t);
/// Accepts "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fff]]" with optional "Z" or "+HH:MM" offset.
std::optional<TimePoint> parse_iso8601(std::string_view text);

}  // namespace triage::core
