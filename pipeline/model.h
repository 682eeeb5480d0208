#pragma once
// A loaded model bundle (docs/model-bundle.md): the manifest and the five TorchScript parts.
// The loaded Model is immutable and safe to use from several threads; per-run state lives in the
// caller. No Torch type appears in this header (Torch stays inside pipeline/*.cpp).
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "core/analysis.h"
#include "core/result.h"
#include "pipeline/density.h"
#include "pipeline/domain.h"

namespace triage::pipeline {

struct LabelInfo {
    std::string text;
    core::CodedConcept category, type, region;  // SNOMED CT codes of the SEG segment and SR finding
};

// Format 2 (the released UniBiomed: InternVL2.5-1B + SAM2, docs/model-bundle.md "Format 2"): how
// prompts, images and answers are shaped. Absent (format 1) for the mini model.
struct ChatSpec {
    std::string template_text, stop_text;  // "<|user|>\n{input}<|end|>\n<|assistant|>\n", "<|end|>"
    std::string image_start, image_context, image_end;  // "<img>", "<IMG_CONTEXT>", "</img>"
    int tile_size = 448, min_tiles = 1, max_tiles = 12, tokens_per_tile = 256;
    bool use_thumbnail = true;
    std::array<float, 3> mean{}, std{}, sam_mean{}, sam_std{};  // RGB normalization, MLLM tiles / SAM2 image
    int kv_heads = 0, head_dim = 0, vocab_size = 0;
    std::int64_t eos_id = -1, seg_id = -1;
    std::string dtype;  // of the stored parts: bf16 | fp16 | fp32
    std::pair<double, double> mr_range{-3, 3};  // MR z-scores mapped to [0, 1] (then RGB 0..1)
};

struct Manifest {
    std::string name, version, description, architecture;
    int format = 1;
    std::optional<ChatSpec> chat;  // format 2 only
    bool demonstration_only = false;
    int input_size = 0, mask_size = 0, visual_tokens = 0, hidden_size = 0, layers = 0, heads = 0;
    int max_positions = 0, max_new_tokens = 0;
    std::vector<std::string> vocab;
    std::map<std::string, int> token_ids;
    std::map<std::string, std::vector<std::string>> prompts;  // task -> templates
    std::vector<LabelInfo> labels;
    // Codes for a phrase the model writes that is no label of the manifest (format 2: free text is
    // kept as a finding with these codes, never dropped).
    std::optional<LabelInfo> generic_label;
    std::map<std::string, std::pair<double, double>> ct_windows;  // body region -> [low, high] HU
    std::string default_window;
    std::vector<std::string> chest_keywords;
    double mask_threshold = 0.5, lung_tumor_min_diameter_mm = 30;
    // Grounding of a lesion's name in anatomy: label -> host organ the model segments on request
    // ("Please segment <organ> ..."); a lesion takes the label of the organ that holds it.
    std::map<std::string, std::string> host_organs;
    double host_ring_mm = 5, host_min_coverage = 0.15;  // ring around the lesion, least organ probability
    double host_min_lead = 0;  // an organ renames a lesion only this far ahead of its recognized label's organ
    // A faint lesion with another host organ over this much of its ring lies at an organ border: its
    // contrast to its own organ is the other organ's (a kidney pole against the liver). 0: no such rule.
    double host_border_coverage = 0.25;
    // Per label: the least share of the lesion's ring its host organ must hold (a liver tumor lies
    // inside the liver); labels without one: no such rule.
    std::map<std::string, double> host_min_share;
    // Per host label: its organ's density and its lesions' contrast to it ("host_density"; absent: no
    // density check). density_share: the least share of the tissue around a lesion at a distinct
    // organ's density that names it; density_tolerance_hu widens every contrast range.
    std::map<std::string, DensitySpec> host_density;
    double density_share = 0.5, density_tolerance_hu = 5;
    std::map<std::string, double> min_diameter_mm;  // per label: smaller lesions are not reported
    std::map<std::string, double> max_diameter_mm;  // per label: larger ones are not either (the trained size range)
    double roi_box_value = 0;  // intensity of the ROI box drawn for region-aware description (0: none)
    int min_slices = 2;
    int propagate_slices = 0;    // [SEG] prompts carried to slices this far away (0: off)
    double answer_spacing_mm = 0;  // thin slices: ask every k-th slice, k = floor(this / spacing) (0: all)
    double min_confidence = 0;   // lesions whose mean mask probability is below this are not reported
    Domain domain;               // what the bundle was validated on ("domain"; optional)
    double min_contrast_hu = 0;  // CT: lesions closer than this to the tissue around them are not reported (0: off)
    double min_host_contrast_hu = 0;  // ... unless this far from their host organ around them (0: no second look)
    // Body region (CT window name, or "MR") -> labels also asked for on every slice with the referring
    // prompt ("Please segment <label> ..."), next to the recognition prompt: a second detector.
    std::map<std::string, std::vector<std::string>> referring_sweep;
    std::string sha256;  // of model.json (which pins every part's sha256)
};

/// Parses and validates model.json text; errors name the field.
core::Result<Manifest> parse_manifest(const std::string& json_text, const std::string& tokenizer_json);

/// One slice's answer: the generated text and, per [SEG], the label it names and the mask logits
/// (mask_size x mask_size), and the prompt embedding the [SEG] projected to (the mask decoder's
/// input, reusable on neighbouring slices: Model::segment).
struct SliceAnswer {
    std::string text;
    std::vector<std::pair<std::string, std::vector<float>>> masks;
    std::vector<std::vector<float>> prompts;
};

struct StageSeconds {
    double vision = 0, grounding = 0, decode = 0, mask = 0;  // MLLM vision, SAM2 image encoder, LLM, mask decoder
};

/// Native size of the slices given to Model::run* (the MLLM's dynamic tiling follows their aspect
/// ratio; 0 = square input_size images).
struct SliceGeometry {
    int rows = 0, columns = 0;
    // Format 2's region-aware prompts: per slice, a box (x0, y0, x1, y1; input_size pixels, inclusive)
    // drawn as a green (0, 255, 0) outline 2 native pixels wide, as the published code marks a region.
    // Empty: no boxes. (Format 1 draws its ROI box into the grey image itself: roi_box_value.)
    std::vector<std::array<int, 4>> boxes;
};

/// Grounding-encoder features of one series' slices by slice number, kept by Model::run_prompts
/// and Model::segment and reused by both, so that a slice the answers encoded is not encoded again
/// when propagation decodes a carried prompt on it or its host organs are mapped. Holds at most
/// max_bytes (the slices first seen); one per series, not thread-safe.
class FeatureCache {
public:
    explicit FeatureCache(size_t max_bytes);
    ~FeatureCache();
    size_t bytes() const;
    size_t reused() const;  // slice encodings saved so far
    struct Impl;            // Torch state, defined in model_impl.h
    Impl& impl() { return *m_impl; }

private:
    std::unique_ptr<Impl> m_impl;
};

class Model {
public:
    /// Loads and validates a bundle folder; `device` is auto | cpu | cuda | cuda:N. Every module's
    /// file, checksum and input/output shapes are checked; errors say which file and field.
    static core::Result<std::unique_ptr<Model>> load(const std::string& bundle_dir, const std::string& device,
                                                     int threads = 0);
    ~Model();
    const Manifest& manifest() const;
    std::string device_name() const;
    /// Runs the recognition/referring prompt on `count` preprocessed slices (count x S x S floats,
    /// S = input_size). Greedy decoding up to max_new_tokens; thread-safe.
    core::Result<std::vector<SliceAnswer>> run(const std::vector<float>& images, int count,
                                               const std::string& prompt, StageSeconds* seconds = nullptr,
                                               const SliceGeometry& geometry = {}) const;
    /// Several prompts on one encoding of the same slices: answers[prompt][slice].
    /// With a cache and the slices' numbers, the grounding features of slices it holds are reused
    /// and those encoded are kept (not with boxes, which change the image).
    core::Result<std::vector<std::vector<SliceAnswer>>> run_prompts(const std::vector<float>& images, int count,
                                                                    const std::vector<std::string>& prompts,
                                                                    StageSeconds* seconds = nullptr,
                                                                    const SliceGeometry& geometry = {},
                                                                    FeatureCache* cache = nullptr,
                                                                    const std::vector<int>& slice_ids = {}) const;

    /// Mask logits of prompt embeddings (from SliceAnswer::prompts) decoded on `count` slices with no
    /// language model: how Sa2VA carries a [SEG] prompt through the frames of a video, here through
    /// the neighbouring slices of a volume. Prompt k is decoded on slice image_of[k]; with image_of
    /// empty, one prompt per slice in order. Each slice is encoded once, whatever its prompts.
    core::Result<std::vector<std::vector<float>>> segment(const std::vector<float>& images, int count,
                                                          const std::vector<std::vector<float>>& prompts,
                                                          StageSeconds* seconds = nullptr,
                                                          const std::vector<int>& image_of = {},
                                                          FeatureCache* cache = nullptr,
                                                          const std::vector<int>& slice_ids = {}) const;

    struct Impl;  // Torch state, defined in model.cpp

private:
    explicit Model(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

/// The label named after each [SEG] in a generated answer ("It is [SEG] . liver tumor , ...",
/// "It is [SEG]. Liver tumor.", "[SEG]. pneumothorax."): the phrase up to the next '.', ',', ';',
/// newline or [SEG], trimmed; empty when the answer names nothing after the [SEG].
std::vector<std::string> parse_seg_labels(const std::string& answer);
/// The manifest's label text a phrase names (case-insensitive), or the phrase itself lower-cased.
std::string canonical_label(const Manifest& m, const std::string& phrase);

}  // namespace triage::pipeline
