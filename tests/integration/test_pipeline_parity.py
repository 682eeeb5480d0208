#!/usr/bin/python3
"""Parity of the C++ runtime (bench/infer) with the Python reference (tools/model/infer.py) on the
same preprocessed phantom slices, for each task the node runs (grounded recognition, referring
segmentation of a host organ, region-aware description of a boxed lesion): identical decoded
text, masks with Dice >= 0.999 (logit > 0), and the largest logit difference reported."""
import json
import pathlib
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "model"))
sys.path.insert(0, str(ROOT / "tools" / "phantoms"))
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import box_around, draw_box, preprocess_volume  # noqa: E402
from harness import BUILD  # noqa: E402
from infer import Bundle  # noqa: E402
from phantom import make_phantom  # noqa: E402

MINI = ROOT / "models" / "unibiomed-mini"


def slices_with_lesions(size):
    """Per region: the largest lesion slice, an edge slice, and the lesion slice with the lesion's
    box drawn (the region-aware description input)."""
    out = []
    for seed, region, label in [(31, "ABDOMEN", "liver tumor"), (32, "CHEST", "lung tumor"), (33, "HEAD", "brain tumor")]:
        ph = make_phantom(seed, region, labels=[label], slices=24)
        hu = ph.volume.astype(np.float32) - (1024 if ph.modality == "CT" else 0)
        img = preprocess_volume(hu, ph.modality, region)
        z = int(np.argmax([l.mask[k].sum() for k in range(ph.volume.shape[0]) for l in ph.lesions[:1]])) if ph.lesions else 12
        t = torch.from_numpy(img[[z, 0, z]])[:, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        m = F.interpolate(torch.from_numpy(ph.lesions[0].mask[z:z + 1, None].astype(np.float32)), size=(size, size))[0, 0]
        draw_box(t[2], *box_around(m))
        out.append(t.numpy())
    return np.concatenate(out).astype(np.float32)


class ParityTest(unittest.TestCase):
    bundle_dir = MINI if (MINI / "model.json").exists() else BUILD / "test-bundle"

    def compare(self, prompt):
        bundle = Bundle(self.bundle_dir)
        images = slices_with_lesions(bundle.m["input_size"])
        with tempfile.TemporaryDirectory() as tmp:
            raw, dump = pathlib.Path(tmp) / "in.f32", pathlib.Path(tmp) / "out.json"
            images.tofile(raw)
            r = subprocess.run([str(BUILD / "bench" / "infer"), "--bundle", str(self.bundle_dir), "--input", str(raw),
                                "--count", str(len(images)), "--batch", "3", "--dump", str(dump), "--threads", "2",
                                "--prompt", prompt], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            cpp = json.loads(dump.read_text())
        ref = bundle.run_slices(torch.from_numpy(images)[:, None], prompt.replace("{modality}", "CT"))
        worst, compared = 0.0, 0
        for c, (text, masks) in zip(cpp, ref):
            self.assertEqual(c["text"], text)
            self.assertEqual([m["label"] for m in c["masks"]], [l for l, _ in masks])
            for cm, (_, logits) in zip(c["masks"], masks):
                a = np.array(cm["logits"], np.float32).reshape(logits.shape) > 0
                b = logits.numpy() > 0
                inter, total = (a & b).sum(), a.sum() + b.sum()
                self.assertGreaterEqual(2 * inter / total if total else 1.0, 0.999)
                worst = max(worst, float(np.abs(np.array(cm["logits"]) - logits.numpy().ravel()).max()))
                compared += 1
        print(f"\nparity on {self.bundle_dir.name} ({prompt.split()[1]}): {len(cpp)} slices, {compared} masks, "
              f"max |logit diff| = {worst:.2e}")

    def test_grounded_recognition(self):
        self.compare(Bundle(self.bundle_dir).m["prompts"]["recognition"][0])

    def test_referring_segmentation_of_a_host_organ(self):
        self.compare(Bundle(self.bundle_dir).m["prompts"]["referring"][0].replace("{label}", "pancreas"))

    def test_region_aware_description(self):
        self.compare(Bundle(self.bundle_dir).m["prompts"]["description"][0].replace("{label}", "liver tumor"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
