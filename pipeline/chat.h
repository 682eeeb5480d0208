#pragma once
// The released UniBiomed's prompting and answers (bundle format 2, docs/model-bundle.md): the
// phi3_chat template with the image tokens, InternVL's dynamic tiling grid, and the parsing of an
// answer into [SEG] labels. Plain functions of the manifest; no Torch, thread-safe.
#include <string>
#include <vector>

#include "core/result.h"
#include "pipeline/model.h"

namespace triage::pipeline {

/// Reads format 2's chat/image/llm blocks of model.json (text) into `m` (chat, sizes, labels are
/// read by the caller). Errors name the field.
core::Result<ChatSpec> parse_chat_spec(const std::string& json_text);

/// The text the tokenizer gets for one instruction: the template around `instruction`, whose
/// `<image>` becomes image_start + tiles x tokens_per_tile x image_context + image_end.
std::string chat_prompt(const ChatSpec& c, const std::string& instruction, int tiles);

/// InternVL's dynamic tiling of a columns x rows image: the grid (tiles across, tiles down) whose
/// aspect ratio is closest to the image's among min_tiles..max_tiles tiles (ties go to the larger
/// grid when the image has more than half its pixels), and whether a thumbnail tile is appended
/// (use_thumbnail and more than one tile).
struct TileGrid {
    int across = 1, down = 1;
    bool thumbnail = false;
    int count() const { return across * down + (thumbnail ? 1 : 0); }
};
TileGrid tile_grid(const ChatSpec& c, int columns, int rows);

/// The generated text up to (without) the stop text, trimmed.
std::string cut_at_stop(const std::string& text, const std::string& stop);

}  // namespace triage::pipeline
