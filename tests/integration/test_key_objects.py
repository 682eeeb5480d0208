#!/usr/bin/python3
"""Key images (Secondary Capture) and the Key Object Selection read back by other implementations:
dciodvfy (no errors) and pydicom. Inputs: the objects the dicom_io unit test writes from real series
(CT, sagittal MR, Enhanced multi-frame MR), and those of a phantom study analyzed end to end by
`triagectl analyze` with the mini model (the outline drawn around the pipeline's own mask on the
key slice, the text and the demonstration banner in the pixels)."""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import BUILD, MINI, ROOT, TRIAGECTL, phantom, write_config  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from dicomseg import read_segmap, source_slices  # noqa: E402

SC = "1.2.840.10008.5.1.4.1.1.7"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
YELLOW = (255, 255, 0)


def dciodvfy(path):
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (r.stdout + r.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def yellow(pixels):
    return (pixels[..., 0] == YELLOW[0]) & (pixels[..., 1] == YELLOW[1]) & (pixels[..., 2] == YELLOW[2])


def kos_references(ds):
    return {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: i.ValueType
            for i in ds.ContentSequence if i.ValueType in ("IMAGE", "COMPOSITE")}


class KeyObjectsOnRealSeriesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp(prefix="triage-keyobjects-"))
        r = subprocess.run([str(BUILD / "tests" / "test_dicom_io"), "--gtest_filter=Corpus/KeyObjects.*"],
                           capture_output=True, text=True, env=dict(os.environ, TRIAGE_ARTIFACTS=str(cls.dir)))
        if r.returncode != 0:
            raise AssertionError(f"the key objects unit test failed:\n{r.stdout[-3000:]}")
        cls.cases = sorted(p for p in cls.dir.iterdir() if (p / "keyimage.dcm").exists())
        assert len(cls.cases) == 3, cls.cases

    def test_dciodvfy_reports_no_errors(self):
        for case in self.cases:
            for name in ("keyimage.dcm", "kos.dcm"):
                with self.subTest(case=case.name, file=name):
                    errors, _ = dciodvfy(case / name)
                    self.assertEqual(errors, [])

    def test_pydicom_reads_the_key_image_and_the_kos(self):
        for case in self.cases:
            with self.subTest(case=case.name):
                key = pydicom.dcmread(case / "keyimage.dcm")
                self.assertEqual(key.SOPClassUID, SC)
                self.assertEqual(key.pixel_array.shape, (key.Rows, key.Columns, 3))
                self.assertGreater(int(yellow(key.pixel_array).sum()), 100)
                kos = pydicom.dcmread(case / "kos.dcm")
                self.assertEqual(kos.SOPClassUID, KOS)
                self.assertEqual(kos.StudyInstanceUID, key.StudyInstanceUID)
                self.assertEqual(kos_references(kos)[key.SOPInstanceUID], "IMAGE")


class PhantomKeyImagesTest(unittest.TestCase):
    """`triagectl analyze` on a phantom with a lesion and one without."""

    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp(prefix="triage-phantom-keys-"))
        cls.uids = {"tumor": phantom(cls.dir / "in" / "tumor", 11, "ABDOMEN", "liver tumor", slices=40),
                    "clean": phantom(cls.dir / "in" / "clean", 23, "CHEST", "none", slices=40)}
        cfg = cls.dir / "t.toml"
        write_config(cfg, {"node": {"data_dir": str(cls.dir / "d")}, "model": {"bundle": str(MINI)}})
        r = subprocess.run([str(TRIAGECTL), "--config", str(cfg), "analyze", str(cls.dir / "in"), "--out",
                            str(cls.dir / "out"), "--json"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError(r.stderr[-2000:])
        cls.docs = {d["study_uid"]: d for d in json.loads(r.stdout)}

    def outputs(self, key, kind):
        return [o for o in self.docs[self.uids[key]]["outputs"] if o["kind"] == kind]

    def test_one_key_image_per_finding_with_the_outline_around_the_mask_on_the_key_slice(self):
        d = self.docs[self.uids["tumor"]]
        self.assertGreaterEqual(len(d["findings"]), 1, d["report"])
        keys = self.outputs("tumor", "keyimage")
        self.assertEqual(len(keys), len(d["findings"]))
        src_dir = self.dir / "in" / "tumor"
        slices = source_slices(sorted(src_dir.iterdir()))
        [segmap] = d["segment_maps"]
        labels = read_segmap(segmap["path"])
        first = pydicom.dcmread(next(src_dir.iterdir()), stop_before_pixels=True)
        for k, (o, f) in enumerate(zip(keys, d["findings"])):
            errors, _ = dciodvfy(o["path"])
            self.assertEqual(errors, [], o["path"])
            key = pydicom.dcmread(o["path"])
            for tag in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
                self.assertEqual(getattr(key, tag), getattr(first, tag), tag)
            self.assertNotEqual(key.SeriesInstanceUID, first.SeriesInstanceUID)
            self.assertEqual(key.BurnedInAnnotation, "YES")
            ref = key.SourceImageSequence[0].ReferencedSOPInstanceUID
            z = [s for s, _, _ in slices].index(ref)  # the key slice, in the node's sorted order
            self.assertTrue(f["first_slice"] <= z <= f["last_slice"], (z, f))
            mask = labels[z] == k + 1
            self.assertTrue(mask.any())
            pixels = key.pixel_array
            # The slice is drawn at 1:1 for 512x512 CT, below the banner: find its rows by the banner colour.
            banner = np.all(pixels[:, :, :] == (150, 0, 0), axis=2).any(axis=1)
            image_top = int(np.argmin(banner[:60])) if banner[0] else 0
            self.assertGreater(image_top, 0, "a demonstration model's key image has a banner")
            view = pixels[image_top:image_top + mask.shape[0], :mask.shape[1]]
            ring = yellow(view)
            self.assertFalse((ring & mask).any(), "the outline never covers the lesion")
            ys, xs = np.nonzero(mask)
            near = np.zeros_like(mask)
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    near[np.clip(ys + dy, 0, mask.shape[0] - 1), np.clip(xs + dx, 0, mask.shape[1] - 1)] = True
            self.assertTrue(np.array_equal(ring, near & ~mask), "the outline is the 2-pixel ring around the mask")
            below = pixels[image_top + mask.shape[0]:]
            self.assertGreater(int((below.max(axis=2) > 128).sum()), 200, "text under the image")

    def test_the_kos_references_key_images_seg_and_sr_and_a_clean_study_gets_one_for_its_sr(self):
        for key, kinds in (("tumor", ("keyimage", "seg", "sr")), ("clean", ("sr",))):
            with self.subTest(study=key):
                [o] = self.outputs(key, "kos")
                errors, _ = dciodvfy(o["path"])
                self.assertEqual(errors, [])
                kos = pydicom.dcmread(o["path"])
                self.assertEqual(kos.StudyInstanceUID, self.uids[key])
                want = {x["sop_instance_uid"]: ("IMAGE" if x["kind"] == "keyimage" else "COMPOSITE")
                        for kind in kinds for x in self.outputs(key, kind)}
                self.assertEqual(kos_references(kos), want)
        self.assertEqual(self.outputs("clean", "keyimage"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
