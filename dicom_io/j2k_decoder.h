#pragma once
// JPEG 2000 decoding with OpenJPEG (DCMTK 3.6.7 in Debian has no J2K codec).
#include <cstdint>
#include <vector>

#include "core/result.h"

class DcmPixelSequence;

namespace triage::dicom_io {

/// The compressed bytes of each frame of an encapsulated pixel sequence: one fragment per frame,
/// all fragments for a single frame, or fragments grouped at JPEG 2000 start-of-codestream markers.
core::Result<std::vector<std::vector<std::uint8_t>>> j2k_frame_fragments(DcmPixelSequence& seq,
                                                                         unsigned long frames);

/// Decodes one greyscale JPEG 2000 codestream (or JP2 file) to stored values. `expected` is the
/// pixel count of a frame; `is_signed` is Pixel Representation 1.
core::Result<std::vector<float>> decode_j2k(const std::vector<std::uint8_t>& data, size_t expected,
                                            bool is_signed);

}  // namespace triage::dicom_io
