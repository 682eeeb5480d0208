#include "pipeline/analyzer.h"

#include "core/log.h"
#include "pipeline/lesions.h"
#include "pipeline/region.h"

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

/// Pastes one mask (logits, mask_size^2) onto slice z of `dst` (max), as probabilities 0..255 on
/// the native grid; returns that slice's plane of this mask alone.
std::vector<std::uint8_t> paste_mask(const std::vector<float>& logits, int mask_size, const core::Volume& v, int z,
                                     std::vector<std::uint8_t>& dst) {
    torch::Tensor t = torch::from_blob(const_cast<float*>(logits.data()), {1, 1, mask_size, mask_size}, torch::kFloat32);
    torch::Tensor up = torch::sigmoid(torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{v.rows, v.columns})
               .mode(torch::kBilinear).align_corners(false)));
    torch::Tensor q = (up * 255.0f).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    const std::uint8_t* p = q.data_ptr<std::uint8_t>();
    const size_t n = static_cast<size_t>(v.rows) * v.columns;
    std::uint8_t* out = dst.data() + static_cast<size_t>(z) * n;
    for (size_t i = 0; i < n; ++i) out[i] = std::max(out[i], p[i]);
    return std::vector<std::uint8_t>(p, p + n);
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
/// slices a large lesion skips in the per-slice answers, which otherwise split or lose it. Only the
/// groups in `carried` (those the series' region allows); past `deadline` it stops and sets `stopped`.
core::Status propagate(const Model& model, const core::Volume& v, std::vector<std::map<std::string, std::vector<float>>> prompts,
                       int batch, LabelVolumes& labels, StageSeconds& stages, std::chrono::steady_clock::time_point deadline,
                       const std::set<std::string>& carried, bool& stopped) {
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
                if (!carried.count(group) || prompts[static_cast<size_t>(z)].count(group) || tried.count({z, group})) continue;
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
            if (std::chrono::steady_clock::now() > deadline) {
                stopped = true;
                return {};
            }
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

/// Host organ probability planes (0..255, native grid) on one key slice: label -> plane of its
/// organ (absent: the model segmented nothing).
using OrganPlanes = std::map<std::string, std::vector<std::uint8_t>>;

/// The host organs of every listed key slice, on one image encoding per slice and batch (every
/// organ's referring prompt through Model::run_prompts): computed once, shared by all candidates.
core::Status organ_planes(const Model& model, const core::Volume& v, const std::vector<int>& slices, int batch,
                          std::map<int, OrganPlanes>& out, StageSeconds& stages) {
    const Manifest& m = model.manifest();
    std::vector<std::string> prompts;
    for (const auto& host : m.host_organs)
        prompts.push_back(fill(fill(m.prompts.at("referring").front(), "{label}", host.second), "{modality}", v.modality));
    std::vector<std::uint8_t> scratch(static_cast<size_t>(v.rows) * v.columns);
    for (size_t s0 = 0; s0 < slices.size(); s0 += static_cast<size_t>(batch)) {
        const std::vector<int> chunk(slices.begin() + static_cast<long>(s0),
                                     slices.begin() + static_cast<long>(std::min(slices.size(), s0 + static_cast<size_t>(batch))));
        auto answers = model.run_prompts(preprocess(m, v, chunk), static_cast<int>(chunk.size()), prompts, &stages, {v.rows, v.columns});
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
/// recognized name stays.
struct Naming {
    std::string label, evidence;  // evidence: the organ probabilities, for the audit trail
    std::vector<size_t> organ_ring;  // ring pixels inside the organ of `label` (none: no organ around it)
    size_t ring_size = 0;
};
constexpr double kMinOrganMm2 = 50;

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
    if (best_label == label && best == m.host_min_coverage)
        return Naming{label, fmt::format("{} (none above {:.2f}: name kept){}", evidence, m.host_min_coverage, absent), {}, ring.size()};
    if (best_label != label && best - covered[label] < m.host_min_lead)
        return Naming{label,
                      fmt::format("{} ({} ahead by {:.2f} < {:.2f}: name kept){}", evidence, m.host_organs.at(best_label),
                                  best - covered[label], m.host_min_lead, absent),
                      covered[label] >= m.host_min_coverage ? organ_ring[label] : std::vector<size_t>{}, ring.size()};
    return Naming{best_label, evidence + " -> " + best_label + absent, organ_ring[best_label], ring.size()};
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

/// One series' analysis in steps (Analyzer::analyze): the per-run state.
struct Run {
    const Model& model;
    const Manifest& m;
    const core::Volume& v;
    const AnalysisLimits& limits;
    int batch;
    SeriesRegion region;
    core::SeriesAnalysis out;
    StageSeconds stages;
    LabelVolumes labels;  // group -> probability volume: answers and propagation (the lesion map)
    // What the model answered itself (recognition, referring sweep), never what propagation
    // carried: the evidence a lesion's name is decided from. Sparse: voxel -> probability.
    struct Evidence {
        std::string label;  // exact label ("lung nodule"); for the sweep the group asked for
        bool asked = false;
        std::vector<std::pair<size_t, std::uint8_t>> voxels;
    };
    std::vector<Evidence> evidence;
    std::vector<std::map<std::string, std::vector<float>>> prompts;  // slice -> group -> [SEG] prompt
    size_t unlisted = 0;
    bool past_deadline() const { return std::chrono::steady_clock::now() > limits.deadline; }
    void stop(const std::string& where) {
        if (out.time_budget_exceeded) return;
        out.time_budget_exceeded = true;
        out.warnings.push_back(fmt::format("{}analysis stopped after {:.0f} s {}; the findings are what it had by then", core::kTimeBudget,
                                           limits.time_budget_seconds, where));
    }
};

/// Candidate lesion: one component, measured and named, on its way through the gates.
struct Candidate {
    size_t component = 0;
    core::Finding f;
    std::string group;       // the name before host-organ grounding ("lung" for both lung classes)
    bool asked = false;      // named by the referring sweep (no recognition answer covers it)
    bool is_truncated = false;
    std::string faint;       // CT: isodense to its ring; awaits the host-organ second look
    double rank = 0;
};

void reject(Run& r, const Candidate& c, const Verdict& why) {
    constexpr size_t kMaxListed = 100;  // candidates not reported, listed with their reason; then a count
    if (r.out.rejected.size() >= kMaxListed) {
        ++r.unlisted;
        return;
    }
    r.out.rejected.push_back(fmt::format("{} {:.0f} mm, slices {}-{}: {}: {}", c.f.label.empty() ? c.group : c.f.label,
                                         c.f.diameter_mm, c.f.first_slice + 1, c.f.last_slice + 1, reject_name(why.reason), why.why));
}

/// Step 1: every slice asked the recognition prompt (and the region's referring sweep) in batches,
/// until the deadline.
core::Status answer_slices(Run& r) {
    const Manifest& m = r.m;
    const core::Volume& v = r.v;
    std::vector<std::string> queries{fill(m.prompts.at("recognition").front(), "{modality}", v.modality)};
    std::vector<std::string> swept;
    if (auto sweep = m.referring_sweep.find(body_region(m, v)); sweep != m.referring_sweep.end())
        for (const auto& label : sweep->second)
            if (!gate_region(label, r.region))  // not asked where it cannot be reported (a head CT)
                swept.push_back(label), queries.push_back(fill(fill(m.prompts.at("referring").front(), "{label}", label), "{modality}", v.modality));
    const size_t total = static_cast<size_t>(v.slices) * v.rows * v.columns, plane = static_cast<size_t>(v.rows) * v.columns;
    const auto threshold = static_cast<std::uint8_t>(std::lround(m.mask_threshold * 255));
    r.prompts.assign(static_cast<size_t>(v.slices), {});
    for (int z0 = 0; z0 < v.slices; z0 += r.batch) {
        if (r.past_deadline()) {
            r.stop(fmt::format("on slices 1-{} of {}", z0, v.slices));
            break;
        }
        const int z1 = std::min(v.slices, z0 + r.batch);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<float> images = preprocess(m, v, z0, z1);
        r.out.seconds_preprocess += seconds_since(t0);
        auto answers = r.model.run_prompts(images, z1 - z0, queries, &r.stages, {v.rows, v.columns});
        if (!answers) return answers.error();
        auto t1 = std::chrono::steady_clock::now();
        for (size_t q = 0; q < queries.size(); ++q)
            for (int b = 0; b < z1 - z0; ++b) {
                const SliceAnswer& a = answers.value()[q][static_cast<size_t>(b)];
                if (q == 0) r.out.slice_texts.push_back(a.text);
                for (size_t i = 0; i < a.masks.size(); ++i) {  // a referring answer's [SEG] is the label asked for
                    const std::string label = q == 0 ? a.masks[i].first : group_of(swept[q - 1]);
                    const std::string group = q == 0 ? group_of(label) : kAsked + label;
                    auto& vol = r.labels.prob[group];
                    if (vol.empty()) vol.assign(total, 0);
                    const auto mask = paste_mask(a.masks[i].second, m.mask_size, v, z0 + b, vol);
                    Run::Evidence e{label, q != 0, {}};
                    for (size_t p = 0; p < plane; ++p)
                        if (mask[p] > threshold) e.voxels.emplace_back(static_cast<size_t>(z0 + b) * plane + p, mask[p]);
                    if (!e.voxels.empty()) r.evidence.push_back(std::move(e));
                    if (i < a.prompts.size()) r.prompts[static_cast<size_t>(z0 + b)].emplace(group, a.prompts[i]);
                }
            }
        r.stages.mask += seconds_since(t1);
    }
    return {};
}

/// Step 3: the name a component's evidence gives: the group with the most recognized probability
/// mass (lung: the recognized lung class with the most), else the sweep's; propagated masks never
/// vote. `mass` is the evidence inside this component per [asked][label].
void name_from_evidence(Candidate& c, const std::array<std::map<std::string, double>, 2>& mass,
                        const std::map<std::string, double>& all_groups, const Manifest& m, const core::Volume& v) {
    c.asked = mass[0].empty() && !mass[1].empty();
    std::map<std::string, double> groups;
    double total = 0, lung_tumor = 0, lung_nodule = 0;
    for (const auto& [label, w] : mass[c.asked]) {
        groups[group_of(label)] += w, total += w;
        if (label == "lung tumor") lung_tumor += w;
        if (label == "lung nodule") lung_nodule += w;
    }
    const bool from_evidence = !groups.empty();
    if (!from_evidence) groups = all_groups;  // only propagated masks (cannot happen with a threshold of their own)
    auto best = std::max_element(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    c.group = best->first.rfind(kAsked, 0) == 0 ? best->first.substr(kAsked.size()) : best->first;
    c.f.grounding = fmt::format("{}: {} ({:.0f}% of the {} mask probability)", c.asked ? "asked" : "recognized", c.group,
                                100 * best->second / std::max(from_evidence ? total : best->second, 1.0),
                                c.asked ? "referring sweep's" : "recognition answers'");
    if (c.group != "lung") {
        c.f.label = c.group;
        return;
    }
    const bool measured_tumor = c.f.diameter_mm >= m.lung_tumor_min_diameter_mm;
    c.f.label = measured_tumor ? "lung tumor" : "lung nodule";
    c.f.grounding += fmt::format("; longest diameter {:.1f} mm {} {:.0f} mm -> {}", c.f.diameter_mm, measured_tumor ? ">=" : "<",
                                 m.lung_tumor_min_diameter_mm, c.f.label);
    if (c.is_truncated && !measured_tumor && lung_tumor > lung_nodule) {  // cut by the volume: a lower bound
        c.f.label = "lung tumor";
        c.f.grounding += fmt::format("; truncated at slice {}: the diameter is a lower bound, recognized lung tumor kept",
                                     c.f.first_slice == 0 ? 1 : v.slices);
    } else if (c.is_truncated) {
        c.f.grounding += "; truncated by the volume's first or last slice";
    }
}

/// Step 3: the components of the lesion map, measured, named from the evidence, through the gates
/// that need no model (slices, region, shape, confidence, contrast; min diameter when the name is
/// final). Returns the candidates that pass, with the lesion map and its components.
std::vector<Candidate> candidates(Run& r, const SeriesRegion& region, const BodyMap& body, std::vector<std::uint8_t>& lesion,
                                  std::vector<Component>& comps) {
    const Manifest& m = r.m;
    const core::Volume& v = r.v;
    const size_t total = static_cast<size_t>(v.slices) * v.rows * v.columns;
    const auto threshold = static_cast<std::uint8_t>(std::lround(m.mask_threshold * 255));
    // One lesion map over every label (max): a lesion whose slices the model named differently stays one component.
    lesion.assign(total, 0);
    for (const auto& [group, prob] : r.labels.prob)
        for (size_t i = 0; i < total; ++i) lesion[i] = std::max(lesion[i], prob[i]);
    comps = components(lesion, v, threshold);
    std::vector<std::uint16_t> id(total, 0);  // component + 1 (the first 65535; the rest are named by mass)
    for (size_t k = 0; k < comps.size() && k < 65535; ++k)
        for (size_t i : comps[k].voxels) id[i] = static_cast<std::uint16_t>(k + 1);
    std::vector<std::array<std::map<std::string, double>, 2>> mass(comps.size());
    for (const auto& e : r.evidence)
        for (const auto& [i, p] : e.voxels)
            if (id[i]) mass[id[i] - 1][e.asked][e.label] += p;
    if (m.domain.max_candidates > 0 && static_cast<int>(comps.size()) > m.domain.max_candidates && !r.out.outside_domain) {
        r.out.outside_domain = true;
        r.out.warnings.push_back(fmt::format("{}{} lesion candidates, more than the {} of the validated domain ({})", core::kOutsideDomain,
                                             comps.size(), m.domain.max_candidates, m.domain.description));
    }
    std::vector<Candidate> pass;
    for (size_t k = 0; k < comps.size(); ++k) {
        Candidate c{k, measure(comps[k], v, lesion), "", false, false, "", 0};
        c.is_truncated = truncated(c.f, v);
        std::map<std::string, double> all_groups;
        if (mass[k][0].empty() && mass[k][1].empty())
            for (const auto& [group, prob] : r.labels.prob)
                for (size_t i : comps[k].voxels) all_groups[group] += prob[i];
        name_from_evidence(c, mass[k], all_groups, m, v);
        c.rank = rank_score(c.f);
        Gate g = gate_slices(c.f.last_slice - c.f.first_slice + 1, m.min_slices);
        if (!g) g = gate_region(c.f.label, region);
        if (!g) g = gate_shape(c.f, comps[k], v, body);
        if (!g) g = gate_confidence(c.f.confidence, m.min_confidence);
        if (!g && v.modality == "CT" && m.min_contrast_hu > 0) {
            const double hu = contrast(v, comps[k], lesion, threshold);
            g = gate_contrast(hu, m.min_contrast_hu, "tissue");
            if (!g) {
                c.f.grounding += fmt::format("; {:+.0f} HU to the tissue around it", hu);
            } else if (m.host_organs.count(c.f.label) && m.min_host_contrast_hu > 0) {
                c.faint = g->why;  // a second look against the host organ (examine)
                g.reset();
            }
        }
        if (!g && !m.host_organs.count(c.f.label))
            if (auto min = m.min_diameter_mm.find(c.f.label); min != m.min_diameter_mm.end())
                g = gate_min_diameter(c.f, min->second, v.slice_spacing);
        if (g) {
            reject(r, c, *g);
        } else {
            pass.push_back(std::move(c));
        }
    }
    return pass;
}

/// Step 4: the ranked, capped candidates get the model-based checks: host-organ naming (organ maps
/// once per key slice) and the second look for faint ones; then their min diameter.
core::Result<std::vector<Candidate>> examine(Run& r, std::vector<Candidate> pass, const std::vector<Component>& comps) {
    const Manifest& m = r.m;
    const core::Volume& v = r.v;
    std::stable_sort(pass.begin(), pass.end(), [](const Candidate& a, const Candidate& b) { return a.rank > b.rank; });
    const size_t cap = r.limits.max_checked_candidates > 0 ? static_cast<size_t>(r.limits.max_checked_candidates) : pass.size();
    for (size_t k = cap; k < pass.size(); ++k)
        reject(r, pass[k], {Reject::OverStudyLimit, fmt::format("not examined: ranked {} of {} (max_checked_candidates {})", k + 1,
                                                               pass.size(), cap)});
    if (pass.size() > cap) pass.resize(cap);
    std::set<int> keys;
    for (const auto& c : pass)
        if (m.host_organs.count(c.f.label)) keys.insert(c.f.key_slice);
    std::map<int, OrganPlanes> organs;
    if (!keys.empty() && r.past_deadline()) r.stop("before the host-organ checks");
    if (!keys.empty() && !r.out.time_budget_exceeded)
        if (auto st = organ_planes(r.model, v, std::vector<int>(keys.begin(), keys.end()), r.batch, organs, r.stages); !st)
            return st.error();
    std::vector<Candidate> kept;
    for (auto& c : pass) {
        if (m.host_organs.count(c.f.label)) {
            if (r.out.time_budget_exceeded) {
                reject(r, c, {Reject::TimeBudget, "the time budget ran out before its host-organ check"});
                continue;
            }
            const std::vector<size_t> pixels = slice_pixels(v, comps[c.component].voxels, c.f.key_slice);
            const Naming named = host_label(m, v, organs[c.f.key_slice], pixels, c.f.label);
            c.f.label = named.label;
            c.f.grounding += "; " + named.evidence;
            if (!c.faint.empty()) {  // the second look: against the host organ's ring pixels
                const size_t organ = named.organ_ring.size();
                if (organ < 20 || 2 * organ < named.ring_size) {  // not inside its organ
                    reject(r, c, {Reject::Isodense, fmt::format("{}; named {}, {} of {} ring pixels in the {}: not inside it", c.faint,
                                                                c.f.label, organ, named.ring_size, m.host_organs.at(c.f.label))});
                    continue;
                }
                const double hu = slice_contrast(v, c.f.key_slice, pixels, named.organ_ring);
                if (auto g = gate_contrast(hu, m.min_host_contrast_hu, m.host_organs.at(c.f.label))) {
                    reject(r, c, {Reject::Isodense, c.faint + ", " + g->why});
                    continue;
                }
                c.f.grounding += fmt::format("; {}, {:+.0f} HU to the {} around it", c.faint, hu,
                                             m.host_organs.at(c.f.label));
            }
            if (auto min = m.min_diameter_mm.find(c.f.label); min != m.min_diameter_mm.end())
                if (auto g = gate_min_diameter(c.f, min->second, v.slice_spacing)) {
                    reject(r, c, *g);
                    continue;
                }
        }
        kept.push_back(std::move(c));
    }
    return kept;
}

/// Step 5: the limits per label and per study (ranked: the lowest go to not_reported), then each
/// finding's description (the model's, on its boxed key slice, while the budget lasts) and segment.
core::Status report(Run& r, std::vector<Candidate> kept, const std::vector<Component>& comps) {
    const Manifest& m = r.m;
    const core::Volume& v = r.v;
    std::stable_sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) { return a.rank > b.rank; });
    std::map<std::string, int> per_label;
    r.out.segments.assign(static_cast<size_t>(v.slices) * v.rows * v.columns, 0);
    for (auto& c : kept) {
        core::Finding& f = c.f;
        const int n = static_cast<int>(r.out.findings.size());
        if (r.limits.max_findings_per_label >= 0 && per_label[f.label] >= r.limits.max_findings_per_label) {
            reject(r, c, {Reject::OverLabelLimit, fmt::format("{} {} findings already (max_findings_per_label)", per_label[f.label], f.label)});
            continue;
        }
        if (r.limits.max_findings_per_study >= 0 && n >= r.limits.max_findings_per_study) {
            reject(r, c, {Reject::OverStudyLimit, fmt::format("{} findings already (max_findings_per_study)", n)});
            continue;
        }
        if (n >= 255) {
            reject(r, c, {Reject::SegLimit, "255 findings already (the SEG's limit)"});
            continue;
        }
        ++per_label[f.label];
        const std::vector<size_t> pixels = slice_pixels(v, comps[c.component].voxels, f.key_slice);
        std::string text;
        if (m.prompts.count("description") && !r.past_deadline()) {  // region-aware description of the boxed key slice
            auto described = describe(r.model, v, preprocess(m, v, f.key_slice, f.key_slice + 1), pixels, f.label, r.stages);
            if (!described) return described.error();
            text = described.value();
        }
        f.series_uid = v.series_uid;
        f.segment = n + 1;
        for (size_t i : comps[c.component].voxels) r.out.segments[i] = static_cast<std::uint8_t>(f.segment);
        if (text.empty() || text == "No findings") {  // bundles without the task, or out of time: measured wording
            std::string site = site_of(f.label, f);
            text = contrast_word(v, f, r.out.segments, v.modality == "CT") + " lesion" + (site.empty() ? "" : " in the " + site);
        }
        std::string label = f.label;
        label[0] = static_cast<char>(::toupper(label[0]));
        f.description = fmt::format("{}: {}, {:.0f} mm (volume {:.1f} mL), slices {}-{}{}.", label, text, f.diameter_mm,
                                    f.volume_ml, f.first_slice + 1, f.last_slice + 1,
                                    c.is_truncated ? ", cut off by the volume (size a lower bound)" : "");
        r.out.findings.push_back(f);
    }
    return {};
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
            if (v.modality != "CT" && m.chat)  // format 2 takes RGB images: z-scores mapped to [0, 1]
                y = (y - m.chat->mr_range.first) / (m.chat->mr_range.second - m.chat->mr_range.first);
            native.push_back(static_cast<float>(v.modality == "CT" || m.chat ? std::clamp(y, 0.0, 1.0) : y));
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

core::Result<core::SeriesAnalysis> Analyzer::analyze(const core::Volume& v, const AnalysisLimits& limits) const {
    const BodyMap body = body_map(v);
    Run r{m_model, m_model.manifest(), v, limits, m_batch, series_region(v, body), {}, {}, {}, {}, {}, 0};
    const SeriesRegion& region = r.region;
    r.out.series_uid = v.series_uid;
    if (auto why = outside_domain(r.m.domain, v, texture_ratio(v, body))) {
        r.out.outside_domain = true;
        r.out.warnings.push_back(std::string(core::kOutsideDomain) + *why);
    }
    std::vector<std::pair<const char*, double>> steps;  // seconds per step, logged at the end
    auto lap = [&steps, t = std::chrono::steady_clock::now()](const char* name) mutable {
        steps.emplace_back(name, seconds_since(t));
        t = std::chrono::steady_clock::now();
    };
    lap("body");
    if (auto st = answer_slices(r); !st) return st.error();
    lap("answers");
    bool stopped = false;
    if (!r.out.time_budget_exceeded) {
        std::set<std::string> carried;  // groups that can be reported here: prompts of other regions are not carried
        for (const auto& entry : r.labels.prob) {
            const std::string& g = entry.first;
            const std::string label = g.rfind(kAsked, 0) == 0 ? g.substr(kAsked.size()) : g;
            if (!gate_region(label == "lung" ? "lung nodule" : label, region)) carried.insert(g);
        }
        if (auto st = propagate(m_model, v, std::move(r.prompts), m_batch, r.labels, r.stages, limits.deadline, carried, stopped); !st)
            return st.error();
        if (stopped) r.stop("while carrying prompts to neighbouring slices");
    }
    lap("propagation");
    r.out.segments.assign(static_cast<size_t>(v.slices) * v.rows * v.columns, 0);
    if (!r.labels.prob.empty()) {
        std::vector<std::uint8_t> lesion;
        std::vector<Component> comps;
        std::vector<Candidate> pass = candidates(r, region, body, lesion, comps);
        r.labels.prob.clear();  // the lesion map holds what is still needed
        lap("candidates");
        auto kept = examine(r, std::move(pass), comps);
        if (!kept) return kept.error();
        lap("checks");
        if (auto st = report(r, std::move(kept.value()), comps); !st) return st.error();
        lap("report");
    }
    std::string timing;
    for (const auto& [name, sec] : steps) timing += fmt::format(" {} {:.1f}", name, sec);
    TRIAGE_LOG_INFO("pipeline", "series {}: {} slices, region {}, {} findings, {} not reported; seconds:{}", v.series_uid, v.slices,
                    region.text(), r.out.findings.size(), r.out.rejected.size(), timing);
    if (r.unlisted) r.out.rejected.push_back(fmt::format("{} more candidates not listed", r.unlisted));
    r.out.seconds_vision = r.stages.vision;
    r.out.seconds_decode = r.stages.decode;
    r.out.seconds_mask = r.stages.mask;
    std::stable_sort(r.out.findings.begin(), r.out.findings.end(),
                     [](const core::Finding& a, const core::Finding& b) { return a.volume_ml > b.volume_ml; });
    return std::move(r.out);
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
