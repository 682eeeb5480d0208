#include "pipeline/region.h"

#include <fmt/format.h>

#include "core/text.h"

#include <algorithm>
#include <cmath>

namespace triage::pipeline {

namespace {

using core::ascii_upper;

// Renaming across the diaphragm overrides the model's own answer, so the lung must show: a third of
// the key slice's ring at lung density (gate_in_lung alone asks a tenth). PHANTOMS.md lung lesions
// lie in a lung: the second renderer's 96 have 0.39-0.93 of that ring in a lung (truth masks), the
// ones renamed so far 0.45-0.93 (the model's masks); a soft-tissue mass at the lung base 0.21.
constexpr double kAcrossDiaphragmLungShare = 0.3;

/// Regions named by a header text (BodyPartExamined or SeriesDescription), in body order.
std::vector<std::string> header_regions(const std::string& text) {
    const std::string t = ascii_upper(text);
    auto any = [&](std::initializer_list<const char*> words) {
        return std::any_of(words.begin(), words.end(), [&](const char* w) { return t.find(w) != std::string::npos; });
    };
    std::vector<std::string> out;
    if (any({"HEAD", "BRAIN", "SKULL", "CRANI", "NEURO"})) out.push_back("HEAD");
    if (any({"CHEST", "LUNG", "THORA", "TORSO"})) out.push_back("CHEST");
    if (any({"ABDOM", "LIVER", "KIDNEY", "RENAL", "PANCREA", "PELVI", "TORSO"})) out.push_back("ABDOMEN");
    return out;
}

}  // namespace

bool SeriesRegion::has(const std::string& r) const { return std::find(regions.begin(), regions.end(), r) != regions.end(); }

std::string SeriesRegion::text() const {
    std::string s;
    for (const auto& r : regions) s += (s.empty() ? "" : "+") + r;
    return s.empty() ? "unknown" : s;
}

SeriesRegion series_region(const core::Volume& v, const BodyMap& body) {
    SeriesRegion header;
    for (const auto& [field, text] : {std::pair{"BodyPartExamined", v.body_part}, std::pair{"SeriesDescription", v.series_description}})
        if (header.regions.empty() && !(header.regions = header_regions(text)).empty())
            header.source = fmt::format("header: {} {}", field, ascii_upper(text));
    const SeriesRegion content = content_region(v, body);
    // A chest CT often reaches the upper abdomen: the content adds it, never removes the header's.
    if (header.regions == std::vector<std::string>{"CHEST"} && v.modality == "CT" && content.has("ABDOMEN") && content.has("CHEST"))
        header.regions.push_back("ABDOMEN"), header.source += "; " + content.source;
    return header.regions.empty() ? content : header;
}

SeriesRegion content_region(const core::Volume& v, const BodyMap& body) {
    double pixels = 0, air = 0, width = 0;
    int airless = 0, slices = 0;
    for (size_t z = 0; z < body.body_pixels.size(); ++z) {
        if (body.body_pixels[z] < 100) continue;
        pixels += body.body_pixels[z], air += body.air_pixels[z], ++slices;
        airless += body.air_pixels[z] < 0.02 * body.body_pixels[z];
        width = std::max(width, body.width_mm[z]);
    }
    if (slices == 0) return {{}, "content: no body found"};
    const double lung = air / pixels;
    if (width < 230) return {{"HEAD"}, fmt::format("content: body at most {:.0f} mm wide", width)};
    if (v.modality != "CT") return {{}, fmt::format("content: {} body {:.0f} mm wide", v.modality, width)};
    if (lung > 0.08) {
        SeriesRegion r{{"CHEST"}, fmt::format("content: {:.0f}% lung-density air", 100 * lung)};
        if (airless > slices / 5) r.regions.push_back("ABDOMEN"), r.source += fmt::format(", {} of {} slices without", airless, slices);
        return r;
    }
    return {{"ABDOMEN"}, fmt::format("content: {:.0f}% lung-density air, body {:.0f} mm wide", 100 * lung, width)};
}

std::string label_region(const std::string& label) {
    // PHANTOMS.md: chest studies carry only lung classes, abdomen studies only liver, kidney and
    // pancreas tumors, MR head only brain tumors. Labels outside this table (the full model's free
    // text) are not restricted.
    const std::string l = ascii_upper(label);
    if (l.rfind("BRAIN", 0) == 0) return "HEAD";
    if (l.rfind("LUNG", 0) == 0) return "CHEST";
    if (l.rfind("LIVER", 0) == 0 || l.rfind("KIDNEY", 0) == 0 || l.rfind("PANCREAS", 0) == 0) return "ABDOMEN";
    return "";
}

Gate gate_region(const std::string& label, const SeriesRegion& region) {
    const std::string r = label_region(label);
    if (r.empty() || region.regions.empty() || region.has(r)) return std::nullopt;
    return Verdict{Reject::ImplausibleRegion, fmt::format("implausible for region {} ({})", region.text(), region.source)};
}

std::optional<std::string> lung_by_anatomy(const std::string& label, const SeriesRegion& region, double lung_share) {
    if (label_region(label) != "ABDOMEN" || !gate_region(label, region) || gate_region("lung nodule", region) || gate_in_lung(lung_share) ||
        lung_share < kAcrossDiaphragmLungShare)
        return std::nullopt;
    return fmt::format("{} is not of region {}, and {:.0f}% of the ring around its key slice is lung: lung", label, region.text(),
                       100 * lung_share);
}

double texture_ratio(const core::Volume& v, const BodyMap& body) {
    std::vector<float> lag1, lag2;
    const int step = std::max(1, v.slices / 8);
    for (int z = step / 2; z < v.slices; z += step) {
        const float* img = v.slice(z);
        const std::uint8_t* out = body.outside.data() + static_cast<size_t>(z) * v.rows * v.columns;
        for (int y = 0; y < v.rows; y += 2)
            for (int x = 0; x + 2 < v.columns; ++x) {
                const size_t i = static_cast<size_t>(y) * v.columns + x;
                if (out[i] || out[i + 1] || out[i + 2]) continue;
                lag1.push_back(std::abs(img[i + 1] - img[i]));
                lag2.push_back(std::abs(img[i + 2] - img[i]));
            }
    }
    if (lag1.size() < 100) return 0;
    return median(lag2) / std::max(static_cast<double>(median(lag1)), 0.5);
}

std::optional<std::string> not_validated(const Domain& d, const core::Volume& v, const SeriesRegion& region, double texture) {
    if (!d.declared()) return std::nullopt;
    if (d.axial_only && std::abs(v.normal[2]) < std::cos(30 * M_PI / 180))  // oblique axial (AC-PC, tilt) is axial
        return fmt::format("slices not axial (normal {:.2f} {:.2f} {:.2f}); validated on {}", v.normal[0], v.normal[1], v.normal[2],
                           d.description);
    auto range = d.modality.find(v.modality);
    if (range == d.modality.end()) return fmt::format("modality {}; validated on {}", v.modality, d.description);
    if (const double skip = range->second.skip_texture_ratio; skip > 0 && texture > skip)
        return fmt::format("image texture ratio {:.2f} > {:.2f}: real anatomy, not the uniform organs of {}", texture, skip,
                           d.description);
    const auto& valid = range->second.regions;
    if (valid.empty() || std::any_of(region.regions.begin(), region.regions.end(),
                                     [&](const std::string& r) { return std::find(valid.begin(), valid.end(), r) != valid.end(); }))
        return std::nullopt;
    std::string list;
    for (const auto& r : valid) list += (list.empty() ? "" : "/") + r;
    return fmt::format("{} of the {} ({}); validated with {} only on {}", v.modality, region.text(), region.source, list, d.description);
}

std::optional<std::string> outside_domain(const Domain& d, const core::Volume& v, double texture) {
    if (!d.declared()) return std::nullopt;
    auto range = d.modality.find(v.modality);
    if (range == d.modality.end()) return std::nullopt;  // not_validated's decision
    const DomainRange& r = range->second;
    auto outside = [](double x, std::pair<double, double> p) { return p.second > 0 && (x < p.first || x > p.second); };
    if (outside(v.row_spacing, r.pixel_spacing_mm))
        return fmt::format("pixel spacing {:.2f} mm outside {:.2f}-{:.2f} mm", v.row_spacing, r.pixel_spacing_mm.first,
                           r.pixel_spacing_mm.second);
    if (outside(v.slice_spacing, r.slice_spacing_mm))
        return fmt::format("slice spacing {:.2f} mm outside {:.2f}-{:.2f} mm", v.slice_spacing, r.slice_spacing_mm.first,
                           r.slice_spacing_mm.second);
    if (r.max_texture_ratio > 0 && texture > r.max_texture_ratio)
        return fmt::format("image texture ratio {:.2f} > {:.2f} (real tissue and scanner noise, not the uniform organs of {})",
                           texture, r.max_texture_ratio, d.description);
    return std::nullopt;
}

std::optional<std::string> too_many_candidates(const Domain& d, size_t confident, size_t components) {
    if (d.max_candidates <= 0 || confident <= static_cast<size_t>(d.max_candidates)) return std::nullopt;
    return fmt::format("{} confident lesion candidates (of {} mask components), more than the {} of the validated domain ({})",
                       confident, components, d.max_candidates, d.description);
}

}  // namespace triage::pipeline
