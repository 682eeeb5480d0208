#include "core/time.h"

#include <fmt/format.h>

#include <cstdio>
#include <ctime>

namespace triage::core {

std::string format_iso8601(TimePoint t) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       static_cast<int>(ms % 1000));
}

std::optional<TimePoint> parse_iso8601(std::string_view text) {
    std::string s(text);
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, n = 0;
    double sec = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10) return std::nullopt;
    size_t pos = 10;
    if (pos < s.size() && (s[pos] == 'T' || s[pos] == ' ')) {
        int m = 0;
        if (std::sscanf(s.c_str() + pos + 1, "%2d:%2d%n", &h, &mi, &m) != 2) return std::nullopt;
        pos += 1 + static_cast<size_t>(m);
        if (pos < s.size() && s[pos] == ':') {
            int k = 0;
            if (std::sscanf(s.c_str() + pos + 1, "%lf%n", &sec, &k) != 1) return std::nullopt;
            pos += 1 + static_cast<size_t>(k);
        }
    }
    long offset_min = 0;
    if (pos < s.size()) {
        if (s[pos] == 'Z' && pos + 1 == s.size()) {
        } else if ((s[pos] == '+' || s[pos] == '-') && s.size() - pos == 6) {
            int oh = 0, om = 0;
            if (std::sscanf(s.c_str() + pos + 1, "%2d:%2d", &oh, &om) != 2) return std::nullopt;
            offset_min = (s[pos] == '-' ? -1 : 1) * (oh * 60 + om);
        } else {
            return std::nullopt;
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61)
        return std::nullopt;
    if (y > 2200) y = 2200;  // system_clock (ns) ends in 2262: far-future queries are clamped
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    std::time_t base = timegm(&tm);
    auto ms = static_cast<long long>(base) * 1000 + static_cast<long long>(sec * 1000 + 0.5) -
              offset_min * 60 * 1000;
    return TimePoint(std::chrono::milliseconds(ms));
}

}  // namespace triage::core
