// triagectl: reads and acts on a node's state. Argument handling lives in daemon/ctl.cpp.
#include <string>
#include <vector>

#include "daemon/ctl.h"
#include "pipeline/process.h"

int main(int argc, char** argv) {
    triage::pipeline::prefer_passive_openmp(argv);
    std::vector<std::string> args(argv + 1, argv + argc);
    return triage::daemon::run_ctl(args);
}
