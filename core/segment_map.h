#pragma once
// A series' segment map on disk: slices x rows x columns bytes (0 = background, k = segment k),
// run-length encoded. Written by the analysis worker, read by the SEG writer.
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace triage::core {

struct SegmentMap {
    int columns = 0, rows = 0, slices = 0;
    std::vector<std::uint8_t> values;
};

Status write_segment_map(const std::string& path, const SegmentMap& map);
Result<SegmentMap> read_segment_map(const std::string& path);

}  // namespace triage::core
