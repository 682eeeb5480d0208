#!/usr/bin/python3
"""Checks phantoms of the broad variant against ../shared/docs/PHANTOMS.md, from the volumes as
generated (not from the generator's parameters): geometry, per-organ intensities (median over the
organ's voxels, lesions excluded), noise sigma, lesion count/overlap/host share/measured size/
intensity, and the region's classes. Also prints what the sample covers (size extremes per class,
lesions cut off by the slab's ends, lung lesions on the mediastinum or heart, liver lesions on
kidney-free slices, slices without kidney/pancreas/spleen/heart/liver).

usage: check_spec.py [--studies 30] [--seed 7000] [--max-slices N] [--json OUT]
exit status 1 when any check fails (each failure printed).
"""
import argparse
import json
import pathlib
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from phantom import LESIONS, REGION_CLASSES, _IDS, _FAT, _SOFT, _MED, _longest_diameter, make_phantom  # noqa: E402

CT_LEVELS = {"soft": (30, 50), "fat": (-120, -80), "lung_r": (-900, -800), "lung_l": (-900, -800),
             "heart": (30, 50), "mediastinum": (30, 50), "liver": (55, 65), "spleen": (45, 55), "kidney_r": (30, 40),
             "kidney_l": (30, 40), "pancreas": (40, 50), "bone": (400, 1000)}
MR_LEVELS = {"fat": (250, 350), "brain": (500, 600), "ventricles": (150, 220)}  # "fat" id = scalp/skull shell
IDS = dict(_IDS, soft=_SOFT, fat=_FAT)


def level(vol, sel):
    return float(np.median(vol[sel])) if sel.any() else None


def check(ph, i, fails, cover):
    def need(ok, what):
        if not ok:
            fails.append(f"study {i} {ph.region}: {what}")
    ct = ph.modality == "CT"
    nz, rows, cols = ph.volume.shape
    need((rows, cols) == ((512, 512) if ct else (256, 256)), f"matrix {rows}x{cols}")
    lo, hi = ((0.6, 0.9), (2.5, 5.0)) if ct else ((0.8, 1.0), (3.0, 5.0))
    need(lo[0] - 1e-9 <= ph.pixel_spacing <= lo[1] + 1e-9, f"pixel spacing {ph.pixel_spacing}")
    need(hi[0] - 1e-9 <= ph.slice_spacing <= hi[1] + 1e-9, f"slice spacing {ph.slice_spacing}")
    cover["slices"].append(nz)
    if not cover.get("capped"):
        need((40 <= nz <= 200) if ct else (30 <= nz <= 80), f"{nz} slices")
    vol = ph.volume.astype(np.float32) - (1024 if ct else 0)
    lab = ph.labelmap
    lesion_any = np.zeros(lab.shape, bool)
    for les in ph.lesions:
        lesion_any |= les.mask
    levels = {}
    for name, (a, b) in (CT_LEVELS if ct else MR_LEVELS).items():
        v = level(vol, (lab == IDS[name]) & ~lesion_any)
        if v is not None:
            levels[name] = v
            need(a - 1.5 <= v <= b + 1.5, f"{name} level {v:.1f} outside {a}..{b}")
    if ct:
        aorta = level(vol, (lab == IDS["aorta"]) & ~lesion_any)
        need(aorta is None or abs(aorta - 40) <= 1.5 or 148.5 <= aorta <= 251.5, f"aorta {aorta}")
        cover["aorta_enhanced"].append(aorta is not None and aorta > 100)
        need(level(vol, lab == 0) <= -990, "air")
        sigma = float(np.std(vol[(lab == _SOFT) & ~lesion_any][:200000]))
        need(7.5 <= sigma <= 20.5, f"noise sigma {sigma:.1f}")
        cover["sigma"].append(sigma)
        if ph.region == "CHEST":
            cover["lung_density_diff"].append(abs(levels.get("lung_r", 0) - levels.get("lung_l", 0)))
        for organ in ("heart", "kidney_r", "kidney_l", "pancreas", "spleen", "liver", "lung_r", "lung_l"):
            if organ in CT_LEVELS and (ph.region == "CHEST") == (organ in ("heart", "lung_r", "lung_l")):
                cover[f"slices_without_{organ}"].append(float(1 - (lab == IDS[organ]).any(axis=(1, 2)).mean()))
    else:
        sel = (lab == IDS["brain"]) & ~lesion_any
        sigma = float(np.std(vol[sel][:200000]))
        need(9.5 <= sigma <= 25.5, f"noise sigma {sigma:.1f}")
        cover["sigma"].append(sigma)
    # lesions
    need(len(ph.lesions) <= 2, f"{len(ph.lesions)} lesions")
    labels = [l.label for l in ph.lesions]
    cover["lesions_per_study"].append(len(labels))
    if len(labels) == 2 and labels[0] == labels[1]:
        cover["two_of_a_class"].append(labels[0])
    taken = np.zeros(lab.shape, bool)
    for les in ph.lesions:
        hosts, frac, (dmin, dmax) = LESIONS[les.label]
        need(les.label in REGION_CLASSES[ph.region], f"{les.label} in a {ph.region} study")
        need(not (taken & les.mask).any(), f"{les.label} overlaps another lesion")
        taken |= les.mask
        n = int(les.mask.sum())
        inside = int((lab[les.mask] == IDS[les.host]).sum()) / max(n, 1)
        need(les.host in hosts and inside >= frac - 1e-9, f"{les.label} {inside:.2f} inside {les.host} (>= {frac})")
        seen = _longest_diameter(les.mask, ph.pixel_spacing)
        cut = bool(les.mask[0].any() or les.mask[-1].any())
        need(dmin <= les.diameter_mm <= dmax, f"{les.label} diameter {les.diameter_mm:.1f} outside {dmin}..{dmax}")
        need(seen <= les.diameter_mm + 1e-6 if cut else abs(seen - les.diameter_mm) < 1e-6,
             f"{les.label} measured {seen:.1f} vs recorded {les.diameter_mm:.1f}")
        v = float(np.mean(vol[les.mask]))
        tol = 4 * 25 / np.sqrt(n) + 1.0
        host_level = levels.get(les.host)
        if les.label == "liver tumor":
            rng_ = (host_level - 50, host_level - 20)
        elif les.label == "kidney tumor":
            d = v - host_level
            rng_ = (host_level + 40, host_level + 80) if d > 0 else (host_level - 30, host_level - 15)
            cover["kidney_enhancing"].append(d > 0)
        elif les.label == "pancreas tumor":
            rng_ = (host_level - 30, host_level - 15)
        else:
            rng_ = {"lung nodule": (-100, 60), "lung tumor": (20, 50), "brain tumor": (850, 1100)}[les.label]
        need(rng_[0] - tol <= v <= rng_[1] + tol, f"{les.label} intensity {v:.1f} outside {rng_[0]:.0f}..{rng_[1]:.0f}")
        cover[f"diam:{les.label}"].append(round(les.diameter_mm, 1))
        cover[f"px_of:{les.label}"].append(round(ph.pixel_spacing, 2))
        cover["cut_by_slab_end"].append(cut)
        cover["placement:" + les.label].append(les.placement)
        cover["inside_share_min:" + les.label].append(round(inside, 2))
        if les.host in ("lung_r", "lung_l"):  # touches the mediastinum or heart (4-neighbourhood, in plane)
            m = les.mask
            nb = np.zeros_like(m)
            nb[:, 1:] |= m[:, :-1]
            nb[:, :-1] |= m[:, 1:]
            nb[:, :, 1:] |= m[:, :, :-1]
            nb[:, :, :-1] |= m[:, :, 1:]
            med = np.isin(lab[nb | m], [_MED, IDS["heart"]]).any()
            cover["lung_lesion_on_mediastinum_or_heart"].append(bool(med))
            cover["lung_side"].append(les.host)
        if les.host == "liver":
            ks = np.nonzero(les.mask.any(axis=(1, 2)))[0]
            no_kid = not (lab[ks] == IDS["kidney_r"]).any()
            zc, yc, xc = np.argwhere(les.mask).mean(0)
            part = "left lobe" if xc > cols / 2 else "posterior-right" if yc > rows * 0.55 else "right, anterior"
            liver_ks = np.nonzero((lab == IDS["liver"]).any(axis=(1, 2)))[0]
            if zc >= liver_ks.max() - 0.2 * (liver_ks.max() - liver_ks.min()):
                part += " (dome)"
            cover["liver_part"].append(part + (", kidney-free slices" if no_kid else ""))
        if les.host == "pancreas":
            xc = np.argwhere(les.mask).mean(0)[2]
            xmm = (xc - cols / 2) * ph.pixel_spacing
            cover["pancreas_part"].append("head" if xmm < -15 else "body" if xmm <= 25 else "tail")
        if les.host in ("kidney_r", "kidney_l"):
            cover["kidney_inside_share"].append(round(inside, 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--max-slices", type=int, help="cap the slice count (quick test)")
    ap.add_argument("--json")
    a = ap.parse_args()
    fails, cover, seconds = [], defaultdict(list), []
    cover["capped"] = bool(a.max_slices)
    regions = ["CHEST", "ABDOMEN", "HEAD"]
    for i in range(a.studies):
        seed, region = a.seed + i, regions[i % 3]
        slices = None
        if a.max_slices:
            r = np.random.default_rng(seed)
            slices = int(r.integers(40 if region != "HEAD" else 30, a.max_slices + 1))
        t = time.time()
        ph = make_phantom(seed, region, n_lesions=[1, 2, 2, 0][i // 3 % 4], variant="broad", slices=slices)
        seconds.append(time.time() - t)
        n = len(fails)
        check(ph, i, fails, cover)
        print(f"{i}: {region} {ph.volume.shape} px {ph.pixel_spacing:.2f} dz {ph.slice_spacing:.2f} "
              f"{[(l.label, l.host, round(l.diameter_mm, 1)) for l in ph.lesions]} {seconds[-1]:.1f}s"
              f"{' FAIL' if len(fails) > n else ''}", flush=True)
    summary = {"studies": a.studies, "failures": fails, "seconds_per_study": round(float(np.mean(seconds)), 2),
               "slices_per_study": round(float(np.mean(cover["slices"])), 1)}
    for k, v in sorted(cover.items()):
        if k.startswith("diam:"):
            summary[k] = {"n": len(v), "min": min(v), "max": max(v)}
        elif k.startswith("inside_share_min:"):
            summary[k] = min(v)
        elif k.startswith("slices_without_"):
            summary[k] = {"mean": round(float(np.mean(v)), 2), "studies_with_some": int(np.sum(np.array(v) > 0))}
        elif k in ("lung_lesion_on_mediastinum_or_heart", "cut_by_slab_end", "aorta_enhanced", "kidney_enhancing"):
            summary[k] = f"{int(np.sum(v))}/{len(v)}"
        elif k.startswith("placement:") or k in ("liver_part", "pancreas_part", "lung_side", "two_of_a_class"):
            summary[k] = {p: v.count(p) for p in sorted(set(v))}
        elif k in ("sigma", "lung_density_diff", "slices") and v:
            summary[k] = [round(float(min(v)), 1), round(float(max(v)), 1)]
    print(json.dumps(summary, indent=1))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
