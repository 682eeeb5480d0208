#!/usr/bin/python3
"""Evaluates a bundle through the node's own C++ pipeline (`triagectl analyze`) on held-out
phantom studies: study-level recognition accuracy (exact set of finding labels), per-class
study-level sensitivity/specificity, and 3D lesion Dice per class (from the segment maps the
pipeline writes, on the native grid).

usage: evaluate.py --bundle DIR --triagectl build/triagectl [--studies 36] [--seed 900000] [--json OUT]
"""
import argparse
import json
import pathlib
import struct
import subprocess
import sys
import tempfile
from collections import defaultdict

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "phantoms"))
from phantom import REGION_CLASSES, make_phantom  # noqa: E402
from write_study import write_study  # noqa: E402

LABELS = ["liver tumor", "kidney tumor", "pancreas tumor", "lung nodule", "lung tumor", "brain tumor"]


def read_segmap(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"TRSEGRL1"
    cols, rows, slices = struct.unpack_from("<3i", data, 8)
    out, pos = [], 20
    while pos < len(data):
        v = data[pos]
        run = struct.unpack_from("<I", data, pos + 1)[0]
        out.append(np.full(run, v, np.uint8))
        pos += 5
    return np.concatenate(out).reshape(slices, rows, cols)


def dice(a, b):
    s = a.sum() + b.sum()
    return 2.0 * (a & b).sum() / s if s else 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--triagectl", default=str(ROOT / "build" / "triagectl"))
    ap.add_argument("--studies", type=int, default=36)
    ap.add_argument("--seed", type=int, default=900000)
    ap.add_argument("--json")
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="triage-eval-"))
    truth = {}
    regions = ["CHEST", "ABDOMEN", "HEAD"]
    for i in range(a.studies):
        seed = a.seed + i
        rng = np.random.default_rng(seed)
        region = regions[i % 3]
        n_les = [0, 1, 1, 2][i // 3 % 4]
        labels = [REGION_CLASSES[region][rng.integers(len(REGION_CLASSES[region]))] for _ in range(n_les)]
        ph = make_phantom(seed, region, labels=labels, slices=int(rng.integers(40, 100)) if region != "HEAD" else None)
        uid = write_study(work / "in" / f"s{i:03d}", ph, seed)
        truth[uid] = ph
        print(f"generated {i + 1}/{a.studies}: {region} {[l.label for l in ph.lesions]}", flush=True)
    cfg = work / "eval.toml"
    cfg.write_text(f'[node]\ndata_dir = "{work}/d"\n[model]\nbundle = "{a.bundle}"\nbatch_size = 16\n')
    r = subprocess.run([a.triagectl, "--config", str(cfg), "analyze", str(work / "in"), "--out", str(work / "out"),
                        "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"triagectl analyze failed: {r.stderr[-2000:]}")
    docs = json.loads(r.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    exact, tp, fp, fn, tn = 0, defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    dices, dices10, seconds = defaultdict(list), [], []
    for d in docs:
        ph = truth[d["study_uid"]]
        want = {l.label for l in ph.lesions}
        got = {f["label"] for f in d["findings"]}
        exact += want == got
        for label in REGION_CLASSES[ph.region]:
            if label in want:
                (tp if label in got else fn)[label] += 1
            else:
                (fp if label in got else tn)[label] += 1
        seg = read_segmap(d["outputs"][0]["path"]) if d["outputs"] else np.zeros(ph.volume.shape, np.uint8)
        for les in ph.lesions:
            hit = np.unique(seg[les.mask])
            pred = np.isin(seg, hit[hit > 0])
            dsc = dice(les.mask, pred)
            dices[les.label].append(dsc)
            if les.diameter_mm >= 10:
                dices10.append(dsc)
        seconds.append(d["analysis"]["seconds"]["total"] / max(1, ph.volume.shape[0]))
    result = {
        "studies": len(docs), "recognition_accuracy": exact / len(docs),
        "per_class": {l: {"sensitivity": tp[l] / max(1, tp[l] + fn[l]), "specificity": tn[l] / max(1, tn[l] + fp[l]),
                          "dice_mean": float(np.mean(dices[l])) if dices[l] else None, "lesions": len(dices[l])}
                      for l in LABELS},
        "mean_dice_lesions_ge_10mm": float(np.mean(dices10)) if dices10 else None,
        "seconds_per_slice": float(np.mean(seconds)),
    }
    print(json.dumps(result, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
