#!/usr/bin/python3
"""Parity of the C++ runtime (bench/infer) with the Python reference (tools/model/infer.py) on the
same preprocessed phantom slices: identical decoded text, masks with Dice >= 0.999 (logit > 0),
and the largest logit difference reported."""
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
from common import preprocess_volume  # noqa: E402
from harness import BUILD  # noqa: E402
from infer import Bundle  # noqa: E402
from phantom import make_phantom  # noqa: E402

MINI = ROOT / "models" / "unibiomed-mini"


def slices_with_lesions(size):
    out = []
    for seed, region, label in [(31, "ABDOMEN", "liver tumor"), (32, "CHEST", "lung tumor"), (33, "HEAD", "brain tumor")]:
        ph = make_phantom(seed, region, labels=[label], slices=24)
        hu = ph.volume.astype(np.float32) - (1024 if ph.modality == "CT" else 0)
        img = preprocess_volume(hu, ph.modality, region)
        z = int(np.argmax([l.mask[k].sum() for k in range(ph.volume.shape[0]) for l in ph.lesions[:1]])) if ph.lesions else 12
        t = torch.from_numpy(img[[z, 0]])[:, None]
        out.append(F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy())
    return np.concatenate(out).astype(np.float32)


class ParityTest(unittest.TestCase):
    def test_cpp_runtime_matches_python_reference(self):
        bundle_dir = MINI if (MINI / "model.json").exists() else BUILD / "test-bundle"
        bundle = Bundle(bundle_dir)
        size = bundle.m["input_size"]
        images = slices_with_lesions(size)
        with tempfile.TemporaryDirectory() as tmp:
            raw, dump = pathlib.Path(tmp) / "in.f32", pathlib.Path(tmp) / "out.json"
            images.tofile(raw)
            r = subprocess.run([str(BUILD / "bench" / "infer"), "--bundle", str(bundle_dir), "--input", str(raw),
                                "--count", str(len(images)), "--batch", "3", "--dump", str(dump), "--threads", "2"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            cpp = json.loads(dump.read_text())
        prompt = bundle.m["prompts"]["recognition"][0].replace("{modality}", "CT")
        ref = bundle.run_slices(torch.from_numpy(images)[:, None], prompt)
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
        print(f"\nparity on {bundle_dir.name}: {len(cpp)} slices, {compared} masks, max |logit diff| = {worst:.2e}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
