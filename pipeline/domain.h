#pragma once
// The domain a bundle was validated on (model.json "domain", docs/model-bundle.md): an input far
// outside it gets its findings flagged ("outside the model's validated domain: <why>"), and they
// do not raise the study's priority.
#include <map>
#include <string>
#include <utility>

#include "core/result.h"

namespace triage::pipeline {

struct DomainRange {
    std::pair<double, double> pixel_spacing_mm{0, 0}, slice_spacing_mm{0, 0};  // {0, 0}: not checked
    double max_texture_ratio = 0;  // texture_ratio above this is real tissue, not phantom noise (0: not checked)
};

struct Domain {
    std::string description;                  // e.g. "synthetic phantoms (PHANTOMS.md), axial only"
    bool axial_only = false;                  // slices must be axial (normal within 10 degrees of z)
    int max_candidates = 0;                   // more lesion candidates than this in a series (0: not checked)
    std::map<std::string, DomainRange> modality;  // "CT", "MR"
    bool declared() const { return !description.empty(); }
};

/// Parses the manifest's "domain" object (JSON text); errors name the field.
core::Result<Domain> parse_domain(const std::string& json_text);

}  // namespace triage::pipeline
