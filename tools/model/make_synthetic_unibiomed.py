#!/usr/bin/python3
"""Writes a synthetic checkpoint in the released UniBiomed layout (a Hugging Face folder):
model.safetensors (vision encoder in bf16, everything else fp32, as released), config.json
(model_type sa2va_chat, template phi3_chat, "synthetic": true) and the tokenizer files (Qwen2.5's
plus InternVL's and UniBiomed's added tokens, 151,679 ids).

  make_synthetic_unibiomed.py OUT --size full|tiny [--seed N]

`full` has the released shapes (~1.16 B parameters, ~4 GB); `tiny` the same names and module tree with
tiny widths and depths (448-px tiles and the real vocabulary are kept, so the token layout is real).
Weights are random (normal, std 0.02; norms around 1, layer scales around 0.1): no medical meaning.
Tensors are generated and written one at a time."""
import argparse
import json
import os
import pathlib
import shutil
import sys
import time

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import safetensors_io  # noqa: E402
import sam2_ref  # noqa: E402
import unibiomed_ref as U  # noqa: E402

SHARED = pathlib.Path(os.environ.get("TRIAGE_SHARED", pathlib.Path(__file__).resolve().parents[3] / "shared"))
TOKENIZER_DIR = pathlib.Path(os.environ.get("TRIAGE_TOKENIZER_DIR", SHARED / "data" / "tokenizers" / "qwen2.5"))
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
UNIBIOMED_TOKENS = ["[SEG]", "<p>", "</p>", "<vp>", "</vp>"]
VOCAB_SIZE = 151665 + len(INTERNVL_TOKENS) + len(UNIBIOMED_TOKENS)  # 151,679 embedding rows

VISION = {  # InternViT-300M-448px-V2_5 (InternVL2.5-1B's vision_config)
    "full": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2),
}
LLM = {  # Qwen2.5-0.5B
    "full": dict(hidden_size=896, intermediate_size=4864, num_attention_heads=14, num_key_value_heads=2,
                 num_hidden_layers=24),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                 num_hidden_layers=2),
}


def make_config(size):
    vision = dict(architectures=["InternVisionModel"], model_type="intern_vit_6b", num_channels=3, patch_size=14,
                  image_size=448, qkv_bias=True, qk_normalization=False, norm_type="layer_norm", layer_norm_eps=1e-6,
                  hidden_act="gelu", dropout=0.0, attention_dropout=0.0, drop_path_rate=0.0, initializer_range=1e-10,
                  initializer_factor=0.1, use_flash_attn=True, torch_dtype="bfloat16", **VISION[size])
    llm = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu", max_position_embeddings=32768,
               max_window_layers=21, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, sliding_window=32768,
               use_sliding_window=False, tie_word_embeddings=False, vocab_size=VOCAB_SIZE, bos_token_id=151643,
               eos_token_id=151645, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
               torch_dtype="bfloat16", **LLM[size])
    config = dict(architectures=["Sa2VAChatModel"], model_type="sa2va_chat", torch_dtype="bfloat16",
                  auto_map={"AutoConfig": "configuration_sa2va_chat.Sa2VAChatConfig",
                            "AutoModel": "modeling_sa2va_chat.Sa2VAChatModel",
                            "AutoModelForCausalLM": "modeling_sa2va_chat.Sa2VAChatModel"},
                  vision_config=vision, llm_config=llm, hidden_size=llm["hidden_size"], tie_word_embeddings=False,
                  template="phi3_chat", select_layer=-1, downsample_ratio=0.5, force_image_size=448,
                  ps_version="v2", dynamic_image_size=True, use_thumbnail=True, min_dynamic_patch=1,
                  max_dynamic_patch=12, pad2square=False, use_backbone_lora=0, use_llm_lora=0, synthetic=True)
    if size == "tiny":
        config["synthetic_size"] = "tiny"
        config[getattr(sam2_ref, "CONFIG_KEY", "sam2_config")] = sam2_ref.sam2_tiny_config()
    return config


def tensor_specs(model):
    """(name, dtype, shape, kind) for every state_dict entry: vision encoder bf16, the rest fp32."""
    kinds = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            is_norm = isinstance(mod, (nn.LayerNorm, U.RMSNorm, nn.GroupNorm)) and pname == "weight"
            kinds[full] = "norm" if is_norm else "scale" if pname in ("ls1", "ls2") else "normal"
    specs = []
    for name, t in model.state_dict(keep_vars=True).items():
        dtype = torch.bfloat16 if name.startswith("vision_model.") else torch.float32
        kind = kinds.get(name, "buffer")
        specs.append((name, dtype, tuple(t.shape), kind, t if kind == "buffer" else None))
    return specs


def produce(gen, spec):
    name, dtype, shape, kind, buffer = spec
    if kind == "buffer":  # registered buffers keep the values the module computed
        return buffer.detach().to(dtype)
    t = torch.empty(shape, dtype=torch.float32).normal_(0.0, 0.02, generator=gen)
    if kind == "norm":
        t += 1.0
    elif kind == "scale":
        t += 0.1
    return t.to(dtype)


def write_tokenizer(out):
    tok = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text())
    next_id = max(a["id"] for a in tok["added_tokens"]) + 1
    added = {}
    for content in INTERNVL_TOKENS + UNIBIOMED_TOKENS:
        tok["added_tokens"].append(dict(id=next_id, content=content, single_word=False, lstrip=False, rstrip=False,
                                        normalized=False, special=True))
        added[content] = next_id
        next_id += 1
    assert next_id == VOCAB_SIZE, next_id
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=2))
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER_DIR / f, out / f)
    cfg = json.loads((TOKENIZER_DIR / "internvl2.5-1b.tokenizer_config.json").read_text())
    for content in UNIBIOMED_TOKENS:  # Sa2VA: tokenizer.add_tokens([...], special_tokens=True)
        cfg["added_tokens_decoder"][str(added[content])] = dict(content=content, lstrip=False, normalized=False,
                                                                rstrip=False, single_word=False, special=True)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2))
    (out / "added_tokens.json").write_text(json.dumps(
        {a["content"]: a["id"] for a in tok["added_tokens"]}, ensure_ascii=False, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"additional_special_tokens": cfg["additional_special_tokens"], "eos_token": cfg["eos_token"],
         "pad_token": cfg["pad_token"]}, indent=2))


def make(out, size, seed=0):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = make_config(size)
    with U.uninitialized():
        model = U.UniBiomed(config, sam2_ref.sam2_config(config, None))
    specs = tensor_specs(model)
    gen = torch.Generator().manual_seed(seed)
    by_name = {s[0]: s for s in specs}
    safetensors_io.write_streaming(out / "model.safetensors", [s[:3] for s in specs],
                                   lambda n, d, s: produce(gen, by_name[n]), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_tokenizer(out)
    return sum(int(torch.Size(s[2]).numel()) for s in specs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=["full", "tiny"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    n = make(args.out, args.size, args.seed)
    print(f"make_synthetic_unibiomed: {args.size} checkpoint with {n / 1e6:.1f} M values in {args.out} "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
