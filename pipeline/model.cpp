#include "pipeline/model.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "core/sha256.h"

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
        for (auto [field, out] : {std::pair{"input_size", &m.input_size}, {"mask_size", &m.mask_size},
                                  {"visual_tokens", &m.visual_tokens}, {"hidden_size", &m.hidden_size},
                                  {"layers", &m.layers}, {"heads", &m.heads}, {"max_positions", &m.max_positions},
                                  {"max_new_tokens", &m.max_new_tokens}}) {
            *out = j.at(field).get<int>();
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
        m.host_organs = j.value("host_organs", std::map<std::string, std::string>{});
        m.host_ring_mm = th.value("host_ring_mm", 5.0);
        m.host_min_coverage = th.value("host_min_coverage", 0.15);
        m.host_min_lead = th.value("host_min_lead", 0.0);
        if (m.host_min_lead < 0) return bad("model.json thresholds.host_min_lead", "must be 0 or more");
        m.min_diameter_mm = th.value("min_diameter_mm", std::map<std::string, double>{});
        m.roi_box_value = j.value("roi_box_value", 0.0);
        if (m.prompts.count("description") && m.roi_box_value == 0)
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
        if (!tok.is_object()) return bad(j.at("tokenizer").get<std::string>(), "not a JSON object");
        m.vocab = tok.at("vocab").get<std::vector<std::string>>();
    } catch (const json::exception& e) {
        return bad("model.json", e.what());
    }
    for (size_t i = 0; i < m.vocab.size(); ++i) m.token_ids[m.vocab[i]] = static_cast<int>(i);
    for (const char* t : {"<bos>", "<eos>", "[SEG]"})
        if (!m.token_ids.count(t)) return bad("tokenizer", std::string("missing special token ") + t);
    m.sha256 = core::sha256_hex(json_text);
    return m;
}

struct Model::Impl {
    Manifest manifest;
    torch::Device device = torch::kCPU;
    std::map<std::string, torch::jit::Module> parts;
    std::vector<std::int64_t> encode(const std::string& text) const;
};

std::vector<std::int64_t> Model::Impl::encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    std::istringstream in(text);
    for (std::string w; in >> w;) {
        auto it = manifest.token_ids.find(w);
        if (it != manifest.token_ids.end()) ids.push_back(it->second);
    }
    return ids;
}

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
    bool cuda = torch::cuda::is_available();
    if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
        if (!cuda) return core::make_error(ErrorKind::Permanent, "model.device = " + device + " but LibTorch sees no GPU");
        impl->device = torch::Device(device);
    } else if (device == "auto" && cuda) {
        impl->device = torch::Device(torch::kCUDA);
    }
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
            impl->parts[part] = torch::jit::load(file, impl->device);
            impl->parts[part].eval();
        } catch (const c10::Error& e) {
            return bad(file, std::string("not a loadable TorchScript module: ") + e.what_without_backtrace());
        }
    }
    std::unique_ptr<Model> model(new Model(std::move(impl)));
    // Warm-up doubles as the shape check of every part against the manifest.
    const auto& m = model->manifest();
    std::vector<float> blank(static_cast<size_t>(m.input_size) * m.input_size, 0.0f);
    auto warm = model->run(blank, 1, m.prompts.at("recognition").front());
    if (!warm) return bad(dir, "warm-up failed: " + warm.error().message);
    TRIAGE_LOG_INFO("pipeline", "model {} {} loaded on {} ({} threads)", m.name, m.version, model->device_name(),
                    at::get_num_threads());
    return model;
}

namespace {

double since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Greedy decoding state of a batch: generated ids and the hidden state of every [SEG] consumed.
struct Decoded {
    std::vector<std::vector<std::int64_t>> tokens;
    std::vector<std::vector<torch::Tensor>> seg_hidden;
};

}  // namespace

struct ImageFeatures {
    torch::Tensor visual, pixels;
};

core::Result<ImageFeatures> encode_images(const Model::Impl& I, const torch::Tensor& img) {
    const Manifest& m = I.manifest;
    auto& vision = const_cast<torch::jit::Module&>(I.parts.at("vision_encoder"));
    auto& grounding = const_cast<torch::jit::Module&>(I.parts.at("grounding_encoder"));
    ImageFeatures f{vision.forward({img}).toTuple()->elements()[0].toTensor(), grounding.forward({img}).toTensor()};
    if (f.visual.dim() != 3 || f.visual.size(1) != m.visual_tokens || f.visual.size(2) != m.hidden_size)
        return core::make_error(ErrorKind::InvalidInput, "vision_encoder output shape differs from model.json");
    if (f.pixels.dim() != 4 || f.pixels.size(2) != m.mask_size || f.pixels.size(3) != m.mask_size)
        return core::make_error(ErrorKind::InvalidInput, "grounding_encoder output shape differs from model.json");
    return f;
}

/// Prefix (visual tokens + <bos> + prompt), then greedy steps with the KV cache until every slice
/// has produced <eos> or max_new_tokens. The [SEG] hidden state is the output of the step that
/// consumes the [SEG] token (as in training, where it is the output at the [SEG] position).
core::Result<Decoded> decode(const Model::Impl& I, const torch::Tensor& visual, const std::string& prompt) {
    const Manifest& m = I.manifest;
    auto& lm = const_cast<torch::jit::Module&>(I.parts.at("language_model"));
    const std::int64_t count = visual.size(0);
    std::vector<std::int64_t> prefix = {m.token_ids.at("<bos>")};
    for (auto id : I.encode(prompt)) prefix.push_back(id);
    torch::Tensor ids = torch::tensor(prefix, torch::kLong).unsqueeze(0).repeat({count, 1}).to(I.device);
    torch::Tensor x = torch::cat({visual, lm.run_method("embed", ids).toTensor()}, 1);
    torch::Tensor empty = torch::zeros({m.layers, count, m.heads, 0, m.hidden_size / m.heads}, visual.options());
    auto out = lm.forward({x, static_cast<std::int64_t>(0), empty, empty}).toTuple();
    torch::Tensor logits = out->elements()[0].toTensor(), k = out->elements()[2].toTensor(),
                  v = out->elements()[3].toTensor();
    if (logits.size(2) != static_cast<std::int64_t>(m.vocab.size()))
        return core::make_error(ErrorKind::InvalidInput, "language_model vocabulary size differs from the tokenizer");
    const std::int64_t eos = m.token_ids.at("<eos>"), seg = m.token_ids.at("[SEG]");
    Decoded d{std::vector<std::vector<std::int64_t>>(static_cast<size_t>(count)),
              std::vector<std::vector<torch::Tensor>>(static_cast<size_t>(count))};
    std::vector<bool> done(static_cast<size_t>(count), false);
    torch::Tensor next = logits.select(1, -1).argmax(-1);
    std::int64_t pos = x.size(1);
    for (int step = 0; step < m.max_new_tokens; ++step) {
        torch::Tensor next_cpu = next.to(torch::kCPU);
        auto fed = next_cpu.accessor<std::int64_t, 1>();
        bool all_done = true;
        for (size_t b = 0; b < done.size(); ++b) {
            if (!done[b]) {
                d.tokens[b].push_back(fed[static_cast<long>(b)]);
                done[b] = fed[static_cast<long>(b)] == eos;
            }
            all_done = all_done && done[b];
        }
        if (all_done || pos >= m.max_positions) break;
        auto o = lm.forward({lm.run_method("embed", next.unsqueeze(1)).toTensor(), pos++, k, v}).toTuple();
        torch::Tensor hidden = o->elements()[1].toTensor();
        k = o->elements()[2].toTensor();
        v = o->elements()[3].toTensor();
        for (size_t b = 0; b < done.size(); ++b)
            if (!done[b] && fed[static_cast<long>(b)] == seg) d.seg_hidden[b].push_back(hidden[static_cast<long>(b)][0]);
        next = o->elements()[0].toTensor().select(1, -1).argmax(-1);
    }
    return d;
}

std::vector<float> to_vector(const torch::Tensor& t) {
    torch::Tensor c = t.reshape({-1}).to(torch::kCPU).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

/// Text of each slice and, per [SEG], its label and mask logits from parts 3 and 5.
std::vector<SliceAnswer> answers_with_masks(const Model::Impl& I, const Decoded& d, const torch::Tensor& pixels) {
    const Manifest& m = I.manifest;
    auto& proj = const_cast<torch::jit::Module&>(I.parts.at("seg_projection"));
    auto& dec = const_cast<torch::jit::Module&>(I.parts.at("mask_decoder"));
    const std::int64_t eos = m.token_ids.at("<eos>");
    std::vector<SliceAnswer> answers(d.tokens.size());
    for (size_t b = 0; b < d.tokens.size(); ++b) {
        std::vector<std::string> words;
        for (auto t : d.tokens[b])
            if (t != eos && t >= 0 && t < static_cast<std::int64_t>(m.vocab.size())) words.push_back(m.vocab[static_cast<size_t>(t)]);
        SliceAnswer& a = answers[b];
        for (const auto& w : words) a.text += (a.text.empty() ? "" : " ") + w;
        auto labels = parse_seg_labels(words);
        for (size_t i = 0; i < labels.size() && i < d.seg_hidden[b].size(); ++i) {
            torch::Tensor prompt = proj.forward({d.seg_hidden[b][i].unsqueeze(0)}).toTensor();
            torch::Tensor logit = dec.forward({pixels.narrow(0, static_cast<long>(b), 1), prompt}).toTensor();
            a.masks.emplace_back(labels[i], to_vector(logit));
            a.prompts.push_back(to_vector(prompt));
        }
    }
    return answers;
}

core::Result<std::vector<SliceAnswer>> Model::run(const std::vector<float>& images, int count,
                                                  const std::string& prompt, StageSeconds* seconds) const {
    auto answers = run_prompts(images, count, {prompt}, seconds);
    if (!answers) return answers.error();
    return std::move(answers.value().front());
}

/// `count` preprocessed slices (count x S x S floats) as a (count, 1, S, S) tensor on the device.
core::Result<torch::Tensor> input_images(const Model::Impl& I, const std::vector<float>& images, int count) {
    const int s = I.manifest.input_size;
    if (count <= 0 || images.size() != static_cast<size_t>(count) * s * s)
        return core::make_error(ErrorKind::InvalidInput, "image buffer does not match count x input_size^2");
    return torch::from_blob(const_cast<float*>(images.data()), {count, 1, s, s}, torch::kFloat32).to(I.device);
}

/// Runs one inference call under InferenceMode on the slices as a device tensor; LibTorch
/// exceptions become errors. `body(images, stages)` returns the call's result.
template <typename T, typename Body>
core::Result<T> infer(const Model::Impl& I, const std::vector<float>& images, int count, StageSeconds* seconds, Body body) {
    StageSeconds local;
    try {
        c10::InferenceMode guard;
        auto img = input_images(I, images, count);
        if (!img) return img.error();
        return body(img.value(), seconds ? *seconds : local);
    } catch (const c10::Error& e) {
        return core::make_error(ErrorKind::Internal, std::string("inference failed: ") + e.what_without_backtrace());
    }
}

core::Result<std::vector<std::vector<SliceAnswer>>> Model::run_prompts(const std::vector<float>& images, int count,
                                                                       const std::vector<std::string>& prompts,
                                                                       StageSeconds* seconds) const {
    using Answers = std::vector<std::vector<SliceAnswer>>;
    return infer<Answers>(*m_impl, images, count, seconds, [&](const torch::Tensor& img, StageSeconds& st) -> core::Result<Answers> {
        auto t0 = std::chrono::steady_clock::now();
        auto features = encode_images(*m_impl, img);
        if (!features) return features.error();
        st.vision += since(t0);
        Answers out;
        for (const auto& prompt : prompts) {
            auto t1 = std::chrono::steady_clock::now();
            auto decoded = decode(*m_impl, features->visual, prompt);
            if (!decoded) return decoded.error();
            st.decode += since(t1);
            auto t2 = std::chrono::steady_clock::now();
            out.push_back(answers_with_masks(*m_impl, decoded.value(), features->pixels));
            st.mask += since(t2);
        }
        return out;
    });
}

core::Result<std::vector<std::vector<float>>> Model::segment(const std::vector<float>& images, int count,
                                                             const std::vector<std::vector<float>>& prompts,
                                                             StageSeconds* seconds) const {
    using Masks = std::vector<std::vector<float>>;
    if (prompts.size() != static_cast<size_t>(std::max(count, 0)))
        return core::make_error(ErrorKind::InvalidInput, "segment(): one prompt per slice");
    return infer<Masks>(*m_impl, images, count, seconds, [&](const torch::Tensor& img, StageSeconds& st) -> core::Result<Masks> {
        auto t0 = std::chrono::steady_clock::now();
        auto& grounding = const_cast<torch::jit::Module&>(m_impl->parts.at("grounding_encoder"));
        auto& dec = const_cast<torch::jit::Module&>(m_impl->parts.at("mask_decoder"));
        torch::Tensor pixels = grounding.forward({img}).toTensor();
        Masks out;
        for (int b = 0; b < count; ++b) {
            const auto& p = prompts[static_cast<size_t>(b)];
            torch::Tensor prompt = torch::from_blob(const_cast<float*>(p.data()), {1, static_cast<long>(p.size())}, torch::kFloat32)
                                       .to(m_impl->device);
            out.push_back(to_vector(dec.forward({pixels.narrow(0, b, 1), prompt}).toTensor()));
        }
        st.mask += since(t0);
        return out;
    });
}

std::vector<std::string> parse_seg_labels(const std::vector<std::string>& words) {
    std::vector<std::string> labels;
    for (size_t i = 0; i < words.size(); ++i) {
        if (words[i] != "[SEG]") continue;
        size_t j = i + 1;
        if (j < words.size() && words[j] == ".") ++j;
        std::string name;
        for (; j < words.size() && words[j] != "," && words[j] != "[SEG]" && words[j] != "."; ++j)
            name += (name.empty() ? "" : " ") + words[j];
        labels.push_back(name);
        i = j - 1;
    }
    return labels;
}

}  // namespace triage::pipeline
