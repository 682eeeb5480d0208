// The body outline of a volume (what is outside it, per slice) and the shape gate that uses it.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "pipeline/lesions.h"

namespace triage::pipeline {

namespace {

constexpr double kMaxElongation = 4;  // length along z over the in-plane diameter (at least 10 mm)

float air_level(const core::Volume& v) {
    if (v.modality == "CT") return -400.0f;
    if (v.voxels.empty()) return 0.0f;
    std::vector<float> sample;
    for (size_t i = 0; i < v.voxels.size(); i += 97) sample.push_back(v.voxels[i]);
    auto at = sample.begin() + static_cast<long>(0.98 * static_cast<double>(sample.size() - 1));
    std::nth_element(sample.begin(), at, sample.end());
    return 0.15f * *at;
}

/// Flood fill from the slice's border through pixels below `air`: what it reaches is outside.
void fill_outside(const float* img, int rows, int cols, float air, std::uint8_t* out) {
    std::vector<size_t> stack;
    auto push = [&](int y, int x) {
        const size_t i = static_cast<size_t>(y) * cols + x;
        if (!out[i] && img[i] < air) out[i] = 1, stack.push_back(i);
    };
    for (int x = 0; x < cols; ++x) push(0, x), push(rows - 1, x);
    for (int y = 0; y < rows; ++y) push(y, 0), push(y, cols - 1);
    while (!stack.empty()) {
        const size_t i = stack.back();
        stack.pop_back();
        const int y = static_cast<int>(i / static_cast<size_t>(cols)), x = static_cast<int>(i % static_cast<size_t>(cols));
        if (y > 0) push(y - 1, x);
        if (y + 1 < rows) push(y + 1, x);
        if (x > 0) push(y, x - 1);
        if (x + 1 < cols) push(y, x + 1);
    }
}

}  // namespace

BodyMap body_map(const core::Volume& v) {
    BodyMap b;
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    b.outside.assign(plane * static_cast<size_t>(v.slices), 0);
    b.body_pixels.assign(static_cast<size_t>(v.slices), 0);
    b.air_pixels = b.body_pixels;
    b.width_mm.assign(static_cast<size_t>(v.slices), 0);
    const float air = air_level(v);
    for (int z = 0; z < v.slices; ++z) {
        std::uint8_t* out = b.outside.data() + plane * static_cast<size_t>(z);
        const float* img = v.slice(z);
        fill_outside(img, v.rows, v.columns, air, out);
        int x0 = v.columns, x1 = -1;
        for (size_t i = 0; i < plane; ++i) {
            if (out[i]) continue;
            ++b.body_pixels[static_cast<size_t>(z)];
            if (img[i] < air) ++b.air_pixels[static_cast<size_t>(z)];
            const int x = static_cast<int>(i % static_cast<size_t>(v.columns));
            x0 = std::min(x0, x), x1 = std::max(x1, x);
        }
        if (x1 >= x0) b.width_mm[static_cast<size_t>(z)] = (x1 - x0 + 1) * v.column_spacing;
    }
    return b;
}

Gate gate_shape(const core::Finding& f, const Component& c, const core::Volume& v, const BodyMap& body) {
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    size_t outside = 0, edge = 0;
    for (size_t i : c.voxels) {
        if (body.outside[i]) {
            ++outside;
            continue;
        }
        const size_t p = i % plane;
        const int y = static_cast<int>(p / static_cast<size_t>(v.columns)), x = static_cast<int>(p % static_cast<size_t>(v.columns));
        bool near = false;  // within 2 pixels of the outside: along the body outline (skin, scalp, table)
        for (int dy = -2; dy <= 2 && !near; ++dy)
            for (int dx = -2; dx <= 2 && !near; ++dx) {
                const int yy = y + dy, xx = x + dx;
                near = yy < 0 || xx < 0 || yy >= v.rows || xx >= v.columns ||
                       body.outside[i - p + static_cast<size_t>(yy) * v.columns + static_cast<size_t>(xx)];
            }
        edge += near;
    }
    const double n = static_cast<double>(c.voxels.size());
    if (outside > 0.3 * n) return Verdict{Reject::ImplausibleShape, fmt::format("{:.0f}% outside the body", 100 * outside / n)};
    if (edge > 0.2 * n) return Verdict{Reject::ImplausibleShape, fmt::format("{:.0f}% along the body outline", 100 * edge / n)};
    const double length = (f.last_slice - f.first_slice + 1) * v.slice_spacing;  // PHANTOMS.md: irregular ellipsoids
    if (length > kMaxElongation * std::max(f.diameter_mm, 10.0))
        return Verdict{Reject::ImplausibleShape, fmt::format("a tube along z ({:.0f} mm long, {:.0f} mm across): a vessel or canal",
                                                             length, f.diameter_mm)};
    const std::vector<size_t> key = slice_pixels(v, c.voxels, f.key_slice);
    const int body_area = body.body_pixels[static_cast<size_t>(f.key_slice)];
    if (body_area > 0 && static_cast<double>(key.size()) > 0.25 * body_area)
        return Verdict{Reject::ImplausibleShape,
                       fmt::format("{:.0f}% of the body's cross-section", 100.0 * static_cast<double>(key.size()) / body_area)};
    const double disc = M_PI / 4 * f.diameter_mm * f.diameter_mm / (v.row_spacing * v.column_spacing);
    if (f.diameter_mm >= 15 && static_cast<double>(key.size()) < 0.12 * disc)
        return Verdict{Reject::ImplausibleShape,
                       fmt::format("a thin shell ({:.0f}% of the disc of its diameter)", 100 * static_cast<double>(key.size()) / disc)};
    return std::nullopt;
}

}  // namespace triage::pipeline
