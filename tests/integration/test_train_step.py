#!/usr/bin/python3
"""tools/model/train.py: one training step of each task on a small synthetic slice set.

- make_batch + step_loss run for recognition, referring, host-organ and description batches, the
  loss is finite and its gradients reach the trunk;
- the pixel decoder runs only on the samples that have a [SEG] target (the step's costliest part),
  and doing so changes nothing: the decoder's rows are independent (GroupNorm is per sample), so
  decoding the subset equals decoding the whole batch and taking those rows;
- `--init` with a bundle folder: the state read back from the exported TorchScript parts is the
  model's own, tensor for tensor (a shipped version can be fine-tuned again).
"""
import pathlib
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "model"))
import mini  # noqa: E402
import train  # noqa: E402
from common import LABELS, ORGANS, VOCAB  # noqa: E402

torch.set_num_threads(2)
S = 256


def disc(cy, cx, r):
    y, x = np.mgrid[:S, :S]
    return ((y - cy) ** 2 + (x - cx) ** 2 <= r * r).astype(np.uint8)


def slices(n_lesion, organs=False):
    """n_lesion slices with one lesion each (class i % 6) and as many clean ones."""
    rng = np.random.default_rng(0)
    n = 2 * n_lesion
    images = rng.normal(0.4, 0.05, (n, S, S)).astype(np.float16)
    masks = np.zeros((n, len(LABELS), S, S), np.uint8)
    for i in range(n_lesion):
        masks[i, i % len(LABELS)] = disc(100 + 5 * i, 90 + 7 * i, 12)
        images[i][masks[i].any(0) > 0] += 0.2
    data = {"images": images, "masks": masks, "modality": np.array([0] * n), "pos": np.arange(n_lesion),
            "neg": np.arange(n_lesion, n)}
    if organs:
        data["organs"] = np.stack([np.stack([disc(110, 80 + 40 * c, 30) for c in range(len(ORGANS))])] * n)
        data["neg"] = np.arange(n)
    return data


class TrainStepTest(unittest.TestCase):
    def test_every_task_steps_and_decodes_only_seg_samples(self):
        torch.manual_seed(0)
        model = mini.MiniUniBiomed(len(VOCAB))
        data, organ_data = slices(6), slices(6, organs=True)
        decoder, calls = model.pixdec, []

        class Recording(torch.nn.Module):
            def forward(self, f):
                calls.append(f[1].shape[0])
                return decoder(f)

        model.pixdec = Recording()
        seen = set()
        for seed in range(10):
            rng = np.random.default_rng(seed)
            img, masks, ids, targets, plen = train.make_batch(data, rng, 4, organ_data, organ_share=0.3, description_share=0.2)
            calls.clear()
            model.zero_grad()
            loss, parts = train.step_loss(model, img, masks, ids, targets, plen)
            loss.backward()
            self.assertTrue(torch.isfinite(loss), parts)
            self.assertGreater(float(model.trunk.stem[0].weight.grad.abs().sum()), 0)
            with_seg = sum(1 for t in targets if t)
            self.assertEqual(calls, [with_seg] if with_seg else [])
            seen.add((with_seg > 0, parts[1] > 0))
        self.assertEqual(seen, {(True, True), (False, False)}, "batches with and without [SEG] targets")

    def test_decoder_rows_are_independent(self):
        torch.manual_seed(1)
        model = mini.MiniUniBiomed(len(VOCAB)).eval()
        with torch.no_grad():
            f = model.trunk(torch.randn(5, 1, S, S))
            rows = [1, 3, 4]
            whole = model.pixdec(f)[rows]
            subset = model.pixdec([t[rows] for t in f])
        torch.testing.assert_close(subset, whole, rtol=1e-4, atol=1e-5)

    def test_a_bundle_reads_back_as_the_training_state(self):
        torch.manual_seed(2)
        model = mini.MiniUniBiomed(len(VOCAB)).eval()
        with tempfile.TemporaryDirectory() as out:
            for name, part in model.parts().items():
                torch.jit.script(part).save(f"{out}/{name}.pt")
            state = train.bundle_state(out)
        want = model.state_dict()
        self.assertEqual(sorted(state), sorted(want))
        for key, value in want.items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


if __name__ == "__main__":
    unittest.main()
