// bench/infer: inference throughput of a model bundle (slices/s, per-stage latency) on CPU or CUDA.
// usage: infer --bundle DIR [--device auto|cpu|cuda] [--batch 8] [--slices 64] [--threads N]
//              [--input FILE.f32 --count N] [--dump OUT.json] [--prompt TEXT] [--size NATIVE]
// With --input, runs the given preprocessed slices (count x S x S float32) and, with --dump,
// writes the texts and mask logits (the parity test compares them with tools/model/infer.py).
// --prompt replaces the recognition prompt (referring segmentation, region-aware description).
// --size gives the native slice size the images stand for (format 2 tiles by its aspect; 512: one tile).
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "pipeline/model.h"
#include "pipeline/process.h"

int main(int argc, char** argv) {
    triage::pipeline::prefer_passive_openmp(argv);
    std::string bundle, device = "cpu", input, dump, prompt;
    int batch = 8, slices = 64, count = 0, threads = 0, size = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--bundle") bundle = v;
        else if (k == "--device") device = v;
        else if (k == "--batch") batch = std::stoi(v);
        else if (k == "--slices") slices = std::stoi(v);
        else if (k == "--input") input = v;
        else if (k == "--count") count = std::stoi(v);
        else if (k == "--dump") dump = v;
        else if (k == "--threads") threads = std::stoi(v);
        else if (k == "--prompt") prompt = v;
        else if (k == "--size") size = std::stoi(v);
    }
    if (bundle.empty()) {
        std::fprintf(stderr, "usage: infer --bundle DIR [--device D] [--batch N] [--slices N] [--input F --count N] [--dump F] [--prompt T]\n");
        return 2;
    }
    if (threads > 0) at::set_num_threads(threads);
    auto model = triage::pipeline::Model::load(bundle, device);
    if (!model) {
        std::fprintf(stderr, "infer: %s\n", model.error().message.c_str());
        return 1;
    }
    const auto& m = model.value()->manifest();
    const size_t plane = static_cast<size_t>(m.input_size) * m.input_size;
    std::vector<float> images;
    if (!input.empty()) {
        std::ifstream in(input, std::ios::binary);
        images.resize(plane * static_cast<size_t>(count));
        in.read(reinterpret_cast<char*>(images.data()), static_cast<std::streamsize>(images.size() * sizeof(float)));
        if (!in) {
            std::fprintf(stderr, "infer: cannot read %d slices from %s\n", count, input.c_str());
            return 1;
        }
        slices = count;
    } else {
        std::mt19937 rng(42);
        std::uniform_real_distribution<float> u(0, 1);
        images.resize(plane * static_cast<size_t>(slices));
        for (auto& x : images) x = u(rng);
    }
    if (prompt.empty()) prompt = m.prompts.at("recognition").front();
    if (auto p = prompt.find("{modality}"); p != std::string::npos) prompt.replace(p, 10, "CT");
    triage::pipeline::StageSeconds st;
    nlohmann::json out = nlohmann::json::array();
    auto t0 = std::chrono::steady_clock::now();
    for (int z = 0; z < slices; z += batch) {
        int n = std::min(batch, slices - z);
        std::vector<float> chunk(images.begin() + static_cast<long>(z * plane), images.begin() + static_cast<long>((z + n) * plane));
        auto answers = model.value()->run(chunk, n, prompt, &st, {size, size, {}});
        if (!answers) {
            std::fprintf(stderr, "infer: %s\n", answers.error().message.c_str());
            return 1;
        }
        for (const auto& a : answers.value()) {
            nlohmann::json masks = nlohmann::json::array();
            for (const auto& [label, logits] : a.masks) masks.push_back({{"label", label}, {"logits", logits}});
            out.push_back({{"text", a.text}, {"masks", masks}});
        }
    }
    double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("bundle %s %s on %s, %d threads, batch %d, %d slices of %dx%d\n", m.name.c_str(), m.version.c_str(),
                model.value()->device_name().c_str(), at::get_num_threads(), batch, slices, m.input_size, m.input_size);
    std::printf("  %.1f slices/s  (%.2f ms/slice: vision %.2f, grounding %.2f, decode %.2f, mask %.2f)\n", slices / total,
                1000 * total / slices, 1000 * st.vision / slices, 1000 * st.grounding / slices, 1000 * st.decode / slices,
                1000 * st.mask / slices);
    if (!dump.empty()) std::ofstream(dump) << out.dump();
    return 0;
}
