#pragma once
// Host-organ densities (docs/model-bundle.md, step 7): a bundle may declare, per host-organ label,
// its organ's density and the lesion's contrast to it (the demonstration model declares PHANTOMS.md's
// table). A lesion's name is then checked against the image's own numbers, not only the model's
// organ maps: a "kidney tumor" as dense as the kidney is kidney, and a lesion in liver-density
// tissue, as much darker than it as a liver tumour is, is a liver tumour whatever map spilled over
// it. Free of Torch; pure functions, thread-safe.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/volume.h"
#include "pipeline/lesions.h"

namespace triage::pipeline {

struct DensitySpec {
    double organ_lo = 0, organ_hi = 0;                  // the organ's density, HU
    std::vector<std::pair<double, double>> contrast_hu;  // the lesion minus its organ, HU (any range)
    bool distinct = false;  // no other tissue of the region shares the organ's density: it can name a lesion alone
};

/// Box-smoothed values of one slice (a summed-area table): the mean over (2r+1)^2 pixels, clipped
/// at the borders. Noise of 8-20 HU per pixel would otherwise blur every density band.
class SmoothSlice {
public:
    SmoothSlice(const core::Volume& v, int z, int radius);
    double at(size_t pixel) const;

private:
    int rows_, columns_, radius_;
    std::vector<double> sum_;  // (rows+1) x (columns+1)
};

/// The lesion's own density: median of its pixels on slice z without their outline (all of them
/// when fewer than 10 are inside it).
double core_hu(const core::Volume& v, int z, const std::vector<size_t>& pixels);

/// The smoothed annulus from r_in to r_out pixels around a lesion's pixels at a density band [lo, hi]:
/// its share of the annulus and its median value (nothing under 20 pixels).
struct Band {
    double share = 0;
    std::optional<double> median;
};
Band band_around(const core::Volume& v, const SmoothSlice& s, const std::vector<size_t>& pixels, int r_in, int r_out,
                 double lo, double hi);

/// An organ's density on slice z: median of the pixels its map holds (> 127) at least `away`
/// pixels from the lesion whose smoothed value lies in [lo, hi] (a map that spills onto a
/// neighbour of another density does not move it); nothing under 50 pixels.
std::optional<double> organ_density(const core::Volume& v, const SmoothSlice& s, int z, const std::vector<std::uint8_t>& map,
                                    const std::vector<size_t>& pixels, int away, double lo, double hi);

/// The lesion's contrast to its organ fits none of its label's ranges widened by `tolerance`.
Gate gate_host_density(double contrast, double organ_hu, const std::string& organ, const std::string& label, const DensitySpec& spec,
                       double tolerance);

/// The density check of a host-named lesion on its key slice (see the header comment): the label it
/// keeps or takes, the evidence for the audit, and a rejection. `by_density`: the label rests on the
/// image's densities (a distinct organ's tissue around it at a lesion's contrast), whether it was
/// taken or kept, so the maps' share of its ring (`host_min_share`) does not apply.
struct DensityNaming {
    std::string label, evidence;
    Gate reject;
    bool by_density = false;
};
DensityNaming density_naming(const core::Volume& v, int z, const std::vector<size_t>& pixels, const std::string& label,
                             const std::map<std::string, std::vector<std::uint8_t>>& maps,
                             const std::map<std::string, DensitySpec>& specs, const std::map<std::string, std::string>& organs,
                             double min_share, double tolerance);

}  // namespace triage::pipeline
