"""The sizes of UniBiomed's SAM2 (`grounding_encoder.sam2_model`), as one flat dict.

Where they come from, in this order of precedence:
1. `config_json["sam2_config"]` (CONFIG_KEY), a dict with any of the keys of HIERA_L. The released
   config.json has no such section: the published code (projects/unibiomed/hf/models/sam2.py,
   class SAM2) hard-codes sam2_hiera_l.yaml. Our synthetic checkpoints write it.
2. The checkpoint's tensor shapes (infer_from_shapes): trunk width, blocks per stage (the
   width-changing blocks carry a `proj`), MLP ratio, width multiplier, the pos-embed sizes and the
   first window size, neck width and channel list, memory width and number of memories, memory
   attention/encoder layers and widths, mask-downsampler depth and kernel, prompt mask channels,
   decoder depth/MLP width/attention downsampling, mask tokens, IoU head, and which optional heads
   exist (obj_ptr_proj MLP, obj_ptr_tpos_proj, pred_obj_score_head MLP).
3. What shapes cannot tell (head counts, window sizes after the first, global-attention blocks,
   FPN top-down levels, image size): the published SAM2 config with the same trunk width and
   stages (KNOWN_TRUNKS: tiny, small, base+, large); otherwise hiera-large's values, with the
   global blocks placed in the third stage where hiera-large has them (FALLBACK rule below),
   1 trunk head, 8 decoder heads, 1 memory-attention head.
"""
from typing import Dict, Optional, Sequence

CONFIG_KEY = "sam2_config"
PREFIX = "grounding_encoder.sam2_model."

# sam2_hiera_l.yaml (third_parts/sam2/sam2_configs) and the SAM2Base/Hiera/MaskDecoder defaults.
HIERA_L = {
    "image_size": 1024, "backbone_stride": 16,
    "embed_dim": 144, "num_heads": 2, "stages": [2, 6, 36, 4], "global_att_blocks": [23, 33, 43],
    "window_spec": [8, 4, 16, 8], "window_pos_embed_bkg_spatial_size": [7, 7], "q_pool": 3,
    "q_stride": 2, "dim_mul": 2.0, "head_mul": 2.0, "mlp_ratio": 4.0,
    "d_model": 256, "fpn_top_down_levels": [2, 3], "scalp": 1,
    "mem_dim": 64, "num_maskmem": 7, "mem_attn_layers": 4, "mem_attn_ffn": 2048,
    "mem_attn_heads": 1, "mem_attn_downsample": 1, "rope_theta": 10000.0,
    "fuser_layers": 2, "fuser_kernel": 7, "mask_ds_kernel": 3, "mask_ds_stride": 2, "mask_ds_padding": 1,
    "prompt_mask_in_chans": 16, "decoder_depth": 2, "decoder_heads": 8, "decoder_mlp_dim": 2048,
    "decoder_attn_downsample": 2, "num_multimask_outputs": 3, "iou_head_depth": 3,
    "iou_head_hidden_dim": 256, "pred_obj_scores_mlp": True, "use_obj_ptrs_in_encoder": True,
    "use_mlp_for_obj_ptr_proj": True, "proj_tpos_enc_in_obj_ptrs": False,
}

# (embed_dim, stages) -> what shapes cannot tell, from sam2_hiera_{t,s,b+,l}.yaml and Hiera defaults.
KNOWN_TRUNKS = {
    (96, (1, 2, 7, 2)): {"num_heads": 1, "global_att_blocks": [5, 7, 9], "window_spec": [8, 4, 14, 7]},
    (96, (1, 2, 11, 2)): {"num_heads": 1, "global_att_blocks": [7, 10, 13], "window_spec": [8, 4, 14, 7]},
    (112, (2, 3, 16, 3)): {"num_heads": 2, "global_att_blocks": [12, 16, 20], "window_spec": [8, 4, 14, 7]},
    (144, (2, 6, 36, 4)): {"num_heads": 2, "global_att_blocks": [23, 33, 43], "window_spec": [8, 4, 16, 8]},
}
# hiera-large's global blocks sit at these fractions of its third stage (15, 25, 35 of 0..35).
FALLBACK_GLOBAL_FRACTIONS = (15 / 35, 25 / 35, 1.0)


def fallback_global_blocks(stages: Sequence[int]) -> list:
    start, n = sum(stages[:2]), stages[2]
    return sorted({start + int(f * (n - 1) + 0.5) for f in FALLBACK_GLOBAL_FRACTIONS})


def sam2_tiny_config() -> dict:
    """A small SAM2 with hiera-large's structure and names (1024-px input, 64x64 embedding), whose
    non-shape values equal the fallbacks, so infer_from_shapes reproduces it exactly."""
    cfg = dict(HIERA_L)
    stages = [1, 1, 3, 1]
    cfg.update({
        "embed_dim": 16, "num_heads": 1, "stages": stages, "global_att_blocks": fallback_global_blocks(stages),
        "d_model": 32, "mem_dim": 16, "mem_attn_layers": 2, "mem_attn_ffn": 64, "fuser_layers": 1,
        "prompt_mask_in_chans": 4, "decoder_mlp_dim": 64, "iou_head_hidden_dim": 32,
    })
    return cfg


def _indices(shapes: Dict[str, Sequence[int]], prefix: str) -> list:
    """Sorted distinct integers N of keys `prefix.N.*`."""
    out = set()
    for k in shapes:
        if k.startswith(prefix + "."):
            head = k[len(prefix) + 1:].split(".", 1)[0]
            if head.isdigit():
                out.add(int(head))
    return sorted(out)


def _trunk(s: Dict[str, Sequence[int]]) -> dict:
    t = "image_encoder.trunk."
    blocks = _indices(s, t + "blocks")
    starts = [0] + [i for i in blocks if t + f"blocks.{i}.proj.weight" in s]
    stages = [b - a for a, b in zip(starts, starts[1:] + [len(blocks)])]
    embed = s[t + "patch_embed.proj.weight"][0]
    out = {"embed_dim": embed, "stages": stages,
           "window_pos_embed_bkg_spatial_size": list(s[t + "pos_embed"][2:]),
           "mlp_ratio": s[t + "blocks.0.mlp.layers.0.weight"][0] / embed}
    if len(starts) > 1:
        out["dim_mul"] = s[t + f"blocks.{starts[1]}.proj.weight"][0] / embed
    out.update(_trunk_fill(embed, stages))
    out["window_spec"] = [s[t + "pos_embed_window"][2]] + out["window_spec"][1:]
    return out


def _trunk_fill(embed_dim: int, stages: Sequence[int]) -> dict:
    """Trunk values shapes cannot tell (module docstring, point 3)."""
    known = KNOWN_TRUNKS.get((embed_dim, tuple(stages)))
    if known:
        fill = {k: (list(v) if isinstance(v, list) else v) for k, v in known.items()}
    else:
        fill = {"num_heads": 1, "window_spec": HIERA_L["window_spec"][:len(stages)],
                "global_att_blocks": fallback_global_blocks(stages) if len(stages) > 2 else []}
    fill["q_pool"] = min(HIERA_L["q_pool"], len(stages) - 1)
    return fill


def _memory(s: Dict[str, Sequence[int]]) -> dict:
    ma, me = "memory_attention.layers", "memory_encoder."
    d = s["memory_attention.norm.weight"][0]
    ds = [k for k in s if k.startswith(me + "mask_downsampler.encoder.") and len(s[k]) == 4]
    n_ds = len(ds) - 1
    stride = int(round(HIERA_L["backbone_stride"] ** (1.0 / n_ds))) if n_ds > 0 else 1
    kernel = s[me + "mask_downsampler.encoder.0.weight"][-1]
    return {
        "mem_dim": s["maskmem_tpos_enc"][-1], "num_maskmem": s["maskmem_tpos_enc"][0],
        "mem_attn_layers": len(_indices(s, ma)), "mem_attn_ffn": s[ma + ".0.linear1.weight"][0],
        "mem_attn_downsample": d // s[ma + ".0.self_attn.q_proj.weight"][0],
        "fuser_layers": len(_indices(s, me + "fuser.layers")),
        "fuser_kernel": s[me + "fuser.layers.0.dwconv.weight"][-1],
        "mask_ds_kernel": kernel, "mask_ds_stride": stride, "mask_ds_padding": (kernel - stride + 1) // 2,
    }


def _heads(s: Dict[str, Sequence[int]]) -> dict:
    md = "sam_mask_decoder."
    d = s[md + "iou_token.weight"][1]
    return {
        "d_model": d,
        "prompt_mask_in_chans": s["sam_prompt_encoder.mask_downscaling.3.weight"][0],
        "decoder_depth": len(_indices(s, md + "transformer.layers")),
        "decoder_mlp_dim": s[md + "transformer.layers.0.mlp.layers.0.weight"][0],
        "decoder_attn_downsample": d // s[md + "transformer.final_attn_token_to_image.q_proj.weight"][0],
        "num_multimask_outputs": s[md + "mask_tokens.weight"][0] - 1,
        "iou_head_depth": len(_indices(s, md + "iou_prediction_head.layers")),
        "iou_head_hidden_dim": s[md + "iou_prediction_head.layers.0.weight"][0],
        "pred_obj_scores_mlp": md + "pred_obj_score_head.layers.0.weight" in s,
        "use_obj_ptrs_in_encoder": "mask_downsample.weight" in s,
        "use_mlp_for_obj_ptr_proj": "obj_ptr_proj.layers.0.weight" in s,
        "proj_tpos_enc_in_obj_ptrs": "obj_ptr_tpos_proj.weight" in s,
    }


def strip_prefix(shapes: Dict[str, Sequence[int]]) -> Dict[str, list]:
    """Checkpoint names -> SAM2Model names (prefix PREFIX removed, other names dropped; names
    without the prefix are kept as they are); values as lists of ints."""
    if any(k.startswith(PREFIX) for k in shapes):
        return {k[len(PREFIX):]: list(v) for k, v in shapes.items() if k.startswith(PREFIX)}
    return {k: list(v) for k, v in shapes.items()}


def infer_from_shapes(shapes: Dict[str, Sequence[int]]) -> dict:
    """Every value the tensor shapes determine (module docstring, point 2) plus the point-3
    fill-ins for the trunk. Raises KeyError naming a missing tensor."""
    s = strip_prefix(shapes)
    out = _trunk(s)
    out.update(_memory(s))
    out.update(_heads(s))
    return out


def sam2_config(config_json: dict, shapes: Optional[Dict[str, Sequence[int]]] = None) -> dict:
    """The SAM2Model config: config_json[CONFIG_KEY] over shapes over hiera-large (module doc)."""
    cfg = dict(HIERA_L)
    if shapes:
        cfg.update(infer_from_shapes(shapes))
    given = (config_json or {}).get(CONFIG_KEY) or {}
    unknown = set(given) - set(HIERA_L)
    if unknown:
        raise ValueError(f"{CONFIG_KEY}: unknown keys {sorted(unknown)}")
    if not shapes and ("embed_dim" in given or "stages" in given):
        fill = _trunk_fill(given.get("embed_dim", cfg["embed_dim"]), given.get("stages", cfg["stages"]))
        cfg.update(fill)
    cfg.update(given)
    return cfg


def canonical_sam2_key(name: str) -> str:
    """A checkpoint saved from third_parts/sam2 calls the memory encoder's layer scale `gamma`;
    the HF code the released model uses (and SAM2Model) calls it `g_weight`."""
    if ".memory_encoder.fuser.layers." in "." + name and name.endswith(".gamma"):
        return name[:-len("gamma")] + "g_weight"
    return name
