// triaged: the triage-node daemon. Argument parsing only; the node lives in daemon/app.cpp.
#include <cstdio>
#include <cstring>
#include <string>

#include "config/config.h"
#include "core/log.h"
#include "daemon/app.h"
#include "pipeline/process.h"

namespace {
constexpr const char* kUsage = "usage: triaged --config FILE [--check]\n";
}

int main(int argc, char** argv) {
    triage::pipeline::prefer_passive_openmp(argv);
    std::string config_path;
    bool check = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--config") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!std::strcmp(argv[i], "--check")) {
            check = true;
        } else {
            std::fputs(kUsage, stderr);
            return 2;
        }
    }
    if (config_path.empty()) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    auto loaded = triage::config::load_config(config_path);
    for (const auto& p : loaded.problems) std::fprintf(stderr, "%s: %s\n", p.key.c_str(), p.message.c_str());
    if (check) {
        bool ok = loaded.ok() && triage::daemon::check_model(loaded.config);
        if (ok) std::printf("%s: valid\n", config_path.c_str());
        return ok ? 0 : 2;
    }
    if (!loaded.ok()) return 2;
    triage::core::LogLevel level;
    if (triage::core::parse_log_level(loaded.config.node.log_level, level)) triage::core::set_log_level(level);
    return triage::daemon::run_node(loaded.config);
}
