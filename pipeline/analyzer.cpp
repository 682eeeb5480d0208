#include "pipeline/analyzer.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <iterator>
#include <map>
#include <set>

namespace triage::pipeline {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::toupper);
    return s;
}

/// Per-label probability volumes (0..255), filled slice by slice from the mask logits.
struct LabelVolumes {
    std::map<std::string, std::vector<std::uint8_t>> prob;
};

void paste_mask(const std::vector<float>& logits, int mask_size, const core::Volume& v, int z, std::vector<std::uint8_t>& dst) {
    torch::Tensor t = torch::from_blob(const_cast<float*>(logits.data()), {1, 1, mask_size, mask_size}, torch::kFloat32);
    torch::Tensor up = torch::sigmoid(torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{v.rows, v.columns})
               .mode(torch::kBilinear).align_corners(false)));
    torch::Tensor q = (up * 255.0f).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    const std::uint8_t* p = q.data_ptr<std::uint8_t>();
    std::uint8_t* out = dst.data() + static_cast<size_t>(z) * v.rows * v.columns;
    for (size_t i = 0, n = static_cast<size_t>(v.rows) * v.columns; i < n; ++i) out[i] = std::max(out[i], p[i]);
}

/// Lung nodule and lung tumor differ by 3D size, decided after assembly: one "lung" group.
std::string group_of(const std::string& label) { return label.rfind("lung", 0) == 0 ? "lung" : label; }

/// Masks from the referring sweep are kept apart from the recognition answers' (group "asked: X"):
/// the referring prompt is asked for each class in turn and segments a lesion of another class too,
/// so it finds lesions, and the recognition answers, where they have any, name them.
const std::string kAsked = "asked: ";

/// Carries each [SEG] prompt to the neighbouring slices where the language model did not name that
/// group (up to propagate_slices away, nearest first), as Sa2VA carries a prompt through video
/// frames: the mask decoder alone decides on each of those slices, and a slice where it finds
/// something passes the prompt on, so a lesion is followed through the slices it covers. Fills the
/// slices a large lesion skips in the per-slice answers, which otherwise split or lose it.
core::Status propagate(const Model& model, const core::Volume& v, std::vector<std::map<std::string, std::vector<float>>> prompts,
                       int batch, LabelVolumes& labels, StageSeconds& stages) {
    const Manifest& m = model.manifest();
    const float min_logit = static_cast<float>(std::log(m.mask_threshold / (1 - m.mask_threshold)));
    struct Task {
        int z;
        std::string group;
        std::vector<float> prompt;
    };
    std::vector<bool> source(static_cast<size_t>(v.slices));
    for (int z = 0; z < v.slices; ++z) source[static_cast<size_t>(z)] = !prompts[static_cast<size_t>(z)].empty();
    std::set<std::pair<int, std::string>> tried;
    for (bool any = true; any;) {  // one wave: every slice next to a source slice
        std::vector<Task> tasks;
        for (int z = 0; z < v.slices; ++z)
            for (const auto& entry : labels.prob) {
                const std::string& group = entry.first;
                if (prompts[static_cast<size_t>(z)].count(group) || tried.count({z, group})) continue;
                const std::vector<float>* found = nullptr;
                for (int d = 1; d <= m.propagate_slices && !found; ++d)
                    for (int j : {z - d, z + d})
                        if (!found && j >= 0 && j < v.slices && source[static_cast<size_t>(j)])
                            if (auto p = prompts[static_cast<size_t>(j)].find(group); p != prompts[static_cast<size_t>(j)].end())
                                found = &p->second;
                if (found) tasks.push_back({z, group, *found}), tried.insert({z, group});
            }
        std::fill(source.begin(), source.end(), false);
        any = false;
        for (size_t t0 = 0; t0 < tasks.size(); t0 += static_cast<size_t>(batch)) {
            const size_t t1 = std::min(tasks.size(), t0 + static_cast<size_t>(batch));
            std::vector<int> slices;
            std::vector<std::vector<float>> batch_prompts;
            for (size_t t = t0; t < t1; ++t) slices.push_back(tasks[t].z), batch_prompts.push_back(tasks[t].prompt);
            auto logits = model.segment(preprocess(m, v, slices), static_cast<int>(slices.size()), batch_prompts, &stages);
            if (!logits) return logits.error();
            for (size_t t = t0; t < t1; ++t) {
                const auto& mask = logits.value()[t - t0];
                paste_mask(mask, m.mask_size, v, tasks[t].z, labels.prob[tasks[t].group]);
                if (*std::max_element(mask.begin(), mask.end()) > min_logit) {  // found: it passes the prompt on
                    prompts[static_cast<size_t>(tasks[t].z)][tasks[t].group] = tasks[t].prompt;
                    source[static_cast<size_t>(tasks[t].z)] = any = true;
                }
            }
        }
    }
    return {};
}

struct Component {
    std::vector<size_t> voxels;
};

/// 26-connected components of voxels above threshold, visiting only set voxels.
std::vector<Component> components(const std::vector<std::uint8_t>& prob, const core::Volume& v, std::uint8_t threshold) {
    std::vector<std::uint8_t> seen(prob.size(), 0);
    std::vector<Component> out;
    const long nx = v.columns, ny = v.rows, nz = v.slices;
    for (size_t start = 0; start < prob.size(); ++start) {
        if (prob[start] <= threshold || seen[start]) continue;
        Component c;
        std::vector<size_t> stack{start};
        seen[start] = 1;
        while (!stack.empty()) {
            size_t i = stack.back();
            stack.pop_back();
            c.voxels.push_back(i);
            long z = static_cast<long>(i) / (nx * ny), y = (static_cast<long>(i) / nx) % ny, x = static_cast<long>(i) % nx;
            for (long dz = -1; dz <= 1; ++dz)
                for (long dy = -1; dy <= 1; ++dy)
                    for (long dx = -1; dx <= 1; ++dx) {
                        long zz = z + dz, yy = y + dy, xx = x + dx;
                        if (zz < 0 || yy < 0 || xx < 0 || zz >= nz || yy >= ny || xx >= nx) continue;
                        size_t j = static_cast<size_t>((zz * ny + yy) * nx + xx);
                        if (prob[j] > threshold && !seen[j]) {
                            seen[j] = 1;
                            stack.push_back(j);
                        }
                    }
        }
        out.push_back(std::move(c));
    }
    return out;
}

core::Vec3 patient_point(const core::Volume& v, double z, double y, double x) {
    const auto& s = v.sources[static_cast<size_t>(std::clamp(static_cast<int>(std::lround(z)), 0, v.slices - 1))].position;
    core::Vec3 p;
    for (int k = 0; k < 3; ++k)
        p[static_cast<size_t>(k)] = s[static_cast<size_t>(k)] + x * v.column_spacing * v.row_direction[static_cast<size_t>(k)] +
                                    y * v.row_spacing * v.column_direction[static_cast<size_t>(k)];
    return p;
}

/// Measures one lesion: volume, longest in-plane diameter (Feret over 36 directions), slice range,
/// key slice (largest area), mean value, confidence and patient side.
core::Finding measure(const Component& c, const core::Volume& v, const std::vector<std::uint8_t>& prob) {
    core::Finding f;
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    std::map<int, std::vector<size_t>> by_slice;
    double sum = 0, conf = 0, cx = 0, cy = 0, cz = 0;
    for (size_t i : c.voxels) {
        by_slice[static_cast<int>(i / plane)].push_back(i % plane);
        sum += v.voxels[i];
        conf += prob[i] / 255.0;
        cz += static_cast<double>(i / plane);
        cy += static_cast<double>((i % plane) / static_cast<size_t>(v.columns));
        cx += static_cast<double>(i % static_cast<size_t>(v.columns));
    }
    const double n = static_cast<double>(c.voxels.size());
    f.volume_ml = n * v.column_spacing * v.row_spacing * v.slice_spacing / 1000.0;
    f.mean_value = sum / n;
    f.confidence = conf / n;
    f.first_slice = by_slice.begin()->first;
    f.last_slice = by_slice.rbegin()->first;
    size_t best_area = 0;
    for (const auto& [z, pixels] : by_slice) {
        if (pixels.size() > best_area) best_area = pixels.size(), f.key_slice = z;
        for (int a = 0; a < 36; ++a) {
            double th = a * M_PI / 36, ux = std::cos(th) * v.column_spacing, uy = std::sin(th) * v.row_spacing;
            double lo = 1e18, hi = -1e18;
            for (size_t p : pixels) {
                double proj = static_cast<double>(p % static_cast<size_t>(v.columns)) * ux +
                              static_cast<double>(p / static_cast<size_t>(v.columns)) * uy;
                lo = std::min(lo, proj), hi = std::max(hi, proj);
            }
            double pixel = std::hypot(std::cos(th) * v.column_spacing, std::sin(th) * v.row_spacing);
            f.diameter_mm = std::max(f.diameter_mm, hi - lo + pixel);
        }
    }
    core::Vec3 centre = patient_point(v, cz / n, cy / n, cx / n);
    core::Vec3 middle = patient_point(v, cz / n, v.rows / 2.0, v.columns / 2.0);
    f.side = centre[0] > middle[0] ? "left" : "right";  // DICOM patient x grows to the patient's left
    return f;
}

std::string site_of(const std::string& label, const core::Finding& f) {
    if (label.rfind("kidney", 0) == 0) return f.side + " kidney";
    if (label.rfind("lung", 0) == 0) return f.side + " lung";
    if (label.rfind("brain", 0) == 0) return f.side + " cerebral hemisphere";
    if (label.rfind("liver", 0) == 0) return std::string(f.side == "right" ? "right" : "left") + " hepatic lobe";
    if (label.rfind("pancreas", 0) == 0) return f.side == "right" ? "pancreatic head" : "pancreatic body/tail";
    return "";
}

/// Density or signal relative to the tissue around the lesion (a 3-pixel ring on the key slice).
std::string contrast_word(const core::Volume& v, const core::Finding& f, const std::vector<std::uint8_t>& segments, bool ct) {
    const int z = f.key_slice;
    double ring = 0;
    int count = 0;
    for (int y = 0; y < v.rows; ++y)
        for (int x = 0; x < v.columns; ++x) {
            size_t i = (static_cast<size_t>(z) * v.rows + y) * v.columns + x;
            if (segments[i] == f.segment) continue;
            bool near = false;
            for (int dy = -3; dy <= 3 && !near; ++dy)
                for (int dx = -3; dx <= 3 && !near; ++dx) {
                    int yy = y + dy, xx = x + dx;
                    if (yy >= 0 && xx >= 0 && yy < v.rows && xx < v.columns)
                        near = segments[(static_cast<size_t>(z) * v.rows + yy) * v.columns + xx] == f.segment;
                }
            if (near) ring += v.at(z, y, x), ++count;
        }
    if (count == 0) return ct ? "isodense" : "isointense";
    double delta = f.mean_value - ring / count;
    double step = ct ? 10.0 : 0.15 * std::abs(ring / count);
    if (delta > step) return ct ? (delta > 60 ? "enhancing" : "hyperdense") : "hyperintense";
    if (delta < -step) return ct ? "hypodense" : "hypointense";
    return ct ? "isodense" : "isointense";
}

std::string fill(std::string text, const std::string& key, const std::string& value) {
    if (auto p = text.find(key); p != std::string::npos) text.replace(p, key.size(), value);
    return text;
}

/// Row-major pixel indices of a lesion on one slice.
std::vector<size_t> slice_pixels(const core::Volume& v, const std::vector<size_t>& voxels, int z) {
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    std::vector<size_t> out;
    for (size_t i : voxels)
        if (i / plane == static_cast<size_t>(z)) out.push_back(i % plane);
    return out;
}

/// Pixels of the key slice within `radius` pixels (chessboard distance) of the lesion, outside it.
std::vector<size_t> ring_around(const core::Volume& v, const std::vector<size_t>& pixels, int radius) {
    const int rows = v.rows, cols = v.columns;
    std::vector<std::uint8_t> in(static_cast<size_t>(rows) * cols, 0), near(in.size(), 0), out(in.size(), 0);
    for (size_t i : pixels) in[i] = 1;
    for (int y = 0; y < rows; ++y)  // separable dilation: along rows, then along columns
        for (int x = 0; x < cols; ++x)
            for (int d = -radius; d <= radius && !near[static_cast<size_t>(y) * cols + x]; ++d)
                near[static_cast<size_t>(y) * cols + x] = x + d >= 0 && x + d < cols && in[static_cast<size_t>(y) * cols + x + d];
    std::vector<size_t> ring;
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < cols; ++x) {
            const size_t i = static_cast<size_t>(y) * cols + x;
            for (int d = -radius; d <= radius && !out[i]; ++d)
                out[i] = y + d >= 0 && y + d < rows && near[static_cast<size_t>(y + d) * cols + x];
            if (out[i] && !in[i]) ring.push_back(i);
        }
    return ring;
}

float median(std::vector<float>& x) {
    std::nth_element(x.begin(), x.begin() + static_cast<long>(x.size() / 2), x.end());
    return x[x.size() / 2];
}

/// Median of `inside` minus median of `around` (0 when either is empty).
double median_difference(std::vector<float> inside, std::vector<float> around) {
    return inside.empty() || around.empty() ? 0.0 : median(inside) - median(around);
}

/// Median value of a lesion minus the median of a 3-pixel ring around it on each of its slices
/// (voxels outside every lesion): how much denser or lighter it is than the tissue around it.
/// Medians, so that a little fat or air in the ring does not cancel a real difference.
double contrast(const core::Volume& v, const Component& c, const std::vector<std::uint8_t>& lesion, std::uint8_t threshold) {
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    std::map<size_t, std::vector<size_t>> by_slice;
    std::vector<float> inside, around;
    for (size_t i : c.voxels) by_slice[i / plane].push_back(i % plane), inside.push_back(v.voxels[i]);
    for (const auto& [z, pixels] : by_slice)
        for (size_t p : ring_around(v, pixels, 3))
            if (lesion[z * plane + p] <= threshold) around.push_back(v.voxels[z * plane + p]);
    return median_difference(std::move(inside), std::move(around));
}

/// Median of a lesion's pixels on one slice minus the median of other pixels of that slice.
double slice_contrast(const core::Volume& v, int z, const std::vector<size_t>& lesion, const std::vector<size_t>& around) {
    const size_t plane = static_cast<size_t>(z) * v.rows * v.columns;
    std::vector<float> inside, outside;
    for (size_t i : lesion) inside.push_back(v.voxels[plane + i]);
    for (size_t i : around) outside.push_back(v.voxels[plane + i]);
    return median_difference(std::move(inside), std::move(outside));
}

/// Grounds a lesion's name in anatomy: the model segments each candidate host organ on the key
/// slice ("Please segment pancreas in this CT image ."), and the lesion takes the label of the
/// organ that surrounds it: the highest mean organ probability over a ring of host_ring_mm around
/// the lesion (the organ's tissue, not the lesion's own pixels, which hosts may or may not
/// include). Below host_min_coverage for every organ, or when the leading organ is ahead of the
/// recognized label's own organ by less than host_min_lead (a close call), the recognized name stays.
struct Naming {
    std::string label, evidence;  // evidence: the organ probabilities, for the audit trail
    std::vector<size_t> organ_ring;  // ring pixels inside the organ of `label` (none: no organ around it)
    size_t ring_size = 0;
};

core::Result<Naming> host_label(const Model& model, const core::Volume& v, const std::vector<float>& key_image,
                                     const std::vector<size_t>& pixels, const std::string& label, StageSeconds& stages) {
    const Manifest& m = model.manifest();
    const int radius = std::max(1, static_cast<int>(std::lround(m.host_ring_mm / std::max(0.1, v.row_spacing))));
    const std::vector<size_t> ring = ring_around(v, pixels, radius);
    std::vector<std::string> prompts;
    for (const auto& host : m.host_organs)
        prompts.push_back(fill(fill(m.prompts.at("referring").front(), "{label}", host.second), "{modality}", v.modality));
    auto answers = model.run_prompts(key_image, 1, prompts, &stages);  // one image encoding for every organ
    if (!answers) return answers.error();
    std::string best_label = label, evidence = fmt::format("host organ ring {:.0f} mm:", m.host_ring_mm);
    double best = m.host_min_coverage;
    std::map<std::string, double> covered;                  // label -> mean organ probability over the ring
    std::map<std::string, std::vector<size_t>> organ_ring;  // label -> ring pixels inside its organ
    std::vector<std::uint8_t> prob(static_cast<size_t>(v.rows) * v.columns);
    auto answer = answers.value().begin();
    for (auto host = m.host_organs.begin(); host != m.host_organs.end(); ++host, ++answer) {
        if (answer->front().masks.empty() || ring.empty()) continue;
        std::fill(prob.begin(), prob.end(), 0);
        paste_mask(answer->front().masks.front().second, m.mask_size, v, 0, prob);
        double& c = covered[host->first];
        for (size_t i : ring) c += prob[i] / 255.0;
        c /= static_cast<double>(ring.size());
        evidence += fmt::format(" {} {:.2f}", host->second, c);
        std::copy_if(ring.begin(), ring.end(), std::back_inserter(organ_ring[host->first]), [&](size_t i) { return prob[i] > 127; });
        if (c > best) best = c, best_label = host->first;
    }
    if (best_label == label && best == m.host_min_coverage)
        return Naming{label, fmt::format("{} (none above {:.2f}: name kept)", evidence, m.host_min_coverage), {}, ring.size()};
    if (best_label != label && best - covered[label] < m.host_min_lead)
        return Naming{label, fmt::format("{} ({} ahead by {:.2f} < {:.2f}: name kept)", evidence, m.host_organs.at(best_label),
                                         best - covered[label], m.host_min_lead),
                      covered[label] >= m.host_min_coverage ? organ_ring[label] : std::vector<size_t>{}, ring.size()};
    return Naming{best_label, evidence + " -> " + best_label, organ_ring[best_label], ring.size()};
}

/// Region-aware description (the paper's ROI task): the lesion's bounding box on the key slice is
/// drawn onto the model's input and the model describes what is in it. Returns the text verbatim.
core::Result<std::string> describe(const Model& model, const core::Volume& v, std::vector<float> key_image,
                                   const std::vector<size_t>& pixels, const std::string& label, StageSeconds& stages) {
    const Manifest& m = model.manifest();
    const int s = m.input_size, width = 2, margin = 3;
    int y0 = s, x0 = s, y1 = 0, x1 = 0;
    for (size_t i : pixels) {
        int y = static_cast<int>(i / static_cast<size_t>(v.columns) * s / static_cast<size_t>(v.rows));
        int x = static_cast<int>(i % static_cast<size_t>(v.columns) * s / static_cast<size_t>(v.columns));
        y0 = std::min(y0, y), x0 = std::min(x0, x), y1 = std::max(y1, y), x1 = std::max(x1, x);
    }
    y0 = std::max(0, y0 - margin), x0 = std::max(0, x0 - margin);
    y1 = std::min(s - 1, y1 + margin), x1 = std::min(s - 1, x1 + margin);
    const auto value = static_cast<float>(m.roi_box_value);
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x)
            if (y < y0 + width || y > y1 - width || x < x0 + width || x > x1 - width)
                key_image[static_cast<size_t>(y) * s + x] = value;
    auto answer = model.run(key_image, 1, fill(m.prompts.at("description").front(), "{label}", label), &stages);
    if (!answer) return answer.error();
    return answer.value().front().text;
}

}  // namespace

std::string body_region(const Manifest& m, const core::Volume& v) {
    if (v.modality != "CT") return v.modality;
    std::string text = upper(v.body_part + " " + v.series_description);
    for (const auto& k : m.chest_keywords)
        if (text.find(upper(k)) != std::string::npos && m.ct_windows.count("CHEST")) return "CHEST";
    return m.default_window;
}

std::pair<double, double> ct_window(const Manifest& m, const core::Volume& v) { return m.ct_windows.at(body_region(m, v)); }

std::vector<float> preprocess(const Manifest& m, const core::Volume& v, const std::vector<int>& slices) {
    const size_t plane = static_cast<size_t>(v.rows) * v.columns;
    double offset = 0, scale = 1;  // x -> (x - offset) / scale
    if (v.modality == "CT") {
        auto [lo, hi] = ct_window(m, v);
        offset = lo, scale = hi - lo;
    } else {  // MR: z-score over the foreground of the whole volume
        double s = 0, ss = 0, n = 0;
        for (float x : v.voxels)
            if (x > 0) s += x, ss += double(x) * x, n += 1;
        offset = n ? s / n : 0;
        scale = std::max(n ? std::sqrt(std::max(ss / n - offset * offset, 1e-12)) : 1.0, 1e-6);
    }
    std::vector<float> native;
    native.reserve(slices.size() * plane);
    for (int z : slices) {
        auto first = v.voxels.begin() + static_cast<long>(static_cast<size_t>(z) * plane);
        for (auto x = first; x != first + static_cast<long>(plane); ++x) {
            double y = (*x - offset) / scale;
            native.push_back(static_cast<float>(v.modality == "CT" ? std::clamp(y, 0.0, 1.0) : y));
        }
    }
    torch::Tensor t = torch::from_blob(native.data(), {static_cast<long>(slices.size()), 1, v.rows, v.columns}, torch::kFloat32);
    torch::Tensor r = torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{m.input_size, m.input_size})
               .mode(torch::kBilinear).align_corners(false)).contiguous();
    return std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
}

std::vector<float> preprocess(const Manifest& m, const core::Volume& v, int z0, int z1) {
    std::vector<int> slices;
    for (int z = z0; z < z1; ++z) slices.push_back(z);
    return preprocess(m, v, slices);
}

core::Result<core::SeriesAnalysis> Analyzer::analyze(const core::Volume& v) const {
    const Manifest& m = m_model.manifest();
    core::SeriesAnalysis out;
    out.series_uid = v.series_uid;
    // The recognition prompt, then the referring prompt for each label the manifest sweeps in this region.
    std::vector<std::string> queries{fill(m.prompts.at("recognition").front(), "{modality}", v.modality)};
    std::vector<std::string> swept;
    if (auto sweep = m.referring_sweep.find(body_region(m, v)); sweep != m.referring_sweep.end())
        for (const auto& label : sweep->second)
            swept.push_back(label), queries.push_back(fill(fill(m.prompts.at("referring").front(), "{label}", label), "{modality}", v.modality));
    LabelVolumes labels;
    const size_t total = static_cast<size_t>(v.slices) * v.rows * v.columns;
    StageSeconds stages;
    std::vector<std::map<std::string, std::vector<float>>> prompts(static_cast<size_t>(v.slices));  // slice -> group -> [SEG] prompt
    for (int z0 = 0; z0 < v.slices; z0 += m_batch) {
        int z1 = std::min(v.slices, z0 + m_batch);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<float> images = preprocess(m, v, z0, z1);
        out.seconds_preprocess += seconds_since(t0);
        auto answers = m_model.run_prompts(images, z1 - z0, queries, &stages);
        if (!answers) return answers.error();
        auto t1 = std::chrono::steady_clock::now();
        for (size_t q = 0; q < queries.size(); ++q)
            for (int b = 0; b < z1 - z0; ++b) {
                const SliceAnswer& a = answers.value()[q][static_cast<size_t>(b)];
                if (q == 0) out.slice_texts.push_back(a.text);
                for (size_t i = 0; i < a.masks.size(); ++i) {  // a referring answer's [SEG] is the label asked for
                    const std::string group = q == 0 ? group_of(a.masks[i].first) : kAsked + group_of(swept[q - 1]);
                    auto& vol = labels.prob[group];
                    if (vol.empty()) vol.assign(total, 0);
                    paste_mask(a.masks[i].second, m.mask_size, v, z0 + b, vol);
                    if (i < a.prompts.size()) prompts[static_cast<size_t>(z0 + b)].emplace(group, a.prompts[i]);
                }
            }
        stages.mask += seconds_since(t1);
    }
    if (auto done = propagate(m_model, v, std::move(prompts), m_batch, labels, stages); !done) return done.error();
    out.segments.assign(total, 0);
    const auto threshold = static_cast<std::uint8_t>(std::lround(m.mask_threshold * 255));
    // One lesion map over every label (max): a lesion whose slices the model named differently stays
    // one component; it takes the label with the most probability mass inside it, from the
    // recognition answers where they have any, else from the referring sweep.
    std::vector<std::uint8_t> lesion(total, 0);
    for (const auto& [group, prob] : labels.prob)
        for (size_t i = 0; i < total; ++i) lesion[i] = std::max(lesion[i], prob[i]);
    constexpr size_t kMaxListed = 100;  // candidates not reported, listed with their reason
    size_t unlisted = 0;
    if (!labels.prob.empty()) {
        for (auto& c : components(lesion, v, threshold)) {
            std::array<std::pair<std::string, double>, 2> top;  // [asked?]: best group and its mass
            std::array<double, 2> all{};
            for (const auto& [name, prob] : labels.prob) {
                double mass = 0;
                for (size_t i : c.voxels) mass += prob[i];
                const bool from_sweep = name.rfind(kAsked, 0) == 0;
                all[from_sweep] += mass;
                if (mass > top[from_sweep].second) top[from_sweep] = {from_sweep ? name.substr(kAsked.size()) : name, mass};
            }
            const bool asked = top[0].second == 0;  // no recognition answer covers it
            const std::string& group = top[asked].first;
            core::Finding f = measure(c, v, lesion);
            const int span = f.last_slice - f.first_slice + 1;
            auto reject = [&](const std::string& why) {  // the first kMaxListed, then a count
                if (out.rejected.size() < kMaxListed)
                    out.rejected.push_back(fmt::format("{} {:.0f} mm, slices {}-{}: {}", group, f.diameter_mm,
                                                       f.first_slice + 1, f.last_slice + 1, why));
                else
                    ++unlisted;
            };
            if (span < m.min_slices || out.findings.size() >= 255) {
                reject(span < m.min_slices ? fmt::format("on {} slice(s)", span) : "255 findings already (the SEG's limit)");
                continue;
            }
            f.label = group == "lung" ? (f.diameter_mm >= m.lung_tumor_min_diameter_mm ? "lung tumor" : "lung nodule")
                                       : group;
            f.grounding = fmt::format("{}: {} ({:.0f}% of the {} mask probability)", asked ? "asked" : "recognized", group,
                                      100 * top[asked].second / std::max(all[asked], 1.0), asked ? "referring sweep's" : "recognition answers'");
            // On CT a lesion must differ from the tissue around it. One that does not gets a second
            // look when its class has a host organ: against that organ alone, by min_host_contrast_hu (below).
            std::string faint;
            if (v.modality == "CT" && m.min_contrast_hu > 0) {
                const double hu = contrast(v, c, lesion, threshold);
                const std::string said = fmt::format("{:+.0f} HU to the tissue around it", hu);
                if (std::abs(hu) >= m.min_contrast_hu) {
                    f.grounding += "; " + said;
                } else if (m.host_organs.count(f.label) && m.min_host_contrast_hu > 0) {
                    faint = said;
                } else {
                    reject(said);
                    continue;
                }
            }
            if (group == "lung")
                f.grounding += fmt::format("; longest diameter {:.1f} mm {} {:.0f} mm -> {}", f.diameter_mm,
                                           f.label == "lung tumor" ? ">=" : "<", m.lung_tumor_min_diameter_mm, f.label);
            const std::vector<size_t> pixels = slice_pixels(v, c.voxels, f.key_slice);
            const std::vector<float> key_image = preprocess(m, v, f.key_slice, f.key_slice + 1);
            if (m.host_organs.count(f.label)) {  // the name grounded in the organ around the lesion
                auto named = host_label(m_model, v, key_image, pixels, f.label, stages);
                if (!named) return named.error();
                f.label = named->label;
                f.grounding += "; " + named->evidence;
                if (!faint.empty()) {  // the second look: against the host organ's ring pixels
                    const size_t organ = named->organ_ring.size();
                    if (organ < 20 || 2 * organ < named->ring_size) {  // not inside its organ
                        reject(fmt::format("{}; named {}, {} of {} ring pixels in the {}: not inside it", faint, f.label,
                                           organ, named->ring_size, m.host_organs.at(f.label)));
                        continue;
                    }
                    const double hu = slice_contrast(v, f.key_slice, pixels, named->organ_ring);
                    const std::string said = fmt::format("{}, {:+.0f} HU to the {} around it", faint, hu, m.host_organs.at(f.label));
                    if (std::abs(hu) < m.min_host_contrast_hu) {
                        reject(said);
                        continue;
                    }
                    f.grounding += "; " + said;
                }
            }
            if (auto min = m.min_diameter_mm.find(f.label); min != m.min_diameter_mm.end() &&
                (f.diameter_mm < min->second || span < std::max(1, static_cast<int>(min->second / v.slice_spacing)))) {
                reject(fmt::format("named {}, smaller than {:.1f} mm in-plane or along z", f.label, min->second));
                continue;  // smaller than the smallest lesion of that class the model reports
            }
            std::string text;
            if (m.prompts.count("description")) {  // region-aware description of the boxed key slice
                auto described = describe(m_model, v, key_image, pixels, f.label, stages);
                if (!described) return described.error();
                text = described.value();
            }
            f.series_uid = v.series_uid;
            f.segment = static_cast<int>(out.findings.size()) + 1;
            for (size_t i : c.voxels) out.segments[i] = static_cast<std::uint8_t>(f.segment);
            if (text.empty() || text == "No findings") {  // bundles without the task: measured wording
                std::string site = site_of(f.label, f);
                text = contrast_word(v, f, out.segments, v.modality == "CT") + " lesion" + (site.empty() ? "" : " in the " + site);
            }
            std::string label = f.label;
            label[0] = static_cast<char>(::toupper(label[0]));
            f.description = fmt::format("{}: {}, {:.0f} mm (volume {:.1f} mL), slices {}-{}.", label, text, f.diameter_mm,
                                        f.volume_ml, f.first_slice + 1, f.last_slice + 1);
            out.findings.push_back(f);
        }
    }
    if (unlisted) out.rejected.push_back(fmt::format("{} more candidates not listed", unlisted));
    out.seconds_vision = stages.vision;
    out.seconds_decode = stages.decode;
    out.seconds_mask = stages.mask;
    std::stable_sort(out.findings.begin(), out.findings.end(),
                     [](const core::Finding& a, const core::Finding& b) { return a.volume_ml > b.volume_ml; });
    return out;
}

core::StudyReport compose_report(const std::vector<core::SeriesAnalysis>& series, const std::string& region,
                                 const Manifest& manifest) {
    core::StudyReport r;
    std::vector<const core::Finding*> all;
    for (const auto& s : series)
        for (const auto& f : s.findings) all.push_back(&f);
    std::string where = region.empty() ? "examined region" : region;
    std::transform(where.begin(), where.end(), where.begin(), ::tolower);
    if (all.empty()) {
        r.findings = "No findings in the examined " + where + ".";
        r.impression = "No findings.";
    } else {
        for (const auto* f : all) r.findings += (r.findings.empty() ? "" : "\n") + f->description;
        r.impression = fmt::format("{} lesion{}: ", all.size(), all.size() > 1 ? "s" : "");
        for (size_t i = 0; i < all.size(); ++i)
            r.impression += fmt::format("{}{} {:.0f} mm", i ? "; " : "", all[i]->label, all[i]->diameter_mm);
        r.impression += ".";
    }
    if (manifest.demonstration_only)
        r.impression += " Automated result of the demonstration model " + manifest.name + " " + manifest.version +
                        " (synthetic training data); not for clinical use.";
    return r;
}

}  // namespace triage::pipeline
