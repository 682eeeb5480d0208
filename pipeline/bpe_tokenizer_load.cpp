// Reads a Hugging Face tokenizer.json into BpeTokenizer::Impl. Every error names the field.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "pipeline/bpe_tokenizer_impl.h"

namespace triage::pipeline {

namespace {

using nlohmann::json;

struct Reader {
    const std::string& origin;
    core::Error bad(const std::string& field, const std::string& what) const {
        return core::make_error(core::ErrorKind::InvalidInput, origin + ": " + field + ": " + what);
    }
};

// The string at j[key] ("" when absent or null); false when present with another type.
bool opt_string(const json& j, const char* key, std::string& out) {
    out.clear();
    if (!j.contains(key) || j[key].is_null()) return true;
    if (!j[key].is_string()) return false;
    out = j[key].get<std::string>();
    return true;
}

bool opt_bool(const json& j, const char* key, bool& out) {
    if (!j.contains(key) || j[key].is_null()) return true;
    if (!j[key].is_boolean()) return false;
    out = j[key].get<bool>();
    return true;
}

core::Status parse_normalizer(const Reader& r, const json& j, const std::string& field, std::vector<UnicodeForm>& out) {
    if (j.is_null()) return {};
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return r.bad(field + ".type", "missing");
    const std::string type = j["type"].get<std::string>();
    if (type == "NFC") out.push_back(UnicodeForm::NFC);
    else if (type == "NFD") out.push_back(UnicodeForm::NFD);
    else if (type == "NFKC") out.push_back(UnicodeForm::NFKC);
    else if (type == "NFKD") out.push_back(UnicodeForm::NFKD);
    else if (type == "Sequence") {
        if (!j.contains("normalizers") || !j["normalizers"].is_array()) return r.bad(field + ".normalizers", "not an array");
        for (size_t i = 0; i < j["normalizers"].size(); ++i) {
            auto st = parse_normalizer(r, j["normalizers"][i], field + ".normalizers[" + std::to_string(i) + "]", out);
            if (!st) return st;
        }
    } else {
        return r.bad(field + ".type", "unsupported normalizer \"" + type + "\"");
    }
    return {};
}

// Accepts only Qwen2's: Sequence[Split(Qwen2 pattern, Isolated), ByteLevel(no prefix space, no regex)].
core::Status check_pre_tokenizer(const Reader& r, const json& j) {
    const std::string f = "pre_tokenizer";
    if (!j.is_object() || j.value("type", std::string()) != "Sequence")
        return r.bad(f + ".type", "only Qwen2's Sequence [Split, ByteLevel] is supported");
    const json& list = j.contains("pretokenizers") ? j["pretokenizers"] : json();
    if (!list.is_array() || list.size() != 2) return r.bad(f + ".pretokenizers", "expected [Split, ByteLevel]");
    const json& split = list[0];
    if (!split.is_object() || split.value("type", std::string()) != "Split")
        return r.bad(f + ".pretokenizers[0].type", "expected Split");
    const json& pattern = split.contains("pattern") ? split["pattern"] : json();
    if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string())
        return r.bad(f + ".pretokenizers[0].pattern.Regex", "missing");
    if (pattern["Regex"].get<std::string>() != kQwen2SplitPattern)
        return r.bad(f + ".pretokenizers[0].pattern.Regex", "unsupported pattern (only Qwen2's is implemented)");
    if (split.value("behavior", std::string()) != "Isolated")
        return r.bad(f + ".pretokenizers[0].behavior", "only Isolated is supported");
    if (split.value("invert", false)) return r.bad(f + ".pretokenizers[0].invert", "only false is supported");
    const json& bl = list[1];
    if (!bl.is_object() || bl.value("type", std::string()) != "ByteLevel")
        return r.bad(f + ".pretokenizers[1].type", "expected ByteLevel");
    if (bl.value("add_prefix_space", false)) return r.bad(f + ".pretokenizers[1].add_prefix_space", "only false is supported");
    if (bl.value("use_regex", false)) return r.bad(f + ".pretokenizers[1].use_regex", "only false is supported");
    return {};
}

core::Status check_decoder(const Reader& r, const json& root) {
    if (!root.contains("decoder") || root["decoder"].is_null()) return r.bad("decoder", "missing");
    const json& d = root["decoder"];
    if (!d.is_object() || d.value("type", std::string()) != "ByteLevel")
        return r.bad("decoder.type", "only ByteLevel is supported");
    return {};
}

core::Status parse_vocab(const Reader& r, const json& model, BpeTokenizer::Impl& impl) {
    if (!model.contains("vocab") || !model["vocab"].is_object()) return r.bad("model.vocab", "not an object");
    const json& vocab = model["vocab"];
    impl.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<long long>() < 0 || it.value().get<long long>() > INT32_MAX)
            return r.bad("model.vocab[\"" + it.key() + "\"]", "not a non-negative integer id");
        impl.vocab[it.key()] = it.value().get<int>();
    }
    return {};
}

// One merge: "left right" (classic) or ["left", "right"] (tokenizers >= 0.20).
bool merge_parts(const json& m, std::string& left, std::string& right) {
    if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) return false;
        left = s.substr(0, space);
        right = s.substr(space + 1);
        return true;
    }
    if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_string()) return false;
    left = m[0].get<std::string>();
    right = m[1].get<std::string>();
    return true;
}

core::Status parse_merges(const Reader& r, const json& model, BpeTokenizer::Impl& impl) {
    if (!model.contains("merges") || !model["merges"].is_array()) return r.bad("model.merges", "not an array");
    const json& merges = model["merges"];
    impl.merges.reserve(merges.size());
    std::string left, right;
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string field = "model.merges[" + std::to_string(i) + "]";
        if (!merge_parts(merges[i], left, right)) return r.bad(field, "not \"left right\" or [left, right]");
        auto a = impl.vocab.find(left), b = impl.vocab.find(right), ab = impl.vocab.find(left + right);
        if (a == impl.vocab.end() || b == impl.vocab.end() || ab == impl.vocab.end())
            return r.bad(field, "a part or the merged token is not in model.vocab");
        impl.merges[merge_key(a->second, b->second)] = {static_cast<int>(i), ab->second};
    }
    return {};
}

core::Status parse_model(const Reader& r, const json& root, BpeTokenizer::Impl& impl) {
    if (!root.contains("model") || !root["model"].is_object()) return r.bad("model", "missing");
    const json& model = root["model"];
    if (model.value("type", std::string("BPE")) != "BPE") return r.bad("model.type", "only BPE is supported");
    if (model.contains("dropout") && !model["dropout"].is_null()) return r.bad("model.dropout", "dropout is not supported");
    std::string prefix, suffix, unk;
    if (!opt_string(model, "continuing_subword_prefix", prefix) || !prefix.empty())
        return r.bad("model.continuing_subword_prefix", "only empty is supported");
    if (!opt_string(model, "end_of_word_suffix", suffix) || !suffix.empty())
        return r.bad("model.end_of_word_suffix", "only empty is supported");
    bool byte_fallback = false;
    if (!opt_bool(model, "byte_fallback", byte_fallback) || byte_fallback)
        return r.bad("model.byte_fallback", "only false is supported");
    if (!opt_bool(model, "ignore_merges", impl.ignore_merges)) return r.bad("model.ignore_merges", "not a boolean");
    if (!opt_string(model, "unk_token", unk)) return r.bad("model.unk_token", "not a string");
    if (auto st = parse_vocab(r, model, impl); !st) return st;
    if (!unk.empty()) {
        auto it = impl.vocab.find(unk);
        if (it == impl.vocab.end()) return r.bad("model.unk_token", "not in model.vocab");
        impl.unk_id = it->second;
    }
    return parse_merges(r, model, impl);
}

core::Status parse_added_token(const Reader& r, const json& j, const std::string& field, AddedToken& t) {
    if (!j.is_object()) return r.bad(field, "not an object");
    if (!j.contains("id") || !j["id"].is_number_integer() || j["id"].get<long long>() < 0 || j["id"].get<long long>() > INT32_MAX)
        return r.bad(field + ".id", "not a non-negative integer");
    t.id = j["id"].get<int>();
    if (!opt_string(j, "content", t.content) || t.content.empty()) return r.bad(field + ".content", "not a non-empty string");
    if (!opt_bool(j, "special", t.special)) return r.bad(field + ".special", "not a boolean");
    t.normalized = !t.special;
    const std::pair<const char*, bool*> flags[] = {
        {"normalized", &t.normalized}, {"lstrip", &t.lstrip}, {"rstrip", &t.rstrip}, {"single_word", &t.single_word}};
    for (const auto& [key, dst] : flags)
        if (!opt_bool(j, key, *dst)) return r.bad(field + "." + key, "not a boolean");
    return {};
}

core::Status parse_added_tokens(const Reader& r, const json& root, BpeTokenizer::Impl& impl) {
    if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return {};
    if (!root["added_tokens"].is_array()) return r.bad("added_tokens", "not an array");
    const json& list = root["added_tokens"];
    impl.added.resize(list.size());
    for (size_t i = 0; i < list.size(); ++i)
        if (auto st = parse_added_token(r, list[i], "added_tokens[" + std::to_string(i) + "]", impl.added[i]); !st) return st;
    for (const AddedToken& t : impl.added) {
        impl.added_ids[t.content] = t.id;
        if (!t.normalized) {
            impl.added_raw.push_back(t);
            continue;
        }
        AddedToken n = t;  // as tokenizers does: matched in its normalized form
        for (UnicodeForm form : impl.normalizers) n.content = normalize_unicode(n.content, form);
        impl.added_normalized.push_back(std::move(n));
    }
    return {};
}

// id -> token table (added tokens' content wins) and the ids of the 256 ByteLevel characters.
void build_reverse_tables(BpeTokenizer::Impl& impl) {
    int max_id = -1;
    for (const auto& [tok, id] : impl.vocab) max_id = std::max(max_id, id);
    for (const AddedToken& t : impl.added) max_id = std::max(max_id, t.id);
    impl.id_to_token.assign(static_cast<size_t>(max_id + 1), std::string());
    for (const auto& [tok, id] : impl.vocab) impl.id_to_token[static_cast<size_t>(id)] = tok;
    for (const AddedToken& t : impl.added) impl.id_to_token[static_cast<size_t>(t.id)] = t.content;
    for (int b = 0; b < 256; ++b) {
        std::string ch;
        append_utf8(ch, byte_to_char()[static_cast<size_t>(b)]);
        auto it = impl.vocab.find(ch);
        impl.byte_ids[static_cast<size_t>(b)] = it == impl.vocab.end() ? -1 : it->second;
    }
}

}  // namespace

core::Status parse_tokenizer_json(std::string_view text, const std::string& origin, BpeTokenizer::Impl& impl) {
    const Reader r{origin};
    const json root = json::parse(text.begin(), text.end(), nullptr, false);
    if (root.is_discarded()) return r.bad("(file)", "not valid JSON");
    if (!root.is_object()) return r.bad("(file)", "not a JSON object");
    if (auto st = parse_model(r, root, impl); !st) return st;
    if (auto st = parse_normalizer(r, root.contains("normalizer") ? root["normalizer"] : json(), "normalizer", impl.normalizers); !st)
        return st;
    if (!root.contains("pre_tokenizer")) return r.bad("pre_tokenizer", "missing");
    if (auto st = check_pre_tokenizer(r, root["pre_tokenizer"]); !st) return st;
    if (auto st = check_decoder(r, root); !st) return st;
    if (auto st = parse_added_tokens(r, root, impl); !st) return st;
    build_reverse_tables(impl);
    return {};
}

}  // namespace triage::pipeline
