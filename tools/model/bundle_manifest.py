"""model.json of a format-2 (UniBiomed) bundle, written by convert_unibiomed.py: sizes from config.json
and the loaded modules, special token ids from the checkpoint's tokenizer files, the node's prompts,
labels and preprocessing (docs/model-bundle.md "Format 2: UniBiomed")."""
import json

from common import SNOMED

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TEMPLATES = {"phi3_chat": ("<|user|>\n{input}<|end|>\n<|assistant|>\n", "<|end|>")}  # projects/unibiomed/hf/models/templates.py
ABNORMAL = {"scheme": "SCT", "code": "49755003", "meaning": "Morphologically abnormal structure"}
# The paper's CT/MR classes of grounded disease recognition (../shared/docs/UNIBIOMED.md): (finding type, region)
EXTRA_SNOMED = {
    "colon cancer": ("363406005", "Malignant neoplasm of colon", "71854001", "Colon structure"),
    "COVID-19 infection": ("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2",
                           "39607008", "Lung"),
    "fibrotic lung disease": ("51615001", "Fibrosis of lung", "39607008", "Lung"),
}
LABELS = ["liver tumor", "pancreas tumor", "kidney tumor", "colon cancer", "lung tumor", "lung nodule",
          "COVID-19 infection", "fibrotic lung disease", "brain tumor"]
PROMPTS = {
    "recognition": ["<image>\nCan you identify any abnormality within this {modality} image? "
                    "Please respond with segmentation masks."],
    "referring": ["<image>\nPlease segment {label} in this {modality} image."],
    "description": ["<image>\nWhat is the <region> in the picture?"],
}


def coded(code, meaning):
    return {"scheme": "SCT", "code": code, "meaning": meaning}


def labels():
    out = []
    for text in LABELS:
        type_code, type_meaning, region_code, region_meaning = {**SNOMED, **EXTRA_SNOMED}[text]
        out.append({"text": text, "category": ABNORMAL, "type": coded(type_code, type_meaning),
                    "region": coded(region_code, region_meaning)})
    return out


def token_ids(ckpt_dir, config, vocab):
    """Ids of the tokens the runtime needs, from tokenizer.json (+ tokenizer_config.json for eos/pad)."""
    tok = json.loads((ckpt_dir / "tokenizer.json").read_text())
    ids = {a["content"]: a["id"] for a in tok.get("added_tokens", [])}
    cfg_path = ckpt_dir / "tokenizer_config.json"
    tcfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}

    def name(v):
        return v.get("content") if isinstance(v, dict) else v

    eos = name(tcfg.get("eos_token")) or next((k for k, v in ids.items() if v == config.get("llm_config", {}).get("eos_token_id")), None)
    pad = name(tcfg.get("pad_token")) or eos
    out = {}
    for key, content in [("<img>", "<img>"), ("</img>", "</img>"), ("<IMG_CONTEXT>", "<IMG_CONTEXT>"),
                         ("[SEG]", "[SEG]"), ("eos", eos), ("pad", pad)]:
        if content not in ids:
            raise ValueError(f"tokenizer.json has no added token {content!r} ({key})")
        out[key] = ids[content]
        if out[key] >= vocab:
            raise ValueError(f"token {content!r} has id {out[key]}, outside the {vocab}-row embedding")
    return out


def sam2_sizes(model, sam2_cfg):
    """SAM2's input size and the grounding features' channels/sizes (backbone strides 4, 8, 16)."""
    params = dict(model.grounding_encoder.sam2_model.named_parameters())
    size = int(sam2_cfg.get("image_size", 1024))
    return size, {"embed_dim": int(model.text_hidden_fcs[2].out_features),
                  "feat_s0": [int(params["sam_mask_decoder.conv_s0.weight"].shape[0]), size // 4],
                  "feat_s1": [int(params["sam_mask_decoder.conv_s1.weight"].shape[0]), size // 8],
                  "image_embed_size": size // 16}


def modules(tile, tokens, lc, sam_size, s):
    e, m = s["embed_dim"], s["image_embed_size"]
    layout = {
        "vision_encoder": ({"pixel_values": ["N", 3, tile, tile]}, {"visual_tokens": ["N", tokens, lc.hidden_size]}),
        "language_model": ({"embeds": ["B", "N", lc.hidden_size], "start": "int",
                            "past_k": ["L", "B", lc.num_key_value_heads, "P", lc.head_dim], "past_v": "like past_k"},
                           {"logits": ["B", 1, lc.vocab_size], "hidden": ["B", "N", lc.hidden_size],
                            "new_k": ["L", "B", lc.num_key_value_heads, "P+N", lc.head_dim], "new_v": "like new_k",
                            "embed(ids [B,N] int64)": ["B", "N", lc.hidden_size]}),
        "seg_projection": ({"hidden": ["B", lc.hidden_size]}, {"prompt": ["B", e]}),
        "grounding_encoder": ({"image": ["B", 3, sam_size, sam_size]},
                              {"image_embed": ["B", e, m, m], "feat_s0": ["B", s["feat_s0"][0], s["feat_s0"][1], s["feat_s0"][1]],
                               "feat_s1": ["B", s["feat_s1"][0], s["feat_s1"][1], s["feat_s1"][1]]}),
        "mask_decoder": ({"image_embed": ["B", e, m, m], "feat_s0": "as grounding_encoder", "feat_s1": "as grounding_encoder",
                          "prompt": ["B", e]}, {"mask_logits": ["B", 1, sam_size // 4, sam_size // 4], "iou": ["B"]}),
    }
    return {k: {"inputs": i, "outputs": o} for k, (i, o) in layout.items()}


def manifest(config, model, sam2_cfg, ckpt_dir, dtype_name, source):
    tc, lc = model.tcfg, model.lcfg
    template, stop = TEMPLATES.get(str(tc.template).replace("-", "_"), (None, None))
    if template is None:
        raise ValueError(f"config.json template {tc.template!r} is not supported (phi3_chat is)")
    sam_size, sam2 = sam2_sizes(model, sam2_cfg)
    synthetic = source["synthetic"]
    return {
        "format": 2, "architecture": "unibiomed", "name": "unibiomed", "version": str(config.get("version", "unknown")),
        "demonstration_only": synthetic,
        "description": ("Synthetic checkpoint with random weights in the released UniBiomed layout: for tests only, "
                        "its answers and masks mean nothing." if synthetic else
                        "UniBiomed (InternVL2.5-1B + SAM2, Sa2VA-style) converted from the released checkpoint."),
        "source": source, "dtype": dtype_name, "template": template, "stop_text": stop, "max_new_tokens": 64,
        # predict_forward uses 1..12 tiles and a thumbnail whatever config.json says; config values where present
        "image": {"tile_size": tc.tile_size, "min_tiles": int(config.get("min_dynamic_patch", 1)),
                  "max_tiles": int(config.get("max_dynamic_patch", 12)),
                  "use_thumbnail": bool(config.get("use_thumbnail", True)), "tokens_per_tile": tc.tokens_per_tile,
                  "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "sam_size": sam_size, "sam_mean": IMAGENET_MEAN,
                  "sam_std": IMAGENET_STD, "mask_size": sam_size // 4},
        "image_tokens": {"start": "<img>", "context": "<IMG_CONTEXT>", "end": "</img>"},
        "llm": {"hidden_size": lc.hidden_size, "layers": lc.num_hidden_layers, "heads": lc.num_attention_heads,
                "kv_heads": lc.num_key_value_heads, "head_dim": lc.head_dim, "vocab_size": lc.vocab_size,
                "max_positions": lc.max_position_embeddings},
        "sam2": sam2, "special_token_ids": token_ids(ckpt_dir, config, lc.vocab_size),
        "tokenizer": "tokenizer.json", "tokenizer_type": "bpe", "prompts": PROMPTS, "labels": labels(),
        "generic_label": {"text": "abnormality", "category": ABNORMAL, "type": ABNORMAL,
                          "region": coded("38866009", "Body part structure")},
        "preprocessing": {"CT": {"windows": {"CHEST": [-1000, 500], "ABDOMEN": [-175, 250]}, "default_window": "ABDOMEN",
                                 "chest_keywords": ["CHEST", "LUNG", "THORAX", "THORACIC"]},
                          "MR": {"normalization": "zscore", "range": [-3, 3]}},
        "thresholds": {"mask": 0.5, "min_slices": 1},
        "modules": modules(tc.tile_size, tc.tokens_per_tile, lc, sam_size, sam2),
    }
