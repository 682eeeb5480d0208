#pragma once
// Internal to the analyzer (pipeline/analyzer.cpp): the steps that call the model or read its masks.
// Not a public API; no Torch type here. Stateless functions; thread-safe given a shared Model.
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "core/volume.h"
#include "pipeline/model.h"

namespace triage::pipeline::detail {

double seconds_since(std::chrono::steady_clock::time_point t);
std::string fill(std::string text, const std::string& key, const std::string& value);

/// Per-label probability volumes (0..255), filled slice by slice from the mask logits.
struct LabelVolumes {
    std::map<std::string, std::vector<std::uint8_t>> prob;
};

/// Pastes one mask (logits, mask_size^2) onto slice z of `dst` (max), as probabilities 0..255 on
/// the native grid; returns that slice's plane of this mask alone.
std::vector<std::uint8_t> paste_mask(const std::vector<float>& logits, int mask_size, const core::Volume& v, int z,
                                     std::vector<std::uint8_t>& dst);
/// Lung nodule and lung tumor differ by 3D size, decided after assembly: one "lung" group.
std::string group_of(const std::string& label);
/// Masks from the referring sweep are kept apart from the recognition answers' (group "asked: X"):
/// the referring prompt is asked for each class in turn and segments a lesion of another class too,
/// so it finds lesions, and the recognition answers, where they have any, name them.
inline const std::string kAsked = "asked: ";

/// How far (mm) a group's prompt is carried beyond the slices that named it: the largest
/// max_diameter_mm of the group's labels ("lung": nodule and tumour; kAsked + X: X's); infinite when
/// the bundle declares none.
double reach_mm(const Manifest& m, const std::string& group);

/// Carries each [SEG] prompt to neighbouring slices (Sa2VA's video propagation; see the .cpp), for
/// the groups in `carried` only, each no farther than reach_mm; past `deadline` it stops and sets `stopped`.
/// Slices in `features` are not encoded again.
core::Status propagate(const Model& model, const core::Volume& v, std::vector<std::map<std::string, std::vector<float>>> prompts,
                       int batch, LabelVolumes& labels, StageSeconds& stages, FeatureCache& features,
                       std::chrono::steady_clock::time_point deadline, const std::set<std::string>& carried, bool& stopped);

/// Host organ probability planes (0..255, native grid) on one key slice: label -> plane of its
/// organ (absent: the model segmented nothing).
using OrganPlanes = std::map<std::string, std::vector<std::uint8_t>>;
/// The host organs of every listed key slice, one image encoding per slice and batch.
core::Status organ_planes(const Model& model, const core::Volume& v, const std::vector<int>& slices, int batch,
                          std::map<int, OrganPlanes>& out, StageSeconds& stages, FeatureCache& features);

/// A lesion's name grounded in the organ around it (see the .cpp); organs found on less than
/// kMinOrganMm2 of the key slice are not in the image and name nothing.
constexpr double kMinOrganMm2 = 50;
constexpr double kNotAroundCoverage = 0.05;  // an organ with less of a lesion's ring is not around it
struct Naming {
    std::string label, evidence;  // evidence: the organ probabilities, for the audit trail
    std::vector<size_t> organ_ring;  // ring pixels inside the organ of `label` (none: no organ around it)
    size_t ring_size = 0;
    std::map<std::string, double> covered;  // host label -> mean organ probability over the ring
};
Naming host_label(const Manifest& m, const core::Volume& v, const OrganPlanes& planes, const std::vector<size_t>& pixels,
                  const std::string& label);

/// Median of a lesion's pixels on one slice minus the median of other pixels of that slice.
double slice_contrast(const core::Volume& v, int z, const std::vector<size_t>& lesion, const std::vector<size_t>& around);
/// Region-aware description of the lesion boxed on its key slice (the model's text, verbatim).
core::Result<std::string> describe(const Model& model, const core::Volume& v, std::vector<float> key_image,
                                   const std::vector<size_t>& pixels, const std::string& label, StageSeconds& stages);
/// Measured wording: where a label's lesion is, and its density/signal against a 3-pixel ring.
std::string site_of(const std::string& label, const core::Finding& f);
std::string contrast_word(const core::Volume& v, const core::Finding& f, const std::vector<std::uint8_t>& segments, bool ct);

}  // namespace triage::pipeline::detail
