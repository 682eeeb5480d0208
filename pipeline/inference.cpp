// Running a loaded bundle (docs/model-bundle.md "What the runtime does"): image encodings, greedy
// decoding with the KV cache, [SEG] hidden states through the projection and the mask decoder.
// Format 1 (mini model) and format 2 (released UniBiomed) share the loop; they differ in how the
// prompt is tokenized around the visual tokens, how the images are fed and when an answer ends.
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/nn/functional.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "pipeline/chat.h"
#include "pipeline/model_impl.h"

namespace triage::pipeline {

using core::ErrorKind;

std::vector<std::int64_t> Model::Impl::encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    if (bpe) {
        for (int id : bpe->encode(text)) ids.push_back(id);
        return ids;
    }
    std::istringstream in(text);
    for (std::string w; in >> w;)
        if (auto it = manifest.token_ids.find(w); it != manifest.token_ids.end()) ids.push_back(it->second);
    return ids;
}

std::string Model::Impl::answer_text(const std::vector<std::int64_t>& ids) const {
    if (bpe) {
        std::vector<int> kept;
        for (auto t : ids)
            if (t != manifest.chat->eos_id) kept.push_back(static_cast<int>(t));
        return cut_at_stop(bpe->decode(kept), manifest.chat->stop_text);
    }
    std::string text;
    const std::int64_t eos = manifest.token_ids.at("<eos>");
    for (auto t : ids)
        if (t != eos && t >= 0 && t < static_cast<std::int64_t>(manifest.vocab.size()))
            text += (text.empty() ? "" : " ") + manifest.vocab[static_cast<size_t>(t)];
    return text;
}

bool Model::Impl::finished(const std::vector<std::int64_t>& ids) const {
    if (ids.empty()) return false;
    if (!bpe) return ids.back() == manifest.token_ids.at("<eos>");
    if (ids.back() == manifest.chat->eos_id) return true;
    std::vector<int> tail(ids.end() - std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(ids.size()), 8), ids.end());
    return bpe->decode(tail).find(manifest.chat->stop_text) != std::string::npos;
}

void Model::Impl::sync() const {
    if (device.is_cuda()) torch::cuda::synchronize();
}

namespace {

double since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

using SliceFeatures = std::vector<torch::Tensor>;  // one slice's mask-decoder image inputs, each [1, ...]

struct ImageFeatures {
    torch::Tensor visual;                  // [B, T, D] visual tokens of each slice
    std::vector<SliceFeatures> grounding;  // per slice
};

/// Greedy decoding state of a batch: generated ids and the hidden state of every [SEG] consumed.
struct Decoded {
    std::vector<std::vector<std::int64_t>> tokens;
    std::vector<std::vector<torch::Tensor>> seg_hidden;
};

namespace F = torch::nn::functional;

torch::Tensor resize(const torch::Tensor& x, std::int64_t h, std::int64_t w, bool bicubic) {
    if (x.size(2) == h && x.size(3) == w) return x;
    auto o = F::InterpolateFuncOptions().size(std::vector<std::int64_t>{h, w}).align_corners(false);
    return bicubic ? F::interpolate(x, o.mode(torch::kBicubic).antialias(true)).clamp(0, 1)
                   : F::interpolate(x, o.mode(torch::kBilinear));
}

/// Grey [B,1,H,W] or RGB [B,3,H,W] in [0,1] -> RGB normalized with per-channel mean/std.
torch::Tensor rgb(const torch::Tensor& img, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
    auto m = torch::tensor({mean[0], mean[1], mean[2]}, img.options()).view({1, 3, 1, 1});
    auto s = torch::tensor({std[0], std[1], std[2]}, img.options()).view({1, 3, 1, 1});
    return (img.expand({-1, 3, -1, -1}) - m) / s;
}

/// The grey slices as RGB [B,3,S,S] in [0,1] with each slice's box drawn as a green outline,
/// `width` pixels wide (the published code's region marking); the slices unchanged without boxes.
torch::Tensor with_boxes(const torch::Tensor& grey, const SliceGeometry& g) {
    if (g.boxes.empty()) return grey;
    torch::Tensor out = grey.expand({-1, 3, -1, -1}).clone();
    const std::int64_t s = grey.size(3);
    const std::int64_t width = std::max<std::int64_t>(1, std::lround(2.0 * s / std::max(1, g.columns > 0 ? g.columns : static_cast<int>(s))));
    auto green = torch::tensor({0.0f, 1.0f, 0.0f}, out.options()).view({3, 1, 1});
    for (size_t b = 0; b < g.boxes.size() && static_cast<std::int64_t>(b) < out.size(0); ++b) {
        auto [x0, y0, x1, y1] = g.boxes[b];
        if (x1 < x0 || y1 < y0) continue;
        torch::Tensor slice = out[static_cast<long>(b)];
        auto paint = [&](std::int64_t ya, std::int64_t yb, std::int64_t xa, std::int64_t xb) {
            ya = std::clamp<std::int64_t>(ya, 0, s), yb = std::clamp<std::int64_t>(yb, 0, s);
            xa = std::clamp<std::int64_t>(xa, 0, s), xb = std::clamp<std::int64_t>(xb, 0, s);
            if (ya < yb && xa < xb) slice.slice(1, ya, yb).slice(2, xa, xb).copy_(green.expand({3, yb - ya, xb - xa}));
        };
        paint(y0, y0 + width, x0, x1 + 1), paint(y1 + 1 - width, y1 + 1, x0, x1 + 1);
        paint(y0, y1 + 1, x0, x0 + width), paint(y0, y1 + 1, x1 + 1 - width, x1 + 1);
    }
    return out;
}

/// InternVL's dynamic tiles of each slice, tile-major per slice: [B * grid.count(), 3, T, T].
torch::Tensor tiles(const ChatSpec& c, const torch::Tensor& img, const TileGrid& grid) {
    const std::int64_t t = c.tile_size, b = img.size(0), ch = img.size(1);
    torch::Tensor big = resize(img, t * grid.down, t * grid.across, true);
    // [B,C,down*T,across*T] -> [B, down, across, C, T, T] -> rows of tiles, left to right.
    torch::Tensor cut = big.view({b, ch, grid.down, t, grid.across, t}).permute({0, 2, 4, 1, 3, 5})
                            .reshape({b, grid.down * grid.across, ch, t, t});
    if (grid.thumbnail) cut = torch::cat({cut, resize(img, t, t, true).unsqueeze(1)}, 1);
    return rgb(cut.reshape({-1, ch, t, t}), c.mean, c.std);
}

torch::Tensor first_tensor(const c10::IValue& v) { return v.isTuple() ? v.toTuple()->elements()[0].toTensor() : v.toTensor(); }

/// The grounding encoder's input: format 2's SAM-normalized RGB, format 1's grey slices.
torch::Tensor grounding_input(const Model::Impl& I, const torch::Tensor& img) {
    const Manifest& m = I.manifest;
    return m.chat ? rgb(img, m.chat->sam_mean, m.chat->sam_std) : img;
}

/// The grounding features of each slice of a batch: from the cache where it has the slice, the
/// others encoded in one call and kept while the cache has room. `ids`: the slices' numbers.
core::Result<std::vector<SliceFeatures>> grounding_features(const Model::Impl& I, const torch::Tensor& input, FeatureCache* cache,
                                                            const std::vector<int>& ids, StageSeconds& st) {
    const Manifest& m = I.manifest;
    const std::int64_t count = input.size(0);
    std::vector<SliceFeatures> out(static_cast<size_t>(count));
    std::vector<std::int64_t> missing;
    for (size_t b = 0; b < out.size(); ++b) {
        const SliceFeatures* hit = cache && b < ids.size() ? cache->impl().find(ids[b]) : nullptr;
        if (hit) out[b] = *hit;
        else missing.push_back(static_cast<std::int64_t>(b));
    }
    if (missing.empty()) return out;
    auto t0 = std::chrono::steady_clock::now();
    const bool all = static_cast<std::int64_t>(missing.size()) == count;
    auto g = I.part("grounding_encoder").forward({all ? input : input.index_select(0, torch::tensor(missing, torch::kLong).to(I.device))});
    std::vector<torch::Tensor> encoded;
    if (g.isTuple())
        for (const auto& e : g.toTuple()->elements()) encoded.push_back(e.toTensor());
    else
        encoded.push_back(g.toTensor());
    if (m.format == 1 && (encoded[0].dim() != 4 || encoded[0].size(2) != m.mask_size || encoded[0].size(3) != m.mask_size))
        return core::make_error(ErrorKind::InvalidInput, "grounding_encoder output shape differs from model.json");
    for (size_t k = 0; k < missing.size(); ++k) {
        const auto b = static_cast<size_t>(missing[k]);
        for (const auto& t : encoded) out[b].push_back(t.narrow(0, static_cast<std::int64_t>(k), 1));
        if (cache && b < ids.size()) cache->impl().keep(ids[b], out[b]);
    }
    I.sync();
    st.grounding += since(t0);
    return out;
}

core::Result<ImageFeatures> encode_format2(const Model::Impl& I, const torch::Tensor& img, const SliceGeometry& g,
                                           FeatureCache* cache, const std::vector<int>& ids, StageSeconds& st) {
    const Manifest& m = I.manifest;
    const ChatSpec& c = *m.chat;
    auto t0 = std::chrono::steady_clock::now();
    TileGrid grid = g.rows > 0 ? tile_grid(c, g.columns, g.rows) : tile_grid(c, m.input_size, m.input_size);
    const torch::Tensor marked = with_boxes(img, g);
    torch::Tensor visual = first_tensor(I.part("vision_encoder").forward({tiles(c, marked, grid)}));
    if (visual.dim() != 3 || visual.size(1) != c.tokens_per_tile || visual.size(2) != m.hidden_size)
        return core::make_error(ErrorKind::InvalidInput, "vision_encoder output shape differs from model.json");
    ImageFeatures f{visual.reshape({img.size(0), -1, m.hidden_size}), {}};
    I.sync();
    st.vision += since(t0);
    auto grounding = grounding_features(I, grounding_input(I, marked), g.boxes.empty() ? cache : nullptr, ids, st);
    if (!grounding) return grounding.error();
    f.grounding = std::move(grounding.value());
    return f;
}

/// Visual tokens and grounding features of the slices (those the cache has are not encoded again;
/// format 1 draws its boxes into the image before: roi_box_value).
core::Result<ImageFeatures> encode_images(const Model::Impl& I, const torch::Tensor& img, const SliceGeometry& g,
                                          FeatureCache* cache, const std::vector<int>& ids, StageSeconds& st) {
    const Manifest& m = I.manifest;
    if (m.format == 2) return encode_format2(I, img, g, cache, ids, st);
    auto t0 = std::chrono::steady_clock::now();
    ImageFeatures f{first_tensor(I.part("vision_encoder").forward({img})), {}};
    st.vision += since(t0);
    if (f.visual.dim() != 3 || f.visual.size(1) != m.visual_tokens || f.visual.size(2) != m.hidden_size)
        return core::make_error(ErrorKind::InvalidInput, "vision_encoder output shape differs from model.json");
    auto grounding = grounding_features(I, img, cache, ids, st);
    if (!grounding) return grounding.error();
    f.grounding = std::move(grounding.value());
    return f;
}

/// The prefix embeddings of every slice. Format 1: visual tokens + embed(<bos> + prompt). Format 2:
/// the chat template around the prompt, its run of image-context tokens replaced by the visual tokens.
core::Result<torch::Tensor> prefix(const Model::Impl& I, const torch::Tensor& visual, const std::string& prompt) {
    const Manifest& m = I.manifest;
    auto& lm = I.part("language_model");
    auto embed = [&](std::vector<std::int64_t> ids) {
        torch::Tensor t = torch::tensor(ids, torch::kLong).unsqueeze(0).to(I.device);
        return lm.run_method("embed", t).toTensor().expand({visual.size(0), -1, -1});
    };
    if (m.format == 1) {
        std::vector<std::int64_t> ids = {m.token_ids.at("<bos>")};
        for (auto id : I.encode(prompt)) ids.push_back(id);
        return torch::cat({visual, embed(ids)}, 1);
    }
    const std::int64_t n = visual.size(1);
    std::vector<std::int64_t> ids = I.encode(chat_prompt(*m.chat, prompt, static_cast<int>(n / m.chat->tokens_per_tile)));
    auto first = std::find(ids.begin(), ids.end(), I.image_context_id);
    if (first == ids.end() || ids.end() - first < n || std::count(first, first + n, I.image_context_id) != n)
        return core::make_error(ErrorKind::InvalidInput, "prompt \"" + prompt + "\": no run of image tokens for the visual tokens");
    return torch::cat({embed({ids.begin(), first}), visual.to(torch::kFloat32), embed({first + n, ids.end()})}, 1);
}

/// Greedy steps with the KV cache until every slice has finished or max_new_tokens. The [SEG]
/// hidden state is the output of the step that consumes the [SEG] token (as in training, where
/// it is the output at the [SEG] position).
core::Result<Decoded> decode(const Model::Impl& I, const torch::Tensor& visual, const std::string& prompt) {
    const Manifest& m = I.manifest;
    auto& lm = I.part("language_model");
    const std::int64_t count = visual.size(0);
    auto x = prefix(I, visual, prompt);
    if (!x) return x.error();
    const std::int64_t kv_heads = m.chat ? m.chat->kv_heads : m.heads, head_dim = m.chat ? m.chat->head_dim : m.hidden_size / m.heads;
    torch::Tensor empty = torch::zeros({m.layers, count, kv_heads, 0, head_dim}, x->options().dtype(I.dtype));
    auto out = lm.forward({x.value(), static_cast<std::int64_t>(0), empty, empty}).toTuple();
    torch::Tensor logits = out->elements()[0].toTensor(), k = out->elements()[2].toTensor(), v = out->elements()[3].toTensor();
    const std::int64_t vocab = m.chat ? m.chat->vocab_size : static_cast<std::int64_t>(m.vocab.size());
    if (logits.size(2) != vocab) return core::make_error(ErrorKind::InvalidInput, "language_model vocabulary size differs from the manifest");
    const std::int64_t seg = m.chat ? m.chat->seg_id : m.token_ids.at("[SEG]");
    Decoded d{std::vector<std::vector<std::int64_t>>(static_cast<size_t>(count)),
              std::vector<std::vector<torch::Tensor>>(static_cast<size_t>(count))};
    std::vector<bool> done(static_cast<size_t>(count), false);
    torch::Tensor next = logits.select(1, -1).argmax(-1);
    std::int64_t pos = x->size(1);
    for (int step = 0; step < m.max_new_tokens; ++step) {
        torch::Tensor next_cpu = next.to(torch::kCPU);
        auto fed = next_cpu.accessor<std::int64_t, 1>();
        bool all_done = true;
        for (size_t b = 0; b < done.size(); ++b) {
            if (!done[b]) d.tokens[b].push_back(fed[static_cast<long>(b)]), done[b] = I.finished(d.tokens[b]);
            all_done = all_done && done[b];
        }
        if (all_done || pos >= m.max_positions) break;
        auto o = lm.forward({lm.run_method("embed", next.unsqueeze(1)).toTensor(), pos++, k, v}).toTuple();
        torch::Tensor hidden = o->elements()[1].toTensor();
        k = o->elements()[2].toTensor(), v = o->elements()[3].toTensor();
        for (size_t b = 0; b < done.size(); ++b)
            if (!done[b] && fed[static_cast<long>(b)] == seg) d.seg_hidden[b].push_back(hidden[static_cast<long>(b)][0]);
        next = o->elements()[0].toTensor().select(1, -1).argmax(-1);
    }
    return d;
}

std::vector<float> to_vector(const torch::Tensor& t) {
    torch::Tensor c = t.reshape({-1}).to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

/// Mask logits of one slice for one projected prompt [1, E].
torch::Tensor decode_mask(const Model::Impl& I, const SliceFeatures& f, const torch::Tensor& prompt) {
    std::vector<c10::IValue> in;
    for (const auto& g : f) in.emplace_back(g);
    in.emplace_back(prompt);
    return first_tensor(I.part("mask_decoder").forward(in));
}

/// Text of each slice and, per [SEG], its label and mask logits from parts 3 and 5.
std::vector<SliceAnswer> answers_with_masks(const Model::Impl& I, const Decoded& d, const ImageFeatures& f) {
    std::vector<SliceAnswer> answers(d.tokens.size());
    for (size_t b = 0; b < d.tokens.size(); ++b) {
        SliceAnswer& a = answers[b];
        a.text = I.answer_text(d.tokens[b]);
        auto labels = parse_seg_labels(a.text);
        for (size_t i = 0; i < labels.size() && i < d.seg_hidden[b].size(); ++i) {
            torch::Tensor prompt = I.part("seg_projection").forward({d.seg_hidden[b][i].unsqueeze(0)}).toTensor();
            a.masks.emplace_back(canonical_label(I.manifest, labels[i]), to_vector(decode_mask(I, f.grounding[b], prompt)));
            a.prompts.push_back(to_vector(prompt));
        }
    }
    return answers;
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
        // Format 2's parts see a new KV-cache length at every decoding step: TorchScript's profiling
        // executor would re-specialize the language model for each one (about 0.1 s a step on a GPU).
        // The setting is per thread, so it is made here, on the calling thread.
        torch::jit::GraphOptimizerEnabledGuard optimize(I.manifest.format == 1);
        auto img = input_images(I, images, count);
        if (!img) return img.error();
        return body(img.value(), seconds ? *seconds : local);
    } catch (const c10::Error& e) {
        return core::make_error(ErrorKind::Internal, std::string("inference failed: ") + e.what_without_backtrace());
    }
}

}  // namespace

core::Result<std::vector<SliceAnswer>> Model::run(const std::vector<float>& images, int count, const std::string& prompt,
                                                  StageSeconds* seconds, const SliceGeometry& geometry) const {
    auto answers = run_prompts(images, count, {prompt}, seconds, geometry);
    if (!answers) return answers.error();
    return std::move(answers.value().front());
}

core::Result<std::vector<std::vector<SliceAnswer>>> Model::run_prompts(const std::vector<float>& images, int count,
                                                                       const std::vector<std::string>& prompts,
                                                                       StageSeconds* seconds, const SliceGeometry& geometry,
                                                                       FeatureCache* cache, const std::vector<int>& slice_ids) const {
    using Answers = std::vector<std::vector<SliceAnswer>>;
    return infer<Answers>(*m_impl, images, count, seconds, [&](const torch::Tensor& img, StageSeconds& st) -> core::Result<Answers> {
        auto features = encode_images(*m_impl, img, geometry, cache, slice_ids, st);
        if (!features) return features.error();
        Answers out;
        for (const auto& prompt : prompts) {
            auto t1 = std::chrono::steady_clock::now();
            auto decoded = decode(*m_impl, features->visual, prompt);
            if (!decoded) return decoded.error();
            m_impl->sync();
            st.decode += since(t1);
            auto t2 = std::chrono::steady_clock::now();
            out.push_back(answers_with_masks(*m_impl, decoded.value(), features.value()));
            m_impl->sync();
            st.mask += since(t2);
        }
        return out;
    });
}

core::Result<std::vector<std::vector<float>>> Model::segment(const std::vector<float>& images, int count,
                                                             const std::vector<std::vector<float>>& prompts,
                                                             StageSeconds* seconds, const std::vector<int>& image_of,
                                                             FeatureCache* cache, const std::vector<int>& slice_ids) const {
    using Masks = std::vector<std::vector<float>>;
    if (image_of.empty() ? prompts.size() != static_cast<size_t>(std::max(count, 0)) : prompts.size() != image_of.size())
        return core::make_error(ErrorKind::InvalidInput, "segment(): one prompt per slice, or one slice index per prompt");
    for (int b : image_of)
        if (b < 0 || b >= count) return core::make_error(ErrorKind::InvalidInput, "segment(): slice index out of range");
    return infer<Masks>(*m_impl, images, count, seconds, [&](const torch::Tensor& img, StageSeconds& st) -> core::Result<Masks> {
        auto f = grounding_features(*m_impl, grounding_input(*m_impl, img), cache, slice_ids, st);
        if (!f) return f.error();
        auto t0 = std::chrono::steady_clock::now();
        Masks out;
        for (size_t k = 0; k < prompts.size(); ++k) {
            const auto& p = prompts[k];
            torch::Tensor prompt = torch::from_blob(const_cast<float*>(p.data()), {1, static_cast<long>(p.size())}, torch::kFloat32)
                                       .to(m_impl->device);
            out.push_back(to_vector(decode_mask(*m_impl, f.value()[image_of.empty() ? k : static_cast<size_t>(image_of[k])], prompt)));
        }
        m_impl->sync();
        st.mask += since(t0);
        return out;
    });
}

FeatureCache::FeatureCache(size_t max_bytes) : m_impl(std::make_unique<Impl>()) { m_impl->max_bytes = max_bytes; }
FeatureCache::~FeatureCache() = default;
size_t FeatureCache::bytes() const { return m_impl->bytes; }
size_t FeatureCache::reused() const { return m_impl->reused; }

const std::vector<torch::Tensor>* FeatureCache::Impl::find(int slice) {
    auto it = slices.find(slice);
    if (it == slices.end()) return nullptr;
    ++reused;
    return &it->second;
}

void FeatureCache::Impl::keep(int slice, const std::vector<torch::Tensor>& features) {
    size_t size = 0;
    for (const auto& t : features) size += t.nbytes();
    if (slices.count(slice) || bytes + size > max_bytes) return;
    auto& kept = slices[slice];
    for (const auto& t : features) kept.push_back(t.clone());  // its own storage, not a view of the batch's
    bytes += size;
}

}  // namespace triage::pipeline
