// BpeTokenizer against the real Qwen2.5 tokenizer.json in shared/. Expected id sequences were
// produced by the reference implementation, npm @huggingface/tokenizers 0.2.0, on the same file
// (tests/js/tokenize.js); tests/integration/test_tokenizer_parity.py compares many more strings.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pipeline/bpe_text.h"
#include "pipeline/bpe_tokenizer.h"

namespace triage::pipeline {
namespace {

using nlohmann::json;

const std::string kQwenDir = std::string(TRIAGE_SHARED_DIR) + "/data/tokenizers/qwen2.5";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

json added(int id, const std::string& content, json flags = json::object()) {
    json t = {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", false}, {"special", true}};
    t.update(flags);
    return t;
}

// The released UniBiomed additions: InternVL2.5's nine tokens, then Sa2VA's five (shared README).
json unibiomed_tokenizer(const json& qwen) {
    json t = qwen;
    int id = 151665;
    for (const char* c : {"<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>",
                          "</box>", "[SEG]", "<p>", "</p>", "<vp>", "</vp>"})
        t["added_tokens"].push_back(added(id++, c));
    return t;
}

class QwenTokenizer : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        s_json = new json(json::parse(read_text(kQwenDir + "/tokenizer.json")));
        auto loaded = BpeTokenizer::load(kQwenDir + "/tokenizer.json");
        ASSERT_TRUE(loaded.ok()) << loaded.error().message;
        s_tok = new BpeTokenizer(std::move(loaded.value()));
    }
    static void TearDownTestSuite() {
        delete s_tok;
        delete s_json;
    }
    static BpeTokenizer with(const json& j) {
        auto t = BpeTokenizer::from_text(j.dump());
        EXPECT_TRUE(t.ok()) << t.error().message;
        return std::move(t.value());
    }
    static inline json* s_json = nullptr;
    static inline BpeTokenizer* s_tok = nullptr;
};

TEST_F(QwenTokenizer, VocabularyAndSpecialTokens) {
    EXPECT_EQ(s_tok->vocab_size(), 151665u);
    EXPECT_EQ(s_tok->token_id("<|endoftext|>"), 151643);
    EXPECT_EQ(s_tok->token_id("<|im_start|>"), 151644);
    EXPECT_EQ(s_tok->token_id("<|file_sep|>"), 151664);
    EXPECT_EQ(s_tok->token_id("Hello"), 9707);
    EXPECT_EQ(s_tok->token(4337), "ĠWorld");
    EXPECT_FALSE(s_tok->token_id("<img>").has_value());  // not in plain Qwen2.5
    EXPECT_EQ(s_tok->added_tokens().size(), 22u);
}

TEST_F(QwenTokenizer, ExactIdsOfTheReference) {
    const std::vector<std::pair<std::string, std::vector<int>>> cases = {
        {"Hello World", {9707, 4337}},
        {"Please segment liver tumor in the CT image.", {5501, 10238, 25506, 35154, 304, 279, 18572, 2168, 13}},
        {"It is [SEG]. liver tumor.", {2132, 374, 508, 78759, 936, 25506, 35154, 13}},
        {"<|im_start|>user\nhi<|im_end|>", {151644, 872, 198, 6023, 151645}},
        {"naïve café, Zürich", {3376, 37572, 586, 51950, 11, 1863, 5186, 713}},
        {"肝肿瘤 肺结节", {101364, 106045, 8908, 224, 118, 36885, 55502}},
        {"🫁🧠 ok", {9284, 104, 223, 149957, 5394}},
        {"a  b\n\n\nc\t\td   ", {64, 220, 293, 1406, 66, 197, 2698, 262}},
        {"don't it's we'll I'M", {15007, 944, 432, 594, 582, 3278, 358, 27603}},
        {"µm 37°C ±5", {73048, 76, 220, 18, 22, 30937, 20287, 20}},
    };
    for (const auto& [text, ids] : cases) EXPECT_EQ(s_tok->encode(text), ids) << text;
}

TEST_F(QwenTokenizer, NfcBeforeSplitting) {
    EXPECT_EQ(s_tok->encode("e\xCC\x81"), s_tok->encode("\xC3\xA9"));  // e + U+0301 is é
    EXPECT_EQ(s_tok->encode("\xC3\xA9"), std::vector<int>({963}));
    EXPECT_EQ(s_tok->decode(s_tok->encode("e\xCC\x81")), "\xC3\xA9");
}

TEST_F(QwenTokenizer, RoundTrips) {
    for (const std::string text : {"", " ", "Can you identify any abnormality within this CT image?",
                                   "2026-11-29 12:34:56 3.14159 1234567", "\r\n\t  x  \n", "<|endoftext|><|endoftext|>",
                                   "Ünïcödé ÅÄÖ ß ç 中文 日本語 한국어 עברית العربية", "🫁🧠👩‍⚕️", "x\xC2\xA0y\xE3\x80\x80z"}) {
        const std::vector<int> ids = s_tok->encode(text);
        EXPECT_EQ(s_tok->decode(ids), text);
        for (int id : ids) EXPECT_LT(static_cast<size_t>(id), s_tok->vocab_size());
    }
}

TEST_F(QwenTokenizer, DecodeReplacesInvalidUtf8AndSkipsUnknownIds) {
    // 8908 is " \xE8", the first byte of 肺: alone it is not UTF-8.
    EXPECT_EQ(s_tok->decode({8908}), " \xEF\xBF\xBD");
    EXPECT_EQ(s_tok->decode({9707, -1, 99999999, 4337}), "Hello World");
    EXPECT_EQ(s_tok->decode({}), "");
}

TEST_F(QwenTokenizer, UniBiomedAddedTokens) {
    const BpeTokenizer t = with(unibiomed_tokenizer(*s_json));
    EXPECT_EQ(t.vocab_size(), 151679u);
    EXPECT_EQ(t.token_id("<IMG_CONTEXT>"), 151667);
    EXPECT_EQ(t.token_id("[SEG]"), 151674);
    EXPECT_EQ(t.token_id("</vp>"), 151678);
    // Plain text around them tokenizes as without them (the pieces are split first).
    std::vector<int> want = {2132, 374, 220, 151674, 13};
    EXPECT_EQ(t.encode("It is [SEG]."), want);
    want = {151665, 151667, 151667, 151666, 198};
    EXPECT_EQ(t.encode("<img><IMG_CONTEXT><IMG_CONTEXT></img>\n"), want);
    EXPECT_EQ(t.decode(t.encode("<img><IMG_CONTEXT></img>\nIt is [SEG].")), "<img><IMG_CONTEXT></img>\nIt is [SEG].");
}

TEST_F(QwenTokenizer, AddedTokenFlags) {
    json j = *s_json;
    j["added_tokens"].push_back(added(151665, "<l>", {{"lstrip", true}}));
    j["added_tokens"].push_back(added(151666, "<r>", {{"rstrip", true}}));
    j["added_tokens"].push_back(added(151667, "sw", {{"single_word", true}, {"special", false}}));
    j["added_tokens"].push_back(added(151668, "\xC3\xA9t\xC3\xA9", {{"normalized", true}, {"special", false}}));
    j["added_tokens"].push_back(added(151669, "<ab>"));
    j["added_tokens"].push_back(added(151670, "<abc>"));
    j["added_tokens"].push_back(added(151671, "o\xCC\x88x", {{"normalized", true}, {"special", false}}));  // öx, decomposed
    const BpeTokenizer t = with(j);
    EXPECT_EQ(t.encode("a  <l> b"), std::vector<int>({64, 151665, 293}));
    EXPECT_EQ(t.encode("a <r>  b"), std::vector<int>({64, 220, 151666, 65}));
    EXPECT_EQ(t.encode("\xC3\xA9te\xCC\x81 x"), std::vector<int>({151668, 856}));  // matched after NFC
    EXPECT_EQ(t.encode("<abc><ab>"), std::vector<int>({151670, 151669}));          // longest match
    // single_word (tokenizers' rule; the JS reference ignores the flag): no word character may
    // touch the match, so "swim" and "b_sw" keep their letters and only the free-standing ones match.
    const std::vector<int> ids = t.encode("sw swim a sw b_sw");
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 151667), 2);
    EXPECT_EQ(ids.front(), 151667);
    EXPECT_EQ(t.decode(ids), "sw swim a sw b_sw");
    // A normalized token is matched in its normalized form (tokenizers normalizes the pattern too).
    const std::vector<int> ox = t.encode("a \xC3\xB6x");
    EXPECT_EQ(std::count(ox.begin(), ox.end(), 151671), 1);
}

TEST_F(QwenTokenizer, LoadsFromABundleFolder) {
    const auto dir = std::filesystem::temp_directory_path() / ("bpe-bundle-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "model.json") << R"({"name": "x", "tokenizer": "qwen.json"})";
    std::ofstream(dir / "qwen.json") << unibiomed_tokenizer(*s_json).dump();
    auto t = load_bundle_tokenizer(dir.string());
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->token_id("[SEG]"), 151674);
    std::filesystem::remove(dir / "qwen.json");
    auto missing = load_bundle_tokenizer(dir.string());
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message.find("qwen.json"), std::string::npos);
    std::filesystem::remove_all(dir);
}

// A minimal valid byte-level tokenizer: the 256 ByteLevel characters, "ab" and "abc".
json tiny() {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) {
        std::string ch;
        append_utf8(ch, byte_to_char()[static_cast<size_t>(b)]);
        vocab[ch] = b;
    }
    vocab["ab"] = 256;
    vocab["abc"] = 257;
    json split = {{"type", "Split"}, {"pattern", {{"Regex", kQwen2SplitPattern}}}, {"behavior", "Isolated"}, {"invert", false}};
    json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
    return {{"version", "1.0"}, {"added_tokens", json::array({added(258, "<s>")})}, {"normalizer", {{"type", "NFC"}}},
            {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split, bl}}}}, {"post_processor", nullptr},
            {"decoder", bl}, {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", {"a b", json::array({"ab", "c"})}}}}};
}

TEST(BpeTokenizerFile, TinyTokenizerMergesByRank) {
    auto t = BpeTokenizer::from_text(tiny().dump());
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->encode("abcab<s>ca"), std::vector<int>({257, 256, 258, 'c', 'a'}));
    EXPECT_EQ(t->decode({257, 258}), "abc<s>");
    EXPECT_EQ(t->vocab_size(), 259u);
}

std::string error_of(const json& j) {
    auto t = BpeTokenizer::from_text(j.dump(), "tok.json");
    return t.ok() ? std::string("(loaded)") : t.error().message;
}

bool has(const std::string& msg, const char* field) { return msg.find(field) != std::string::npos; }

TEST(BpeTokenizerFile, ErrorsNameTheModelField) {
    json j = tiny();
    j["model"].erase("vocab");
    EXPECT_TRUE(has(error_of(j), "tok.json: model.vocab")) << error_of(j);
    j = tiny();
    j["model"]["merges"][1] = "ab";
    EXPECT_TRUE(has(error_of(j), "model.merges[1]")) << error_of(j);
    j = tiny();
    j["model"]["merges"].push_back("x y");  // "xy" is not in the vocabulary
    EXPECT_TRUE(has(error_of(j), "model.merges[2]")) << error_of(j);
    j = tiny();
    j["model"]["type"] = "WordPiece";
    EXPECT_TRUE(has(error_of(j), "model.type")) << error_of(j);
    j = tiny();
    j["model"]["vocab"]["ab"] = "x";
    EXPECT_TRUE(has(error_of(j), "model.vocab[\"ab\"]")) << error_of(j);
}

TEST(BpeTokenizerFile, ErrorsNameTheOtherFields) {
    json j = tiny();
    j["added_tokens"][0].erase("id");
    EXPECT_TRUE(has(error_of(j), "added_tokens[0].id")) << error_of(j);
    j = tiny();
    j["added_tokens"][0]["lstrip"] = "yes";
    EXPECT_TRUE(has(error_of(j), "added_tokens[0].lstrip")) << error_of(j);
    j = tiny();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
    EXPECT_TRUE(has(error_of(j), "pre_tokenizer.pretokenizers[0].pattern.Regex")) << error_of(j);
    j = tiny();
    j["normalizer"] = {{"type", "Lowercase"}};
    EXPECT_TRUE(has(error_of(j), "normalizer.type")) << error_of(j);
    j = tiny();
    j["decoder"] = {{"type", "WordPiece"}};
    EXPECT_TRUE(has(error_of(j), "decoder.type")) << error_of(j);
    EXPECT_TRUE(has(error_of(json::array()), "not a JSON object"));
    auto bad_json = BpeTokenizer::from_text("{\"model\": ", "tok.json");
    ASSERT_FALSE(bad_json.ok());
    EXPECT_TRUE(has(bad_json.error().message, "not valid JSON"));
    auto missing = BpeTokenizer::load("/nonexistent/tokenizer.json");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().kind, core::ErrorKind::NotFound);
}

}  // namespace
}  // namespace triage::pipeline
