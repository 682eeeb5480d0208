#!/usr/bin/python3
"""Real scans through `triagectl analyze` (offline) with the demonstration model. As shipped, its
domain (skip_texture_ratio) says real anatomy is not analyzed: no series is, each says why, and no
finding is reported. With that switch off (a copy of the bundle), a series of a
modality/region/orientation the domain does not list (a head CT, a sagittal MR) is still not
analyzed and says why; on the others, whatever it segments, no label of another body region is
reported (no brain tumor on a trunk CT), each series says it is outside the model's validated
domain, its findings do not raise the priority, and each study ends within its time budget."""
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import BUILD, SHARED, bundle_copy, write_config  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
MINI = ROOT / "models" / "unibiomed-mini"
DICOM = SHARED / "data" / "dicom"
BUDGET = 45  # seconds per study ([analysis] time_budget_seconds)
HEAD_ONLY = {"brain tumor"}
TRUNK = {"lung nodule", "lung tumor", "liver tumor", "kidney tumor", "pancreas tumor"}
# folder (../shared/data/dicom/README.md) -> labels plausible there; None: not to be analyzed
SERIES = {"ct/ge-hispeed-dual-head-tilt": None,                          # head CT (mini domain: CT chest/abdomen), tilted
          "ct/ge-discovery-ct750hd-missing-and-duplicate-slices": TRUNK,  # 11 slices chest to pelvis, no body part
          "mr/siemens-prisma-t1-sag-hfs": None,                          # sagittal T1 head MR (domain: axial only)
          "mr/ge-signa-pioneer-t1-mprage": HEAD_ONLY}                    # 130-slice axial 3D T1 head MR
DOMAIN = "outside the model's validated domain: "


@unittest.skipUnless((MINI / "model.json").exists() and DICOM.is_dir(), "needs the mini bundle and ../shared/data/dicom")
class RealSeriesTest(unittest.TestCase):
    def analyze(self, folder, bundle=MINI):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            write_config(tmp / "node.toml", {"node": {"data_dir": str(tmp / "data")},
                                             "model": {"bundle": str(bundle), "device": "cpu"},
                                             "analysis": {"time_budget_seconds": BUDGET}})
            t0 = time.monotonic()
            r = subprocess.run([str(BUILD / "triagectl"), "--config", str(tmp / "node.toml"), "analyze", str(DICOM / folder),
                                "--out", str(tmp / "out"), "--json"], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            docs = json.loads(r.stdout)
            return (docs if isinstance(docs, list) else [docs]), time.monotonic() - t0

    def test_real_anatomy_is_not_analyzed_by_the_phantom_model(self):
        for folder in SERIES:
            with self.subTest(folder=folder):
                docs, wall = self.analyze(folder)
                for d in docs:
                    self.assertEqual(d["findings"], [])
                    self.assertEqual(d["priority_level"], "normal", d["priority_reasons"])
                    for s in d["series"]:
                        self.assertFalse(s["analyzed"])
                        self.assertTrue(s["skip_reason"].startswith(DOMAIN), s["skip_reason"])
                print(f"\n{folder}: {wall:.1f} s, {[s['skip_reason'] for d in docs for s in d['series']]}")

    def test_no_implausible_label_and_within_budget(self):
        def analyze_all(manifest):  # the bundle with every series of its regions analyzed
            for modality in ("CT", "MR"):
                manifest["domain"][modality].pop("skip_texture_ratio", None)
        with tempfile.TemporaryDirectory() as tmp:
            self.check_gates(bundle_copy(MINI, tmp, analyze_all))

    def check_gates(self, bundle):
        for folder, plausible in SERIES.items():
            with self.subTest(folder=folder):
                docs, wall = self.analyze(folder, bundle)
                for d in docs:
                    labels = {f["label"] for f in d["findings"]}
                    self.assertLessEqual(labels, plausible or set(), d["findings"])
                    self.assertLessEqual(len(d["findings"]), 10)  # max_findings_per_study
                    # the budget ends the analysis; what is left (outputs, SEG) is bounded by the findings limit
                    self.assertLess(d["analysis"]["seconds"]["total"], BUDGET * 1.5 + 10, d["analysis"]["seconds"])
                    analyzed = [s for s in d["series"] if s["analyzed"]]
                    if plausible is None:
                        self.assertEqual(analyzed, [])
                        self.assertEqual(d["findings"], [])
                        for s in d["series"]:
                            self.assertTrue(s["skip_reason"].startswith(DOMAIN), s["skip_reason"])
                    else:
                        self.assertTrue(analyzed)
                    for s in analyzed:
                        self.assertTrue(s["outside_domain"], s["warnings"])
                        self.assertTrue(any(w.startswith(DOMAIN) for w in s["warnings"]))
                        for why in s["not_reported"]:  # every candidate not reported says which gate
                            self.assertRegex(why, r": (too_few_slices|below_min_diameter|above_max_diameter|isodense|implausible_region|"
                                                  r"implausible_shape|outside_host|low_confidence|over_label_limit|over_study_limit|"
                                                  r"time_budget|seg_limit): |^\d+ more candidates not listed$")
                    self.assertEqual(d["outside_domain"], plausible is not None)
                    self.assertEqual(d["priority_level"], "normal", d["priority_reasons"])
                print(f"\n{folder}: {wall:.1f} s, findings {[f['label'] for d in docs for f in d['findings']]}")


if __name__ == "__main__":
    unittest.main()
