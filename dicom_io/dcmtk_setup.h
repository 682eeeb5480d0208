#pragma once
// Process-wide DCMTK set-up, done once before any thread starts: data dictionary check,
// decompression codecs, DCMTK's own logger quietened (our log is the node's), TCP_NODELAY.
#include "core/result.h"

namespace triage::dicom_io {
core::Status init_dcmtk();
}
