#!/usr/bin/python3
"""tools/phantoms_alt/render.py, the second renderer of PHANTOMS.md (the validation set of issue 15):
one small study per region, checked against the spec so the renderer cannot rot.

- DICOM: CT/MR Image Storage, explicit VR little endian, one file per slice in no name order, the
  required identifying attributes, BodyPartExamined and SeriesDescription "<BODYPART> axial",
  FrameOfReferenceUID, HFS, ImageOrientationPatient 1\\0\\0\\0\\1\\0, slices centred on the table axis,
  SliceLocation = z, equal spacing = SliceThickness, matrix, pixel spacing, slice count and storage
  (CT signed 16-bit, intercept -1024; MR unsigned, no rescale) within the spec's ranges;
- intensities: each structure's median (air, fat, bone, lungs, liver, ...) inside its range, the
  noise in air 8-20 HU;
- truth: the sidecar's lesions match the mask volume (labels 1..n), each lesion's longest diameter
  and host fraction re-measured from the mask are within its class's limits, its mean intensity is
  the class's, the region carries only its own classes, lesions never touch.
"""
import json
import pathlib
import sys
import tempfile
import time
import unittest

import numpy as np
import pydicom

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "phantoms_alt"))
import render  # noqa: E402


class AltRendererTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="phantoms-alt-")
        self.dir = pathlib.Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def study(self, seed, region, labels, slices):
        t0 = time.time()
        folder = self.dir / f"{region.lower()}"
        truth = render.render_study(folder, seed, region, labels, slices=slices)
        problems = render.check_study(folder, str(folder.resolve()) + ".truth")
        self.assertEqual(problems, [], f"{region} seed {seed}")
        side = json.loads(pathlib.Path(str(folder.resolve()) + ".truth.json").read_text())
        self.assertEqual([r["label"] for r in side["lesions"]], labels)
        self.assertEqual(side["labels"], labels or ["No findings"])
        files = list(folder.iterdir())
        self.assertEqual(len(files), slices)
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        self.assertEqual(ds.StudyInstanceUID, truth["study_uid"])
        lab = np.load(str(folder.resolve()) + ".truth.npz")["labels"]
        self.assertEqual(lab.shape, tuple(side["shape"]))
        for j, r in enumerate(side["lesions"], 1):
            self.assertEqual(int((lab == j).sum()), r["voxels"])
        print(f"{region}: {slices} slices, {labels}, {time.time() - t0:.1f} s", flush=True)
        return side

    def test_chest(self):
        self.study(11, "CHEST", ["lung tumor", "lung nodule"], 40)

    def test_abdomen(self):
        side = self.study(12, "ABDOMEN", ["kidney tumor", "liver tumor"], 40)
        self.assertEqual({r["host"] for r in side["lesions"]}, {"kidney", "liver"})

    def test_head(self):
        self.study(13, "HEAD", ["brain tumor"], 30)

    def test_clean_study_and_cli_errors(self):
        side = self.study(14, "HEAD", [], 30)
        self.assertEqual(side["lesions"], [])
        with self.assertRaises(SystemExit):
            sys.argv = ["render.py", str(self.dir / "x"), "--seed", "1", "--region", "HEAD", "--lesions", "liver tumor"]
            render.main()


if __name__ == "__main__":
    unittest.main(verbosity=2)
