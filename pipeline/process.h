#pragma once
// Process-wide settings of the inference runtime that must be made before it starts.

namespace triage::pipeline {

/// LibTorch's OpenMP threads (libgomp) spin while they wait between parallel regions. On a loaded
/// 2-core machine the spinning threads take the CPU from each other and from the DICOM receiver:
/// the same analysis measured 3x slower (docs/benchmarks.md). libgomp reads OMP_WAIT_POLICY once,
/// when it is loaded, so this sets OMP_WAIT_POLICY=PASSIVE and re-executes the program with the
/// same arguments (same process id) — first thing in main(). An OMP_WAIT_POLICY already set by
/// the operator is kept; if the re-execution fails the program goes on as it is.
void prefer_passive_openmp(char** argv);

}  // namespace triage::pipeline
