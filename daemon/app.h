#pragma once
// The node: opens the database, recovers interrupted work, runs the DICOM receiver and the
// completion monitor until SIGTERM/SIGINT, reloads what is safe on SIGHUP, then drains.
#include <string>

#include "config/config.h"

namespace triage::daemon {

/// Runs the node in the foreground. Returns the process exit code (0 after a clean drain).
int run_node(const config::Config& cfg);

/// Loads the configured model bundle once to validate it (triaged --check); prints problems.
bool check_model(const config::Config& cfg);

/// Paths inside data_dir.
std::string database_path(const config::Config& cfg);
std::string incoming_dir(const config::Config& cfg);

}  // namespace triage::daemon
