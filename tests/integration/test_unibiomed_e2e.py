#!/usr/bin/python3
"""A tiny synthetic UniBiomed checkpoint (random weights in the released layout) converted to a
format-2 bundle and run end to end through the node. Random weights find nothing, so the checkpoint
is scripted first (tools/model/script_answer.py): its language model answers every prompt with a
given text and its SAM2 mask decoder marks the voxels brighter than a grey level. What is tested is
the node's path and the validity of what it sends, not the model:

- the scripted mask on the eager reference modules is the bright disk of a synthetic image;
- an MR head phantom with one brain tumor, sent with storescu to a real triaged whose bundle answers
  "It is [SEG]. brain tumor", gives a finding of that label, and a SEG and an SR that reach Orthanc,
  are dciodvfy-clean, read back with pydicom, reference the source images, overlap the phantom's
  true tumor and name the synthetic model as a demonstration model;
- an answer outside the model's classes ("It is [SEG]. pneumothorax") is kept as a free-text
  finding with the manifest's generic code (`triagectl analyze`, offline).
"""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import numpy as np
import pydicom
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import (PHANTOM, ROOT, TRIAGECTL, NodeTest, Orthanc, storescu, wait_until,  # noqa: E402
                     write_config)

TOOLS = ROOT / "tools" / "model"
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(ROOT / "tools"))
import bundle_manifest  # noqa: E402
import safetensors_io  # noqa: E402
import sam2_ref  # noqa: E402
import script_answer  # noqa: E402
from dicomseg import read_seg, seg_to_volume, source_slices  # noqa: E402

BRIGHT = 0.78  # grey level of the [0, 1] MR image (z-scores -3..3): brain ~0.64, tumor ~0.9 (PHANTOMS.md)
SEG_CLASS, SR_CLASSES = "1.2.840.10008.5.1.4.1.1.66.4", {"1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33"}


def python(*args):
    r = subprocess.run(["/usr/bin/python3", *map(str, args)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"{args[0]} failed: {r.stderr[-2000:]}")
    return r.stdout


def token_ids(tokenizer_dir, text):
    r = subprocess.run([str(TRIAGECTL), "tokenize", "--bundle", str(tokenizer_dir), "--", text],
                       capture_output=True, text=True, timeout=60, check=True)
    return json.loads(r.stdout)


def recognition_trigger(ckpt, modality):
    """The last token id of the chat prompt the node sends for recognition (pipeline/chat.cpp
    chat_prompt). Added tokens split the text, so the number of <IMG_CONTEXT> tokens cannot change it."""
    template, _ = bundle_manifest.TEMPLATES["phi3_chat"]
    instruction = bundle_manifest.PROMPTS["recognition"][0].replace("{modality}", modality)
    instruction = instruction.replace("<image>", "<img><IMG_CONTEXT></img>")
    return token_ids(ckpt, template.replace("{input}", instruction))[-1]


def scripted_bundle(work, answer, modality="MR", seed=5):
    """A tiny synthetic checkpoint answering `answer` to every prompt that ends like the recognition
    prompt, its masks the voxels brighter than BRIGHT, converted to an fp32 bundle."""
    ckpt, bundle = work / "ckpt", work / "bundle"
    python(TOOLS / "make_synthetic_unibiomed.py", ckpt, "--size", "tiny", "--seed", seed)
    chain = token_ids(ckpt, answer)
    config = json.loads((ckpt / "config.json").read_text())
    eos = bundle_manifest.token_ids(ckpt, config, config["llm_config"]["vocab_size"])["eos"]  # as the manifest has it
    python(TOOLS / "script_answer.py", ckpt, "--trigger", recognition_trigger(ckpt, modality),
           "--chain", ",".join(map(str, chain)), "--end", eos, "--bright-mask", BRIGHT)
    python(TOOLS / "convert_unibiomed.py", ckpt, bundle, "--dtype", "fp32")
    manifest = json.loads((bundle / "model.json").read_text())
    assert manifest["special_token_ids"]["eos"] == eos, manifest["special_token_ids"]
    return bundle


def mr_head(out, masks, seed, slices):
    """An MR head phantom with one brain tumor in folder `out`, its true masks in the .npz `masks`;
    returns (study uid, true tumor mask [z, y, x] in the order of the slice positions)."""
    uid = python(PHANTOM, out, "--seed", seed, "--region", "HEAD", "--lesions", "brain tumor",
                 "--slices", slices, "--masks", masks).split()[0]
    with np.load(masks) as m:
        return uid, next(iter(m.values())).astype(bool)


def dciodvfy_errors(path):
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def sr_texts(ds):
    """Every TEXT value of an SR content tree."""
    out = []
    for item in getattr(ds, "ContentSequence", []):
        if item.ValueType == "TEXT":
            out.append(str(item.TextValue))
        out += sr_texts(item)
    return out


class ScriptedMaskTest(unittest.TestCase):
    def test_the_scripted_mask_is_the_bright_disk_on_the_reference_modules(self):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = pathlib.Path(tmp) / "ckpt"
            python(TOOLS / "make_synthetic_unibiomed.py", ckpt, "--size", "tiny", "--seed", "5")
            tensors = safetensors_io.load_file(ckpt / "model.safetensors")
            config = json.loads((ckpt / "config.json").read_text())
        cfg = sam2_ref.sam2_config(config, {k: v.shape for k, v in tensors.items()})
        script_answer.bright_mask(tensors, cfg["fpn_top_down_levels"], BRIGHT)
        sam = sam2_ref.SAM2Model(cfg).eval()
        sam.load_state_dict({k[len(sam2_ref.PREFIX):]: v.float() for k, v in tensors.items()
                             if k.startswith(sam2_ref.PREFIX)}, strict=True)
        s = cfg["image_size"]
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        disk = (yy - 400) ** 2 + (xx - 600) ** 2 < 120 ** 2
        grey = (torch.where(disk, 0.9, 0.64) + 0.02 * torch.randn(s, s)).clamp(0, 1)
        mean, std = (torch.tensor(x).view(3, 1, 1) for x in (bundle_manifest.IMAGENET_MEAN, bundle_manifest.IMAGENET_STD))
        with torch.no_grad():
            feats = sam2_ref.GroundingEncoderPart(sam)(((grey[None] - mean) / std)[None])
            logits, _ = sam2_ref.MaskDecoderPart(sam)(*feats, torch.randn(1, cfg["d_model"]))
        truth = torch.nn.functional.interpolate(disk[None, None].float(), size=logits.shape[-2:], mode="area") > 0.5
        self.assertGreater(dice((logits > 0).numpy(), truth.numpy()), 0.9)


class UnibiomedEndToEndTest(NodeTest):
    def setUp(self):
        super().setUp()
        self.pacs = None

    def tearDown(self):
        if self.pacs:
            self.pacs.stop()
        super().tearDown()

    def test_an_mr_brain_tumor_reaches_orthanc_as_valid_seg_and_sr(self):
        bundle = scripted_bundle(self.tmp, "It is [SEG]. brain tumor")
        self.pacs = Orthanc(self.tmp / "pacs").start()
        dest = {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": self.pacs.port, "send": ["seg", "sr"]}
        node = self.node(quiet=1, bundle=bundle, destinations=[dest],
                         delivery={"retry_base_seconds": 0.3, "retry_max_seconds": 1.0, "timeout_seconds": 5}).start()
        src = self.tmp / "study"
        uid, truth = mr_head(src, self.tmp / "truth.npz", 11, 6)
        self.assertEqual(storescu(node.port, [src]).returncode, 0)
        wait_until(lambda: node.ctl("study", uid)["state"] in ("done", "failed"), 600, "the analysis")
        d = node.ctl("study", uid)
        self.assertEqual(d["state"], "done", d["jobs"])
        self.assertEqual([f["label"] for f in d["findings"]], ["brain tumor"], (d["report"], d["series"]))
        wait_until(lambda: (lambda ds: len(ds) == 2 and all(x["state"] == "sent" for x in ds))(
            node.ctl("study", uid)["deliveries"]), 120, "the SEG and SR to be sent")
        held = {}
        for iid in self.pacs.get("/instances"):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.pacs.http}/instances/{iid}/file", timeout=10) as r:
                path = self.tmp / f"{iid}.dcm"
                path.write_bytes(r.read())
            held[str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)] = path
        self.assertEqual(len(held), 2, held)
        seg, sr = held[SEG_CLASS], held[(SR_CLASSES & set(held)).pop()]
        for path in (seg, sr):
            self.assertEqual(dciodvfy_errors(path), [], path)
        # The SEG: one "brain tumor" segment, every frame on a source image, overlapping the true tumor.
        ds, labels, frames = read_seg(seg)
        self.assertEqual(ds.StudyInstanceUID, uid)
        self.assertEqual(labels, {1: "brain tumor"})
        slices = source_slices(sorted(src.iterdir()))
        self.assertTrue({f["sop"] for f in frames} <= {s[0] for s in slices})
        volume, _ = seg_to_volume(seg, slices)
        found = volume == 1
        self.assertGreater(dice(found, truth), 0.7, (found.sum(), truth.sum()))
        # The SR: the same study, the model named and said to be a synthetic demonstration model.
        report = pydicom.dcmread(sr)
        self.assertEqual(report.StudyInstanceUID, uid)
        text = " ".join(sr_texts(report))
        self.assertIn("unibiomed", text)
        self.assertIn("demonstration model", text)
        self.assertIn("synthetic", text)


class FreeTextAnswerTest(unittest.TestCase):
    def test_an_answer_outside_the_classes_is_kept_with_the_generic_code(self):
        with tempfile.TemporaryDirectory() as tmp:
            work = pathlib.Path(tmp)
            bundle = scripted_bundle(work, "It is [SEG]. pneumothorax")
            uid, _ = mr_head(work / "in" / "study", work / "truth.npz", 12, 3)
            cfg = work / "t.toml"
            write_config(cfg, {"node": {"data_dir": str(work / "d")}, "model": {"bundle": str(bundle)}})
            r = subprocess.run([str(TRIAGECTL), "--config", str(cfg), "analyze", str(work / "in"), "--out",
                                str(work / "out"), "--json"], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            doc = json.loads(r.stdout)
            doc = doc[0] if isinstance(doc, list) else doc
            generic = json.loads((bundle / "model.json").read_text())["generic_label"]
            shutil.rmtree(work / "d", ignore_errors=True)
        self.assertEqual(doc["study_uid"], uid)
        self.assertEqual([f["label"] for f in doc["findings"]], ["pneumothorax"], (doc["report"], doc["series"]))
        self.assertEqual(doc["findings"][0]["code"], generic["type"]["code"])


if __name__ == "__main__":
    unittest.main()
