#include "pipeline/analyzer.h"

#include "core/log.h"
#include "core/text.h"
#include "pipeline/analyzer_model.h"
#include "pipeline/density.h"
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

using core::ascii_upper;

using namespace detail;

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
    size_t components = 0, confident = 0;  // of the lesion map; lesion-shaped and confident (domain max_candidates)
    // Grounding features of the slices encoded so far: propagation and the host-organ maps revisit
    // them. Bounded: the mini model's 2 MB a slice keeps 256 slices, the released one's ~16 MB 32.
    FeatureCache features{kFeatureCacheBytes};
    static constexpr size_t kFeatureCacheBytes = size_t{512} << 20;
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
    bool diameter_whole = true;  // false: truncated through its widest section, the diameter a lower bound
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

/// The slices asked in step 1: every slice, or on slices thinner than the model's answer spacing
/// every k-th one and the last (propagation, which needs `propagate_slices` >= 1, covers the rest).
std::vector<int> answered_slices(const Manifest& m, const core::Volume& v) {
    int stride = 1;
    if (m.answer_spacing_mm > 0 && m.propagate_slices > 0 && v.slice_spacing > 0)
        stride = std::clamp(static_cast<int>(m.answer_spacing_mm / v.slice_spacing + 1e-6), 1, m.propagate_slices + 1);
    std::vector<int> zs;
    for (int z = 0; z < v.slices; z += stride) zs.push_back(z);
    if (!zs.empty() && zs.back() != v.slices - 1) zs.push_back(v.slices - 1);
    return zs;
}

/// Step 1: the answered slices asked the recognition prompt (and the region's referring sweep) in
/// batches, until the deadline.
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
    r.out.slice_texts.assign(static_cast<size_t>(v.slices), "");
    const std::vector<int> zs = answered_slices(m, v);
    if (zs.size() < static_cast<size_t>(v.slices))
        TRIAGE_LOG_INFO("pipeline", "series {}: {:.2f} mm slices: {} of {} slices asked ({} mm apart), propagation covers the rest",
                        v.series_uid, v.slice_spacing, zs.size(), v.slices, m.answer_spacing_mm);
    for (size_t k0 = 0; k0 < zs.size(); k0 += static_cast<size_t>(r.batch)) {
        if (r.past_deadline()) {
            r.stop(fmt::format("on slices 1-{} of {}", zs[k0], v.slices));
            break;
        }
        const std::vector<int> batch(zs.begin() + static_cast<long>(k0), zs.begin() + static_cast<long>(std::min(zs.size(), k0 + r.batch)));
        const int n = static_cast<int>(batch.size());
        auto t0 = std::chrono::steady_clock::now();
        std::vector<float> images = preprocess(m, v, batch);
        r.out.seconds_preprocess += seconds_since(t0);
        auto answers = r.model.run_prompts(images, n, queries, &r.stages, {v.rows, v.columns, {}}, &r.features, batch);
        if (!answers) return answers.error();
        auto t1 = std::chrono::steady_clock::now();
        for (size_t q = 0; q < queries.size(); ++q)
            for (int b = 0; b < n; ++b) {
                const int z = batch[static_cast<size_t>(b)];
                const SliceAnswer& a = answers.value()[q][static_cast<size_t>(b)];
                if (q == 0) r.out.slice_texts[static_cast<size_t>(z)] = a.text;
                for (size_t i = 0; i < a.masks.size(); ++i) {  // a referring answer's [SEG] is the label asked for
                    const std::string label = q == 0 ? a.masks[i].first : group_of(swept[q - 1]);
                    const std::string group = q == 0 ? group_of(label) : kAsked + label;
                    auto& vol = r.labels.prob[group];
                    if (vol.empty()) vol.assign(total, 0);
                    const auto mask = paste_mask(a.masks[i].second, m.mask_size, v, z, vol);
                    Run::Evidence e{label, q != 0, {}};
                    for (size_t p = 0; p < plane; ++p)
                        if (mask[p] > threshold) e.voxels.emplace_back(static_cast<size_t>(z) * plane + p, mask[p]);
                    if (!e.voxels.empty()) r.evidence.push_back(std::move(e));
                    if (i < a.prompts.size()) r.prompts[static_cast<size_t>(z)].emplace(group, a.prompts[i]);
                }
            }
        r.stages.mask += seconds_since(t1);
    }
    return {};
}

/// The size range of a named lesion's label (model.json min_diameter_mm, max_diameter_mm).
Gate gate_size(const Manifest& m, const core::Finding& f, const core::Volume& v) {
    if (auto min = m.min_diameter_mm.find(f.label); min != m.min_diameter_mm.end())
        if (auto g = gate_min_diameter(f, min->second, v.slice_spacing)) return g;
    if (auto max = m.max_diameter_mm.find(f.label); max != m.max_diameter_mm.end()) return gate_max_diameter(f, max->second, v.slice_spacing);
    return std::nullopt;
}

/// A lung lesion's class: its measured longest diameter against lung_tumor_min_diameter_mm, or
/// lung tumor when the volume cut it through its widest section, the answers said tumor and the cut
/// section could be a tumour's (cut_could_be).
void name_lung(Candidate& c, const Manifest& m, const core::Volume& v, bool answered_tumor) {
    const bool measured_tumor = c.f.diameter_mm >= m.lung_tumor_min_diameter_mm;
    c.f.label = measured_tumor ? "lung tumor" : "lung nodule";
    c.f.grounding += fmt::format("; longest diameter {:.1f} mm {} {:.0f} mm -> {}", c.f.diameter_mm, measured_tumor ? ">=" : "<",
                                 m.lung_tumor_min_diameter_mm, c.f.label);
    const bool cut_tumor = !c.diameter_whole && !measured_tumor && answered_tumor;  // cut by the volume: a lower bound
    const int cut_at = c.f.first_slice == 0 ? 1 : v.slices;
    if (cut_tumor && cut_could_be(c.f, v.slice_spacing, m.lung_tumor_min_diameter_mm)) {
        c.f.label = "lung tumor";
        c.f.grounding += fmt::format("; truncated at slice {}: the diameter is a lower bound, recognized lung tumor kept", cut_at);
    } else if (cut_tumor) {
        c.f.grounding += fmt::format("; truncated at slice {}, answered lung tumor, but too small a section on {} slices for "
                                     "the pole of a {:.0f} mm one",
                                     cut_at, c.f.last_slice - c.f.first_slice + 1, m.lung_tumor_min_diameter_mm);
    } else if (c.is_truncated) {
        c.f.grounding += c.diameter_whole ? "; truncated by the volume's first or last slice beyond its widest section"
                                          : "; truncated by the volume's first or last slice";
    }
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
    name_lung(c, m, v, lung_tumor > lung_nodule);
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
    std::vector<Candidate> pass;
    for (size_t k = 0; k < comps.size(); ++k) {
        Candidate c;
        c.component = k;
        c.f = measure(comps[k], v, lesion);
        c.is_truncated = truncated(c.f, v);
        c.diameter_whole = !c.is_truncated || widest_inside(comps[k], c.f, v);
        std::map<std::string, double> all_groups;
        if (mass[k][0].empty() && mass[k][1].empty())
            for (const auto& [group, prob] : r.labels.prob)
                for (size_t i : comps[k].voxels) all_groups[group] += prob[i];
        name_from_evidence(c, mass[k], all_groups, m, v);
        if (v.modality == "CT" && gate_region(c.f.label, region))
            if (auto why = lung_by_anatomy(c.f.label, region, lung_ring_share(v, comps[k], c.f.key_slice))) {
                c.f.grounding += "; " + *why;
                c.group = "lung";
                name_lung(c, m, v, false);
            }
        c.rank = rank_score(c.f);
        Gate g = gate_slices(c.f.last_slice - c.f.first_slice + 1, m.min_slices);
        if (!g) g = gate_region(c.f.label, region);
        if (!g) g = gate_shape(c.f, comps[k], v, body);
        if (!g && v.modality == "CT") g = gate_continues(v, comps[k], c.f);
        if (!g && v.modality == "CT" && c.group == "lung")
            g = gate_in_lung(lung_ring_share(v, comps[k], c.f.key_slice), midline_offset(v, comps[k], c.f.key_slice, body));
        if (!g) g = gate_confidence(c.f.confidence, m.min_confidence);
        if (!g) ++r.confident;
        if (!g && v.modality == "CT" && m.min_contrast_hu > 0) {
            const double hu = contrast(v, comps[k], lesion, threshold, c.group == "lung");
            g = gate_contrast(hu, m.min_contrast_hu, "tissue");
            if (!g) {
                c.f.grounding += fmt::format("; {:+.0f} HU to the tissue around it", hu);
            } else if (m.host_organs.count(c.f.label) && m.min_host_contrast_hu > 0) {
                c.faint = g->why;  // a second look against the host organ (examine)
                g.reset();
            }
        }
        if (!g && !m.host_organs.count(c.f.label)) g = gate_size(m, c.f, v);
        if (g) {
            reject(r, c, *g);
        } else {
            pass.push_back(std::move(c));
        }
    }
    r.components = comps.size();
    if (auto why = too_many_candidates(m.domain, r.confident, r.components); why && !r.out.outside_domain) {
        r.out.outside_domain = true;
        r.out.warnings.push_back(std::string(core::kOutsideDomain) + *why);
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
        if (auto st = organ_planes(r.model, v, std::vector<int>(keys.begin(), keys.end()), r.batch, organs, r.stages, r.features); !st)
            return st.error();
    std::vector<Candidate> kept;
    for (auto& c : pass) {
        if (m.host_organs.count(c.f.label)) {
            if (r.out.time_budget_exceeded && !c.faint.empty()) {  // isodense: only the organ could have vouched for it
                reject(r, c, {Reject::TimeBudget, c.faint + "; the time budget ran out before its host-organ check"});
                continue;
            }
            if (r.out.time_budget_exceeded) {  // what it has: the recognized name, without the host-organ check
                c.f.grounding += "; host-organ check skipped (time budget)";
                if (auto g = gate_size(m, c.f, v)) {
                    reject(r, c, *g);
                    continue;
                }
                kept.push_back(std::move(c));
                continue;
            }
            const std::vector<size_t> pixels = slice_pixels(v, comps[c.component].voxels, c.f.key_slice);
            const Naming named = host_label(m, v, organs[c.f.key_slice], pixels, c.f.label);
            c.f.label = named.label;
            c.f.grounding += "; " + named.evidence;
            // The image's own densities (bundles that declare them): a lesion as dense as its organ is
            // that organ; one in liver-density tissue, as much darker than it as a liver tumour, is one.
            const DensityNaming dense = density_naming(v, c.f.key_slice, pixels, c.f.label, organs[c.f.key_slice], m.host_density,
                                                       m.host_organs, m.density_share, m.density_tolerance_hu);
            if (!dense.evidence.empty()) c.f.grounding += "; " + dense.evidence;
            if (dense.reject) {
                reject(r, c, *dense.reject);
                continue;
            }
            // Named or confirmed by density: that organ's tissue holds density_share (to confirm: 0.85) of the
            // annulus and the contrast to it is a lesion's, so host_min_share by the maps does not apply; but a faint one
            // renamed so is isodense to its mixed ring at that organ's border, the border rule's case (no
            // second look).
            const bool renamed = dense.label != c.f.label;
            if (renamed && !c.faint.empty()) {
                reject(r, c, {Reject::Isodense, fmt::format("{}; {} by density alone", c.faint, dense.label)});
                continue;
            }
            c.f.label = dense.label;
            if (auto g = dense.by_density ? Gate{} : gate_host_share(named.covered, c.f.label, m.host_min_share, m.host_organs)) {
                reject(r, c, *g);
                continue;
            }
            if (!c.faint.empty()) {  // the second look: against the host organ's ring pixels
                const size_t organ = named.organ_ring.size();
                if (organ < 20 || 2 * organ < named.ring_size) {  // not inside its organ
                    reject(r, c, {Reject::Isodense, fmt::format("{}; named {}, {} of {} ring pixels in the {}: not inside it", c.faint,
                                                                c.f.label, organ, named.ring_size, m.host_organs.at(c.f.label))});
                    continue;
                }
                if (auto g = gate_border(named.covered, c.f.label, m.host_border_coverage, m.host_organs)) {
                    reject(r, c, {Reject::Isodense, c.faint + ", " + g->why});
                    continue;
                }
                const double hu = slice_contrast(v, c.f.key_slice, pixels, named.organ_ring);
                if (auto g = gate_contrast(hu, m.min_host_contrast_hu, m.host_organs.at(c.f.label))) {
                    reject(r, c, {Reject::Isodense, c.faint + ", " + g->why});
                    continue;
                }
                c.f.grounding += fmt::format("; {}, {:+.0f} HU to the {} around it", c.faint, hu,
                                             m.host_organs.at(c.f.label));
            } else if (named.organ_ring.size() >= 20 && !renamed) {  // for the audit: its contrast to its own organ too
                c.f.grounding += fmt::format("; {:+.0f} HU to the {} around it",
                                             slice_contrast(v, c.f.key_slice, pixels, named.organ_ring), m.host_organs.at(c.f.label));
            }
            if (auto g = gate_size(m, c.f, v)) {
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
    std::string text = ascii_upper(v.body_part + " " + v.series_description);
    for (const auto& k : m.chest_keywords)
        if (text.find(ascii_upper(k)) != std::string::npos && m.ct_windows.count("CHEST")) return "CHEST";
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

std::optional<std::string> Analyzer::not_validated(const core::Volume& v) const {
    const BodyMap body = body_map(v);
    return pipeline::not_validated(m_model.manifest().domain, v, series_region(v, body), texture_ratio(v, body));
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
        if (auto st = propagate(m_model, v, std::move(r.prompts), m_batch, r.labels, r.stages, r.features, limits.deadline, carried, stopped);
            !st)
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
    TRIAGE_LOG_INFO("pipeline",
                    "series {}: {} slices, region {}, {} findings, {} not reported; {} mask components, {} confident; seconds:{}; "
                    "slice encodings reused {}",
                    v.series_uid, v.slices, region.text(), r.out.findings.size(), r.out.rejected.size(), r.components, r.confident,
                    timing, r.features.reused());
    if (r.unlisted) r.out.rejected.push_back(fmt::format("{} more candidates not listed", r.unlisted));
    r.out.seconds_vision = r.stages.vision + r.stages.grounding;  // both image encoders
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
    const std::string where = core::ascii_lower(region.empty() ? "examined region" : region);
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
