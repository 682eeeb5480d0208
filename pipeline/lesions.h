#pragma once
// Study-level lesion logic of the analyzer (docs/model-bundle.md, step 6), free of Torch: 3D components
// of the model's lesion map, their measurements, and the gates a candidate must pass to be
// reported. Every gate is a small pure function; a candidate that fails one is listed with a named
// reason (Reject) and the gate's own words, never dropped silently. Thread-safe (no state).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/volume.h"

namespace triage::pipeline {

/// Why a candidate was not reported. The text (reject_name) is what the series' not_reported list shows.
enum class Reject {
    TooFewSlices,       // spans fewer slices than the manifest's min_slices
    BelowMinDiameter,   // smaller than its label's min_diameter_mm in-plane or along z
    AboveMaxDiameter,   // larger than its label's max_diameter_mm in-plane or along z
    Isodense,           // CT: not denser or lighter than the tissue (or host organ) around it
    ImplausibleRegion,  // a label of another body region (a brain tumor on a chest CT)
    ImplausibleShape,   // outside the body, along its outline, a large part of it, a thin shell, a tube, or the
                        // section of a longer structure (gate_continues)
    OutsideHost,        // CT: a lung lesion with little lung around it (the spinal canal, the aorta), or a
                        // lesion named for an organ that holds too little of its ring (host_min_share)
    LowConfidence,      // mean mask probability below the manifest's min_confidence
    OverLabelLimit,     // more findings of this label than [analysis] max_findings_per_label
    OverStudyLimit,     // beyond [analysis] max_findings_per_study or max_checked_candidates
    TimeBudget,         // the study's time budget ran out before it was examined
    SegLimit,           // 255 findings already: a SEG's segment numbers are one byte here
};
const char* reject_name(Reject r);

/// A gate's verdict: nothing (passes) or the reason and its evidence ("12 mm < 7.0 mm").
struct Verdict {
    Reject reason;
    std::string why;
};
using Gate = std::optional<Verdict>;

/// 26-connected component of voxels (indices into the volume, slice-major).
struct Component {
    std::vector<size_t> voxels;
};
/// Components of voxels whose probability (0..255) is above `threshold`.
std::vector<Component> components(const std::vector<std::uint8_t>& prob, const core::Volume& v, std::uint8_t threshold);

/// Volume, longest in-plane diameter (Feret over 36 directions), slice range, key slice (largest
/// area), mean value, confidence (mean of `prob` / 255 over the voxels) and patient side.
core::Finding measure(const Component& c, const core::Volume& v, const std::vector<std::uint8_t>& prob);
/// True when the lesion reaches the first or last slice: its extent along z is a lower bound.
bool truncated(const core::Finding& f, const core::Volume& v);
/// For a truncated lesion: its widest cross-section lies inside the volume (the key slice is not the
/// cut slice and the cut section is under 70 % of the key slice's area), so its in-plane diameter
/// is whole although its extent along z is not.
bool widest_inside(const Component& c, const core::Finding& f, const core::Volume& v);
/// For a lesion cut by the volume through its widest visible section: could a lesion of at least
/// `diameter_mm` show this cut? A sphere of diameter D cut to a cap of height e (the mask's slices
/// less half a spacing) shows a section of 2 sqrt(e (D - e)) at the cut, e at most D/2; the finding's
/// diameter must reach 0.6 of that (irregular ellipsoids). A 13 mm section on 2 slices of 4.7 mm
/// is a nodule's, not the pole of a 30 mm tumour (which would show 25 mm there).
bool cut_could_be(const core::Finding& f, double slice_spacing, double diameter_mm);

/// Row-major pixel indices of a lesion's voxels on slice z.
std::vector<size_t> slice_pixels(const core::Volume& v, const std::vector<size_t>& voxels, int z);
/// Pixels within `radius` (chessboard distance) of `pixels` on one slice, outside them; works in
/// the pixels' bounding box, so its cost follows the lesion's size, not the slice's.
std::vector<size_t> ring_around(const core::Volume& v, const std::vector<size_t>& pixels, int radius);
/// Median of a non-empty vector (reorders it).
float median(std::vector<float>& x);
/// Median of `inside` minus median of `around` (0 when either is empty).
double median_difference(std::vector<float> inside, std::vector<float> around);
/// Median of a lesion minus the median of a 3-pixel ring around it on each of its slices (ring
/// voxels where `lesion` <= threshold only). in_lung: against the lung-density part of the ring
/// when that is at least a quarter of it (a lung tumour against the mediastinum is isodense to it).
double contrast(const core::Volume& v, const Component& c, const std::vector<std::uint8_t>& lesion, std::uint8_t threshold,
                bool in_lung = false);

// ---- gates (each: nothing when the candidate passes) ----
Gate gate_slices(int span, int min_slices);
/// In-plane diameter below min_mm, or fewer slices than min_mm covers along z (at least 1).
Gate gate_min_diameter(const core::Finding& f, double min_mm, double slice_spacing);
/// In-plane diameter above max_mm, or a length along z of more than max_mm plus one slice.
Gate gate_max_diameter(const core::Finding& f, double max_mm, double slice_spacing);
Gate gate_contrast(double hu, double min_hu, const std::string& around);
Gate gate_confidence(double confidence, double min_confidence);
/// A faint lesion at an organ border: another host organ holds at least `max_other` of the ring
/// around it (mean organ probability; 0: no limit), so its contrast to its own organ is the other
/// organ's (a kidney pole abutting the liver, segmented as a liver lesion, is darker than the liver).
/// covered: host label -> ring coverage; organs: host label -> organ name.
Gate gate_border(const std::map<std::string, double>& covered, const std::string& label, double max_other,
                 const std::map<std::string, std::string>& organs);
/// A lesion named for a host organ that the classes' definition puts it inside: that organ holds at
/// least its label's `min_share` of the ring around it (mean organ probability; labels without one
/// pass). PHANTOMS.md puts a liver tumor >= 90 % inside the liver: the ring of true ones is mostly
/// liver (0.81-1.00 on both renderers), soft tissue beside the liver named "liver tumor" 0.09-0.26.
Gate gate_host_share(const std::map<std::string, double>& covered, const std::string& label,
                     const std::map<std::string, double>& min_share, const std::map<std::string, std::string>& organs);
/// CT: the share of the 3-pixel ring around a lesion's pixels on slice z that is lung-density air.
double lung_ring_share(const core::Volume& v, const Component& c, int z);
/// A lung lesion lies in a lung (PHANTOMS.md: a nodule inside one, a tumour at least 60 % inside
/// one, abutting the mediastinum at most): at least a tenth of the ring around its key slice is lung
/// (true lesions of the second renderer 0.28-0.93; the spinal canal, aorta and mediastinum 0-0.02),
/// and a mask with under 45 % lung around it centred between the lungs (`offset`, midline_offset,
/// under 0.35) is the heart or a great vessel, not a lesion in a lung.
Gate gate_in_lung(double share, double offset = 1.0);  // offset 1: the share alone

/// Per slice: which pixels are outside the body (connected to the image border through pixels
/// below `air`) and how much of the body is lung-density air. Computed once per volume.
struct BodyMap {
    std::vector<std::uint8_t> outside;     // slices*rows*columns; 1 = outside the body
    std::vector<int> body_pixels;          // per slice
    std::vector<int> air_pixels;           // per slice: inside the body, below `air` (lungs, bowel gas)
    std::vector<double> width_mm;          // per slice: the body's widest extent along the rows
};
/// CT: air = -400 HU. MR: air = 15 % of the 98th percentile of the volume.
BodyMap body_map(const core::Volume& v);
/// CT: the centre of a lesion's pixels on slice z relative to the body there: 0 on its midline, +-1
/// at its left or right edge (1 when the body or the lesion is not on the slice).
double midline_offset(const core::Volume& v, const Component& c, int z, const BodyMap& body);
/// The shape gate: a mask mostly outside the body, along its outline (the skin, scalp or table),
/// covering more than max_body_fraction of the body's cross-section on its key slice, a thin
/// shell (area under 12 % of the disc of its diameter, at 15 mm or more), or a tube along z (longer
/// than 4 times its in-plane diameter, at least 10 mm: the spinal canal, the aorta, a vessel).
Gate gate_shape(const core::Finding& f, const Component& c, const core::Volume& v, const BodyMap& body);

/// CT: a lesion is a bounded body: the tissue under its first or last slice's pixels that keeps its
/// median density (within 6 HU on three quarters of the slices) over max(15 mm, 0.75 x its diameter)
/// beyond that slice makes the mask a section of a longer structure (a kidney's pole), not a lesion.
/// An end the volume cuts off first, or of under 10 pixels, is not judged.
Gate gate_continues(const core::Volume& v, const Component& c, const core::Finding& f);

/// Rank of a candidate for the capped, expensive checks and the finding limits: confidence x volume.
double rank_score(const core::Finding& f);

}  // namespace triage::pipeline
