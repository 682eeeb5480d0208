#!/usr/bin/python3
"""Generates the mini model's training/validation slices from phantom studies.

usage: make_dataset.py OUT.npz --studies N --seed S [--workers 2] [--organs] [--variant default|broad]
Each study: a random region, 0-2 lesions; every slice with a lesion plus a sample of clean slices,
preprocessed and resized to INPUT_SIZE, with per-class masks at INPUT_SIZE. --organs: CT abdomen
studies only, with the host organ masks (liver, kidney, pancreas) for referring segmentation.
--variant broad: phantoms over the spec's whole range (40-200 CT / 30-80 MR slices, organs with their
own craniocaudal extent, lesions over each class's full size range; tools/phantoms/phantom.py).
"""
import argparse
import functools
import multiprocessing
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "phantoms"))
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import INPUT_SIZE, LABELS, ORGANS, preprocess_volume  # noqa: E402
from phantom import make_phantom  # noqa: E402


def resized(masks, idx):
    m = torch.from_numpy(masks[:, idx].transpose(1, 0, 2, 3).astype(np.float32))
    return (F.interpolate(m, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False) > 0.5).numpy()


def one_study(seed, organs=False, region=None, every_slice=False, variant="default"):
    """Slices of one phantom study: every lesion slice plus a sample of clean ones (every slice
    with every_slice: mine.py looks for the model's mistakes everywhere, volume ends included)."""
    rng = np.random.default_rng(seed)
    region = region or ("ABDOMEN" if organs else ["CHEST", "ABDOMEN", "HEAD"][seed % 3])
    n_les = int(rng.choice([0, 1, 1, 2, 2]))
    nz = int(rng.integers(30, 70)) if region != "HEAD" else int(rng.integers(30, 60))
    if variant == "broad":  # the spec's slice counts; the slab's own anatomy
        ph = make_phantom(seed, region, n_lesions=n_les, variant="broad")
        nz = ph.volume.shape[0]
    else:
        ph = make_phantom(seed, region, n_lesions=n_les, slices=nz)
    hu = ph.volume.astype(np.float32) - (1024 if ph.modality == "CT" else 0)
    img = preprocess_volume(hu, ph.modality, region)
    masks = np.zeros((len(LABELS),) + ph.volume.shape, bool)
    for les in ph.lesions:
        masks[LABELS.index(les.label)] |= les.mask
    pos = np.where(masks.any(axis=(0, 2, 3)))[0]
    neg = np.setdiff1d(np.arange(nz), pos)
    if not every_slice:
        neg = rng.choice(neg, size=min(len(neg), max(6, len(pos) // 2)), replace=False) if len(neg) else neg
    idx = np.sort(np.concatenate([pos, neg]))
    t = torch.from_numpy(img[idx])[:, None]
    t = F.interpolate(t, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    out = [t[:, 0].numpy().astype(np.float16), resized(masks, idx), np.full(len(idx), 0 if ph.modality == "CT" else 1, np.uint8)]
    if organs:
        out.append(resized(np.stack([ph.organs[o] for o in ORGANS]), idx))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--studies", type=int, default=150)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--organs", action="store_true")
    ap.add_argument("--variant", choices=["default", "broad"], default="default")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [a.seed * 100000 + i for i in range(a.studies)]
    with multiprocessing.Pool(a.workers) as pool:
        parts = pool.map(functools.partial(one_study, organs=a.organs, variant=a.variant), seeds, chunksize=1)
    imgs = np.concatenate([p[0] for p in parts])
    masks = np.concatenate([p[1] for p in parts])
    mods = np.concatenate([p[2] for p in parts])
    extra = {"organs": np.concatenate([p[3] for p in parts])} if a.organs else {}
    np.savez(a.out, images=imgs, masks=masks, modality=mods, **extra)
    print(f"{a.out}: {len(imgs)} slices, {int(masks.any(axis=(1, 2, 3)).sum())} with lesions")


if __name__ == "__main__":
    main()
