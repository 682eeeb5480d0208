#!/usr/bin/python3
"""Evaluates a bundle through the node's own C++ pipeline (`triagectl analyze`) on held-out
phantom studies: study-level recognition accuracy (exact set of finding labels), per-class
study-level sensitivity/specificity, and 3D lesion Dice per class, scored from the DICOM SEG the
node writes (mapped back onto the source slices by tools/dicomseg.py), so geometry counts.

usage: evaluate.py --bundle DIR --triagectl build/triagectl [--studies 36] [--seed 900000] [--json OUT]
                   [--variant default|broad]
--variant broad generates the held-out studies with the broad phantom mode (the spec's whole range,
40-200 CT slices); use a fresh --work folder per variant (cached studies are reused as they are).
       evaluate.py ... --renderer alt [--jobs N] [--subset A:B]
       evaluate.py --merge RESULT.json ...
--renderer alt draws the studies with tools/phantoms_alt/render.py, the second renderer of PHANTOMS.md
(written from the spec alone, never used for training), with the same mix: region by study index,
0/1/1/2 lesions, a class drawn per lesion; its slice counts cover the spec's range (CT 40-200, MR
30-80). Truth (lesion masks, labels) comes from the renderer's sidecar, written under --work/truth.
--subset A:B analyzes studies A..B-1 only (its own in-/out- folders); --merge pools the per-study rows
of several result files into one summary (recognition, per class, Dice >= 10 mm, misses).
"""
import argparse
import hashlib
import json
import os
import pathlib
import shutil
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
sys.path.insert(0, str(ROOT / "tools" / "phantoms_alt"))
import render as alt_render  # noqa: E402

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


def _alt_one(job):
    i, seed, region, labels, work = job
    prefix = work / "truth" / f"s{i:03d}"
    if not pathlib.Path(str(prefix) + ".json").exists():
        t = alt_render.render_study(work / "in" / f"s{i:03d}", seed, region, labels, truth_prefix=prefix)
        print(f"rendered {i}: {region} {[r['label'] for r in t['lesions']]} {t['shape'][0]} slices", flush=True)
    return i


def alt_truth(a, work, regions):
    """Renders (or reuses) the --renderer alt studies; returns {study uid: Truth}."""
    jobs = []
    lo, hi = (int(x) for x in a.subset.split(":")) if a.subset else (0, a.studies)
    for i in range(lo, min(hi, a.studies)):
        seed = a.seed + i
        rng = np.random.default_rng(seed)
        region = regions[i % 3]
        n_les = [0, 1, 1, 2][i // 3 % 4]
        cls = alt_render.REGION_LABELS[region]
        jobs.append((i, seed, region, [cls[rng.integers(len(cls))] for _ in range(n_les)], work))
    (work / "truth").mkdir(parents=True, exist_ok=True)
    if a.from_reports:  # score only: render nothing
        jobs = [j for j in jobs if (work / "truth" / f"s{j[0]:03d}.json").exists()]
    elif a.jobs > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(a.jobs) as pool:
            list(pool.imap_unordered(_alt_one, jobs))
    else:
        for j in jobs:
            _alt_one(j)
    truth = {}
    for i, *_ in jobs:
        prefix = work / "truth" / f"s{i:03d}"
        t = json.loads(pathlib.Path(str(prefix) + ".json").read_text())
        lab = np.load(str(prefix) + ".npz")["labels"]
        truth[t["study_uid"]] = Truth(t["region"], t["shape"], [(r["label"], r["diameter_mm"], lab == j)
                                                                 for j, r in enumerate(t["lesions"], 1)],
                                      work / "in" / f"s{i:03d}")
    return truth


def merge(paths):
    """Pools the per-study rows of several result files (e.g. --subset runs) into one summary."""
    rows = sum((json.loads(pathlib.Path(p).read_text())["per_study"] for p in paths), [])
    classes = alt_render.REGION_LABELS
    out = {"studies": len(rows), "recognition_accuracy": sum(r["exact"] for r in rows) / len(rows), "per_class": {}}
    for l in LABELS:
        region = next(k for k, v in classes.items() if l in v)
        rs = [r for r in rows if r["region"] == region]
        pos = [l in {f[0] for f in r["reported"]} for r in rs if l in r["truth"]]
        neg = [l not in {f[0] for f in r["reported"]} for r in rs if l not in r["truth"]]
        d = [x[2] for r in rs for x in r["lesions"] if x[0] == l]
        out["per_class"][l] = {"sensitivity": sum(pos) / len(pos) if pos else None, "specificity": sum(neg) / len(neg) if neg else None,
                               "dice_mean": float(np.mean(d)) if d else None, "lesions": len(d), "positive_studies": len(pos)}
    d10 = [x[2] for r in rows for x in r["lesions"] if x[1] >= 10]
    out["mean_dice_lesions_ge_10mm"] = float(np.mean(d10)) if d10 else None
    out["seconds_per_study"] = float(np.mean([r["seconds"] for r in rows]))
    out["seconds_per_slice"] = float(np.mean([r["seconds"] / r["slices"] for r in rows]))
    # calibration of thresholds.min_confidence: recognition had the findings under t been dropped
    # (each row's calls: label, confidence, true), and how many true findings that drops
    out["by_min_confidence"] = {f"{t:.2f}": {
        "recognition": sum(set(r["truth"]) == {c[0] for c in r.get("calls", []) if c[1] >= t} for r in rows) / len(rows),
        "true_findings_dropped": sum(1 for r in rows for c in r.get("calls", []) if c[2] and c[1] < t)}
        for t in (0.0, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97)}
    out["misses"] = [r for r in rows if not r["exact"]]
    print(json.dumps(out, indent=2))


def main():
    if sys.argv[1:2] == ["--merge"]:
        return merge(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--triagectl", default=str(ROOT / "build" / "triagectl"))
    ap.add_argument("--studies", type=int, default=36)
    ap.add_argument("--seed", type=int, default=900000)
    ap.add_argument("--json")
    ap.add_argument("--work", help="keep the generated studies here and reuse them on the next run")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="analyze again even where reports of this bundle and "
                    "this triagectl exist")
    ap.add_argument("--variant", choices=["default", "broad"], default="default")
    ap.add_argument("--renderer", choices=["own", "alt"], default="own",
                    help="own: tools/phantoms (the training generator); alt: tools/phantoms_alt (validation only)")
    ap.add_argument("--jobs", type=int, default=1, help="studies rendered in parallel (--renderer alt)")
    ap.add_argument("--subset", help="A:B: analyze only studies A..B-1 of the set (scores merge by their per-study rows)")
    ap.add_argument("--time-budget", type=float,
                    help="[analysis] time_budget_seconds for the run (default: the node's own; 0 = unlimited)")
    ap.add_argument("--from-reports", action="store_true",
                    help="do not run triagectl: score the studies whose report.json is already in the output folder")
    a = ap.parse_args()
    work = pathlib.Path(a.work) if a.work else pathlib.Path(tempfile.mkdtemp(prefix="triage-eval-"))
    truth = {}
    regions = ["CHEST", "ABDOMEN", "HEAD"]
    classes = REGION_CLASSES
    if a.renderer == "alt":
        classes = alt_render.REGION_LABELS
        truth = alt_truth(a, work, regions)
    for i in range(a.studies if a.renderer == "own" else 0):
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
    budget = "" if a.time_budget is None else f"[analysis]\ntime_budget_seconds = {a.time_budget}\n"
    cfg.write_text(f'[node]\ndata_dir = "{work}/d"\n[model]\nbundle = "{a.bundle}"\nbatch_size = 16\n{budget}')
    inputs, out = work / "in", work / "out"
    # study uid -> a finished report (any out* folder) of this very bundle and triagectl (the sha256
    # of model.json and of the binary, kept beside each report in analyzer.key) whose analysis was
    # not cut by the time budget; a report of another bundle or analyzer is analyzed again
    key = hashlib.sha256((pathlib.Path(a.bundle) / "model.json").read_bytes() + pathlib.Path(a.triagectl).read_bytes()).hexdigest()
    done = {}
    for f in sorted(work.glob("out*/*/report.json"), key=lambda f: f.stat().st_mtime):
        d = json.loads(f.read_text())
        cut = d["series"][0].get("time_budget_exceeded", False) if d.get("series") else False
        kept = f.with_name("analyzer.key")
        if kept.exists() and kept.read_text() == key and not cut and not a.fresh:
            done[d["study_uid"]] = d
    folder_uid = {str(t.folder.name): uid for uid, t in truth.items()}
    if a.subset:  # a folder of hard links to the chosen studies (triagectl follows no symlinks)
        lo, hi = (int(x) for x in a.subset.split(":"))
        inputs = work / f"in-{lo}-{hi}"
        for i in range(lo, min(hi, a.studies)):
            if folder_uid.get(f"s{i:03d}") in done:  # analyzed completely before by this bundle: reused
                shutil.rmtree(inputs / f"s{i:03d}", ignore_errors=True)
                continue
            (inputs / f"s{i:03d}").mkdir(parents=True, exist_ok=True)
            for f in (work / "in" / f"s{i:03d}").iterdir():
                if not (inputs / f"s{i:03d}" / f.name).exists():
                    os.link(f, inputs / f"s{i:03d}" / f.name)
    if a.from_reports:  # score what an interrupted run finished: the report.json the node wrote per study
        docs = [d for uid, d in done.items() if uid in truth]
        print(f"scoring {len(docs)} finished studies (reports not cut by the time budget)", file=sys.stderr)
    elif a.subset:
        if inputs.exists() and any(inputs.iterdir()):
            r = subprocess.run([a.triagectl, "--config", str(cfg), "analyze", str(inputs), "--out", str(out), "--json"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"triagectl analyze failed: {r.stderr[-2000:]}")
            new = json.loads(r.stdout)
            for d in new if isinstance(new, list) else [new]:
                done[d["study_uid"]] = d
        docs = [done[folder_uid[f"s{i:03d}"]] for i in range(lo, min(hi, a.studies)) if folder_uid.get(f"s{i:03d}") in done]
    else:
        r = subprocess.run([a.triagectl, "--config", str(cfg), "analyze", str(inputs), "--out", str(out),
                            "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"triagectl analyze failed: {r.stderr[-2000:]}")
        docs = json.loads(r.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    for d in docs:  # which bundle and analyzer wrote each report (reused above only by the same pair)
        if (out / d["study_uid"]).is_dir():
            (out / d["study_uid"] / "analyzer.key").write_text(key)
    rows = []  # per study: truth, reported, lesion Dice (to merge --subset runs)
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
        for label in classes[ph.region]:
            if label in want:
                (tp if label in got else fn)[label] += 1
            else:
                (fp if label in got else tn)[label] += 1
        seg = np.zeros(ph.shape, np.uint8)
        for o in d["outputs"]:
            if o["kind"] == "seg":
                seg = seg_to_volume(o["path"], source_slices(sorted(ph.folder.iterdir())))[0]
        lesion_dice = []
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
            lesion_dice.append(dsc)
            if diameter >= 10:
                dices10.append(dsc)
        truth_of = {label: np.any([m for l, _, m in ph.lesions if l == label], axis=0) for label in want}
        calls = [(f["label"], round(f["confidence"], 3), bool(f["label"] in want and (seg[truth_of[f["label"]]] == f["segment"]).any()))
                 for f in d["findings"]]  # (label, confidence, true): for calibrating min_confidence
        seconds.append(d["analysis"]["seconds"]["total"] / max(1, ph.shape[0]))
        rows.append({"study": ph.folder.name, "region": ph.region, "slices": ph.shape[0], "truth": sorted(want),
                     "reported": [(f["label"], round(f["diameter_mm"], 1)) for f in d["findings"]],
                     "exact": want == got, "seconds": d["analysis"]["seconds"]["total"], "calls": calls,
                     "lesions": [(label, round(float(diameter), 1), round(float(dc), 3))
                                 for (label, diameter, _), dc in zip(ph.lesions, lesion_dice)]})
    result = {
        "studies": len(docs), "recognition_accuracy": exact / len(docs),
        "per_class": {l: {"sensitivity": tp[l] / max(1, tp[l] + fn[l]), "specificity": tn[l] / max(1, tn[l] + fp[l]),
                          "dice_mean": float(np.mean(dices[l])) if dices[l] else None, "lesions": len(dices[l])}
                      for l in LABELS},
        "mean_dice_lesions_ge_10mm": float(np.mean(dices10)) if dices10 else None,
        "descriptions": {"compared": len(bleu), "bleu1": float(np.mean(bleu)) if bleu else None,
                         "rouge_l": float(np.mean(rouge)) if rouge else None},
        "seconds_per_slice": float(np.mean(seconds)),
        "seconds_per_study": float(np.mean([r["seconds"] for r in rows])),
        "renderer": a.renderer, "seed": a.seed, "subset": a.subset,
        "per_study": rows,
    }
    print(json.dumps(result, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
