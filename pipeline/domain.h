#pragma once
// The domain a bundle was validated on (model.json "domain", docs/model-bundle.md). A series of a
// modality, body region or orientation the bundle was never validated on, or whose texture is above
// skip_texture_ratio (real anatomy for a phantom model), is not analyzed; one that is only far from
// its data (spacing, texture, too many candidates) is analyzed, its findings are flagged ("outside
// the model's validated domain: <why>") and do not raise the study's priority.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"

namespace triage::pipeline {

struct DomainRange {
    std::pair<double, double> pixel_spacing_mm{0, 0}, slice_spacing_mm{0, 0};  // {0, 0}: not checked
    double max_texture_ratio = 0;  // texture_ratio above this is real tissue, not phantom noise (0: not checked)
    double skip_texture_ratio = 0;  // ... and above this the series is not analyzed at all (0: always analyzed)
    std::vector<std::string> regions;  // body regions validated with this modality ("CHEST", ...; empty: any)
};

struct Domain {
    std::string description;                  // e.g. "synthetic phantoms (PHANTOMS.md), axial only"
    bool axial_only = false;                  // slices must be axial or oblique axial (normal within 30 degrees of z)
    int max_candidates = 0;                   // more confident lesion candidates than this in a series (0: not checked)
    std::map<std::string, DomainRange> modality;  // "CT", "MR"
    bool declared() const { return !description.empty(); }
};

/// Parses the manifest's "domain" object (JSON text); errors name the field.
core::Result<Domain> parse_domain(const std::string& json_text);

}  // namespace triage::pipeline
