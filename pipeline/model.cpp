#include "pipeline/model.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "core/sha256.h"
#include "pipeline/chat.h"
#include "pipeline/model_impl.h"

namespace triage::pipeline {

using core::ErrorKind;
using nlohmann::json;

namespace {

core::Error bad(const std::string& where, const std::string& what) {
    return core::make_error(ErrorKind::InvalidInput, "model bundle: " + where + ": " + what);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return in ? ss.str() : std::string();
}

const char* kParts[] = {"vision_encoder", "language_model", "seg_projection", "grounding_encoder", "mask_decoder"};

/// Format 2 keeps its sizes in the "image" and "llm" blocks; format 1's names for them.
json format2_sizes(const json& j) {
    const json &img = j.at("image"), &llm = j.at("llm");
    return {{"input_size", img.at("sam_size")}, {"mask_size", img.at("mask_size")},
            {"visual_tokens", img.at("tokens_per_tile")}, {"hidden_size", llm.at("hidden_size")},
            {"layers", llm.at("layers")}, {"heads", llm.at("heads")}, {"max_positions", llm.at("max_positions")},
            {"max_new_tokens", j.at("max_new_tokens")}};
}

}  // namespace

core::Result<Manifest> parse_manifest(const std::string& json_text, const std::string& tokenizer_json) {
    json j = json::parse(json_text, nullptr, false);
    if (!j.is_object()) return bad("model.json", "not a JSON object");
    Manifest m;
    try {
        m.name = j.at("name").get<std::string>();
        m.version = j.at("version").get<std::string>();
        m.description = j.value("description", "");
        m.architecture = j.at("architecture").get<std::string>();
        m.demonstration_only = j.value("demonstration_only", false);
        m.format = j.value("format", 1);
        if (m.format != 1 && m.format != 2) return bad("model.json format", "must be 1 or 2");
        if (m.format == 2) {
            auto chat = parse_chat_spec(json_text);
            if (!chat) return chat.error();
            m.chat = chat.value();
        }
        const json sizes = m.format == 1 ? j : format2_sizes(j);
        for (auto [field, out] : {std::pair{"input_size", &m.input_size}, {"mask_size", &m.mask_size},
                                  {"visual_tokens", &m.visual_tokens}, {"hidden_size", &m.hidden_size},
                                  {"layers", &m.layers}, {"heads", &m.heads}, {"max_positions", &m.max_positions},
                                  {"max_new_tokens", &m.max_new_tokens}}) {
            *out = sizes.at(field).get<int>();
            if (*out <= 0) return bad(std::string("model.json ") + field, "must be positive");
        }
        for (auto& [task, list] : j.at("prompts").items()) m.prompts[task] = list.get<std::vector<std::string>>();
        if (!m.prompts.count("recognition")) return bad("model.json prompts", "no \"recognition\" prompt");
        for (const auto& l : j.at("labels")) {
            auto code = [&](const char* key) -> core::CodedConcept {
                const json& c = l.at(key);
                return {c.at("scheme"), c.at("code"), c.at("meaning")};
            };
            m.labels.push_back({l.at("text"), code("category"), code("type"), code("region")});
        }
        if (j.contains("generic_label")) {
            const json& g = j["generic_label"];
            auto code = [&](const char* key) -> core::CodedConcept { return {g.at(key).at("scheme"), g.at(key).at("code"), g.at(key).at("meaning")}; };
            m.generic_label = LabelInfo{g.value("text", "abnormality"), code("category"), code("type"), code("region")};
        }
        const json& ct = j.at("preprocessing").at("CT");
        for (auto& [region, w] : ct.at("windows").items()) m.ct_windows[region] = {w.at(0), w.at(1)};
        m.default_window = ct.at("default_window").get<std::string>();
        m.chest_keywords = ct.at("chest_keywords").get<std::vector<std::string>>();
        if (!m.ct_windows.count(m.default_window)) return bad("model.json preprocessing.CT.default_window", "unknown window");
        const json& th = j.at("thresholds");
        m.mask_threshold = th.value("mask", 0.5);
        m.min_slices = th.value("min_slices", 2);
        m.propagate_slices = th.value("propagate_slices", 0);
        m.min_contrast_hu = th.value("min_contrast_hu", 0.0);
        m.min_host_contrast_hu = th.value("min_host_contrast_hu", 0.0);
        if (m.min_contrast_hu < 0) return bad("model.json thresholds.min_contrast_hu", "must be 0 or more");
        if (m.min_host_contrast_hu < 0) return bad("model.json thresholds.min_host_contrast_hu", "must be 0 or more");
        if (m.propagate_slices < 0) return bad("model.json thresholds.propagate_slices", "must be 0 or more");
        m.lung_tumor_min_diameter_mm = th.value("lung_tumor_min_diameter_mm", 30.0);
        m.answer_spacing_mm = th.value("answer_spacing_mm", 0.0);
        if (m.answer_spacing_mm < 0) return bad("model.json thresholds.answer_spacing_mm", "must be 0 or more");
        m.host_organs = j.value("host_organs", std::map<std::string, std::string>{});
        m.host_ring_mm = th.value("host_ring_mm", 5.0);
        m.host_min_coverage = th.value("host_min_coverage", 0.15);
        m.host_min_lead = th.value("host_min_lead", 0.0);
        if (m.host_min_lead < 0) return bad("model.json thresholds.host_min_lead", "must be 0 or more");
        m.host_border_coverage = th.value("host_border_coverage", 0.25);
        if (m.host_border_coverage < 0) return bad("model.json thresholds.host_border_coverage", "must be 0 or more");
        m.host_min_share = th.value("host_min_share", std::map<std::string, double>{});
        for (const auto& [label, share] : m.host_min_share)
            if (share < 0 || share > 1) return bad("model.json thresholds.host_min_share." + label, "must be 0-1");
        m.density_share = th.value("density_share", 0.5);
        m.density_tolerance_hu = th.value("density_tolerance_hu", 5.0);
        if (m.density_share < 0 || m.density_share > 1) return bad("model.json thresholds.density_share", "must be 0-1");
        if (m.density_tolerance_hu < 0) return bad("model.json thresholds.density_tolerance_hu", "must be 0 or more");
        const json densities = j.value("host_density", json::object());
        for (const auto& [label, d] : densities.items()) {
            DensitySpec spec;
            const auto organ = d.value("organ_hu", std::vector<double>{});
            if (organ.size() != 2 || organ[0] > organ[1] || !m.host_organs.count(label))
                return bad("model.json host_density." + label, "needs a host_organs label and organ_hu [low, high]");
            spec.organ_lo = organ[0], spec.organ_hi = organ[1];
            for (const auto& r : d.value("contrast_hu", std::vector<std::vector<double>>{})) {
                if (r.size() != 2 || r[0] > r[1]) return bad("model.json host_density." + label + ".contrast_hu", "ranges are [low, high]");
                spec.contrast_hu.emplace_back(r[0], r[1]);
            }
            if (spec.contrast_hu.empty()) return bad("model.json host_density." + label + ".contrast_hu", "needs at least one range");
            spec.distinct = d.value("distinct", false);
            m.host_density[label] = spec;
        }
        m.min_diameter_mm = th.value("min_diameter_mm", std::map<std::string, double>{});
        m.max_diameter_mm = th.value("max_diameter_mm", std::map<std::string, double>{});
        m.min_confidence = th.value("min_confidence", 0.0);
        if (m.min_confidence < 0 || m.min_confidence > 1) return bad("model.json thresholds.min_confidence", "must be 0-1");
        if (j.contains("domain")) {
            auto domain = parse_domain(j.at("domain").dump());
            if (!domain) return domain.error();
            m.domain = domain.value();
        }
        m.roi_box_value = j.value("roi_box_value", 0.0);
        if (m.format == 1 && m.prompts.count("description") && m.roi_box_value == 0)
            return bad("model.json roi_box_value", "a \"description\" prompt needs the ROI box intensity");
        if (!m.host_organs.empty() && !m.prompts.count("referring"))
            return bad("model.json host_organs", "needs a \"referring\" prompt");
        m.referring_sweep = j.value("referring_sweep", std::map<std::string, std::vector<std::string>>{});
        for (const auto& [region, list] : m.referring_sweep)
            for (const auto& label : list)
                if (std::none_of(m.labels.begin(), m.labels.end(), [&](const LabelInfo& l) { return l.text == label; }))
                    return bad("model.json referring_sweep." + region, "unknown label \"" + label + "\"");
        if (!m.referring_sweep.empty() && !m.prompts.count("referring"))
            return bad("model.json referring_sweep", "needs a \"referring\" prompt");
        json tok = json::parse(tokenizer_json, nullptr, false);
        if (!tok.is_object()) return bad(j.value("tokenizer", "tokenizer.json"), "not a JSON object");
        if (m.format == 1) m.vocab = tok.at("vocab").get<std::vector<std::string>>();
    } catch (const json::exception& e) {
        return bad("model.json", e.what());
    }
    m.sha256 = core::sha256_hex(json_text);
    if (m.format == 2) return m;  // the BPE tokenizer (Model::load) checks its special tokens
    for (size_t i = 0; i < m.vocab.size(); ++i) m.token_ids[m.vocab[i]] = static_cast<int>(i);
    for (const char* t : {"<bos>", "<eos>", "[SEG]"})
        if (!m.token_ids.count(t)) return bad("tokenizer", std::string("missing special token ") + t);
    return m;
}

namespace {

/// The BPE tokenizer of a format-2 bundle, checked against the manifest's special tokens.
core::Result<BpeTokenizer> load_bpe(const Manifest& m, const std::string& path) {
    auto bpe = BpeTokenizer::load(path);
    if (!bpe) return bad(path, bpe.error().message);
    const ChatSpec& c = *m.chat;
    for (const std::string& t : {c.image_start, c.image_context, c.image_end, std::string("[SEG]")})
        if (!bpe.value().token_id(t)) return bad(path, "missing special token " + t);
    if (*bpe.value().token_id("[SEG]") != c.seg_id)
        return bad("model.json special_token_ids.[SEG]", "differs from the tokenizer's id");
    return bpe;
}

core::Result<torch::Device> pick_device(const std::string& device) {
    bool cuda = torch::cuda::is_available();
    if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
        if (!cuda) return core::make_error(ErrorKind::Permanent, "model.device = " + device + " but LibTorch sees no GPU");
        return torch::Device(device);
    }
    return device == "auto" && cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

/// Loads the five parts named in model.json after checking their sha256; format 2 parts are moved
/// to the compute dtype (the stored one on CUDA, fp32 on CPU, where bf16 kernels are slow).
core::Result<bool> load_parts(Model::Impl& impl, const json& j, const std::string& dir) {
    for (const char* part : kParts) {
        if (!j.contains("modules") || !j["modules"].contains(part))
            return bad("model.json modules", std::string("missing part \"") + part + "\"");
        const json& spec = j["modules"][part];
        std::string file = dir + "/" + spec.value("file", std::string(part) + ".pt");
        auto digest = core::sha256_file(file);
        if (!digest) return bad(file, "missing");
        if (spec.contains("sha256") && spec["sha256"] != digest.value())
            return bad(file, "sha256 differs from model.json (corrupt or replaced file)");
        try {
            impl.parts[part] = torch::jit::load(file, impl.device);
            if (impl.manifest.format == 2) impl.parts[part].to(impl.dtype);
            impl.parts[part].eval();
        } catch (const c10::Error& e) {
            return bad(file, std::string("not a loadable TorchScript module: ") + e.what_without_backtrace());
        }
    }
    return true;
}

torch::ScalarType compute_dtype(const Manifest& m, const torch::Device& device) {
    if (m.format != 2 || !device.is_cuda()) return torch::kFloat32;
    return m.chat->dtype == "bf16" ? torch::kBFloat16 : m.chat->dtype == "fp16" ? torch::kFloat16 : torch::kFloat32;
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Model::~Model() = default;
const Manifest& Model::manifest() const { return m_impl->manifest; }
std::string Model::device_name() const { return m_impl->device.str(); }

core::Result<std::unique_ptr<Model>> Model::load(const std::string& dir, const std::string& device, int threads) {
    // LibTorch on Debian defaults to one intra-op thread (MODEL-NOTES.md): set it explicitly.
    at::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    std::string manifest_text = read_text(dir + "/model.json");
    if (manifest_text.empty()) return bad(dir + "/model.json", "missing or unreadable");
    json j = json::parse(manifest_text, nullptr, false);
    std::string tokenizer = j.is_object() ? j.value("tokenizer", "tokenizer.json") : "tokenizer.json";
    auto manifest = parse_manifest(manifest_text, read_text(dir + "/" + tokenizer));
    if (!manifest) return manifest.error();
    auto impl = std::make_unique<Impl>();
    impl->manifest = std::move(manifest.value());
    if (impl->manifest.format == 2) {
        auto bpe = load_bpe(impl->manifest, dir + "/" + tokenizer);
        if (!bpe) return bpe.error();
        impl->bpe = std::move(bpe.value());
        impl->image_context_id = *impl->bpe->token_id(impl->manifest.chat->image_context);
    }
    auto dev = pick_device(device);
    if (!dev) return dev.error();
    impl->device = dev.value();
    impl->dtype = compute_dtype(impl->manifest, impl->device);
    if (auto parts = load_parts(*impl, j, dir); !parts) return parts.error();
    std::unique_ptr<Model> model(new Model(std::move(impl)));
    // Warm-up doubles as the shape check of every part against the manifest.
    const auto& m = model->manifest();
    std::vector<float> blank(static_cast<size_t>(m.input_size) * m.input_size, 0.0f);
    // Format 2 warms up on one tile (a 448-px slice), not the tiling of an input_size image (3 x 3 + 1).
    const int tile = m.chat ? m.chat->tile_size : 0;
    auto warm = model->run(blank, 1, m.prompts.at("recognition").front(), nullptr, SliceGeometry{tile, tile, {}});
    if (!warm) return bad(dir, "warm-up failed: " + warm.error().message);
    TRIAGE_LOG_INFO("pipeline", "model {} {} loaded on {} ({} threads)", m.name, m.version, model->device_name(),
                    at::get_num_threads());
    return model;
}

}  // namespace triage::pipeline
