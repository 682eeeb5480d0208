#include "pipeline/chat.h"

#include "core/text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace triage::pipeline {

using nlohmann::json;

namespace {

core::Error bad(const std::string& field, const std::string& what) {
    return core::make_error(core::ErrorKind::InvalidInput, "model bundle: model.json " + field + ": " + what);
}

std::array<float, 3> rgb(const json& j, const char* key) {
    auto v = j.at(key).get<std::vector<float>>();
    if (v.size() != 3) throw std::invalid_argument(std::string(key) + " needs 3 values");
    return {v[0], v[1], v[2]};
}

}  // namespace

core::Result<ChatSpec> parse_chat_spec(const std::string& json_text) {
    json j = json::parse(json_text, nullptr, false);
    if (!j.is_object()) return bad("", "not a JSON object");
    ChatSpec c;
    try {
        c.template_text = j.at("template").get<std::string>();
        c.stop_text = j.at("stop_text").get<std::string>();
        if (c.template_text.find("{input}") == std::string::npos) return bad("template", "has no {input}");
        const json& img = j.at("image");
        c.tile_size = img.at("tile_size").get<int>();
        c.min_tiles = img.value("min_tiles", 1);
        c.max_tiles = img.value("max_tiles", 12);
        c.use_thumbnail = img.value("use_thumbnail", true);
        c.tokens_per_tile = img.at("tokens_per_tile").get<int>();
        c.mean = rgb(img, "mean"), c.std = rgb(img, "std");
        c.sam_mean = img.contains("sam_mean") ? rgb(img, "sam_mean") : c.mean;
        c.sam_std = img.contains("sam_std") ? rgb(img, "sam_std") : c.std;
        if (c.tile_size <= 0 || c.tokens_per_tile <= 0) return bad("image", "tile_size and tokens_per_tile must be positive");
        if (c.min_tiles < 1 || c.max_tiles < c.min_tiles) return bad("image.max_tiles", "needs 1 <= min_tiles <= max_tiles");
        const json& tok = j.at("image_tokens");
        c.image_start = tok.at("start"), c.image_context = tok.at("context"), c.image_end = tok.at("end");
        const json& llm = j.at("llm");
        c.kv_heads = llm.at("kv_heads").get<int>();
        c.head_dim = llm.at("head_dim").get<int>();
        c.vocab_size = llm.at("vocab_size").get<int>();
        if (c.kv_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0) return bad("llm", "kv_heads, head_dim and vocab_size must be positive");
        const json& ids = j.at("special_token_ids");
        c.seg_id = ids.at("[SEG]").get<std::int64_t>();
        c.eos_id = ids.at("eos").get<std::int64_t>();
        c.dtype = j.value("dtype", "fp32");
        if (c.dtype != "bf16" && c.dtype != "fp16" && c.dtype != "fp32") return bad("dtype", "must be bf16, fp16 or fp32");
        if (j.contains("preprocessing") && j["preprocessing"].contains("MR") && j["preprocessing"]["MR"].contains("range")) {
            const json& r = j["preprocessing"]["MR"]["range"];
            c.mr_range = {r.at(0).get<double>(), r.at(1).get<double>()};
            if (!(c.mr_range.second > c.mr_range.first)) return bad("preprocessing.MR.range", "needs low < high");
        }
    } catch (const std::exception& e) {
        return bad("(format 2)", e.what());
    }
    return c;
}

std::string chat_prompt(const ChatSpec& c, const std::string& instruction, int tiles) {
    std::string image = c.image_start;
    for (int i = 0; i < tiles * c.tokens_per_tile; ++i) image += c.image_context;
    image += c.image_end;
    std::string input = instruction;
    if (auto p = input.find("<image>"); p != std::string::npos) input.replace(p, 7, image);
    std::string text = c.template_text;
    text.replace(text.find("{input}"), 7, input);
    return text;
}

TileGrid tile_grid(const ChatSpec& c, int columns, int rows) {
    TileGrid best;
    if (columns <= 0 || rows <= 0) return best;
    const double aspect = double(columns) / rows, area = double(columns) * rows;
    double best_diff = std::numeric_limits<double>::infinity();
    // Candidate grids in order of tile count, as InternVL sorts them.
    for (int n = 1; n <= c.max_tiles; ++n)
        for (int across = 1; across <= n; ++across) {
            if (n % across != 0) continue;
            int down = n / across;
            if (n < c.min_tiles) continue;
            double diff = std::abs(aspect - double(across) / down);
            if (diff < best_diff) {
                best_diff = diff, best.across = across, best.down = down;
            } else if (diff == best_diff && area > 0.5 * c.tile_size * c.tile_size * across * down) {
                best.across = across, best.down = down;
            }
        }
    best.thumbnail = c.use_thumbnail && best.across * best.down != 1;
    return best;
}

std::string cut_at_stop(const std::string& text, const std::string& stop) {
    std::string t = stop.empty() ? text : text.substr(0, text.find(stop));
    const char* ws = " \t\r\n";
    size_t a = t.find_first_not_of(ws), b = t.find_last_not_of(ws);
    return a == std::string::npos ? std::string() : t.substr(a, b - a + 1);
}

std::vector<std::string> parse_seg_labels(const std::string& answer) {
    static const std::string kSeg = "[SEG]";
    std::vector<std::string> labels;
    for (size_t p = answer.find(kSeg); p != std::string::npos; p = answer.find(kSeg, p)) {
        p += kSeg.size();
        size_t a = answer.find_first_not_of(" .\t", p);
        if (a == std::string::npos) a = answer.size();
        size_t b = std::min(answer.find_first_of(".,;\n", a), answer.find(kSeg, a));
        if (b == std::string::npos) b = answer.size();
        labels.push_back(cut_at_stop(answer.substr(a, b - a), ""));
    }
    return labels;
}

std::string canonical_label(const Manifest& m, const std::string& phrase) {
    const std::string lower = core::ascii_lower(phrase);
    for (const auto& l : m.labels)
        if (core::ascii_lower(l.text) == lower) return l.text;
    return lower;
}

}  // namespace triage::pipeline
