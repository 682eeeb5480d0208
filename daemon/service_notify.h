#pragma once
// systemd service notification (sd_notify): READY=1 once the node serves, STATUS= lines,
// WATCHDOG=1 from the main loop when the unit sets WatchdogSec, RELOADING=1 / STOPPING=1. A no-op
// when not started by systemd ($NOTIFY_SOCKET unset).
#include <chrono>
#include <string>

namespace triage::daemon {

class ServiceNotifier {
public:
    ServiceNotifier();
    void ready(const std::string& status);
    void status(const std::string& status);
    void reloading();
    void stopping();
    /// Call often from the main loop: sends WATCHDOG=1 every half watchdog period.
    void tick();
    bool watchdog_enabled() const { return m_watchdog.count() > 0; }

private:
    std::chrono::microseconds m_watchdog{0};
    std::chrono::steady_clock::time_point m_last_ping{};
};

}  // namespace triage::daemon
