#!/usr/bin/python3
"""The receiver with real peers: DCMTK echoscu/storescu and a raw protocol client."""
import pathlib
import subprocess
import sys
import unittest

import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import rawscu  # noqa: E402
from harness import CORPUS, NodeTest, dump_attrs, storescu, storescu_profile, wait_until  # noqa: E402

WELL_FORMED = ["ct", "mr", "enhanced", "nonimage", "ts", "seg", "sr", "charset"]
CT_SLICE = CORPUS / "ts/ct-ge-hispeed-chest/CTImage.dcm"


def corpus_files(folders):
    return sorted(p for d in folders for p in (CORPUS / d).rglob("*") if p.is_file()
                  and p.suffix not in (".md", ".tsv"))


def send_raw(port, path, called="TRIAGE", calling="RAW", sop_class=None, sop_instance=None, data=None):
    """Sends one file's data set with the raw client; returns the C-STORE status."""
    ts, dataset = rawscu.split_file(path.read_bytes() if data is None else data)
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True) if path else None
    sop_class = sop_class or str(getattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.7"))
    sop_instance = sop_instance or str(getattr(ds, "SOPInstanceUID", "1.2.3.4.5.6.7"))
    a = rawscu.Association("127.0.0.1", port, called, calling, [(sop_class, [ts])])
    try:
        return a.store(sop_class, sop_instance, dataset)
    finally:
        a.release()


class ReceiveTest(NodeTest):
    def test_echo_and_every_well_formed_corpus_file(self):
        n = self.node().start()
        self.assertEqual(subprocess.run(["echoscu", "-aec", "TRIAGE", "127.0.0.1", str(n.port)]).returncode, 0)
        files = corpus_files(WELL_FORMED)
        profile = storescu_profile(self.tmp / "profile.cfg", files)
        r = storescu(n.port, [CORPUS / d for d in WELL_FORMED], profile=profile)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])

        rows = {r["sop_instance_uid"]: r for r in n.query("SELECT * FROM instances")}
        # Syntaxes DCMTK 3.6.7 cannot carry (storescu cannot send them, nor can the node's DIMSE
        # layer receive them): the node refuses the presentation context cleanly at negotiation.
        unknown_to_dcmtk = []
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            if ds.SOPInstanceUID not in rows and "StudyInstanceUID" in ds:
                unknown_to_dcmtk.append(f)
        self.assertEqual([f.name for f in unknown_to_dcmtk], ["liver_deflate.dcm", "liver_nonbyte_aligned_deflate.dcm"])
        for f in unknown_to_dcmtk + [CORPUS / "ts/misc-pydicom-data/HTJ2KLossless_08_RGB.dcm"]:
            ts, _ = rawscu.split_file(f.read_bytes())
            a = rawscu.Association("127.0.0.1", n.port, "TRIAGE", "RAW", [
                (rawscu.UID_VERIFICATION, [rawscu.TS_IMPLICIT]), ("1.2.840.10008.5.1.4.1.1.66.4", [ts])])
            self.assertEqual(list(a.accepted), [rawscu.UID_VERIFICATION], f)
            a.release()
        files = [f for f in files if f not in unknown_to_dcmtk]
        by_uid = {}
        for f in files:
            a = dump_attrs(f, "0008,0018", "0020,000d", "0020,000e", "0008,0060", "0028,0010", "0028,0011")
            by_uid.setdefault(a["0008,0018"], []).append((f, a))
        refused = []
        for uid, sent in by_uid.items():
            f, a = sent[-1]
            if a["0020,000d"] is None:  # four codec fixtures without a Study Instance UID
                refused.append(f)
                self.assertNotIn(uid, rows)
                continue
            self.assertTrue(uid in rows, f"{f} was not indexed")
            row = rows[uid]
            self.assertEqual(row["study_uid"], a["0020,000d"], f)
            self.assertEqual(row["series_uid"], a["0020,000e"], f)
            self.assertEqual(row["rows"], int(a["0028,0010"] or 0), f)
            self.assertEqual(row["columns"], int(a["0028,0011"] or 0), f)
            stored = n.data / row["file_path"]
            self.assertEqual(stored.stat().st_size, row["file_size"])
            if len(sent) == 1:  # unique instance: stored as sent, in the same transfer syntax
                got, want = pydicom.dcmread(stored), pydicom.dcmread(f, force=True)
                self.assertEqual(got.file_meta.TransferSyntaxUID, want.file_meta.TransferSyntaxUID, f)
                # storescu itself recomputes group lengths and drops trailing padding: skip those
                elements = lambda ds: [(e.tag, e.value) for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC]
                self.assertTrue(elements(got) == elements(want), f"{f}: stored data set differs")
        self.assertEqual(len(refused), 4, refused)
        self.assertEqual(len(rows), len(by_uid) - len(refused))
        refusals = n.query("SELECT status FROM audit_events WHERE event='instance_rejected'")
        # the two JPEG-LS fixtures reach the node and are refused; the two HTJ2K ones cannot be sent
        self.assertEqual(sorted(r["status"] for r in refusals), [0xA900] * 2)
        modalities = {m for s in n.ctl("studies") for m in s["modalities"]}
        self.assertTrue({"CT", "MR", "SEG", "SR"} <= modalities, modalities)

    def test_access_control(self):
        n = self.node(callers=["CT1", "MR1@127.0.0.0/8", "NET@10.0.0.0/8"]).start()
        ok = storescu(n.port, [CT_SLICE], aet="CT1")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(storescu(n.port, [CT_SLICE], aet="MR1").returncode, 0)
        for calling, called, reason in [("EVIL", "TRIAGE", 3), ("NET", "TRIAGE", 3), ("CT1", "WRONG", 7)]:
            with self.assertRaises(rawscu.Rejected) as cm:
                rawscu.Association("127.0.0.1", n.port, called, calling, [(rawscu.UID_VERIFICATION, [rawscu.TS_IMPLICIT])])
            self.assertEqual((cm.exception.result, cm.exception.reason), (1, reason))  # permanent
        rejected = lambda: sorted(r["calling_ae"] for r in n.query(
            "SELECT calling_ae FROM audit_events WHERE event='association_rejected'"))
        wait_until(lambda: rejected() == ["CT1", "EVIL", "NET"], 10, "rejections to be audited")

    def test_empty_allowed_callers_rejects_everyone(self):
        n = self.node(callers=[]).start()
        with self.assertRaises(rawscu.Rejected):
            rawscu.Association("127.0.0.1", n.port, "TRIAGE", "CT1", [(rawscu.UID_VERIFICATION, [rawscu.TS_IMPLICIT])])

    def test_malformed_input_is_refused_and_the_association_stays_usable(self):
        n = self.node().start()
        good = CT_SLICE
        good_ds = pydicom.dcmread(good)
        ts, good_bytes = rawscu.split_file(good.read_bytes())
        a = rawscu.Association("127.0.0.1", n.port, "TRIAGE", "RAW", [
            (good_ds.SOPClassUID, [ts]), ("1.2.840.10008.5.1.4.1.1.4", [ts]), ("1.2.840.10008.5.1.4.1.1.7", [rawscu.TS_IMPLICIT, ts])])
        statuses = []
        for i, f in enumerate(sorted((CORPUS / "malformed").rglob("*.dcm"))):
            ftsx, data = rawscu.split_file(f.read_bytes())
            # Every malformed file goes over the wire as a Secondary Capture in the context's syntax:
            # whatever its content, the node must answer with a status and stay up.
            statuses.append(a.store("1.2.840.10008.5.1.4.1.1.7", f"1.2.3.999.{i}", data))
            self.assertEqual(a.store(good_ds.SOPClassUID, good_ds.SOPInstanceUID, good_bytes), 0, f)
        self.assertTrue(all(s != 0 for s in statuses), statuses)
        # SOP Class in the command differs from the data set's; wrong instance UID; no data at all
        self.assertEqual(a.store("1.2.840.10008.5.1.4.1.1.4", good_ds.SOPInstanceUID, good_bytes), 0xA900)
        self.assertEqual(a.store(good_ds.SOPClassUID, "1.2.3.4.5", good_bytes), 0xA900)
        self.assertIn(a.store("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.6", b""), (0xA900, 0xC000))
        self.assertEqual(a.store(good_ds.SOPClassUID, good_ds.SOPInstanceUID, good_bytes), 0)
        a.release()
        self.assertEqual(len(n.query("SELECT * FROM instances")), 1)
        self.assertEqual(list((n.data / "incoming").iterdir()), [])
        audited = n.query("SELECT COUNT(*) AS c FROM audit_events WHERE event='instance_rejected'")[0]["c"]
        self.assertEqual(audited, len(statuses) + 3)

    def test_missing_identifiers_are_refused(self):
        n = self.node().start()
        for tag in ["StudyInstanceUID", "SeriesInstanceUID"]:
            ds = pydicom.dcmread(CT_SLICE)
            delattr(ds, tag)
            ds.SOPInstanceUID = ds.SOPInstanceUID + ".9" + str(len(tag))
            out = self.tmp / f"no-{tag}.dcm"
            ds.save_as(out)
            self.assertEqual(send_raw(n.port, out), 0xA900, tag)
        self.assertEqual(n.query("SELECT COUNT(*) AS c FROM instances")[0]["c"], 0)

    def test_duplicate_resend_is_idempotent(self):
        n = self.node().start()
        for _ in range(3):
            self.assertEqual(send_raw(n.port, CT_SLICE), 0)
        rows = n.query("SELECT * FROM instances")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["receive_count"], 3)
        self.assertTrue((n.data / rows[0]["file_path"]).exists())
        self.assertIn("re-sent instance", n.log())

    def test_disk_guard_refuses_with_a700_and_logs_once(self):
        n = self.node(min_free_mb=1 << 40).start()
        for _ in range(5):
            self.assertEqual(send_raw(n.port, CT_SLICE), 0xA700)
        self.assertEqual(n.log().count("refusing instances with 0xA700"), 1)
        self.assertEqual(n.query("SELECT COUNT(*) AS c FROM instances")[0]["c"], 0)
        self.assertEqual(n.query("SELECT COUNT(*) AS c FROM audit_events WHERE event='disk_low'")[0]["c"], 1)

    def test_sigterm_exits_zero(self):
        n = self.node().start()
        self.assertEqual(send_raw(n.port, CT_SLICE), 0)
        self.assertEqual(n.stop(), 0)
        self.assertIn("stopped cleanly", n.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
