#pragma once
// The loaded tables of a BpeTokenizer (private to bpe_tokenizer*.cpp). Filled once by
// parse_tokenizer_json, read-only afterwards.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/result.h"
#include "pipeline/bpe_text.h"
#include "pipeline/bpe_tokenizer.h"

namespace triage::pipeline {

struct BpeMerge {
    int rank = 0;
    int new_id = 0;
};

struct BpeTokenizer::Impl {
    std::unordered_map<std::string, int> vocab;       // model.vocab
    std::vector<std::string> id_to_token;              // by id; added tokens' content overrides
    std::unordered_map<std::uint64_t, BpeMerge> merges;  // key: left id << 32 | right id
    std::array<int, 256> byte_ids{};                   // id of each byte's ByteLevel character, -1 if none
    std::optional<int> unk_id;                         // model.unk_token, when set
    bool ignore_merges = false;                        // model.ignore_merges
    std::vector<UnicodeForm> normalizers;              // applied in order
    std::vector<AddedToken> added;                     // as listed
    std::vector<AddedToken> added_raw;                 // normalized == false: matched before normalizing
    std::vector<AddedToken> added_normalized;          // normalized == true: content normalized, matched after
    std::unordered_map<std::string, int> added_ids;    // content -> id
};

inline std::uint64_t merge_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

// Fills `impl` from tokenizer.json text; errors are "<origin>: <field>: <what>".
core::Status parse_tokenizer_json(std::string_view text, const std::string& origin, BpeTokenizer::Impl& impl);

}  // namespace triage::pipeline
