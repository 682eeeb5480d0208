#!/usr/bin/python3
"""Results back to a real PACS: Orthanc (Debian package) on loopback receives the SEG and SR of an
analyzed phantom study in the source study; a PACS that is down and comes back, one that rejects
the node's AE title, a node killed with deliveries pending, and two destinations of which one is
down (then removed from the config). Each delivery row ends sent exactly once or failed with its reason."""
import io
import pathlib
import signal
import sys
import time
import unittest
import urllib.request

import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, NodeTest, Orthanc, free_port, phantom, storescu, wait_until, write_config  # noqa: E402

FAST = {"retry_base_seconds": 0.3, "retry_max_seconds": 1.0, "max_attempts": 1000, "timeout_seconds": 5}


def destination(name, port, aet="ORTHANC", send=("seg", "sr")):
    return {"name": name, "ae_title": aet, "host": "127.0.0.1", "port": port, "send": list(send)}


def orthanc_file(pacs, instance_id):
    """The DICOM file Orthanc stored for one of its instances."""
    with urllib.request.urlopen(f"http://127.0.0.1:{pacs.http}/instances/{instance_id}/file", timeout=10) as r:
        return r.read()


class DeliveryTest(NodeTest):
    def setUp(self):
        super().setUp()
        self.pacs = []

    def tearDown(self):
        for p in self.pacs:
            p.stop()
        super().tearDown()

    def orthanc(self, sub="pacs", **kw):
        p = Orthanc(self.tmp / sub, **kw)
        self.pacs.append(p)
        return p

    def analyzed_study(self, node, seed=7):
        uid = phantom(self.tmp / f"study{seed}", seed, "CHEST", "lung tumor", slices=48)
        self.assertEqual(storescu(node.port, [self.tmp / f"study{seed}"]).returncode, 0)
        wait_until(lambda: node.ctl("study", uid)["state"] in ("done", "failed"), 300, "the analysis")
        d = node.ctl("study", uid)
        self.assertEqual(d["state"], "done", d["jobs"])
        self.assertEqual(sorted({o["kind"] for o in d["outputs"]}), ["keyimage", "kos", "seg", "sr"], d["report"])
        return uid

    def deliveries(self, node, uid, dest=None):
        return [x for x in node.ctl("study", uid)["deliveries"] if dest is None or x["destination"] == dest]

    def wait_states(self, node, uid, state, dest=None, timeout=60):
        wait_until(lambda: (lambda ds: ds and all(x["state"] == state for x in ds))(self.deliveries(node, uid, dest)),
                   timeout, f"deliveries to be {state}")
        return self.deliveries(node, uid, dest)

    def sent_attempts(self, node, uid):
        return [e for e in node.ctl("audit") if e["event"] == "delivery_attempt" and e.get("study_uid") == uid
                and e.get("outcome") == "sent"]

    def test_seg_and_sr_reach_orthanc_in_the_source_study(self):
        pacs = self.orthanc().start()
        n = self.node(quiet=1, bundle=MINI, destinations=[destination("pacs", pacs.port)], delivery=FAST).start()
        self.assertEqual(n.ctl("echo", "pacs")["ok"], True)
        uid = self.analyzed_study(n)
        ds = self.wait_states(n, uid, "sent")
        self.assertEqual(sorted(x["kind"] for x in ds), ["seg", "sr"])
        self.assertTrue(all(x["last_status"] == 0 and x["attempts"] == 1 for x in ds), ds)
        held = pacs.instances()
        outputs = [o for o in n.ctl("study", uid)["outputs"] if o["kind"] in ("seg", "sr")]  # the default send
        self.assertEqual(len(held), len(outputs))
        for o in outputs:
            self.assertEqual(held[o["sop_instance_uid"]]["study"], uid)
        seg = [o for o in outputs if o["kind"] == "seg"][0]
        self.assertEqual(held[seg["sop_instance_uid"]]["frames"], seg["frames"])
        self.assertEqual(held[seg["sop_instance_uid"]]["sop_class"], "1.2.840.10008.5.1.4.1.1.66.4")
        # The scanner's images reach the PACS too: results and images are one study there.
        self.assertEqual(storescu(pacs.port, [self.tmp / "study7"], aec="ORTHANC").returncode, 0)
        [study] = pacs.get("/studies")
        series = pacs.get(f"/studies/{study}")["Series"]
        modalities = sorted(pacs.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in series)
        self.assertEqual(modalities, ["CT", "SEG", "SR"])

    def test_pacs_down_then_up_gets_everything_after_retries(self):
        port = free_port()
        n = self.node(quiet=1, bundle=MINI, destinations=[destination("pacs", port)], delivery=FAST).start()
        self.assertFalse(n.ctl("echo", "pacs", expect=1)["ok"])
        uid = self.analyzed_study(n)
        wait_until(lambda: all(x["attempts"] >= 2 for x in self.deliveries(n, uid)), 60, "retries")
        ds = self.deliveries(n, uid)
        self.assertTrue(all(x["state"] == "pending" and "connect" in x["last_error"] for x in ds), ds)
        pacs = self.orthanc(port=port).start()
        self.wait_states(n, uid, "sent")
        held = pacs.instances()
        for o in n.ctl("study", uid)["outputs"]:
            if o["kind"] in ("seg", "sr"):
                self.assertIn(o["sop_instance_uid"], held)

    def test_a_pacs_that_rejects_the_ae_title_fails_the_delivery_without_retrying(self):
        pacs = self.orthanc(known_callers=["SOMEONE"]).start()
        n = self.node(quiet=1, bundle=MINI, destinations=[destination("pacs", pacs.port)], delivery=FAST).start()
        uid = self.analyzed_study(n)
        ds = self.wait_states(n, uid, "failed")
        for x in ds:
            self.assertEqual(x["attempts"], 1)
            self.assertIn("Calling AE Title Not Recognized", x["last_error"])
        time.sleep(2)  # several backoff periods: a retry storm would show up as more attempts
        self.assertEqual([x["attempts"] for x in self.deliveries(n, uid)], [1, 1])
        self.assertEqual(pacs.instances(), {})
        # An administrator fixes the PACS and re-queues: delivered.
        pacs.stop()
        self.pacs.remove(pacs)
        fixed = self.orthanc("fixed", port=pacs.port).start()
        self.assertEqual(n.ctl("retry", "--destination", "pacs")["requeued"], 2)
        self.wait_states(n, uid, "sent")
        self.assertEqual(len(fixed.instances()), 2)

    def test_kill9_with_pending_deliveries_delivers_each_exactly_once_after_restart(self):
        port = free_port()
        n = self.node(quiet=1, bundle=MINI, destinations=[destination("pacs", port)], delivery=FAST).start()
        uid = self.analyzed_study(n)
        wait_until(lambda: all(x["attempts"] >= 1 for x in self.deliveries(n, uid)), 60, "a first attempt")
        outputs = n.ctl("study", uid)["outputs"]
        n.kill()
        pacs = self.orthanc(port=port).start()
        n.start()
        self.wait_states(n, uid, "sent")
        self.assertEqual(n.ctl("study", uid)["outputs"], outputs)  # not analyzed again, same objects
        sent = self.sent_attempts(n, uid)
        delivered = sorted(o["sop_instance_uid"] for o in outputs if o["kind"] in ("seg", "sr"))  # the default send
        self.assertEqual(sorted(e["sop_instance_uid"] for e in sent), delivered)
        held = pacs.instances()
        self.assertEqual(sorted(k for k, v in held.items() if v["study"] == uid), delivered)

    def test_one_destination_down_does_not_hold_up_the_other(self):
        pacs = self.orthanc().start()
        down = free_port()
        n = self.node(quiet=1, bundle=MINI, delivery=FAST,
                      destinations=[destination("down", down), destination("pacs", pacs.port)]).start()
        uid = self.analyzed_study(n)
        self.wait_states(n, uid, "sent", dest="pacs")
        self.assertTrue(all(x["state"] == "pending" for x in self.deliveries(n, uid, "down")))
        self.assertEqual(len(pacs.instances()), 2)
        # The administrator removes the dead destination: its deliveries fail with the reason
        # instead of waiting forever (and holding the study back from retention).
        n.destinations = [d for d in n.destinations if d["name"] != "down"]
        write_config(n.config, n.sections, n.destinations)
        n.proc.send_signal(signal.SIGHUP)
        gone = self.wait_states(n, uid, "failed", dest="down", timeout=10)
        self.assertTrue(all(x["last_error"] == "destination down is no longer configured" for x in gone), gone)
        self.assertIn("deliveries_unconfigured", [e["event"] for e in n.ctl("audit")])

    def test_sighup_applies_a_new_destination_to_the_next_studies(self):
        pacs = self.orthanc().start()
        n = self.node(quiet=1, bundle=MINI, delivery=FAST).start()
        first = self.analyzed_study(n, seed=7)
        self.assertEqual(self.deliveries(n, first), [])
        n.destinations.append(destination("pacs", pacs.port))
        write_config(n.config, n.sections, n.destinations)
        n.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: reloaded" in n.log(), 10, "the reload")
        self.assertIn("need a restart", n.log())
        second = self.analyzed_study(n, seed=8)
        self.wait_states(n, second, "sent")
        self.assertEqual(self.deliveries(n, first), [])  # earlier results are not sent retroactively

    def test_send_lists_which_kinds_go_where(self):
        pacs = self.orthanc().start()
        n = self.node(quiet=1, bundle=MINI, delivery=FAST,
                      destinations=[destination("pacs", pacs.port, send=["sr"])]).start()
        uid = self.analyzed_study(n)
        [x] = self.wait_states(n, uid, "sent")
        self.assertEqual(x["kind"], "sr")
        self.assertEqual([v["sop_class"] for v in pacs.instances().values()], ["1.2.840.10008.5.1.4.1.1.88.22"])

    def test_key_images_and_kos_reach_orthanc_and_read_back(self):
        pacs = self.orthanc().start()
        n = self.node(quiet=1, bundle=MINI, delivery=FAST,
                      destinations=[destination("pacs", pacs.port, send=["seg", "sr", "keyimages", "kos"])]).start()
        uid = self.analyzed_study(n)
        ds = self.wait_states(n, uid, "sent")
        outputs = n.ctl("study", uid)["outputs"]
        self.assertEqual(sorted(x["sop_instance_uid"] for x in ds), sorted(o["sop_instance_uid"] for o in outputs))
        self.assertTrue(all(x["last_status"] == 0 for x in ds), ds)
        held = pacs.instances()
        by_kind = {}
        for o in outputs:
            by_kind.setdefault(o["kind"], []).append(o["sop_instance_uid"])
            self.assertEqual(held[o["sop_instance_uid"]]["study"], uid)
        read = {sop: pydicom.dcmread(io.BytesIO(orthanc_file(pacs, held[sop]["id"])))
                for sop in held}
        self.assertEqual(storescu(pacs.port, [self.tmp / "study7"], aec="ORTHANC").returncode, 0)
        for sop in by_kind["keyimage"]:
            key = read[sop]
            self.assertEqual(key.SOPClassUID, "1.2.840.10008.5.1.4.1.1.7")
            self.assertEqual((key.SamplesPerPixel, key.PhotometricInterpretation), (3, "RGB"))
            ref = key.SourceImageSequence[0].ReferencedSOPInstanceUID
            self.assertIn(ref, pacs.instances())  # the key slice is one of the study's CT images
            pixels = key.pixel_array
            self.assertGreater(int(((pixels[..., 0] == 255) & (pixels[..., 1] == 255) & (pixels[..., 2] == 0)).sum()), 20)
        [kos_sop] = by_kind["kos"]
        kos = read[kos_sop]
        self.assertEqual(kos.SOPClassUID, "1.2.840.10008.5.1.4.1.1.88.59")
        self.assertEqual(kos.ConceptNameCodeSequence[0].CodeValue, "113000")
        referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
                      if i.ValueType in ("IMAGE", "COMPOSITE")}
        self.assertEqual(referenced, set(by_kind["keyimage"] + by_kind["seg"] + by_kind["sr"]))
        evidence = {s.ReferencedSOPInstanceUID for st in kos.CurrentRequestedProcedureEvidenceSequence
                    for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
        self.assertEqual(evidence, referenced)
        [study] = pacs.get("/studies")
        series = pacs.get(f"/studies/{study}")["Series"]
        modalities = sorted(pacs.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in series)
        self.assertEqual(modalities, ["CT", "KO", "OT", "SEG", "SR"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
