#!/usr/bin/python3
"""Makes a synthetic (random-weight) UniBiomed checkpoint answer a given token chain under greedy
decoding, for end-to-end tests of the node's path: the token after TRIGGER is the first of CHAIN,
each chain token is followed by the next, and the last by END. Nothing else changes.

How: the embedding rows of TRIGGER and of the chain tokens are scaled up so far that the random
layers barely move the residual stream (each layer sees it RMS-normalised, so its contribution stays
O(1) while the row is O(100)); after the final RMSNorm the hidden state is that row's direction, and
the lm_head row of each successor is set to that direction, which makes it the greedy choice by a wide
margin. The attention, MLP and KV-cache paths still run with their random weights.

With --bright-mask T the SAM2 mask decoder's masks also become "the slice is brighter than T" (T a
grey level of the [0, 1] image the grounding encoder sees, before ImageNet normalisation), whatever
the prompt. Rewritten tensors (under grounding_encoder.sam2_model.):
- trunk: patch_embed.proj channel 0 = the mean of its 7x7 RGB window (weights 1/147, bias 0), other
  channels 0; pos_embed and pos_embed_window 0; the first stage's blocks made identity (attn.proj
  and the last MLP layer 0), so the stride-4 level's channel 0 is the local mean intensity
  f = mean_c((v - mean_c) / std_c) of the normalised image;
- neck: the stride-4 level's 1x1 conv passes channel 0 to channel 0 (that level gets no top-down
  sum when 0 is not in fpn_top_down_levels, which is checked);
- sam_mask_decoder.conv_s0: out 0 <- in 0, out 1 = constant 1 (bias), other outputs 0;
- sam_mask_decoder.output_upscaling.3 (the ConvTranspose whose output feat_s0 is added to) 0, so
  the upscaled features are GELU(feat_s0): channel 0 GELU(f), channel 1 GELU(1);
- every output_hypernetworks_mlps[k]: last layer weight 0, bias [a, -a GELU(f_T)/GELU(1), 0...],
  so each mask's logit is a (GELU(f) - GELU(f_T)), positive where the local mean exceeds T.
The transformer, the IoU head (which picks among the identical masks) and the other levels keep
their random weights.

usage: script_answer.py CHECKPOINT_DIR --trigger ID --chain ID,ID,... --end ID [--bright-mask T]
(ids from `triagectl tokenize --bundle DIR TEXT`, e.g. the prompt's last id, `It is [SEG]. liver
tumor.` and `<|im_end|>`; the checkpoint's model.safetensors is rewritten in place).
"""
import argparse
import json
import pathlib
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import safetensors_io  # noqa: E402
import sam2_config  # noqa: E402

EMBED = "language_model.model.embed_tokens.weight"
HEAD = "language_model.lm_head.weight"
SAM = "grounding_encoder.sam2_model."
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def script(tensors, trigger, chain, end, scale=100.0):
    """Rewrites the embedding and lm_head rows in `tensors` (name -> tensor) for the chain."""
    embed, head = tensors[EMBED].float().clone(), tensors[HEAD].float().clone()
    seq = [trigger] + chain
    if len(set(seq)) != len(seq):
        raise ValueError("each token of the trigger and chain must be distinct (a token has one successor)")
    gen = torch.Generator().manual_seed(1234)
    for token, successor in zip(seq, chain + [end]):
        direction = torch.randn(embed.shape[1], generator=gen)
        direction /= direction.norm()
        embed[token] = direction * scale
        head[successor] = direction
    tensors[EMBED] = embed.to(tensors[EMBED].dtype)
    tensors[HEAD] = head.to(tensors[HEAD].dtype)


def _zero(tensors, name):
    tensors[name] = torch.zeros_like(tensors[name])


def _indices(tensors, prefix):
    """Sorted distinct N of the keys `prefix.N.*`."""
    return sorted({int(k[len(prefix):].split(".")[0]) for k in tensors
                   if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})


def bright_mask(tensors, fpn_top_down_levels, threshold, gain=20.0):
    """Rewrites the SAM2 tensors (module docstring) so every mask is gain * (GELU(f) - GELU(f_T))."""
    t = SAM + "image_encoder.trunk."
    if 0 in fpn_top_down_levels:
        raise ValueError("the stride-4 FPN level gets a top-down sum: cannot script the mask")
    w = torch.zeros_like(tensors[t + "patch_embed.proj.weight"])
    w[0] = 1.0 / w[0].numel()
    tensors[t + "patch_embed.proj.weight"] = w
    for name in ("patch_embed.proj.bias", "pos_embed", "pos_embed_window"):
        _zero(tensors, t + name)
    embed_dim = w.shape[0]
    for i in _indices(tensors, t + "blocks."):
        if tensors[t + f"blocks.{i}.attn.proj.weight"].shape[0] != embed_dim:
            break  # the first stage ends where the width changes
        last = max(_indices(tensors, t + f"blocks.{i}.mlp.layers."))
        for name in ("attn.proj.weight", "attn.proj.bias", f"mlp.layers.{last}.weight", f"mlp.layers.{last}.bias"):
            _zero(tensors, t + f"blocks.{i}.{name}")
    neck = SAM + "image_encoder.neck.convs."
    finest = max(_indices(tensors, neck))  # convs run coarsest first
    w = torch.zeros_like(tensors[neck + f"{finest}.conv.weight"])
    w[0, 0] = 1.0
    tensors[neck + f"{finest}.conv.weight"] = w
    _zero(tensors, neck + f"{finest}.conv.bias")
    d = SAM + "sam_mask_decoder."
    w, b = torch.zeros_like(tensors[d + "conv_s0.weight"]), torch.zeros_like(tensors[d + "conv_s0.bias"])
    w[0, 0], b[1] = 1.0, 1.0
    tensors[d + "conv_s0.weight"], tensors[d + "conv_s0.bias"] = w, b
    _zero(tensors, d + "output_upscaling.3.weight")
    _zero(tensors, d + "output_upscaling.3.bias")
    f_t = sum((threshold - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)) / 3
    gelu = lambda x: float(F.gelu(torch.tensor(x)))  # noqa: E731
    for k in _indices(tensors, d + "output_hypernetworks_mlps."):
        h = d + f"output_hypernetworks_mlps.{k}.layers."
        last = max(_indices(tensors, h))
        _zero(tensors, h + f"{last}.weight")
        b = torch.zeros_like(tensors[h + f"{last}.bias"])
        b[0], b[1] = gain, -gain * gelu(f_t) / gelu(1.0)
        tensors[h + f"{last}.bias"] = b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--trigger", type=int, required=True)
    ap.add_argument("--chain", required=True, help="comma-separated token ids")
    ap.add_argument("--end", type=int, required=True)
    ap.add_argument("--bright-mask", type=float, metavar="T",
                    help="masks positive where the grounding encoder's [0, 1] grey image exceeds T")
    args = ap.parse_args()
    path = pathlib.Path(args.checkpoint) / "model.safetensors"
    tensors = safetensors_io.load_file(path)
    script(tensors, args.trigger, [int(x) for x in args.chain.split(",")], args.end)
    if args.bright_mask is not None:
        config = json.loads((path.parent / "config.json").read_text())
        levels = sam2_config.sam2_config(config, {k: v.shape for k, v in tensors.items()})["fpn_top_down_levels"]
        bright_mask(tensors, levels, args.bright_mask)
    safetensors_io.save_file(tensors, path, metadata={"format": "pt"})
    print(f"script_answer: {path} answers {len(args.chain.split(','))} scripted tokens")


if __name__ == "__main__":
    main()
