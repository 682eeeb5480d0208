#!/usr/bin/python3
"""The DICOM outputs read back by other implementations: dciodvfy (no errors), pydicom (SEG mapped
onto its source slices by referenced SOP instance and position, voxel for voxel; TID 1500 tree),
and dcmjs, the library the OHIF viewer loads SEG with. Inputs: the SEGs the dicom_io unit test
writes with asymmetric label maps on real tilted, unevenly spaced, sagittal and Enhanced series,
and the SEG/SR of phantom studies analyzed end to end by `triagectl analyze` with the mini model."""
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
from dicomseg import read_segmap, seg_to_volume, source_slices  # noqa: E402

JS = ROOT / "tests" / "js"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def dciodvfy_errors(path):
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def dcmjs_read(path, script="read_seg.js"):
    r = subprocess.run(["node", str(JS / script), str(path)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"dcmjs could not read {path}: {r.stderr[-1500:]}")
    return json.loads(r.stdout)


def content(items, code):
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == code]


def sr_groups(path):
    """The TID 1500 measurement groups as dicts, read with pydicom."""
    ds = pydicom.dcmread(path)
    groups = []
    for g in (g for m in content(ds.ContentSequence, "126010")  # Imaging Measurements
              for g in content(getattr(m, "ContentSequence", []), "125007")):  # Measurement Group
        items = g.ContentSequence
        [seg_ref] = content(items, "121191")
        ref = seg_ref.ReferencedSOPSequence[0]
        nums = {i.ConceptNameCodeSequence[0].CodeMeaning: (float(i.MeasuredValueSequence[0].NumericValue),
                                                           i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue)
                for i in items if i.ValueType == "NUM"}
        groups.append({"tracking": content(items, "112039")[0].TextValue,
                       "finding": content(items, "121071")[0].ConceptCodeSequence[0].CodeValue,
                       "site": content(items, "363698007")[0].ConceptCodeSequence[0].CodeValue,
                       "seg_sop": ref.ReferencedSOPInstanceUID, "seg_class": ref.ReferencedSOPClassUID,
                       "segment": int(ref.ReferencedSegmentNumber), "numbers": nums})
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.TextValue
             for q in content(ds.ContentSequence, "C0034375") for i in q.ContentSequence if i.ValueType == "TEXT"}
    return ds, groups, texts


class SegOnRealSeriesTest(unittest.TestCase):
    """SEGs written by the dicom_io unit test over real series, checked by other readers."""

    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp(prefix="triage-outputs-"))
        r = subprocess.run([str(BUILD / "tests" / "test_dicom_io"), "--gtest_filter=Corpus/SegRoundTrip.*"],
                           capture_output=True, text=True, env=dict(os.environ, TRIAGE_ARTIFACTS=str(cls.dir)))
        if r.returncode != 0:
            raise AssertionError(f"the SEG round-trip unit test failed:\n{r.stdout[-3000:]}")
        cls.cases = sorted(p for p in cls.dir.iterdir() if (p / "seg.dcm").exists())
        assert len(cls.cases) >= 6, cls.cases

    def test_dciodvfy_reports_no_errors(self):
        for case in self.cases:
            for name in ("seg.dcm", "sr.dcm"):
                with self.subTest(case=case.name, file=name):
                    self.assertEqual(dciodvfy_errors(case / name), [])

    def test_pydicom_maps_every_frame_onto_its_source_voxel_for_voxel(self):
        for case in self.cases:
            with self.subTest(case=case.name):
                expected = json.loads((case / "expected.json").read_text())
                files = sorted(p for p in pathlib.Path(expected["source"]).iterdir() if p.suffix not in (".md", ".tsv"))
                slices = source_slices(files)
                # pydicom's own slice order agrees with the node's (sorted along the normal).
                self.assertEqual([[s, f] for s, f, _ in slices], expected["slices"])
                volume, labels = seg_to_volume(case / "seg.dcm", slices)
                np.testing.assert_array_equal(volume, read_segmap(case / "expected.segmap"))
                self.assertEqual(labels, {1: "lung tumor", 2: "lung nodule"})

    def test_dcmjs_reads_every_frame_and_maps_it_to_a_source_image(self):
        for case in self.cases:
            with self.subTest(case=case.name):
                expected = json.loads((case / "expected.json").read_text())
                want = read_segmap(case / "expected.segmap")
                z_of = {(s, f): z for z, (s, f) in enumerate(expected["slices"])}
                d = dcmjs_read(case / "seg.dcm")
                self.assertEqual(d["sop_class_uid"], SEG_CLASS)
                self.assertEqual(d["number_of_frames"], len(d["frames"]))
                self.assertEqual([s["label"] for s in d["segments"]], ["lung tumor", "lung nodule"])
                seen = set()
                for f in d["frames"]:
                    z = z_of[(f["sop_instance_uid"], f["frame"])]
                    mask = (want[z] == f["segment"]).ravel()
                    self.assertEqual(f["count"], int(mask.sum()))
                    self.assertEqual(f["index_sum"], int(np.flatnonzero(mask).sum()))
                    seen.add((z, f["segment"]))
                # Frames exactly where a segment is non-empty.
                self.assertEqual(seen, {(z, int(v)) for z in range(len(want)) for v in np.unique(want[z]) if v})

    def test_sr_groups_reference_segments_of_the_seg(self):
        for case in self.cases:
            with self.subTest(case=case.name):
                seg = pydicom.dcmread(case / "seg.dcm", stop_before_pixels=True)
                ds, groups, _ = sr_groups(case / "sr.dcm")
                self.assertEqual(ds.CompletionFlag, "COMPLETE")
                self.assertEqual(ds.VerificationFlag, "UNVERIFIED")
                self.assertEqual(ds.StudyInstanceUID, seg.StudyInstanceUID)
                self.assertEqual([g["segment"] for g in groups], [1, 2])
                for g in groups:
                    self.assertEqual((g["seg_sop"], g["seg_class"]), (seg.SOPInstanceUID, SEG_CLASS))
                self.assertEqual(groups[1]["numbers"]["Volume"], (2.5, "ml"))
                self.assertEqual(groups[1]["numbers"]["Long Axis"], (21.0, "mm"))
                evidence = {i.ReferencedSOPInstanceUID for st in ds.CurrentRequestedProcedureEvidenceSequence
                            for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
                self.assertIn(seg.SOPInstanceUID, evidence)
                # dcmjs walks the same tree to the same segments and numbers.
                js = dcmjs_read(case / "sr.dcm", "read_sr.js")
                self.assertEqual([(g["seg_sop_instance_uid"], g["segment"]) for g in js["groups"]],
                                 [(seg.SOPInstanceUID, 1), (seg.SOPInstanceUID, 2)])
                self.assertIn({"name": "Volume", "value": 2.5, "unit": "ml"}, js["groups"][1]["measurements"])


class PhantomOutputsTest(unittest.TestCase):
    """`triagectl analyze` on phantom studies with the mini model: the SEG holds exactly the
    pipeline's mask, the SR one group per finding with its numbers, a clean study gets no SEG."""

    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp(prefix="triage-phantom-outputs-"))
        cls.uids = {"tumor": phantom(cls.dir / "in" / "tumor", 7, "CHEST", "lung tumor", slices=48),
                    "clean": phantom(cls.dir / "in" / "clean", 22, "CHEST", "none", slices=40)}
        cfg = cls.dir / "t.toml"
        write_config(cfg, {"node": {"data_dir": str(cls.dir / "d")}, "model": {"bundle": str(MINI)}})
        r = subprocess.run([str(TRIAGECTL), "--config", str(cfg), "analyze", str(cls.dir / "in"), "--out",
                            str(cls.dir / "out"), "--json"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError(r.stderr[-2000:])
        cls.docs = {d["study_uid"]: d for d in json.loads(r.stdout)}

    def outputs(self, key, kind):
        return [o for o in self.docs[self.uids[key]]["outputs"] if o["kind"] == kind]

    def test_the_seg_holds_the_pipeline_mask_and_the_sr_its_findings(self):
        d = self.docs[self.uids["tumor"]]
        self.assertEqual([f["label"] for f in d["findings"]], ["lung tumor"], d["report"])
        [seg], [sr] = self.outputs("tumor", "seg"), self.outputs("tumor", "sr")
        for o in (seg, sr):
            self.assertEqual(dciodvfy_errors(o["path"]), [])
        slices = source_slices(sorted((self.dir / "in" / "tumor").iterdir()))
        volume, labels = seg_to_volume(seg["path"], slices)
        [segmap] = d["segment_maps"]
        np.testing.assert_array_equal(volume, read_segmap(segmap["path"]))
        self.assertEqual(labels, {1: "lung tumor"})
        seg_ds = pydicom.dcmread(seg["path"], stop_before_pixels=True)
        src = pydicom.dcmread(next((self.dir / "in" / "tumor").iterdir()), stop_before_pixels=True)
        self.assertEqual(seg_ds.StudyInstanceUID, src.StudyInstanceUID)
        self.assertEqual(seg_ds.FrameOfReferenceUID, src.FrameOfReferenceUID)
        self.assertEqual(seg_ds.PatientID, src.PatientID)
        self.assertNotEqual(seg_ds.SeriesInstanceUID, src.SeriesInstanceUID)
        s = seg_ds.SegmentSequence[0]
        self.assertEqual(s.SegmentAlgorithmType, "AUTOMATIC")
        self.assertEqual(s.SegmentedPropertyTypeCodeSequence[0].CodeValue, "108369006")
        self.assertEqual(s.AnatomicRegionSequence[0].CodeValue, "39607008")
        bundle = json.loads((MINI / "model.json").read_text())
        self.assertEqual(s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName, bundle["name"])
        self.assertEqual(s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion, bundle["version"])
        ds, groups, texts = sr_groups(sr["path"])
        [g] = groups
        f = d["findings"][0]
        self.assertEqual((g["seg_sop"], g["segment"]), (seg["sop_instance_uid"], 1))
        self.assertEqual((g["finding"], g["site"]), (f["code"], f["site_code"]))
        self.assertAlmostEqual(g["numbers"]["Volume"][0], f["volume_ml"], places=1)
        self.assertAlmostEqual(g["numbers"]["Long Axis"][0], f["diameter_mm"], places=0)
        self.assertIn("demonstration model", texts["Comment"])
        self.assertTrue(texts["Impression"])
        self.assertEqual(ds.StudyInstanceUID, src.StudyInstanceUID)
        self.assertEqual(dcmjs_read(seg["path"])["number_of_frames"], seg["frames"])

    def test_a_study_without_findings_gets_an_sr_that_says_so_and_no_seg(self):
        d = self.docs[self.uids["clean"]]
        self.assertEqual(d["findings"], [])
        self.assertEqual(self.outputs("clean", "seg"), [])
        [sr] = self.outputs("clean", "sr")
        self.assertEqual(dciodvfy_errors(sr["path"]), [])
        _, groups, texts = sr_groups(sr["path"])
        self.assertEqual(groups, [])
        self.assertIn("No findings", texts["Finding"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
