#pragma once
// The one place where a failure becomes a DIMSE C-STORE response status.
#include <cstdint>

#include "core/result.h"

namespace triage::dicom_io {

constexpr std::uint16_t kStatusSuccess = 0x0000;
constexpr std::uint16_t kStatusOutOfResources = 0xA700;   // retry later (disk, database)
constexpr std::uint16_t kStatusDataSetMismatch = 0xA900;  // data set does not match SOP class
constexpr std::uint16_t kStatusCannotUnderstand = 0xC000;  // unparsable

/// Transient/Internal -> 0xA700 (the sender may retry), InvalidInput -> 0xA900,
/// Permanent/NotFound -> 0xC000.
std::uint16_t store_status_for(const core::Error& error);

}  // namespace triage::dicom_io
