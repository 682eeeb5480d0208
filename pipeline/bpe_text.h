#pragma once
// Text steps of a Hugging Face byte-level BPE tokenizer that need Unicode: normalization, the
// Qwen2 split pattern, and the byte <-> character map of ByteLevel. Plain functions over UTF-8;
// no state, thread-safe. ICU stays inside bpe_text.cpp.
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace triage::pipeline {

// Unicode normalization forms of tokenizer.json "normalizer" (type NFC, NFD, NFKC, NFKD).
enum class UnicodeForm { NFC, NFD, NFKC, NFKD };

// `text` in form `form`. Invalid UTF-8 sequences become U+FFFD.
std::string normalize_unicode(std::string_view text, UnicodeForm form);

// The pattern of Qwen2's Split pre-tokenizer (behavior Isolated), exactly as tokenizer.json spells it.
extern const char* const kQwen2SplitPattern;

// Splits `text` (valid UTF-8) into the matches of kQwen2SplitPattern, left to right, with Oniguruma's
// leftmost-first alternation. The pattern matches at every position, so the pieces cover `text`.
std::vector<std::string_view> split_qwen2(std::string_view text);

// True when the code point has the Unicode White_Space property (Oniguruma's and Rust's \s).
bool is_white_space(char32_t c);
// True for Rust regex's \w: Alphabetic, M, Nd, Pc or Join_Control (added tokens' single_word).
bool is_word_char(char32_t c);

// Decodes the code point at `text[pos]` and advances `pos`; invalid bytes decode as U+FFFD, one byte.
char32_t next_code_point(std::string_view text, size_t& pos);
// Decodes the code point that ends at `text[end]` (exclusive); `start` gets its first byte.
char32_t prev_code_point(std::string_view text, size_t end, size_t& start);
// Appends `c` to `out` as UTF-8.
void append_utf8(std::string& out, char32_t c);

// GPT-2's ByteLevel map: byte b -> the character that stands for it in vocab entries.
const std::array<char32_t, 256>& byte_to_char();
// `bytes` with every byte replaced by its ByteLevel character, as UTF-8.
std::string bytes_to_symbols(std::string_view bytes);
// Inverse of bytes_to_symbols for one token: false when a character is not a ByteLevel character
// (the token is then taken as its own UTF-8 bytes, as Hugging Face's ByteLevel decoder does).
bool symbols_to_bytes(std::string_view symbols, std::string& out);
// `bytes` as valid UTF-8: each maximal invalid subsequence becomes U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

}  // namespace triage::pipeline
