#!/usr/bin/python3
"""Study completion: quiet time, open associations, late instances, restarts, forced completion,
and the triagectl contract."""
import pathlib
import subprocess
import sys
import time
import unittest

import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import rawscu  # noqa: E402
from harness import TRIAGECTL, NodeTest, make_series, storescu, wait_until  # noqa: E402


def open_assoc(node, paths, calling="MOD"):
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    ts, _ = rawscu.split_file(paths[0].read_bytes())
    return rawscu.Association("127.0.0.1", node.port, "TRIAGE", calling, [(ds.SOPClassUID, [ts])])


def send(assoc, paths):
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        _, data = rawscu.split_file(p.read_bytes())
        assert assoc.store(ds.SOPClassUID, ds.SOPInstanceUID, data) == 0


def jobs(node, study):
    return node.query("SELECT version, state FROM jobs WHERE study_uid=? ORDER BY version", study)


class CompletionTest(NodeTest):
    def test_study_split_across_associations_completes_once_after_both_close(self):
        n = self.node(quiet=1).start()
        study, paths = make_series(self.tmp / "s", 10)
        a, b = open_assoc(n, paths), open_assoc(n, paths)
        send(a, paths[:5])
        send(b, paths[5:])
        b.release()
        # Quiet time passes while `a` is still open: the study must stay "receiving".
        t0 = time.monotonic()
        wait_until(lambda: time.monotonic() - t0 > 3, 5, "quiet time to pass")
        self.assertEqual(n.study_state(study), "receiving")
        a.release()
        wait_until(lambda: n.study_state(study) == "queued", 15, "completion after the last association")
        self.assertEqual(jobs(n, study), [{"version": 1, "state": "queued"}])
        events = [e["event"] for e in n.ctl("audit") if e.get("study_uid") == study]
        self.assertEqual(events.count("study_completed"), 1)

    def test_late_instance_queues_a_new_version(self):
        n = self.node(quiet=1).start()
        study, paths = make_series(self.tmp / "s", 4)
        self.assertEqual(storescu(n.port, paths[:3]).returncode, 0)
        wait_until(lambda: jobs(n, study), 15, "first completion")
        con = n.db()  # stand-in for the analysis worker: v1 finished
        con.execute("UPDATE jobs SET state='done' WHERE study_uid=?", (study,))
        con.commit()
        con.close()
        self.assertEqual(storescu(n.port, paths[3:]).returncode, 0)
        wait_until(lambda: len(jobs(n, study)) == 2, 15, "second job version")
        self.assertEqual(jobs(n, study), [{"version": 1, "state": "done"}, {"version": 2, "state": "queued"}])
        self.assertEqual(n.ctl("study", study)["instance_count"], 4)

    def test_pending_completion_survives_restart_and_never_double_fires(self):
        n = self.node(quiet=2).start()
        study, paths = make_series(self.tmp / "s", 3)
        self.assertEqual(storescu(n.port, paths).returncode, 0)
        self.assertEqual(n.stop(), 0)  # before the quiet time is over
        self.assertEqual(jobs(n, study), [])
        n.start()
        wait_until(lambda: jobs(n, study), 15, "completion after restart")
        n.kill()
        n.start()
        t0 = time.monotonic()
        wait_until(lambda: time.monotonic() - t0 > 3, 5, "a few completion passes")
        self.assertEqual(jobs(n, study), [{"version": 1, "state": "queued"}])

    def test_forced_completion_and_reprocess(self):
        n = self.node(quiet=3600).start()
        study, paths = make_series(self.tmp / "s", 2)
        self.assertEqual(storescu(n.port, paths).returncode, 0)
        self.assertEqual(n.study_state(study), "receiving")
        out = n.ctl("complete", study)
        self.assertEqual(out["job"]["version"], 1)
        self.assertEqual(n.study_state(study), "queued")
        self.assertIsNone(n.ctl("reprocess", study)["job"])  # v1 still queued covers it
        n.ctl("complete", "1.2.3.404", expect=3)
        n.ctl("reprocess", "1.2.3.404", expect=3)
        n.ctl("study", "1.2.3.404", expect=3)

    def test_triagectl_contract(self):
        n = self.node(quiet=1).start()
        study, paths = make_series(self.tmp / "s", 3, patient="P77", accession="ACC77")
        self.assertEqual(storescu(n.port, paths).returncode, 0)
        wait_until(lambda: n.study_state(study) == "queued", 15, "completion")
        [s] = n.ctl("studies")
        for key in ["study_uid", "patient_id", "accession", "modalities", "series_count", "instance_count",
                    "state", "priority_level", "priority_score", "received_at", "completed_at"]:
            self.assertIn(key, s)
        self.assertEqual((s["patient_id"], s["accession"], s["modalities"], s["series_count"], s["instance_count"]),
                         ("P77", "ACC77", ["CT"], 1, 3))
        self.assertRegex(s["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        d = n.ctl("study", study)
        for key in ["series", "jobs", "findings", "report", "priority_level", "priority_score", "model",
                    "outputs", "deliveries"]:
            self.assertIn(key, d)
        self.assertEqual(d["series"][0]["instance_count"], 3)
        self.assertEqual(set(d["series"][0]), {"series_uid", "modality", "description", "instance_count",
                                               "analyzed", "skip_reason", "body_part", "series_number"})
        self.assertEqual(set(d["jobs"][0]) >= {"id", "version", "state", "attempts", "error", "started_at",
                                               "finished_at"}, True)
        self.assertEqual(n.ctl("worklist")[0]["study_uid"], study)
        events = n.ctl("audit", "--since", "2000-01-01T00:00:00Z")
        self.assertTrue(all("time" in e and "event" in e for e in events))
        self.assertEqual([e["time"] for e in events], sorted(e["time"] for e in events))
        self.assertEqual(n.ctl("audit", "--since", "2999-01-01"), [])
        table = subprocess.run([str(TRIAGECTL), "--config", str(n.config), "studies"], capture_output=True, text=True)
        self.assertIn(study, table.stdout)
        for bad in (["frobnicate"], ["study"], ["audit", "--since", "tomorrow"]):
            r = subprocess.run([str(TRIAGECTL), "--config", str(n.config), *bad], capture_output=True)
            self.assertEqual(r.returncode, 2, bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
