#!/usr/bin/python3
"""Makes a synthetic (random-weight) UniBiomed checkpoint answer a given token chain under greedy
decoding, for end-to-end tests of the node's path: the token after TRIGGER is the first of CHAIN,
each chain token is followed by the next, and the last by END. Nothing else changes.

How: the embedding rows of TRIGGER and of the chain tokens are scaled up so far that the random
layers barely move the residual stream (each layer sees it RMS-normalised, so its contribution stays
O(1) while the row is O(100)); after the final RMSNorm the hidden state is that row's direction, and
the lm_head row of each successor is set to that direction, which makes it the greedy choice by a wide
margin. The attention, MLP and KV-cache paths still run with their random weights.

usage: script_answer.py CHECKPOINT_DIR --trigger ID --chain ID,ID,... --end ID
(ids from `triagectl tokenize --bundle DIR TEXT`, e.g. the prompt's last id, `It is [SEG]. liver
tumor.` and `<|im_end|>`; the checkpoint's model.safetensors is rewritten in place).
"""
import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import safetensors_io  # noqa: E402

EMBED = "language_model.model.embed_tokens.weight"
HEAD = "language_model.lm_head.weight"


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--trigger", type=int, required=True)
    ap.add_argument("--chain", required=True, help="comma-separated token ids")
    ap.add_argument("--end", type=int, required=True)
    args = ap.parse_args()
    path = pathlib.Path(args.checkpoint) / "model.safetensors"
    tensors = safetensors_io.load_file(path)
    script(tensors, args.trigger, [int(x) for x in args.chain.split(",")], args.end)
    safetensors_io.save_file(tensors, path, metadata={"format": "pt"})
    print(f"script_answer: {path} answers {len(args.chain.split(','))} scripted tokens")


if __name__ == "__main__":
    main()
