#pragma once
// BpeTokenizer: a Hugging Face byte-level BPE tokenizer (Qwen2 / Qwen2.5, and so InternVL2.5 and
// UniBiomed) read from tokenizer.json, with the same ids as the `tokenizers` library:
// added tokens split out first (honouring special/normalized/lstrip/rstrip/single_word), then the
// normalizer (NFC for Qwen2), the Split pre-tokenizer with Qwen2's pattern, ByteLevel, and BPE by
// merge rank. Loaded once, immutable afterwards: every const member is thread-safe, and copies
// share the loaded tables.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace triage::pipeline {

// One entry of tokenizer.json "added_tokens", with its flags as the file gives them.
struct AddedToken {
    int id = 0;
    std::string content;
    bool special = false;
    bool normalized = true;  // matched in normalized text (default: true unless special)
    bool lstrip = false;     // the match takes the whitespace on its left
    bool rstrip = false;     // the match takes the whitespace on its right
    bool single_word = false;  // only matched when no word character touches it
};

class BpeTokenizer {
public:
    // Loads a tokenizer.json file. Fails with InvalidInput (NotFound when the file is missing) and a
    // message that names the offending field, e.g. "tokenizer.json: model.merges[12]: ...". Only
    // byte-level BPE with the Qwen2 pre-tokenizer is accepted; anything else is named as unsupported.
    static core::Result<BpeTokenizer> load(const std::string& tokenizer_json_path);
    // The same from the file's text; `origin` prefixes error messages.
    static core::Result<BpeTokenizer> from_text(std::string_view json_text, const std::string& origin = "tokenizer.json");

    // Token ids of `utf8`, no BOS/EOS added. Added tokens in the text are recognised. Invalid UTF-8
    // is read with U+FFFD in place of each invalid sequence.
    std::vector<int> encode(const std::string& utf8) const;
    // Text of `ids`: byte-level decoding, added tokens as their content, ids that name no token
    // skipped, bytes that are not valid UTF-8 replaced by U+FFFD.
    std::string decode(const std::vector<int>& ids) const;
    // Id of a vocabulary entry (ByteLevel form, e.g. "Ġliver") or an added token's content.
    std::optional<int> token_id(const std::string& token) const;
    // The vocabulary entry or added token content of `id`.
    std::optional<std::string> token(int id) const;
    // Number of ids, added tokens included: highest id + 1 (151,665 for Qwen2.5, 151,679 for UniBiomed).
    size_t vocab_size() const;
    const std::vector<AddedToken>& added_tokens() const;

    struct Impl;

private:
    explicit BpeTokenizer(std::shared_ptr<const Impl> impl) : m_impl(std::move(impl)) {}
    std::shared_ptr<const Impl> m_impl;
};

// The tokenizer of a model bundle folder: DIR/model.json's "tokenizer" field names the file when
// model.json exists (default "tokenizer.json"), else DIR/tokenizer.json.
core::Result<BpeTokenizer> load_bundle_tokenizer(const std::string& bundle_dir);

}  // namespace triage::pipeline
