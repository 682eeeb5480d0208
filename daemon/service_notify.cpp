#include "daemon/service_notify.h"

#include <systemd/sd-daemon.h>

namespace triage::daemon {

ServiceNotifier::ServiceNotifier() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0) m_watchdog = std::chrono::microseconds(usec);
}

void ServiceNotifier::ready(const std::string& status) { sd_notify(0, ("READY=1\nSTATUS=" + status).c_str()); }

void ServiceNotifier::status(const std::string& status) { sd_notify(0, ("STATUS=" + status).c_str()); }

void ServiceNotifier::reloading() { sd_notify(0, "RELOADING=1"); }

void ServiceNotifier::stopping() { sd_notify(0, "STOPPING=1\nSTATUS=draining"); }

void ServiceNotifier::tick() {
    if (!watchdog_enabled()) return;
    auto now = std::chrono::steady_clock::now();
    if (now - m_last_ping < m_watchdog / 2) return;
    m_last_ping = now;
    sd_notify(0, "WATCHDOG=1");
}

}  // namespace triage::daemon
