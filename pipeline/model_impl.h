#pragma once
// Model::Impl: the loaded bundle's Torch state, shared by model.cpp (loading) and inference.cpp
// (running). Private to pipeline/*.cpp: Torch types never leave the library.
#include <torch/script.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/bpe_tokenizer.h"
#include "pipeline/model.h"

namespace triage::pipeline {

struct Model::Impl {
    Manifest manifest;
    torch::Device device = torch::kCPU;
    torch::ScalarType dtype = torch::kFloat32;  // compute dtype of the parts (and of the KV cache)
    std::map<std::string, torch::jit::Module> parts;
    std::optional<BpeTokenizer> bpe;  // format 2: the checkpoint's byte-level BPE
    std::int64_t image_context_id = -1;  // format 2: the id the visual tokens replace

    /// Token ids of `text` (format 1: known words; format 2: BPE with added tokens).
    std::vector<std::int64_t> encode(const std::string& text) const;
    /// The answer text of generated ids, without the end-of-answer token or stop text.
    std::string answer_text(const std::vector<std::int64_t>& ids) const;
    /// True when the generated ids end the answer (<eos>, or format 2's stop text).
    bool finished(const std::vector<std::int64_t>& ids) const;
    torch::jit::Module& part(const char* name) const { return const_cast<torch::jit::Module&>(parts.at(name)); }
    /// Waits for the device (CUDA) so that stage timings are true.
    void sync() const;
};

/// A series' grounding features by slice number (FeatureCache's state).
struct FeatureCache::Impl {
    size_t max_bytes = 0, bytes = 0, reused = 0;
    std::map<int, std::vector<torch::Tensor>> slices;  // each [1, ...], own storage
    /// The slice's features (counted as reused), or nullptr.
    const std::vector<torch::Tensor>* find(int slice);
    /// Keeps a copy of the slice's features unless it has them or they would pass max_bytes.
    void keep(int slice, const std::vector<torch::Tensor>& features);
};

}  // namespace triage::pipeline
