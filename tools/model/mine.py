#!/usr/bin/python3
"""Hard-example mining for fine-tuning: generates phantom studies (every slice, volume ends
included), runs a bundle's grounded recognition on them (tools/model/infer.py, the runtime's
algorithm) and keeps the slices it gets wrong: false-positive mask pixels on tissue without a
lesion, or a lesion it misses (less than half of it covered).

usage: mine.py --bundle DIR --out hard.npz --studies N --seed S [--regions ABDOMEN CHEST] [--min-pixels 16]
             [--variant default|broad]
"""
import argparse
import functools
import multiprocessing
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import PROMPTS  # noqa: E402
from infer import Bundle  # noqa: E402
from make_dataset import one_study  # noqa: E402


def predicted(bundle, images, modality):
    """Union of the recognition masks per slice, at input resolution (N, S, S) bool."""
    prompt = PROMPTS["recognition"][0].format(modality=modality)
    out = []
    for i in range(0, len(images), 16):
        batch = torch.from_numpy(images[i:i + 16].astype(np.float32))[:, None]
        for _, masks in bundle.run_slices(batch, prompt):
            m = torch.zeros(images.shape[1:], dtype=torch.bool)
            for _, logits in masks:
                m |= F.interpolate(logits[None, None], size=images.shape[1:], mode="bilinear")[0, 0] > 0
            out.append(m.numpy())
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--studies", type=int, default=60)
    ap.add_argument("--seed", type=int, default=49)
    ap.add_argument("--regions", nargs="+", default=["ABDOMEN", "CHEST"])
    ap.add_argument("--variant", choices=["default", "broad"], default="default", help="phantom variant (phantom.py)")
    ap.add_argument("--min-pixels", type=int, default=16, help="false-positive pixels that make a slice hard")
    a = ap.parse_args()
    torch.set_num_threads(2)
    bundle = Bundle(a.bundle)
    seeds = [a.seed * 100000 + i for i in range(a.studies)]
    keep, fp_slices, missed_slices, total = [[], [], []], 0, 0, 0
    with multiprocessing.Pool(1) as pool:  # generation overlaps inference
        make = functools.partial(one_study, every_slice=True, variant=a.variant)
        jobs = [pool.apply_async(make, (s,), {"region": a.regions[i % len(a.regions)]}) for i, s in enumerate(seeds)]
        for i, job in enumerate(jobs):
            images, masks, modality = job.get()[:3]
            truth = masks.any(axis=1)
            pred = predicted(bundle, images, "CT" if modality[0] == 0 else "MR")
            near = F.max_pool2d(torch.from_numpy(truth[:, None].astype(np.float32)), 9, 1, 4)[:, 0].numpy() > 0
            fp = (pred & ~near).sum(axis=(1, 2)) >= a.min_pixels
            covered = (pred & truth).sum(axis=(1, 2)) / np.maximum(1, truth.sum(axis=(1, 2)))
            missed = truth.any(axis=(1, 2)) & (covered < 0.5)
            hard = fp | missed
            fp_slices, missed_slices, total = fp_slices + int(fp.sum()), missed_slices + int(missed.sum()), total + len(fp)
            for part, x in zip(keep, (images, masks, modality)):
                part.append(x[hard])
            print(f"study {i + 1}/{a.studies}: {int(fp.sum())} false-positive, {int(missed.sum())} missed of {len(fp)} slices",
                  flush=True)
    np.savez(a.out, images=np.concatenate(keep[0]), masks=np.concatenate(keep[1]), modality=np.concatenate(keep[2]))
    print(f"{a.out}: {fp_slices} false-positive and {missed_slices} missed slices of {total}")


if __name__ == "__main__":
    main()
