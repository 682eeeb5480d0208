#!/usr/bin/python3
"""Exports a trained checkpoint as a model bundle (docs/model-bundle.md): model.json, tokenizer.json
and one TorchScript file per part of the inference path.

usage: export.py CKPT OUT_DIR [--version 0.1.0] [--untrained] [--steps-before N] [--min-confidence C]
"""
import argparse
import hashlib
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import mini  # noqa: E402
from common import BOX_VALUE, HOSTS, INPUT_SIZE, LABELS, PROMPTS, SNOMED, SPECIAL, VOCAB  # noqa: E402

MIN_DIAMETER_MM = {"liver tumor": 7.0, "kidney tumor": 10.5, "pancreas tumor": 7.0, "lung nodule": 3.5, "brain tumor": 10.5}
# 1.1 x the largest lesion of each class in PHANTOMS.md (lung nodules turn into tumours by size): above, not reported
MAX_DIAMETER_MM = {"liver tumor": 66.0, "kidney tumor": 55.0, "pancreas tumor": 38.5, "lung tumor": 77.0, "brain tumor": 55.0}
PARTS = {
    "vision_encoder": {"inputs": {"image": [-1, 1, INPUT_SIZE, INPUT_SIZE]},
                       "outputs": {"visual_tokens": [-1, 64, mini.D], "lesion_map": [-1, len(LABELS), 16, 16]}},
    "language_model": {"inputs": {"embeddings": [-1, -1, mini.D], "start": [], "past_k": [mini.LAYERS, -1, mini.HEADS, -1, mini.D // mini.HEADS],
                                  "past_v": [mini.LAYERS, -1, mini.HEADS, -1, mini.D // mini.HEADS]},
                       "outputs": {"logits": [-1, -1, len(VOCAB)], "hidden": [-1, -1, mini.D], "k": [], "v": []},
                       "methods": {"embed": {"inputs": {"ids": [-1, -1]}, "outputs": {"embeddings": [-1, -1, mini.D]}}}},
    "seg_projection": {"inputs": {"hidden": [-1, mini.D]}, "outputs": {"prompt": [-1, mini.E + 1]}},
    "grounding_encoder": {"inputs": {"image": [-1, 1, INPUT_SIZE, INPUT_SIZE]},
                          "outputs": {"pixel_embeddings": [-1, mini.E, INPUT_SIZE // 2, INPUT_SIZE // 2]}},
    "mask_decoder": {"inputs": {"pixel_embeddings": [-1, mini.E, INPUT_SIZE // 2, INPUT_SIZE // 2], "prompt": [-1, mini.E + 1]},
                     "outputs": {"mask_logits": [-1, 1, INPUT_SIZE // 2, INPUT_SIZE // 2]}},
}


def manifest(version, trained_steps):
    labels = []
    for text in LABELS:
        type_code, type_meaning, region_code, region_meaning = SNOMED[text]
        labels.append({"text": text,
                       "category": {"scheme": "SCT", "code": "49755003", "meaning": "Morphologically abnormal structure"},
                       "type": {"scheme": "SCT", "code": type_code, "meaning": type_meaning},
                       "region": {"scheme": "SCT", "code": region_code, "meaning": region_meaning}})
    return {
        "name": "unibiomed-mini",
        "version": version,
        "format": 1,
        "demonstration_only": True,
        "description": "Demonstration model trained on synthetic phantoms (PHANTOMS.md); not clinically valid.",
        "architecture": "unibiomed-sa2va-mini",
        "trained_steps": trained_steps,
        "input_size": INPUT_SIZE,
        "mask_size": INPUT_SIZE // 2,
        "visual_tokens": 64,
        "hidden_size": mini.D,
        "layers": mini.LAYERS,
        "heads": mini.HEADS,
        "max_positions": mini.MAX_POS,
        "max_new_tokens": 24,
        "preprocessing": {
            "CT": {"windows": {"CHEST": [-1000, 500], "ABDOMEN": [-175, 250]}, "default_window": "ABDOMEN",
                   "chest_keywords": ["CHEST", "LUNG", "THORAX", "THORACIC"]},
            "MR": {"normalization": "zscore", "foreground": "> 0"},
        },
        "tokenizer": "tokenizer.json",
        "special_tokens": {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "image": "<image>", "seg": "[SEG]"},
        "prompts": PROMPTS,
        "labels": labels,
        "host_organs": HOSTS,
        # PHANTOMS.md's densities (docs/model-bundle.md step 7): each host organ's HU and its lesions' contrast
        # to it; the liver is the one organ of the abdomen no other tissue shares its density with
        "host_density": {"liver tumor": {"organ_hu": [55, 65], "contrast_hu": [[-50, -20]], "distinct": True},
                         "kidney tumor": {"organ_hu": [30, 40], "contrast_hu": [[-30, -15], [40, 80]]},
                         "pancreas tumor": {"organ_hu": [40, 50], "contrast_hu": [[-30, -15]]}},
        "roi_box_value": BOX_VALUE,
        # referring prompt for every abdominal lesion class on every abdominal slice (docs/model-bundle.md)
        "referring_sweep": {"ABDOMEN": list(HOSTS)},
        "thresholds": {"mask": 0.5, "min_slices": 1, "min_contrast_hu": 10.0, "min_host_contrast_hu": 15.0, "propagate_slices": 2,
                       "answer_spacing_mm": 2.5, "lung_tumor_min_diameter_mm": 30.0,
                       "host_ring_mm": 5.0, "host_min_coverage": 0.15, "host_min_lead": 0.1, "host_border_coverage": 0.25,
                       # PHANTOMS.md: a liver tumor >= 90 % inside the liver (kidney tumors may be exophytic,
                       # the pancreas is thin): its ring is mostly liver
                       "host_min_share": {"liver tumor": 0.5},
                       # the density check (host_density below): a distinct organ's density over this share
                       # of the tissue around a lesion names it; every contrast range widened by the tolerance
                       "density_share": 0.65, "density_tolerance_hu": 5.0,
                       # 0.7 x the smallest lesion of each class in PHANTOMS.md: below, not reported
                       "min_diameter_mm": MIN_DIAMETER_MM, "max_diameter_mm": MAX_DIAMETER_MM},
        # what the model was validated on (docs/model-bundle.md "domain"): PHANTOMS.md's geometry with
        # margins, and white noise on uniform organs (texture ratio 1.00-1.07; real scans 1.5-3: above 1.45
        # not analyzed at all, between 1.3 and 1.45 analyzed and flagged)
        "domain": {"description": "synthetic phantoms (PHANTOMS.md): axial CT chest/abdomen and MR head, uniform organs with white noise",
                   "axial_only": True, "max_candidates": 40,
                   "CT": {"regions": ["CHEST", "ABDOMEN"], "pixel_spacing_mm": [0.5, 1.0], "slice_spacing_mm": [2.0, 6.0], "max_texture_ratio": 1.3, "skip_texture_ratio": 1.45},
                   "MR": {"regions": ["HEAD"], "pixel_spacing_mm": [0.7, 1.1], "slice_spacing_mm": [2.5, 6.0], "max_texture_ratio": 1.3, "skip_texture_ratio": 1.45}},
        "modules": {name: dict(file=f"{name}.pt", **spec) for name, spec in PARTS.items()},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--untrained", action="store_true", help="export random weights (tiny test bundle)")
    ap.add_argument("--steps-before", type=int, default=0,
                    help="training steps of the checkpoint a fine-tuning run started from (added to trained_steps)")
    ap.add_argument("--min-confidence", type=float, default=0.0,
                    help="thresholds.min_confidence, calibrated per model on validation phantoms (0.5.1: 0.93)")
    a = ap.parse_args()
    torch.manual_seed(42)
    model = mini.MiniUniBiomed(len(VOCAB))
    steps = 0
    if not a.untrained:
        ck = torch.load(a.ckpt, map_location="cpu")
        model.load_state_dict(ck["model"])
        steps = ck.get("step", 0) + a.steps_before
    model.eval()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in model.parts().items():
        torch.jit.script(part).save(str(out / f"{name}.pt"))
    (out / "tokenizer.json").write_text(json.dumps({"type": "word", "vocab": VOCAB, "special": SPECIAL}, indent=1) + "\n")
    m = manifest(a.version, steps)
    if a.min_confidence:
        m["thresholds"]["min_confidence"] = a.min_confidence
    if a.untrained:
        m["name"], m["description"] = "unibiomed-mini-untrained", "Random weights: shape/contract tests only."
        del m["domain"]  # validated on nothing: it analyzes whatever it is given (the tests' real series too)
        del m["thresholds"]["max_diameter_mm"]  # trained on no size range either
    for spec in m["modules"].values():
        spec["sha256"] = hashlib.sha256((out / spec["file"]).read_bytes()).hexdigest()
    (out / "model.json").write_text(json.dumps(m, indent=1) + "\n")
    print(f"bundle written to {out}")


if __name__ == "__main__":
    main()
