#!/usr/bin/python3
"""Converts a UniBiomed checkpoint (the released Hugging Face folder: config.json of model_type
sa2va_chat, model.safetensors, tokenizer.json) into a format-2 bundle the node loads
(docs/model-bundle.md "Format 2: UniBiomed").

  convert_unibiomed.py CHECKPOINT_DIR BUNDLE_DIR [--dtype bf16|fp16|fp32]

Every tensor of the checkpoint is loaded strictly into the reference modules (unibiomed_ref.py,
sam2_ref.py): a missing, unexpected or mis-shaped tensor stops the conversion (exit 2) with a line
naming it. SAM2's memory modules are loaded and checked too, although the bundle does not export them.
Exit 1 for unreadable input."""
import argparse
import hashlib
import json
import pathlib
import shutil
import sys
import time

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bundle_manifest  # noqa: E402
import safetensors_io  # noqa: E402
import sam2_ref  # noqa: E402
import unibiomed_ref as U  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SAM2_PREFIX = sam2_ref.PREFIX


class ConversionError(Exception):
    def __init__(self, lines, code=2):
        super().__init__("\n".join(lines))
        self.lines, self.code = lines, code


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def expected_tensors(model):
    """name -> shape of every tensor the checkpoint must hold (a tied lm_head is not stored)."""
    want = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    if model.lcfg.tie_word_embeddings:
        want.pop("language_model.lm_head.weight", None)
    return want


def checkpoint_names(ckpt):
    """model name -> checkpoint name (a memory-encoder layer scale saved as `gamma` is `g_weight`)."""
    return {sam2_ref.canonical_sam2_key(n): n for n in ckpt.names()}


def check_tensors(want, ckpt):
    """Strict comparison of names and shapes; returns the error lines (empty when they match)."""
    have = {m: tuple(ckpt.shape(n)) for m, n in checkpoint_names(ckpt).items()}
    lines = [f"missing tensor {n} (expected shape {list(want[n])})" for n in want if n not in have]
    lines += [f"unexpected tensor {n} (shape {list(have[n])})" for n in have if n not in want]
    lines += [f"tensor {n} has shape {list(have[n])}, expected {list(want[n])}"
              for n in want if n in have and have[n] != want[n]]
    names = checkpoint_names(ckpt)
    lines += [f"tensor {n} has dtype {ckpt.dtype(names[n])}, expected a floating-point tensor"
              for n in want if n in have and not ckpt.dtype(names[n]).is_floating_point]
    return lines


def load_into(model, ckpt, names, dtype):
    """Replaces each named parameter/buffer by the checkpoint's tensor in `dtype`, one at a time."""
    stored = checkpoint_names(ckpt)
    for name in names:
        owner, _, attr = name.rpartition(".")
        mod = model.get_submodule(owner) if owner else model
        t = ckpt.get(stored[name]).to(dtype)
        if attr in mod._parameters:
            mod._parameters[attr] = nn.Parameter(t, requires_grad=False)
        else:
            mod._buffers[attr] = t
    if model.lcfg.tie_word_embeddings:
        model.language_model.lm_head.weight = model.language_model.model.embed_tokens.weight
    model.to(dtype)  # non-persistent buffers and anything the checkpoint does not store


def build(config, ckpt, dtype):
    sam2_shapes = {m[len(SAM2_PREFIX):]: list(ckpt.shape(n))
                   for m, n in checkpoint_names(ckpt).items() if m.startswith(SAM2_PREFIX)}
    try:
        sam2_cfg = sam2_ref.sam2_config(config, sam2_shapes)
    except KeyError:  # a tensor the shape inference needs is missing: the strict check below names it
        sam2_cfg = sam2_ref.sam2_config(config, None)
    try:
        with U.uninitialized():
            model = U.UniBiomed(config, sam2_cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise ConversionError([f"config.json does not describe a supported model: {e}"]) from e
    want = expected_tensors(model)
    errors = check_tensors(want, ckpt)
    if errors:
        raise ConversionError(errors)
    load_into(model, ckpt, list(want), dtype)
    return model.eval(), sam2_cfg


def export_parts(model, out):
    """Scripts and saves the five parts; returns part -> file name."""
    sam = model.grounding_encoder.sam2_model
    parts = {"vision_encoder": U.VisionEncoderPart(model),
             "language_model": U.LanguageModelPart(model.language_model),
             "seg_projection": U.SegProjectionPart(model),
             "grounding_encoder": sam2_ref.GroundingEncoderPart(sam),
             "mask_decoder": sam2_ref.MaskDecoderPart(sam)}
    files = {}
    for name, part in parts.items():
        scripted = torch.jit.script(part.eval())
        files[name] = f"{name}.pt"
        scripted.save(str(out / files[name]))
        del scripted
    return files


def convert(ckpt_dir, out_dir, dtype_name="bf16"):
    ckpt_dir, out = pathlib.Path(ckpt_dir), pathlib.Path(out_dir)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (ckpt_dir / f).is_file():
            raise ConversionError([f"{ckpt_dir / f} is missing"], code=1)
    config = json.loads((ckpt_dir / "config.json").read_text())
    if config.get("model_type") != "sa2va_chat":
        raise ConversionError([f"config.json model_type is {config.get('model_type')!r}, expected 'sa2va_chat'"])
    with safetensors_io.SafetensorsFile(ckpt_dir / "model.safetensors") as ckpt:
        model, sam2_cfg = build(config, ckpt, DTYPES[dtype_name])
    out.mkdir(parents=True, exist_ok=True)
    files = export_parts(model, out)
    shutil.copyfile(ckpt_dir / "tokenizer.json", out / "tokenizer.json")
    source = {"checkpoint_sha256": sha256(ckpt_dir / "model.safetensors"),
              "config_sha256": sha256(ckpt_dir / "config.json"), "synthetic": bool(config.get("synthetic", False))}
    try:
        manifest = bundle_manifest.manifest(config, model, sam2_cfg, ckpt_dir, dtype_name, source)
    except ValueError as e:
        raise ConversionError([str(e)]) from e
    for name, f in files.items():
        manifest["modules"][name]["file"] = f
        manifest["modules"][name]["sha256"] = sha256(out / f)
    (out / "model.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint_dir")
    ap.add_argument("bundle_dir")
    ap.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    try:
        m = convert(args.checkpoint_dir, args.bundle_dir, args.dtype)
    except ConversionError as e:
        for line in e.lines:
            print(f"convert_unibiomed: {line}", file=sys.stderr)
        sys.exit(e.code)
    except safetensors_io.SafetensorsError as e:
        print(f"convert_unibiomed: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"convert_unibiomed: {args.bundle_dir} ({m['dtype']}, {'synthetic' if m['demonstration_only'] else 'released'}"
          f" checkpoint) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
