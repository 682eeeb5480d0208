// The analyzer's model-facing helpers (pipeline/analyzer_model.h): masks onto the native grid,
// prompt propagation, host-organ maps and naming, region-aware descriptions, measured wording.
#include "pipeline/analyzer_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <iterator>
#include <limits>

#include "pipeline/analyzer.h"
#include "pipeline/lesions.h"

namespace triage::pipeline::detail {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}



/// One mask (logits, mask_size^2) as probabilities 0..255 on the native grid of one slice.
static std::vector<std::uint8_t> mask_plane(const std::vector<float>& logits, int mask_size, const core::Volume& v) {
    torch::Tensor t = torch::from_blob(const_cast<float*>(logits.data()), {1, 1, mask_size, mask_size}, torch::kFloat32);
    torch::Tensor up = torch::sigmoid(torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{v.rows, v.columns})
               .mode(torch::kBilinear).align_corners(false)));
    torch::Tensor q = (up * 255.0f).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    const std::uint8_t* p = q.data_ptr<std::uint8_t>();
    return std::vector<std::uint8_t>(p, p + static_cast<size_t>(v.rows) * v.columns);
}

/// Pastes a plane onto slice z of `dst` (max).
static void paste_plane(const std::vector<std::uint8_t>& plane, int z, std::vector<std::uint8_t>& dst) {
    std::uint8_t* out = dst.data() + static_cast<size_t>(z) * plane.size();
    for (size_t i = 0; i < plane.size(); ++i) out[i] = std::max(out[i], plane[i]);
}

std::vector<std::uint8_t> paste_mask(const std::vector<float>& logits, int mask_size, const core::Volume& v, int z,
                                     std::vector<std::uint8_t>& dst) {
    auto plane = mask_plane(logits, mask_size, v);
    paste_plane(plane, z, dst);
    return plane;
}

/// Whether a plane's mask (>= threshold) touches the mask of slice z in `volume`.
static bool touches(const std::vector<std::uint8_t>& plane, const std::vector<std::uint8_t>& volume, int z, std::uint8_t threshold) {
    const std::uint8_t* at = volume.data() + static_cast<size_t>(z) * plane.size();
    for (size_t i = 0; i < plane.size(); ++i)
        if (plane[i] >= threshold && at[i] >= threshold) return true;
    return false;
}

/// Lung nodule and lung tumor differ by 3D size, decided after assembly: one "lung" group.
std::string group_of(const std::string& label) { return label.rfind("lung", 0) == 0 ? "lung" : label; }

/// Masks from the referring sweep are kept apart from the recognition answers' (group "asked: X"):
/// the referring prompt is asked for each class in turn and segments a lesion of another class too,
/// so it finds lesions, and the recognition answers, where they have any, name them.


double reach_mm(const Manifest& m, const std::string& group) {
    const std::string g = group.rfind(kAsked, 0) == 0 ? group.substr(kAsked.size()) : group;
    double reach = 0;
    for (const auto& [label, max] : m.max_diameter_mm)
        if (group_of(label) == group_of(g)) reach = std::max(reach, max);
    return reach > 0 ? reach : std::numeric_limits<double>::infinity();
}

/// Carries each [SEG] prompt to the neighbouring slices where the language model did not name that
/// group (up to propagate_slices away, nearest first), as Sa2VA carries a prompt through video
/// frames: the mask decoder alone decides on each of those slices, and a mask that touches the mask
/// of the slice the prompt came from is kept and passes the prompt on, so a lesion is followed
/// through the slices it covers. A mask elsewhere on the slice is another structure, not the lesion
/// carried: dropped (on real scans such masks carried prompts through the whole volume). Fills the
/// slices a large lesion skips in the per-slice answers, which otherwise split or lose it. Only the
/// groups in `carried` (those the series' region allows); past `deadline` it stops and sets `stopped`.
/// A prompt is carried no farther beyond the slices the model named it on than the largest lesion of
/// its group reaches (model.json max_diameter_mm): a longer run is not a lesion of that class.
core::Status propagate(const Model& model, const core::Volume& v, std::vector<std::map<std::string, std::vector<float>>> prompts,
                       int batch, LabelVolumes& labels, StageSeconds& stages, FeatureCache& features,
                       std::chrono::steady_clock::time_point deadline,
                       const std::set<std::string>& carried, bool& stopped) {
    const Manifest& m = model.manifest();
    const float min_logit = static_cast<float>(std::log(m.mask_threshold / (1 - m.mask_threshold)));
    const auto threshold = static_cast<std::uint8_t>(std::lround(m.mask_threshold * 255));
    struct Task {
        int z, from;
        std::string group;
        std::vector<float> prompt;
    };
    std::vector<bool> source(static_cast<size_t>(v.slices));
    for (int z = 0; z < v.slices; ++z) source[static_cast<size_t>(z)] = !prompts[static_cast<size_t>(z)].empty();
    std::set<std::pair<int, std::string>> tried;
    std::map<std::pair<int, std::string>, double> run_mm;  // carried this far from a slice that named it
    const double step_mm = v.slice_spacing > 0 ? v.slice_spacing : 1.0;
    std::map<std::string, double> reach;
    for (const auto& group : carried) reach[group] = reach_mm(m, group);
    for (bool any = true; any;) {  // one wave: every slice next to a source slice
        std::vector<Task> tasks;
        for (int z = 0; z < v.slices; ++z)
            for (const auto& entry : labels.prob) {
                const std::string& group = entry.first;
                if (!carried.count(group) || prompts[static_cast<size_t>(z)].count(group) || tried.count({z, group})) continue;
                const std::vector<float>* found = nullptr;
                int from = -1;
                for (int d = 1; d <= m.propagate_slices && !found; ++d)
                    for (int j : {z - d, z + d})
                        if (!found && j >= 0 && j < v.slices && source[static_cast<size_t>(j)] &&
                            run_mm[{j, group}] + d * step_mm <= reach.at(group))
                            if (auto p = prompts[static_cast<size_t>(j)].find(group); p != prompts[static_cast<size_t>(j)].end())
                                found = &p->second, from = j;
                if (found) tasks.push_back({z, from, group, *found}), tried.insert({z, group});
            }
        std::fill(source.begin(), source.end(), false);
        any = false;
        // Tasks come in slice order; a batch holds up to `batch` slices, each encoded once for all its groups.
        for (size_t t0 = 0, t1 = 0; t0 < tasks.size(); t0 = t1) {
            if (std::chrono::steady_clock::now() > deadline) {
                stopped = true;
                return {};
            }
            std::vector<int> slices, image_of;
            std::vector<std::vector<float>> batch_prompts;
            for (t1 = t0; t1 < tasks.size(); ++t1) {
                if (slices.empty() || slices.back() != tasks[t1].z) {
                    if (slices.size() == static_cast<size_t>(batch)) break;
                    slices.push_back(tasks[t1].z);
                }
                image_of.push_back(static_cast<int>(slices.size()) - 1), batch_prompts.push_back(tasks[t1].prompt);
            }
            auto logits = model.segment(preprocess(m, v, slices), static_cast<int>(slices.size()), batch_prompts, &stages, image_of,
                                        &features, slices);
            if (!logits) return logits.error();
            for (size_t t = t0; t < t1; ++t) {
                const auto& mask = logits.value()[t - t0];
                auto& volume = labels.prob[tasks[t].group];
                auto plane = mask_plane(mask, m.mask_size, v);
                const bool found = *std::max_element(mask.begin(), mask.end()) > min_logit;
                if (found && !touches(plane, volume, tasks[t].from, threshold)) continue;
                paste_plane(plane, tasks[t].z, volume);
                if (found) {  // the lesion carried: it passes the prompt on
                    prompts[static_cast<size_t>(tasks[t].z)][tasks[t].group] = tasks[t].prompt;
                    run_mm[{tasks[t].z, tasks[t].group}] = run_mm[{tasks[t].from, tasks[t].group}] + std::abs(tasks[t].z - tasks[t].from) * step_mm;
                    source[static_cast<size_t>(tasks[t].z)] = any = true;
                }
            }
        }
    }
    return {};
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

/// Median of a lesion's pixels on one slice minus the median of other pixels of that slice.
double slice_contrast(const core::Volume& v, int z, const std::vector<size_t>& lesion, const std::vector<size_t>& around) {
    const size_t plane = static_cast<size_t>(z) * v.rows * v.columns;
    std::vector<float> inside, outside;
    for (size_t i : lesion) inside.push_back(v.voxels[plane + i]);
    for (size_t i : around) outside.push_back(v.voxels[plane + i]);
    return median_difference(std::move(inside), std::move(outside));
}


/// The host organs of every listed key slice, on one image encoding per slice and batch (every
/// organ's referring prompt through Model::run_prompts): computed once, shared by all candidates.
core::Status organ_planes(const Model& model, const core::Volume& v, const std::vector<int>& slices, int batch,
                          std::map<int, OrganPlanes>& out, StageSeconds& stages, FeatureCache& features) {
    const Manifest& m = model.manifest();
    std::vector<std::string> prompts;
    for (const auto& host : m.host_organs)
        prompts.push_back(fill(fill(m.prompts.at("referring").front(), "{label}", host.second), "{modality}", v.modality));
    std::vector<std::uint8_t> scratch(static_cast<size_t>(v.rows) * v.columns);
    for (size_t s0 = 0; s0 < slices.size(); s0 += static_cast<size_t>(batch)) {
        const std::vector<int> chunk(slices.begin() + static_cast<long>(s0),
                                     slices.begin() + static_cast<long>(std::min(slices.size(), s0 + static_cast<size_t>(batch))));
        auto answers = model.run_prompts(preprocess(m, v, chunk), static_cast<int>(chunk.size()), prompts, &stages, {v.rows, v.columns, {}},
                                         &features, chunk);
        if (!answers) return answers.error();
        auto host = m.host_organs.begin();
        for (size_t q = 0; q < prompts.size(); ++q, ++host)
            for (size_t k = 0; k < chunk.size(); ++k) {
                const SliceAnswer& a = answers.value()[q][k];
                OrganPlanes& planes = out[chunk[k]];
                if (a.masks.empty()) continue;
                std::fill(scratch.begin(), scratch.end(), 0);
                planes[host->first] = paste_mask(a.masks.front().second, m.mask_size, v, 0, scratch);
            }
    }
    return {};
}

/// Grounds a lesion's name in anatomy: the model segments each candidate host organ on the key
/// slice ("Please segment pancreas in this CT image ."), and the lesion takes the label of the
/// organ that surrounds it: the highest mean organ probability over a ring of host_ring_mm around
/// the lesion (the organ's tissue, not the lesion's own pixels, which hosts may or may not
/// include). An organ the model finds on less than kMinOrganMm2 of the slice is not in the image
/// and never names a lesion. Below host_min_coverage for every organ, or when the leading organ is
/// ahead of the recognized label's own organ by less than host_min_lead (a close call), the
/// recognized name stays, unless the recognized label's organ, found in the image, holds less than
/// kNotAroundCoverage of the ring: then the organ with the most of it renames the lesion (when it
/// holds kNotAroundCoverage more).

Naming host_label(const Manifest& m, const core::Volume& v, const OrganPlanes& planes, const std::vector<size_t>& pixels,
                  const std::string& label) {
    const int radius = std::max(1, static_cast<int>(std::lround(m.host_ring_mm / std::max(0.1, v.row_spacing))));
    const std::vector<size_t> ring = ring_around(v, pixels, radius);
    std::string best_label = label, evidence = fmt::format("host organ ring {:.0f} mm:", m.host_ring_mm), absent;
    double best = m.host_min_coverage;
    std::map<std::string, double> covered;                  // label -> mean organ probability over the ring
    std::map<std::string, std::vector<size_t>> organ_ring;  // label -> ring pixels inside its organ
    for (const auto& [host_label_text, organ] : m.host_organs) {
        auto plane = planes.find(host_label_text);
        if (plane == planes.end() || ring.empty()) continue;
        const auto& prob = plane->second;
        const double area = static_cast<double>(std::count_if(prob.begin(), prob.end(), [](std::uint8_t p) { return p > 127; }));
        if (area * v.row_spacing * v.column_spacing < kMinOrganMm2) {
            absent += (absent.empty() ? "; not in the image: " : ", ") + organ;
            continue;
        }
        double& c = covered[host_label_text];
        for (size_t i : ring) c += prob[i] / 255.0;
        c /= static_cast<double>(ring.size());
        evidence += fmt::format(" {} {:.2f}", organ, c);
        std::copy_if(ring.begin(), ring.end(), std::back_inserter(organ_ring[host_label_text]), [&](size_t i) { return prob[i] > 127; });
        if (c > best) best = c, best_label = host_label_text;
    }
    if (best_label == label && best == m.host_min_coverage) {
        // None is clearly around it; but a recognized organ that is in the image and not around the
        // lesion at all (a "liver tumor" with no liver in its ring) contradicts the name: not a close
        // call between two organs around it, so the organ with the most of the ring renames it.
        auto most = std::max_element(covered.begin(), covered.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
        if (covered.count(label) && covered[label] < kNotAroundCoverage && most != covered.end() && most->first != label &&
            most->second - covered[label] >= kNotAroundCoverage)
            return Naming{most->first,
                          fmt::format("{} (none above {:.2f}; no {} around it: {} ahead by {:.2f}) -> {}{}", evidence, m.host_min_coverage,
                                      m.host_organs.at(label), m.host_organs.at(most->first), most->second - covered[label],
                                      most->first, absent),
                          {}, ring.size(), covered};
        return Naming{label, fmt::format("{} (none above {:.2f}: name kept){}", evidence, m.host_min_coverage, absent), {}, ring.size(),
                      covered};
    }
    if (best_label != label && best - covered[label] < m.host_min_lead)
        return Naming{label,
                      fmt::format("{} ({} ahead by {:.2f} < {:.2f}: name kept){}", evidence, m.host_organs.at(best_label),
                                  best - covered[label], m.host_min_lead, absent),
                      covered[label] >= m.host_min_coverage ? organ_ring[label] : std::vector<size_t>{}, ring.size(), covered};
    return Naming{best_label, evidence + " -> " + best_label + absent, organ_ring[best_label], ring.size(), covered};
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
    SliceGeometry geometry{v.rows, v.columns, {}};
    if (m.chat) {  // format 2: the runtime draws the box green on the RGB input, as the published code does
        geometry.boxes.push_back({x0, y0, x1, y1});
    } else {
        const auto value = static_cast<float>(m.roi_box_value);
        for (int y = y0; y <= y1; ++y)
            for (int x = x0; x <= x1; ++x)
                if (y < y0 + width || y > y1 - width || x < x0 + width || x > x1 - width)
                    key_image[static_cast<size_t>(y) * s + x] = value;
    }
    auto answer = model.run(key_image, 1, fill(m.prompts.at("description").front(), "{label}", label), &stages, geometry);
    if (!answer) return answer.error();
    return answer.value().front().text;
}

}  // namespace triage::pipeline::detail
