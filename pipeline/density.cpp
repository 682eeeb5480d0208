#include "pipeline/density.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace triage::pipeline {
namespace {

constexpr double kSmoothMm = 2.0;                   // box half-width of the smoothing
constexpr double kAnnulusFromMm = 2.0, kAnnulusToMm = 8.0;  // the tissue around a lesion, past its blurred edge
constexpr double kAwayMm = 3.0;                     // organ pixels this far from the lesion measure the organ
constexpr double kMapMargin = 8;                    // an organ map's pixels count within its range +- this
constexpr double kBandBelow = 2, kBandAbove = 5;    // a distinct organ's band: its range widened by these
// Confirming a lesion's own name asks more of the annulus than renaming it: the name stands without its
// organ's map, and a kidney pole against the liver shows liver density over 0.67-0.80 of its annulus,
// true liver tumours at the liver's tip, where the map fades, 0.88-0.98 (second renderer).
constexpr double kConfirmShare = 0.85;

int pixels_of(const core::Volume& v, double mm) { return std::max(1, static_cast<int>(std::lround(mm / std::max(0.1, v.row_spacing)))); }

/// Marks `pixels` and everything within `radius` of them on a slice-sized plane.
std::vector<std::uint8_t> near_mask(const core::Volume& v, const std::vector<size_t>& pixels, int radius) {
    std::vector<std::uint8_t> near(static_cast<size_t>(v.rows) * v.columns, 0);
    for (size_t i : pixels) near[i] = 1;
    for (size_t i : ring_around(v, pixels, radius)) near[i] = 1;
    return near;
}

std::string ranges(const DensitySpec& spec) {
    std::string out;
    for (const auto& [lo, hi] : spec.contrast_hu) out += fmt::format("{}{:+.0f} to {:+.0f}", out.empty() ? "" : " or ", lo, hi);
    return out + " HU";
}

}  // namespace

SmoothSlice::SmoothSlice(const core::Volume& v, int z, int radius)
    : rows_(v.rows), columns_(v.columns), radius_(radius), sum_(static_cast<size_t>(v.rows + 1) * (v.columns + 1), 0.0) {
    const size_t w = static_cast<size_t>(columns_) + 1;
    for (int y = 0; y < rows_; ++y)
        for (int x = 0; x < columns_; ++x)
            sum_[(y + 1) * w + x + 1] = v.at(z, y, x) + sum_[y * w + x + 1] + sum_[(y + 1) * w + x] - sum_[y * w + x];
}

double SmoothSlice::at(size_t pixel) const {
    const int y = static_cast<int>(pixel / static_cast<size_t>(columns_)), x = static_cast<int>(pixel % static_cast<size_t>(columns_));
    const int y0 = std::max(0, y - radius_), x0 = std::max(0, x - radius_);
    const int y1 = std::min(rows_, y + radius_ + 1), x1 = std::min(columns_, x + radius_ + 1);
    const size_t w = static_cast<size_t>(columns_) + 1;
    const double s = sum_[y1 * w + x1] - sum_[y0 * w + x1] - sum_[y1 * w + x0] + sum_[y0 * w + x0];
    return s / ((y1 - y0) * (x1 - x0));
}

double core_hu(const core::Volume& v, int z, const std::vector<size_t>& pixels) {
    const size_t plane = static_cast<size_t>(z) * v.rows * v.columns;
    const std::vector<std::uint8_t> outline = near_mask(v, ring_around(v, pixels, 1), 1);  // within 1 pixel of the outside
    std::vector<float> inner, all;
    for (size_t i : pixels) {
        all.push_back(v.voxels[plane + i]);
        if (!outline[i]) inner.push_back(v.voxels[plane + i]);
    }
    if (all.empty()) return 0;
    return inner.size() >= 10 ? median(inner) : median(all);
}

Band band_around(const core::Volume& v, const SmoothSlice& s, const std::vector<size_t>& pixels, int r_in, int r_out,
                 double lo, double hi) {
    const std::vector<std::uint8_t> inner = near_mask(v, pixels, r_in);
    std::vector<float> in_band;
    size_t total = 0;
    for (size_t i : ring_around(v, pixels, r_out)) {
        if (inner[i]) continue;
        ++total;
        const double value = s.at(i);
        if (value >= lo && value <= hi) in_band.push_back(static_cast<float>(value));
    }
    Band b;
    if (total == 0) return b;
    b.share = static_cast<double>(in_band.size()) / static_cast<double>(total);
    if (in_band.size() >= 20) b.median = median(in_band);
    return b;
}

std::optional<double> organ_density(const core::Volume& v, const SmoothSlice& s, int z, const std::vector<std::uint8_t>& map,
                                    const std::vector<size_t>& pixels, int away, double lo, double hi) {
    const std::vector<std::uint8_t> near = near_mask(v, pixels, away);
    const size_t plane = static_cast<size_t>(z) * v.rows * v.columns;
    std::vector<float> values;
    for (size_t i = 0; i < map.size() && i < near.size(); ++i) {
        if (map[i] <= 127 || near[i]) continue;
        const double smooth = s.at(i);
        if (smooth >= lo && smooth <= hi) values.push_back(v.voxels[plane + i]);
    }
    if (values.size() < 50) return std::nullopt;
    return median(values);
}

Gate gate_host_density(double contrast, double organ_hu, const std::string& organ, const std::string& label, const DensitySpec& spec,
                       double tolerance) {
    for (const auto& [lo, hi] : spec.contrast_hu)
        if (contrast >= lo - tolerance && contrast <= hi + tolerance) return std::nullopt;
    return Verdict{Reject::Isodense, fmt::format("{:+.0f} HU to the {} ({:.0f} HU): a {} is {} from it (+-{:.0f})", contrast, organ, organ_hu,
                                                 label, ranges(spec), tolerance)};
}

DensityNaming density_naming(const core::Volume& v, int z, const std::vector<size_t>& pixels, const std::string& label,
                             const std::map<std::string, std::vector<std::uint8_t>>& maps,
                             const std::map<std::string, DensitySpec>& specs, const std::map<std::string, std::string>& organs,
                             double min_share, double tolerance) {
    DensityNaming out{label, "", std::nullopt};
    const auto own = specs.find(label);
    if (own == specs.end() || !organs.count(label) || pixels.empty()) return out;
    const SmoothSlice smooth(v, z, pixels_of(v, kSmoothMm));
    const double core = core_hu(v, z, pixels);
    out.evidence = fmt::format("density: {:.0f} HU", core);
    // 1. Against its own organ, measured where the model's map of it lies away from the lesion.
    if (auto map = maps.find(label); map != maps.end()) {
        const DensitySpec& s = own->second;
        if (auto organ = organ_density(v, smooth, z, map->second, pixels, pixels_of(v, kAwayMm), s.organ_lo - kMapMargin,
                                       s.organ_hi + kMapMargin)) {
            out.evidence += fmt::format(", {:+.0f} HU to the {} ({:.0f} HU)", core - *organ, organs.at(label), *organ);
            if ((out.reject = gate_host_density(core - *organ, *organ, organs.at(label), label, s, tolerance))) return out;
        }
    }
    // 2. In tissue of a distinct organ's density, as much darker or brighter than it as its lesions are.
    for (const auto& [other, s] : specs) {
        if (!s.distinct || !organs.count(other)) continue;
        const Band b = band_around(v, smooth, pixels, pixels_of(v, kAnnulusFromMm), pixels_of(v, kAnnulusToMm), s.organ_lo - kBandBelow,
                                   s.organ_hi + kBandAbove);
        if (!b.median) continue;
        out.evidence += fmt::format("; {} density ({:.0f} HU) over {:.2f} of the {:.0f}-{:.0f} mm around it", organs.at(other), *b.median,
                                    b.share, kAnnulusFromMm, kAnnulusToMm);
        const double need = other == label ? std::max(min_share, kConfirmShare) : min_share;
        if (b.share < need || gate_host_density(core - *b.median, *b.median, organs.at(other), other, s, tolerance)) continue;
        out.evidence += fmt::format(", {:+.0f} HU to it -> {}", core - *b.median, other);
        out.label = other;
        out.by_density = true;
        break;
    }
    return out;
}

}  // namespace triage::pipeline
