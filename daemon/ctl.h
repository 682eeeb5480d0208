#pragma once
// triagectl: reads and acts on a node's state through its database (safe while triaged runs).
#include <string>
#include <vector>

namespace triage::daemon {

/// Exit codes (CONTRACT.md): 0 ok, 1 failed, 2 usage error, 3 not found.
enum CtlExit { kCtlOk = 0, kCtlFailed = 1, kCtlUsage = 2, kCtlNotFound = 3 };

/// Runs one triagectl command; `args` excludes the program name.
int run_ctl(const std::vector<std::string>& args);

}  // namespace triage::daemon
