#!/usr/bin/python3
"""Trains the mini UniBiomed on phantom slices with the paper's loss:
L = L_text (cross-entropy) + 2 * BCE + 0.5 * Dice on each [SEG] mask, plus an auxiliary dense
lesion-map loss (MODEL-NOTES lesson 1: without it the language model ignores the image).

usage: train.py --data train.npz [more.npz ...] --out ckpt.pt [--minutes 60] [--batch 16] [--seed 42]
                [--init ckpt.pt or an exported bundle folder] [--organ-data organs.npz [more.npz ...] --organ-share 0.2] [--description-share 0.15]
                [--balance-classes] [--hard hard.npz --hard-share 0.25]
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
from common import LABELS, ORGANS, PROMPTS, TOK, VOCAB, answer_text, box_around, description_text, draw_box, encode  # noqa: E402

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
    return rendering(img, rng) * gain + bias + 0.01 * torch.randn_like(img), masks


def rendering(img, rng, share=0.4):
    """What PHANTOMS.md leaves to the renderer: a share of the slices blurred (smooth edges, partial
    volume) and a share given a low-frequency texture, so the model does not learn one renderer's edges."""
    b, _, h, w = img.shape
    blur = torch.from_numpy(rng.random(b) < share)
    if blur.any():
        sigma = float(rng.uniform(0.5, 1.2))
        x = torch.arange(-3, 4, dtype=torch.float32)
        k = torch.exp(-x ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        sub = F.pad(img[blur], (3, 3, 3, 3), mode="replicate")
        sub = F.conv2d(F.conv2d(sub, k.view(1, 1, 1, 7)), k.view(1, 1, 7, 1))
        img = img.clone()
        img[blur] = sub
    for cell in (16, 4):  # a coarse and a fine texture, each on its own share of the slices
        texture = torch.from_numpy(rng.random(b) < share).float().view(b, 1, 1, 1)
        amplitude = torch.from_numpy(rng.uniform(0.0, 0.02, (b, 1, 1, 1))).float()
        noise = F.interpolate(torch.randn(b, 1, h // cell, w // cell), size=(h, w), mode="bilinear", align_corners=False)
        img = img + texture * amplitude * noise
    return img


def pick_positives(data, rng, k):
    if data.get("by_class"):  # class-balanced positives: every label equally often, whatever its slice count
        return [rng.choice(data["by_class"][c]) for c in rng.integers(len(data["by_class"]), size=k)]
    return list(rng.choice(data["pos"], k))


def load_slices(data, idx, rng, organs=None):
    img = torch.from_numpy(data["images"][idx].astype(np.float32))[:, None]
    masks = torch.from_numpy(data["masks"][idx].astype(np.float32))
    if organs is None:
        return (*augment(img, masks, rng), None)
    both = torch.cat([masks, torch.from_numpy(organs[idx].astype(np.float32))], 1)
    img, both = augment(img, both, rng)
    return img, both[:, :len(LABELS)], both[:, len(LABELS):]


def make_batch(data, rng, n, organ_data=None, organ_share=0.2, hard_share=0.0, description_share=0.15):
    """One task per batch (keeps the prompt length uniform): grounded recognition, referring
    segmentation of a lesion class, referring segmentation of a host organ (with --organ-data) or
    region-aware description of the lesion in a drawn box. Returns the images, the lesion masks
    (auxiliary loss), token ids, each sample's [SEG] target masks and the prompt length."""
    r = rng.random()
    task = ("referring" if r < 0.15 else "description" if r < 0.15 + description_share else
            "organ" if r < 0.15 + description_share + organ_share and organ_data is not None else "recognition")
    src = organ_data if task == "organ" else data
    k = n // 2 + n % 2 if task in ("recognition", "referring") else n
    idx = np.concatenate([np.asarray(pick_positives(data, rng, k) if task != "organ" else rng.choice(len(src["images"]), k),
                                     dtype=np.int64), rng.choice(src["neg"], n - k)])
    if task == "recognition" and len(data.get("hard", [])):  # mined mistakes of an earlier model (mine.py)
        idx[:int(round(hard_share * n))] = rng.choice(data["hard"], int(round(hard_share * n)))
    raw = torch.from_numpy(src["images"][idx].astype(np.float32))
    img, masks, organs = load_slices(src, idx, rng, src.get("organs"))
    template = PROMPTS["recognition"][rng.integers(len(PROMPTS["recognition"]))]
    ids, targets = [], []
    for j, i in enumerate(idx):
        present = [LABELS[c] for c in range(len(LABELS)) if masks[j, c].sum() > 2]
        modality = "CT" if src["modality"][i] == 0 else "MR"
        if task == "organ":  # "Please segment pancreas in this CT image ." -> "It is [SEG] ."
            have = [o for c, o in enumerate(ORGANS) if organs[j, c].sum() > 2]
            organ = have[rng.integers(len(have))] if have and rng.random() < 0.85 else ORGANS[rng.integers(len(ORGANS))]
            prompt = encode(PROMPTS["referring"][0].format(label=organ, modality=modality))
            found = organ in have
            ans = encode("It is [SEG] ." if found else "No findings")
            targets.append([organs[j, ORGANS.index(organ)]] if found else [])
        elif task == "referring":  # "Please segment <label> ..." -> "It is [SEG] ." (or "No findings")
            label = present[rng.integers(len(present))] if present and rng.random() < 0.8 else \
                LABELS[rng.integers(len(LABELS))]
            prompt = encode(PROMPTS["referring"][0].format(label=label, modality=modality))
            ans = encode("It is [SEG] ." if label in present else "No findings")
            targets.append([masks[j, LABELS.index(label)]] if label in present else [])
        elif task == "description":  # box drawn around one lesion class -> "<density> lesion in the <site>"
            label = present[rng.integers(len(present))] if present else None
            if label is None:  # augmentation pushed the lesion out of view
                label = LABELS[rng.integers(len(LABELS))]
                prompt = encode(PROMPTS["description"][0].format(label=label))
                ans = encode("No findings")
            else:
                c = LABELS.index(label)
                truth = torch.from_numpy(data["masks"][i, c]).float()
                side = "right" if float(truth.nonzero()[:, 1].float().mean()) < truth.shape[1] / 2 else "left"
                ring = F.max_pool2d(truth[None, None], 9, 1, 4)[0, 0] - truth
                delta = (raw[j][truth > 0].mean() - raw[j][ring > 0].mean()) * 425.0 if ring.sum() else torch.tensor(0.0)
                draw_box(img[j, 0], *box_around(masks[j, c]))
                prompt = encode(PROMPTS["description"][0].format(label=label))
                ans = encode(description_text(label, side, enhancing=float(delta) > 0))
            targets.append([])
        else:
            prompt = encode(template.format(modality=modality))
            ans = encode(answer_text(present))
            targets.append([masks[j, LABELS.index(l)] for l in LABELS if l in present])
        ids.append([TOK["<bos>"]] + prompt + ans + [TOK["<eos>"]])
    plen = 1 + len(prompt)  # the prompts of one batch have one length (labels: two words, organs: one)
    width = max(len(s) for s in ids)
    ids = torch.tensor([s + [PAD] * (width - len(s)) for s in ids])
    return img, masks, ids, targets, plen


def dice_loss(logits, target, eps=1.0):
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def step_loss(model, img, masks, ids, targets, plen):
    f = model.trunk(img)
    vis, aux = model.vhead(f[4], f[5])
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
    for b in range(ids.shape[0]):
        where = (ids[b, :-1] == SEG).nonzero().flatten()
        for k, t in enumerate(where.tolist()):
            seg_hidden.append((b, hidden[b, nv + t]))
            seg_target.append(F.avg_pool2d(targets[b][k][None, None], 2)[0, 0])
    l_seg = torch.zeros(())
    if seg_hidden:
        prompts = model.segproj(torch.stack([h for _, h in seg_hidden]))
        # the pixel decoder (two thirds of a step's convolutions) runs only on the samples with a [SEG]
        rows = sorted({b for b, _ in seg_hidden})
        pix = model.pixdec([t[rows] for t in f])
        pixels = pix[torch.tensor([rows.index(b) for b, _ in seg_hidden])]
        mlog = model.maskdec(pixels, prompts)[:, 0]
        target = torch.stack(seg_target)
        l_seg = 2 * F.binary_cross_entropy_with_logits(mlog, target) + 0.5 * dice_loss(mlog, target)
    aux_target = F.adaptive_max_pool2d(masks, aux.shape[-2:])
    l_aux = F.binary_cross_entropy_with_logits(aux, aux_target)
    return l_text + l_seg + 0.5 * l_aux, (l_text.item(), float(l_seg), l_aux.item())


def bundle_state(folder):
    """The training state dict of an exported mini bundle (its TorchScript parts; the trunk is shared
    by the vision and grounding encoders), so a shipped version can be fine-tuned again."""
    names = {"vision_encoder": {"trunk": "trunk", "head": "vhead"}, "grounding_encoder": {"trunk": "trunk", "decoder": "pixdec"},
             "language_model": "lm", "seg_projection": "segproj", "mask_decoder": "maskdec"}
    state = {}
    for part, prefix in names.items():
        for key, value in torch.jit.load(str(pathlib.Path(folder) / f"{part}.pt")).state_dict().items():
            head, _, rest = key.partition(".")
            state[f"{prefix[head]}.{rest}" if isinstance(prefix, dict) else f"{prefix}.{key}"] = value
    return state


def concatenated(parts, keys):
    """make_dataset.py outputs as one set: each key's arrays joined in order."""
    return {k: np.concatenate([z[k] for z in parts]) for k in keys}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, nargs="+", help="one or more make_dataset.py outputs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", help="start from this checkpoint or exported bundle folder (fine-tuning) instead of random weights")
    ap.add_argument("--balance-classes", action="store_true", help="sample positive slices class-balanced")
    ap.add_argument("--organ-data", nargs="+", help="make_dataset.py --organs outputs: add referring segmentation of host organs")
    ap.add_argument("--organ-share", type=float, default=0.2, help="fraction of batches for host organ segmentation")
    ap.add_argument("--description-share", type=float, default=0.15, help="fraction of batches for region-aware description")
    ap.add_argument("--hard", help="mine.py output: slices an earlier model got wrong, mixed into recognition batches")
    ap.add_argument("--hard-share", type=float, default=0.25, help="fraction of each recognition batch from --hard")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    parts = [np.load(d) for d in a.data] + ([np.load(a.hard)] if a.hard else [])
    data = concatenated(parts, ("images", "masks", "modality"))
    has = data["masks"].any(axis=(1, 2, 3))
    if a.hard:  # the hard slices are the last ones; they also join the ordinary positives/negatives
        data["hard"] = np.arange(len(has) - len(parts[-1]["images"]), len(has))
        print(f"hard slices: {len(data['hard'])}", flush=True)
    data["pos"], data["neg"] = np.where(has)[0], np.where(~has)[0]
    if a.balance_classes:
        per_class = data["masks"].reshape(len(has), len(LABELS), -1).max(axis=2)
        data["by_class"] = [np.where(per_class[:, c])[0] for c in range(len(LABELS)) if per_class[:, c].any()]
        print("positive slices per class:", [len(x) for x in data["by_class"]], flush=True)
    print(f"{len(has)} slices, {has.sum()} with lesions; vocab {len(VOCAB)}", flush=True)
    organ_data = None
    if a.organ_data:
        organ_data = concatenated([np.load(d) for d in a.organ_data], ("images", "masks", "modality", "organs"))
        organ_data["neg"] = np.arange(len(organ_data["images"]))
        print(f"organ slices: {len(organ_data['images'])}", flush=True)
    model = mini.MiniUniBiomed(len(VOCAB))
    if a.init:
        state = bundle_state(a.init) if pathlib.Path(a.init).is_dir() else torch.load(a.init)["model"]
        for key in ("lm.tok.weight", "lm.head.weight", "lm.head.bias"):  # the vocabulary only ever grows at its end
            old, new = state[key], model.state_dict()[key].clone()
            new[:old.shape[0]] = old
            state[key] = new
        model.load_state_dict(state)
        print(f"fine-tuning from {a.init}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    budget, t0, step, last_save = a.minutes * 60, time.time(), 0, time.time()
    while (elapsed := time.time() - t0) < budget:
        frac = elapsed / budget
        warmup = 1.0 if a.init else min(1.0, (step + 1) / 200)
        lr = a.lr * warmup * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts = step_loss(model, *make_batch(data, rng, a.batch, organ_data, a.organ_share, a.hard_share,
                                                          a.description_share))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step} t={elapsed / 60:.1f}min lr={lr:.2e} loss={loss.item():.3f} "
                  f"text={parts[0]:.3f} seg={parts[1]:.3f} aux={parts[2]:.3f}", flush=True)
        if time.time() - last_save > 300:  # every 5 minutes, also kept by minute: a shorter run may be the better one
            for path in (a.out, a.out.replace(".pt", f"-{elapsed / 60:.0f}min.pt")):
                torch.save({"model": model.state_dict(), "step": step}, path)
            last_save = time.time()
    torch.save({"model": model.state_dict(), "step": step, "seed": a.seed, "minutes": a.minutes}, a.out)
    print(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
