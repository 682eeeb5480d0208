#include "pipeline/bpe_text.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace triage::pipeline {

const char* const kQwen2SplitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

constexpr char32_t kReplacement = 0xFFFD;

bool in(unsigned char b, unsigned char lo, unsigned char hi) { return b >= lo && b <= hi; }

// Length of the UTF-8 sequence at text[pos]. When it is invalid, `valid` is false and the length
// is that of its maximal subpart (at least 1), the unit that from_utf8_lossy replaces by U+FFFD.
size_t sequence_at(std::string_view text, size_t pos, char32_t& cp, bool& valid) {
    const auto b0 = static_cast<unsigned char>(text[pos]);
    valid = true;
    if (b0 < 0x80) { cp = b0; return 1; }
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (in(b0, 0xC2, 0xDF)) { need = 1; cp = b0 & 0x1F; }
    else if (in(b0, 0xE0, 0xEF)) { need = 2; cp = b0 & 0x0F; lo = b0 == 0xE0 ? 0xA0 : 0x80; hi = b0 == 0xED ? 0x9F : 0xBF; }
    else if (in(b0, 0xF0, 0xF4)) { need = 3; cp = b0 & 0x07; lo = b0 == 0xF0 ? 0x90 : 0x80; hi = b0 == 0xF4 ? 0x8F : 0xBF; }
    else { valid = false; cp = kReplacement; return 1; }
    for (size_t k = 1; k <= need; ++k) {
        const bool ok = pos + k < text.size() && in(static_cast<unsigned char>(text[pos + k]), k == 1 ? lo : 0x80, k == 1 ? hi : 0xBF);
        if (!ok) { valid = false; cp = kReplacement; return k; }
        cp = (cp << 6) | (static_cast<unsigned char>(text[pos + k]) & 0x3F);
    }
    return need + 1;
}

enum class Cls { Letter, Number, Space, Other };

struct CodePoint {
    char32_t c;
    Cls cls;
    size_t offset;  // byte offset of its first byte
};

Cls classify(char32_t c) {
    const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(c));
    if (mask & U_GC_L_MASK) return Cls::Letter;
    if (mask & U_GC_N_MASK) return Cls::Number;
    return is_white_space(c) ? Cls::Space : Cls::Other;
}

bool is_crlf(char32_t c) { return c == '\r' || c == '\n'; }

// (?i:'s|'t|'re|'ve|'m|'ll|'d); Oniguruma's case folding also takes U+017F (long s) for s.
size_t contraction_end(const std::vector<CodePoint>& cps, size_t i) {
    auto fold = [&](size_t k) -> char32_t {
        if (k >= cps.size()) return 0;
        const char32_t c = cps[k].c;
        if (c == 0x17F) return 's';
        return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
    };
    if (cps[i].c != '\'') return 0;
    const char32_t a = fold(i + 1), b = fold(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

// End (exclusive, in code points) of the pattern's match at i; the alternatives in pattern order.
size_t match_end(const std::vector<CodePoint>& cps, size_t i) {
    const size_t n = cps.size();
    auto is = [&](size_t k, Cls c) { return k < n && cps[k].cls == c; };
    if (size_t e = contraction_end(cps, i)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    size_t j = (!is(i, Cls::Letter) && !is(i, Cls::Number) && !is_crlf(cps[i].c)) ? i + 1 : i;
    if (is(j, Cls::Letter)) {
        while (is(j, Cls::Letter)) ++j;
        return j;
    }
    if (is(i, Cls::Number)) return i + 1;  // \p{N}
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    j = cps[i].c == ' ' ? i + 1 : i;
    if (is(j, Cls::Other)) {
        while (is(j, Cls::Other)) ++j;
        while (j < n && is_crlf(cps[j].c)) ++j;
        return j;
    }
    // Only whitespace is left at i. \s*[\r\n]+ ends after the run's last CR/LF.
    size_t run = i;
    while (is(run, Cls::Space)) ++run;
    for (size_t k = run; k > i; --k)
        if (is_crlf(cps[k - 1].c)) return k;
    if (run == n) return run;              // \s+(?!\S) at the end
    if (run - i >= 2) return run - 1;      // \s+(?!\S) leaves one space before the non-space
    return run;                            // \s+
}

const icu::Normalizer2* normalizer(UnicodeForm form, UErrorCode& status) {
    switch (form) {
        case UnicodeForm::NFC: return icu::Normalizer2::getNFCInstance(status);
        case UnicodeForm::NFD: return icu::Normalizer2::getNFDInstance(status);
        case UnicodeForm::NFKC: return icu::Normalizer2::getNFKCInstance(status);
        case UnicodeForm::NFKD: return icu::Normalizer2::getNFKDInstance(status);
    }
    return nullptr;
}

std::array<int, 0x144> make_char_to_byte() {
    std::array<int, 0x144> table{};
    table.fill(-1);
    for (int b = 0; b < 256; ++b) table[byte_to_char()[b]] = b;
    return table;
}

}  // namespace

std::string normalize_unicode(std::string_view text, UnicodeForm form) {
    bool ascii = true;
    for (char ch : text) ascii = ascii && static_cast<unsigned char>(ch) < 0x80;
    if (ascii) return std::string(text);  // every form leaves ASCII unchanged
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = normalizer(form, status);
    const icu::UnicodeString src = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
    icu::UnicodeString dst;
    if (n != nullptr && U_SUCCESS(status)) dst = n->normalize(src, status);
    std::string out;
    (U_SUCCESS(status) ? dst : src).toUTF8String(out);
    return out;
}

std::vector<std::string_view> split_qwen2(std::string_view text) {
    std::vector<CodePoint> cps;
    for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        const char32_t c = next_code_point(text, pos);
        cps.push_back({c, classify(c), start});
    }
    std::vector<std::string_view> pieces;
    for (size_t i = 0; i < cps.size();) {
        const size_t end = match_end(cps, i);
        const size_t to = end < cps.size() ? cps[end].offset : text.size();
        pieces.push_back(text.substr(cps[i].offset, to - cps[i].offset));
        i = end;
    }
    return pieces;
}

bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0; }

bool is_word_char(char32_t c) {
    const auto u = static_cast<UChar32>(c);
    const uint32_t mask = U_GET_GC_MASK(u);
    return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) ||
           u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}

char32_t next_code_point(std::string_view text, size_t& pos) {
    char32_t cp = 0;
    bool valid = true;
    const size_t len = sequence_at(text, pos, cp, valid);
    pos += valid ? len : 1;
    return cp;
}

char32_t prev_code_point(std::string_view text, size_t end, size_t& start) {
    start = end - 1;
    while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    const char32_t c = next_code_point(text, pos);
    if (pos != end) {  // not one valid sequence: take the last byte alone
        start = end - 1;
        return kReplacement;
    }
    return c;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

const std::array<char32_t, 256>& byte_to_char() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[b] = printable ? static_cast<char32_t>(b) : next++;
        }
        return t;
    }();
    return table;
}

std::string bytes_to_symbols(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char b : bytes) append_utf8(out, byte_to_char()[static_cast<unsigned char>(b)]);
    return out;
}

bool symbols_to_bytes(std::string_view symbols, std::string& out) {
    static const std::array<int, 0x144> table = make_char_to_byte();
    const size_t mark = out.size();
    for (size_t pos = 0; pos < symbols.size();) {
        const char32_t c = next_code_point(symbols, pos);
        if (c >= table.size() || table[c] < 0) {
            out.resize(mark);
            return false;
        }
        out += static_cast<char>(table[c]);
    }
    return true;
}

std::string utf8_lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (size_t pos = 0; pos < bytes.size();) {
        char32_t cp = 0;
        bool valid = true;
        const size_t len = sequence_at(bytes, pos, cp, valid);
        if (valid) out.append(bytes.substr(pos, len));
        else append_utf8(out, kReplacement);
        pos += len;
    }
    return out;
}

}  // namespace triage::pipeline
