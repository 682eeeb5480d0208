#include "pipeline/process.h"

#include <unistd.h>

#include <cstdlib>

namespace triage::pipeline {

void prefer_passive_openmp(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

}  // namespace triage::pipeline
