#include "pipeline/bpe_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "pipeline/bpe_tokenizer_impl.h"

namespace triage::pipeline {

namespace {

// A piece of text between added tokens (id < 0) or an added token's match.
struct Segment {
    size_t begin = 0;
    size_t end = 0;
    int id = -1;
};

bool single_word_ok(std::string_view text, size_t begin, size_t end) {
    size_t at = 0;
    const bool left_ok = begin == 0 || !is_word_char(prev_code_point(text, begin, at));
    size_t pos = end;
    const bool right_ok = end == text.size() || !is_word_char(next_code_point(text, pos));
    return left_ok && right_ok;
}

// Leftmost-longest match of one of `tokens` at or after `from`: {begin, token}, token null when none.
std::pair<size_t, const AddedToken*> find_added(std::string_view text, size_t from, const std::vector<AddedToken>& tokens) {
    for (size_t p = from; p < text.size(); ++p) {
        const AddedToken* best = nullptr;
        for (const AddedToken& t : tokens)
            if (t.content[0] == text[p] && text.compare(p, t.content.size(), t.content) == 0 &&
                (best == nullptr || t.content.size() > best->content.size()))
                best = &t;
        if (best != nullptr) return {p, best};
    }
    return {text.size(), nullptr};
}

// Splits `text` around the matches of `tokens`, the way tokenizers' AddedVocabulary::find_matches
// does: non-overlapping leftmost-longest matches, single_word checks, lstrip/rstrip whitespace.
std::vector<Segment> split_added(std::string_view text, const std::vector<AddedToken>& tokens) {
    std::vector<Segment> out;
    size_t done = 0;  // end of the last segment
    for (size_t from = 0; !tokens.empty() && from < text.size();) {
        auto [begin, tok] = find_added(text, from, tokens);
        if (tok == nullptr) break;
        size_t end = begin + tok->content.size();
        from = end;
        if (begin < done || (tok->single_word && !single_word_ok(text, begin, end))) continue;
        size_t at = begin;
        while (tok->lstrip && begin > done) {
            if (!is_white_space(prev_code_point(text, begin, at))) break;
            begin = at;
        }
        for (size_t pos = end; tok->rstrip && pos < text.size() && is_white_space(next_code_point(text, pos));) end = pos;
        if (done < begin) out.push_back({done, begin, -1});
        out.push_back({begin, end, tok->id});
        done = end;
    }
    if (done < text.size()) out.push_back({done, text.size(), -1});
    return out;
}

struct Symbol {
    int id;
    int prev;
    int next;
    bool alive;
};

struct QueuedMerge {
    int rank;
    int pos;
    int new_id;
    bool operator>(const QueuedMerge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

// BPE of one word's symbols, as tokenizers' Word::merge_all: lowest rank first, leftmost on ties.
void merge_word(const BpeTokenizer::Impl& impl, std::vector<Symbol>& syms) {
    std::priority_queue<QueuedMerge, std::vector<QueuedMerge>, std::greater<>> queue;
    auto push_pair = [&](int left) {
        const int right = syms[static_cast<size_t>(left)].next;
        if (right < 0) return;
        auto it = impl.merges.find(merge_key(syms[static_cast<size_t>(left)].id, syms[static_cast<size_t>(right)].id));
        if (it != impl.merges.end()) queue.push({it->second.rank, left, it->second.new_id});
    };
    for (size_t i = 0; i + 1 < syms.size(); ++i) push_pair(static_cast<int>(i));
    while (!queue.empty()) {
        const QueuedMerge top = queue.top();
        queue.pop();
        Symbol& left = syms[static_cast<size_t>(top.pos)];
        if (!left.alive || left.next < 0) continue;
        Symbol& right = syms[static_cast<size_t>(left.next)];
        auto it = impl.merges.find(merge_key(left.id, right.id));
        if (it == impl.merges.end() || it->second.new_id != top.new_id) continue;  // expired entry
        left.id = top.new_id;
        right.alive = false;
        left.next = right.next;
        if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
        if (left.prev >= 0) push_pair(left.prev);
        push_pair(top.pos);
    }
}

// Ids of one pre-tokenized word (raw UTF-8 bytes), appended to `out`.
void encode_word(const BpeTokenizer::Impl& impl, std::string_view word, std::vector<int>& out) {
    if (impl.ignore_merges) {
        auto it = impl.vocab.find(bytes_to_symbols(word));
        if (it != impl.vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    for (char b : word) {
        int id = impl.byte_ids[static_cast<unsigned char>(b)];
        if (id < 0 && impl.unk_id) id = *impl.unk_id;
        if (id < 0) continue;  // no vocabulary entry and no unk token: dropped, as tokenizers does
        const int n = static_cast<int>(syms.size());
        syms.push_back({id, n - 1, -1, true});
        if (n > 0) syms[static_cast<size_t>(n - 1)].next = n;
    }
    merge_word(impl, syms);
    for (const Symbol& s : syms)
        if (s.alive) out.push_back(s.id);
}

void encode_normalized(const BpeTokenizer::Impl& impl, std::string_view text, std::vector<int>& out) {
    for (const Segment& seg : split_added(text, impl.added_normalized)) {
        if (seg.id >= 0) {
            out.push_back(seg.id);
            continue;
        }
        for (std::string_view word : split_qwen2(text.substr(seg.begin, seg.end - seg.begin))) encode_word(impl, word, out);
    }
}

}  // namespace

core::Result<BpeTokenizer> BpeTokenizer::from_text(std::string_view json_text, const std::string& origin) {
    auto impl = std::make_shared<Impl>();
    if (auto st = parse_tokenizer_json(json_text, origin, *impl); !st) return st.error();
    return BpeTokenizer(std::move(impl));
}

core::Result<BpeTokenizer> BpeTokenizer::load(const std::string& tokenizer_json_path) {
    std::ifstream in(tokenizer_json_path, std::ios::binary);
    if (!in) return core::make_error(core::ErrorKind::NotFound, tokenizer_json_path + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    return from_text(text.str(), tokenizer_json_path);
}

std::vector<int> BpeTokenizer::encode(const std::string& utf8) const {
    const Impl& impl = *m_impl;
    const std::string text = utf8_lossy(utf8);
    std::vector<int> out;
    for (const Segment& seg : split_added(text, impl.added_raw)) {
        if (seg.id >= 0) {
            out.push_back(seg.id);
            continue;
        }
        std::string piece = text.substr(seg.begin, seg.end - seg.begin);
        for (UnicodeForm form : impl.normalizers) piece = normalize_unicode(piece, form);
        encode_normalized(impl, piece, out);
    }
    return out;
}

std::string BpeTokenizer::decode(const std::vector<int>& ids) const {
    std::string bytes;
    for (int id : ids) {
        if (id < 0 || static_cast<size_t>(id) >= m_impl->id_to_token.size()) continue;
        const std::string& tok = m_impl->id_to_token[static_cast<size_t>(id)];
        if (!symbols_to_bytes(tok, bytes)) bytes += tok;
    }
    return utf8_lossy(bytes);
}

std::optional<int> BpeTokenizer::token_id(const std::string& token) const {
    if (auto it = m_impl->added_ids.find(token); it != m_impl->added_ids.end()) return it->second;
    if (auto it = m_impl->vocab.find(token); it != m_impl->vocab.end()) return it->second;
    return std::nullopt;
}

std::optional<std::string> BpeTokenizer::token(int id) const {
    if (id < 0 || static_cast<size_t>(id) >= m_impl->id_to_token.size() || m_impl->id_to_token[static_cast<size_t>(id)].empty())
        return std::nullopt;
    return m_impl->id_to_token[static_cast<size_t>(id)];
}

size_t BpeTokenizer::vocab_size() const { return m_impl->id_to_token.size(); }

const std::vector<AddedToken>& BpeTokenizer::added_tokens() const { return m_impl->added; }

core::Result<BpeTokenizer> load_bundle_tokenizer(const std::string& bundle_dir) {
    namespace fs = std::filesystem;
    const fs::path dir(bundle_dir);
    std::string name = "tokenizer.json";
    const fs::path manifest = dir / "model.json";
    std::error_code ec;
    if (fs::exists(manifest, ec)) {
        std::ifstream in(manifest, std::ios::binary);
        const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_object()) return core::make_error(core::ErrorKind::InvalidInput, manifest.string() + ": not a JSON object");
        if (j.contains("tokenizer")) {
            if (!j["tokenizer"].is_string() || j["tokenizer"].get<std::string>().empty())
                return core::make_error(core::ErrorKind::InvalidInput, manifest.string() + ": tokenizer: not a file name");
            name = j["tokenizer"].get<std::string>();
        }
    }
    return BpeTokenizer::load((dir / name).string());
}

}  // namespace triage::pipeline
