#!/usr/bin/python3
"""Trains the mini UniBiomed on phantom slices with the paper's loss:
L = L_text (cross-entropy) + 2 * BCE + 0.5 * Dice on each [SEG] mask, plus an auxiliary dense
lesion-map loss (MODEL-NOTES lesson 1: without it the language model ignores the image).

usage: train.py --data train.npz [more.npz ...] --out ckpt.pt [--minutes 60] [--batch 16] [--seed 42]
Time-budgeted: the learning rate follows warm-up + cosine over the wall-clock budget.
"""
import argparse
import math
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import mini  # noqa: E402
from common import LABELS, PROMPTS, TOK, VOCAB, answer_text, encode  # noqa: E402

SEG, PAD = TOK["[SEG]"], TOK["<pad>"]


def augment(img, masks, rng):
    """Small random zoom/shift (no flips: left and right are anatomy) and intensity jitter."""
    b = img.shape[0]
    scale = torch.from_numpy(rng.uniform(0.9, 1.1, b)).float()
    shift = torch.from_numpy(rng.uniform(-0.08, 0.08, (b, 2))).float()
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    gain = torch.from_numpy(rng.uniform(0.93, 1.07, (b, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.05, 0.05, (b, 1, 1, 1))).float()
    return img * gain + bias + 0.01 * torch.randn_like(img), masks


def make_batch(data, rng, n):
    pos_idx, neg_idx = data["pos"], data["neg"]
    k = n // 2 + n % 2
    if data.get("by_class"):  # class-balanced positives: every label equally often, whatever its slice count
        by_class = data["by_class"]
        pos = [rng.choice(by_class[c]) for c in rng.integers(len(by_class), size=k)]
    else:
        pos = rng.choice(pos_idx, k)
    idx = np.concatenate([np.asarray(pos, dtype=np.int64), rng.choice(neg_idx, n - k)])
    img = torch.from_numpy(data["images"][idx].astype(np.float32))[:, None]
    masks = torch.from_numpy(data["masks"][idx].astype(np.float32))
    img, masks = augment(img, masks, rng)
    referring = rng.random() < 0.25  # one task per batch keeps the prompt length uniform
    template = PROMPTS["recognition"][rng.integers(len(PROMPTS["recognition"]))]
    ids, classes = [], []
    for j, i in enumerate(idx):
        present = [LABELS[c] for c in range(len(LABELS)) if masks[j, c].sum() > 2]
        modality = "CT" if data["modality"][i] == 0 else "MR"
        if referring:  # "Please segment <label> ..." -> "It is [SEG] ." (or "No findings")
            label = present[rng.integers(len(present))] if present and rng.random() < 0.8 else \
                LABELS[rng.integers(len(LABELS))]
            prompt = encode(PROMPTS["referring"][0].format(label=label, modality=modality))
            present = [label] if label in present else []
            ans = encode("It is [SEG] ." if present else "No findings") + [TOK["<eos>"]]
        else:
            prompt = encode(template.format(modality=modality))
            ans = encode(answer_text(present)) + [TOK["<eos>"]]
        ids.append([TOK["<bos>"]] + prompt + ans)
        classes.append([LABELS.index(l) for l in present])
    plen = 1 + len(prompt)  # every label is two words: prompts of one batch have one length
    width = max(len(s) for s in ids)
    ids = torch.tensor([s + [PAD] * (width - len(s)) for s in ids])
    return img, masks, ids, classes, plen


def dice_loss(logits, target, eps=1.0):
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def step_loss(model, img, masks, ids, classes, plen):
    f = model.trunk(img)
    vis, aux = model.vhead(f[4], f[5])
    pix = model.pixdec(f)
    x = torch.cat([vis, model.lm.embed(ids[:, :-1])], 1)
    empty = torch.zeros(mini.LAYERS, img.shape[0], mini.HEADS, 0, mini.D // mini.HEADS)
    logits, hidden, _, _ = model.lm(x, 0, empty, empty)
    nv = vis.shape[1]
    # position nv+t predicts ids[t+1]; the answer starts at ids[plen]
    tgt = ids[:, plen:]
    pred = logits[:, nv + plen - 1: nv + ids.shape[1] - 1]
    l_text = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), tgt.reshape(-1), ignore_index=PAD)
    # [SEG] inputs sit at ids[t] (t >= plen), i.e. sequence position nv + t - 1 of x
    seg_hidden, seg_target = [], []
    small = F.avg_pool2d(masks, 2)
    for b in range(ids.shape[0]):
        where = (ids[b, :-1] == SEG).nonzero().flatten()
        for k, t in enumerate(where.tolist()):
            seg_hidden.append((b, hidden[b, nv + t]))
            seg_target.append(small[b, classes[b][k]])
    l_seg = torch.zeros(())
    if seg_hidden:
        prompts = model.segproj(torch.stack([h for _, h in seg_hidden]))
        pixels = pix[torch.tensor([b for b, _ in seg_hidden])]
        mlog = model.maskdec(pixels, prompts)[:, 0]
        target = torch.stack(seg_target)
        l_seg = 2 * F.binary_cross_entropy_with_logits(mlog, target) + 0.5 * dice_loss(mlog, target)
    aux_target = F.adaptive_max_pool2d(masks, aux.shape[-2:])
    l_aux = F.binary_cross_entropy_with_logits(aux, aux_target)
    return l_text + l_seg + 0.5 * l_aux, (l_text.item(), float(l_seg), l_aux.item())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, nargs="+", help="one or more make_dataset.py outputs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", help="start from this checkpoint (fine-tuning) instead of random weights")
    ap.add_argument("--balance-classes", action="store_true", help="sample positive slices class-balanced")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    parts = [np.load(d) for d in a.data]
    data = {k: np.concatenate([z[k] for z in parts]) for k in ("images", "masks", "modality")}
    has = data["masks"].any(axis=(1, 2, 3))
    data["pos"], data["neg"] = np.where(has)[0], np.where(~has)[0]
    if a.balance_classes:
        per_class = data["masks"].reshape(len(has), len(LABELS), -1).max(axis=2)
        data["by_class"] = [np.where(per_class[:, c])[0] for c in range(len(LABELS)) if per_class[:, c].any()]
        print("positive slices per class:", [len(x) for x in data["by_class"]], flush=True)
    print(f"{len(has)} slices, {has.sum()} with lesions; vocab {len(VOCAB)}", flush=True)
    model = mini.MiniUniBiomed(len(VOCAB))
    if a.init:
        model.load_state_dict(torch.load(a.init)["model"])
        print(f"fine-tuning from {a.init}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    budget, t0, step, last_save = a.minutes * 60, time.time(), 0, time.time()
    while (elapsed := time.time() - t0) < budget:
        frac = elapsed / budget
        warmup = 1.0 if a.init else min(1.0, (step + 1) / 200)
        lr = a.lr * warmup * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts = step_loss(model, *make_batch(data, rng, a.batch))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step} t={elapsed / 60:.1f}min lr={lr:.2e} loss={loss.item():.3f} "
                  f"text={parts[0]:.3f} seg={parts[1]:.3f} aux={parts[2]:.3f}", flush=True)
        if time.time() - last_save > 300:
            torch.save({"model": model.state_dict(), "step": step}, a.out)
            last_save = time.time()
    torch.save({"model": model.state_dict(), "step": step, "seed": a.seed, "minutes": a.minutes}, a.out)
    print(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
