#!/usr/bin/python3
"""Evaluates a bundle through the node's own C++ pipeline (`triagectl analyze`) on held-out
phantom studies: study-level recognition accuracy (exact set of finding labels), per-class
study-level sensitivity/specificity, and 3D lesion Dice per class, scored from the DICOM SEG the
node writes (mapped back onto the source slices by tools/dicomseg.py), so geometry counts.

usage: evaluate.py --bundle DIR --triagectl build/triagectl [--studies 36] [--seed 900000] [--json OUT]
                   [--variant default|broad]
--variant broad generates the held-out studies with the broad phantom mode (the spec's whole range,
40-200 CT slices); use a fresh --work folder per variant (cached studies are reused as they are).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
from collections import defaultdict

import numpy as np
import pydicom
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "phantoms"))
sys.path.insert(0, str(ROOT / "tools"))
from dicomseg import seg_to_volume, source_slices  # noqa: E402
from phantom import REGION_CLASSES, make_phantom  # noqa: E402
from write_study import write_study  # noqa: E402
sys.path.insert(0, str(ROOT / "tools" / "model"))
from common import description_text  # noqa: E402

LABELS = ["liver tumor", "kidney tumor", "pancreas tumor", "lung nodule", "lung tumor", "brain tumor"]


class Truth:
    def __init__(self, region, shape, lesions, folder):
        self.region, self.shape, self.lesions, self.folder = region, tuple(int(x) for x in shape), lesions, folder


def bleu1(hyp, ref):
    """Sentence BLEU-1: clipped unigram precision times the brevity penalty."""
    h, r = hyp.split(), ref.split()
    if not h:
        return 0.0
    clipped = sum(min(h.count(w), r.count(w)) for w in set(h))
    bp = 1.0 if len(h) > len(r) else float(np.exp(1 - len(r) / len(h)))
    return bp * clipped / len(h)


def rouge_l(hyp, ref):
    """ROUGE-L F1 from the longest common subsequence of words."""
    h, r = hyp.split(), ref.split()
    if not h or not r:
        return 0.0
    lcs = [[0] * (len(r) + 1) for _ in range(len(h) + 1)]
    for i, a in enumerate(h):
        for j, b in enumerate(r):
            lcs[i + 1][j + 1] = lcs[i][j] + 1 if a == b else max(lcs[i][j + 1], lcs[i + 1][j])
    p, rec = lcs[-1][-1] / len(h), lcs[-1][-1] / len(r)
    return 2 * p * rec / (p + rec) if p + rec else 0.0


def reference_description(label, mask, folder):
    """PHANTOMS.md wording of a truth lesion: its side from the mask, and for kidney tumors
    whether it enhances (brighter than the kidney tissue around it in the source images)."""
    side = "right" if np.nonzero(mask)[2].mean() < mask.shape[2] / 2 else "left"
    enhancing = False
    if label == "kidney tumor":
        files = sorted(folder.iterdir())
        heads = [pydicom.dcmread(f) for f in files]
        heads.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        vol = np.stack([d.pixel_array.astype(np.float32) for d in heads])
        m = torch.from_numpy(mask.astype(np.float32))[:, None]
        ring = (F.max_pool2d(m, 9, 1, 4) - m)[:, 0].numpy() > 0
        enhancing = vol[mask].mean() > vol[ring].mean()
    return description_text(label, side, enhancing)


def generated_description(finding):
    """The model's text inside the node's description ('<Label>: <text>, 23 mm (volume ...')."""
    head = finding["description"].split(": ", 1)[-1]
    return head.rsplit(" mm (volume", 1)[0].rsplit(", ", 1)[0]


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
    ap.add_argument("--work", help="keep the generated studies here and reuse them on the next run")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--variant", choices=["default", "broad"], default="default")
    a = ap.parse_args()
    work = pathlib.Path(a.work) if a.work else pathlib.Path(tempfile.mkdtemp(prefix="triage-eval-"))
    truth = {}
    regions = ["CHEST", "ABDOMEN", "HEAD"]
    for i in range(a.studies):
        seed = a.seed + i
        rng = np.random.default_rng(seed)
        region = regions[i % 3]
        n_les = [0, 1, 1, 2][i // 3 % 4]
        labels = [REGION_CLASSES[region][rng.integers(len(REGION_CLASSES[region]))] for _ in range(n_les)]
        cache = work / "truth" / f"s{i:03d}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=True)
            truth[str(z["uid"])] = Truth(str(z["region"]), z["shape"], list(zip(z["labels"], z["diameters"], z["masks"])),
                                         work / "in" / f"s{i:03d}")
            continue
        slices = int(rng.integers(40, 100)) if region != "HEAD" else None
        ph = make_phantom(seed, region, labels=labels, slices=None if a.variant == "broad" else slices, variant=a.variant)
        uid = write_study(work / "in" / f"s{i:03d}", ph, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, uid=uid, region=ph.region, shape=np.array(ph.volume.shape),
                            labels=np.array([l.label for l in ph.lesions], dtype=object),
                            diameters=np.array([l.diameter_mm for l in ph.lesions]),
                            masks=np.array([l.mask for l in ph.lesions], dtype=bool).reshape((-1,) + ph.volume.shape))
        truth[uid] = Truth(ph.region, np.array(ph.volume.shape), [(l.label, l.diameter_mm, l.mask) for l in ph.lesions],
                           work / "in" / f"s{i:03d}")
        print(f"generated {i + 1}/{a.studies}: {region} {[l.label for l in ph.lesions]}", flush=True)
    if a.generate_only:
        return
    cfg = work / "eval.toml"
    cfg.write_text(f'[node]\ndata_dir = "{work}/d"\n[model]\nbundle = "{a.bundle}"\nbatch_size = 16\n')
    r = subprocess.run([a.triagectl, "--config", str(cfg), "analyze", str(work / "in"), "--out", str(work / "out"),
                        "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"triagectl analyze failed: {r.stderr[-2000:]}")
    docs = json.loads(r.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    exact, tp, fp, fn, tn = 0, defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int)
    dices, dices10, seconds, bleu, rouge = defaultdict(list), [], [], [], []
    for d in docs:
        ph = truth[d["study_uid"]]
        want = {label for label, _, _ in ph.lesions}
        got = {f["label"] for f in d["findings"]}
        exact += want == got
        if want != got:
            print(f"{ph.folder.name} {ph.region}: truth {sorted(want)} found {sorted(got)} "
                  f"{[(f['label'], round(f['diameter_mm'])) for f in d['findings']]}", file=sys.stderr)
        for label in REGION_CLASSES[ph.region]:
            if label in want:
                (tp if label in got else fn)[label] += 1
            else:
                (fp if label in got else tn)[label] += 1
        seg = np.zeros(ph.shape, np.uint8)
        for o in d["outputs"]:
            if o["kind"] == "seg":
                seg = seg_to_volume(o["path"], source_slices(sorted(ph.folder.iterdir())))[0]
        for label, diameter, mask in ph.lesions:
            hit = np.unique(seg[mask])
            pred = np.isin(seg, hit[hit > 0])
            dsc = dice(mask, pred)
            counts = np.bincount(seg[mask], minlength=256)[1:]
            found = [f for f in d["findings"] if counts.any() and f["segment"] == int(counts.argmax()) + 1]
            if found:  # description of the finding that holds most of the lesion
                ref, hyp = reference_description(label, mask, ph.folder), generated_description(found[0])
                bleu.append(bleu1(hyp, ref))
                rouge.append(rouge_l(hyp, ref))
            dices[label].append(dsc)
            if diameter >= 10:
                dices10.append(dsc)
        seconds.append(d["analysis"]["seconds"]["total"] / max(1, ph.shape[0]))
    result = {
        "studies": len(docs), "recognition_accuracy": exact / len(docs),
        "per_class": {l: {"sensitivity": tp[l] / max(1, tp[l] + fn[l]), "specificity": tn[l] / max(1, tn[l] + fp[l]),
                          "dice_mean": float(np.mean(dices[l])) if dices[l] else None, "lesions": len(dices[l])}
                      for l in LABELS},
        "mean_dice_lesions_ge_10mm": float(np.mean(dices10)) if dices10 else None,
        "descriptions": {"compared": len(bleu), "bleu1": float(np.mean(bleu)) if bleu else None,
                         "rouge_l": float(np.mean(rouge)) if rouge else None},
        "seconds_per_slice": float(np.mean(seconds)),
    }
    print(json.dumps(result, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
