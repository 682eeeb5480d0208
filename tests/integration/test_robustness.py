#!/usr/bin/python3
"""Concurrency limits and crash safety: concurrent senders, the association limit, and kill -9 in
the middle of a 200-instance send."""
import concurrent.futures
import pathlib
import sys
import threading
import unittest

import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import rawscu  # noqa: E402
from harness import NodeTest, index_and_files_agree, make_series, storescu, wait_until  # noqa: E402


class RobustnessTest(NodeTest):
    def test_concurrent_senders(self):
        n = self.node(quiet=1).start()
        studies = [make_series(self.tmp / f"s{i}", 25) for i in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda s: storescu(n.port, s[1], aet=f"CT{s[1][0].parent.name}"), studies))
        self.assertTrue(all(r.returncode == 0 for r in results), [r.stderr for r in results])
        for study, paths in studies:
            wait_until(lambda: n.study_state(study) == "queued", 20, f"completion of {study}")
            self.assertEqual(n.ctl("study", study)["instance_count"], len(paths))
        index_and_files_agree(self, n)

    def test_association_limit_rejects_transiently(self):
        n = self.node(max_associations=1).start()
        verification = [(rawscu.UID_VERIFICATION, [rawscu.TS_IMPLICIT])]
        held = rawscu.Association("127.0.0.1", n.port, "TRIAGE", "HOLD", verification)
        self.assertEqual(held.echo(), 0)
        with self.assertRaises(rawscu.Rejected) as cm:
            rawscu.Association("127.0.0.1", n.port, "TRIAGE", "SECOND", verification)
        # rejected-transient (2), service-provider presentation (3), local limit exceeded (2)
        self.assertEqual((cm.exception.result, cm.exception.source, cm.exception.reason), (2, 3, 2))
        held.release()
        later = wait_until(lambda: _try_assoc(n, verification), 10, "a free association slot")
        self.assertEqual(later.echo(), 0)
        later.release()
        wait_until(lambda: n.query("SELECT 1 FROM audit_events WHERE event='association_rejected' "
                                   "AND detail LIKE '%too many associations%'"), 10, "audit of the rejection")

    def kill_mid_send(self, durability):
        n = self.node(quiet=1, durability=durability).start()
        study, paths = make_series(self.tmp / "big", 200)
        acked, errors = [], []
        ds0 = pydicom.dcmread(paths[0], stop_before_pixels=True)
        ts, _ = rawscu.split_file(paths[0].read_bytes())

        def sender():
            try:
                a = rawscu.Association("127.0.0.1", n.port, "TRIAGE", "CT", [(ds0.SOPClassUID, [ts])])
                for p in paths:
                    uid = pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    if a.store(ds0.SOPClassUID, uid, rawscu.split_file(p.read_bytes())[1]) == 0:
                        acked.append(uid)
            except (ConnectionError, OSError) as e:
                errors.append(e)
        t = threading.Thread(target=sender)
        t.start()
        wait_until(lambda: len(acked) >= 80, 60, "80 acknowledged instances")
        n.kill()
        t.join(30)
        self.assertTrue(errors, "the sender should have seen the node die")
        self.assertLess(len(acked), 200)
        n.start()
        indexed = {r["sop_instance_uid"] for r in n.query("SELECT sop_instance_uid FROM instances")}
        self.assertTrue(set(acked) <= indexed, f"{len(set(acked) - indexed)} acknowledged instances lost")
        index_and_files_agree(self, n)
        wait_until(lambda: n.study_state(study) == "queued", 20, "the study to complete after restart")
        # The sender resends everything it was not sure of; the study ends whole, once each.
        self.assertEqual(storescu(n.port, paths).returncode, 0)
        wait_until(lambda: n.ctl("study", study)["instance_count"] == 200, 20, "all 200 instances")
        self.assertEqual(len(indexed & set(acked)), len(acked))
        index_and_files_agree(self, n)

    def test_kill_9_mid_send_loses_no_acknowledged_instance(self):
        self.kill_mid_send("os")

    def test_kill_9_mid_send_with_fsync(self):
        self.kill_mid_send("fsync")


class RecoveryTest(NodeTest):
    def test_start_up_recovery_of_incoming_files(self):
        """The crash window between commit and rename, reproduced: the indexed file is back in
        incoming/ and missing from its place; a never-acknowledged partial file sits beside it."""
        import shutil
        n = self.node(quiet=3600).start()
        _, paths = make_series(self.tmp / "s", 2)
        self.assertEqual(storescu(n.port, paths).returncode, 0)
        self.assertEqual(n.stop(), 0)
        row = n.query("SELECT file_path FROM instances ORDER BY sop_instance_uid LIMIT 1")[0]
        placed = n.data / row["file_path"]
        shutil.move(placed, n.data / "incoming" / "x.1-1.part")
        (n.data / "incoming" / "y.1-2.part").write_bytes(b"half a data set")
        n.start()
        self.assertTrue(placed.exists())
        self.assertIn("recovery: 1 indexed instance(s) moved into place, 1 partial file(s) removed", n.log())
        index_and_files_agree(self, n)


def _try_assoc(n, contexts):
    try:
        return rawscu.Association("127.0.0.1", n.port, "TRIAGE", "LATER", contexts)
    except rawscu.Rejected:
        return None


if __name__ == "__main__":
    unittest.main(verbosity=2)
