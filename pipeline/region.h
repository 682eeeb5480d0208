#pragma once
// Where a series is in the body (which labels are plausible there) and whether it is inside the
// domain the bundle was validated on. Pure functions of the volume's header and voxels; no Torch.
#include <optional>
#include <string>
#include <vector>

#include "core/volume.h"
#include "pipeline/lesions.h"
#include "pipeline/model.h"

namespace triage::pipeline {

/// The body regions of a series: HEAD, CHEST, ABDOMEN (a chest CT that reaches the upper abdomen
/// holds both CHEST and ABDOMEN), and where they came from ("header: BodyPartExamined CHEST" or
/// "content: 31% lung-density air").
struct SeriesRegion {
    std::vector<std::string> regions;
    std::string source;
    bool has(const std::string& r) const;
    std::string text() const;  // "CHEST+ABDOMEN"
};

/// Header first (BodyPartExamined, SeriesDescription: HEAD/BRAIN/SKULL, CHEST/LUNG/THORAX,
/// ABDOMEN/LIVER/KIDNEY/PANCREAS/PELVIS), then content: CT with lung-density air in over 8 % of the
/// body is chest (plus abdomen when over a fifth of its slices have almost none); a body narrower
/// than 230 mm is a head; other CT is abdomen. MR without a header region: head when narrower
/// than 230 mm. Empty when nothing says (every label is then plausible). A header CHEST on CT gains
/// ABDOMEN when the content shows both (a chest CT reaching the upper abdomen).
SeriesRegion series_region(const core::Volume& v, const BodyMap& body);
/// The content part of series_region alone.
SeriesRegion content_region(const core::Volume& v, const BodyMap& body);

/// The region a label belongs to (code table, PHANTOMS.md: brain tumor HEAD; lung classes CHEST;
/// liver, kidney, pancreas tumors ABDOMEN); "" for a label the table does not know (free text of
/// the full model): plausible anywhere.
std::string label_region(const std::string& label);
/// The implausible_region gate: a label of a region the series does not show.
Gate gate_region(const std::string& label, const SeriesRegion& region);
/// A CT lesion named for the abdomen on a chest series (a "liver tumor" at the lung base) whose
/// key-slice ring is lung (`lung_share` passes gate_in_lung and is at least 0.3): a lung lesion the answers misnamed
/// across the diaphragm. Returns why (for the grounding), or nothing when the name stands or the
/// implausible_region gate is to reject it (a brain tumor on a chest CT always is).
std::optional<std::string> lung_by_anatomy(const std::string& label, const SeriesRegion& region, double lung_share);

/// Median |x(i+2) - x(i)| over median |x(i+1) - x(i)| along rows, inside the body, on up to 8
/// slices: about 1 for white noise on uniform organs (phantoms: 1.00-1.07), 1.5-3 for real scans,
/// whose noise is correlated by the reconstruction and whose tissue has texture.
double texture_ratio(const core::Volume& v, const BodyMap& body);

/// Why a series is not to be analyzed at all: its modality, its body region (one of the series'
/// regions must be validated with the modality), with axial_only its orientation is not in the
/// domain, or its texture ratio is above the modality's skip_texture_ratio. Nothing when it is, or
/// when the manifest declares no domain.
std::optional<std::string> not_validated(const Domain& d, const core::Volume& v, const SeriesRegion& region, double texture);

/// Why an analyzed volume is far from the manifest's validated data (spacing, texture), or nothing.
std::optional<std::string> outside_domain(const Domain& d, const core::Volume& v, double texture);

/// Why a series' lesion candidates are more than the domain's `max_candidates`, or nothing. Counted
/// are the `confident` ones: lesion-shaped components (past the slice, region, shape and lung gates)
/// at or above the model's min confidence. A model claiming that many lesions is on an input unlike
/// its training; the faint fragments every mask leaves at its threshold (`components` in all) say
/// nothing about that: phantoms of another renderer leave up to 280 of them and at most 5 confident.
std::optional<std::string> too_many_candidates(const Domain& d, size_t confident, size_t components);

}  // namespace triage::pipeline
