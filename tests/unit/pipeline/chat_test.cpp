// Format 2 (released UniBiomed) prompting: template, image tokens, InternVL's tiling grid, the
// stop text, and the manifest's format-2 blocks.
#include <gtest/gtest.h>

#include "pipeline/chat.h"

using namespace triage::pipeline;

namespace {

const char* kChatJson = R"({
  "template": "<|user|>\n{input}<|end|>\n<|assistant|>\n", "stop_text": "<|end|>", "dtype": "bf16",
  "image": {"tile_size": 448, "max_tiles": 12, "use_thumbnail": true, "tokens_per_tile": 2,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "sam_size": 1024, "mask_size": 256},
  "image_tokens": {"start": "<img>", "context": "<IMG_CONTEXT>", "end": "</img>"},
  "llm": {"hidden_size": 896, "layers": 24, "heads": 14, "kv_heads": 2, "head_dim": 64, "vocab_size": 151679,
          "max_positions": 32768},
  "special_token_ids": {"[SEG]": 151671, "eos": 151645}
})";

ChatSpec spec() {
    auto c = parse_chat_spec(kChatJson);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c.value();
}

}  // namespace

TEST(Chat, ParsesTheFormat2Blocks) {
    ChatSpec c = spec();
    EXPECT_EQ(c.kv_heads, 2);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.seg_id, 151671);
    EXPECT_EQ(c.dtype, "bf16");
    EXPECT_FLOAT_EQ(c.sam_std[2], 0.225f);  // SAM2 normalization defaults to the MLLM's
    std::string no_input = kChatJson;
    no_input.replace(no_input.find("{input}"), 7, "");
    auto r = parse_chat_spec(no_input);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("template"), std::string::npos) << r.error().message;
    std::string no_kv = kChatJson;
    no_kv.replace(no_kv.find("\"kv_heads\": 2"), 13, "\"kv_heads\": 0");
    EXPECT_FALSE(parse_chat_spec(no_kv));
}

TEST(Chat, PromptPutsTheImageTokensInTheTemplate) {
    EXPECT_EQ(chat_prompt(spec(), "<image>\nPlease segment liver tumor in this CT image.", 2),
              "<|user|>\n<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\n"
              "Please segment liver tumor in this CT image.<|end|>\n<|assistant|>\n");
}

TEST(Chat, TileGridFollowsInternVL) {
    // Expected grids from InternVL's find_closest_aspect_ratio (max 12 tiles, 448 px), run in Python.
    struct Case { int w, h, across, down; bool thumb; };
    for (Case k : {Case{512, 512, 1, 1, false}, {1024, 1024, 3, 3, true}, {512, 384, 4, 3, true}, {640, 320, 2, 1, true},
                   {256, 256, 1, 1, false}, {2000, 500, 4, 1, true}, {900, 1000, 2, 2, true}}) {
        TileGrid g = tile_grid(spec(), k.w, k.h);
        EXPECT_EQ(g.across, k.across) << k.w << "x" << k.h;
        EXPECT_EQ(g.down, k.down) << k.w << "x" << k.h;
        EXPECT_EQ(g.thumbnail, k.thumb) << k.w << "x" << k.h;
    }
    ChatSpec one = spec();
    one.max_tiles = 1;
    EXPECT_EQ(tile_grid(one, 1024, 1024).count(), 1);
}

TEST(Chat, AnswerEndsAtTheStopText) {
    EXPECT_EQ(cut_at_stop(" It is [SEG]. liver tumor.<|end|>\n<|user|>", "<|end|>"), "It is [SEG]. liver tumor.");
    EXPECT_EQ(cut_at_stop("no stop here ", "<|end|>"), "no stop here");
}

TEST(Chat, LabelsMapToTheManifestCaseInsensitively) {
    Manifest m;
    m.labels.push_back({"liver tumor", {}, {}, {}});
    EXPECT_EQ(canonical_label(m, "Liver tumor"), "liver tumor");
    EXPECT_EQ(canonical_label(m, "Pneumothorax"), "pneumothorax");  // free text is kept, never dropped
}
