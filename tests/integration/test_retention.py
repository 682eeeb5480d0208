#!/usr/bin/python3
"""Data retention with the real triaged: instances of a settled study are deleted after
instances_days (outputs kept), the whole study after outputs_days (audit trail kept), a disk above
the high-water mark purges settled studies early, and nothing pending is ever touched. (The age
rules are checked with a fake clock in the storage unit tests; here fractions of a day.)"""
import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, NodeTest, job_state, phantom, storescu, wait_until, write_config  # noqa: E402


class RetentionTest(NodeTest):
    def start(self, bundle=MINI, **retention):
        n = self.node(quiet=1, bundle=bundle)
        n.sections["retention"] = {"check_interval_seconds": 1, **retention}
        write_config(n.config, n.sections)
        return n.start()

    def analyzed(self, n, seed):
        uid = phantom(self.tmp / f"s{seed}", seed, "CHEST", "lung tumor", slices=24)
        self.assertEqual(storescu(n.port, [self.tmp / f"s{seed}"]).returncode, 0)
        wait_until(lambda: job_state(n, uid) == "done", 300, "the analysis")
        return uid

    def events(self, n, uid, name):
        return [e for e in n.ctl("audit") if e["event"] == name and e.get("study_uid") == uid]

    def test_instances_then_the_study_are_purged_by_age_and_audited(self):
        # 2 s and 20 s: the gap between the two purges leaves a loaded machine time to look.
        n = self.start(instances_days=2 / 86400, outputs_days=20 / 86400)
        uid = self.analyzed(n, 51)
        outputs = [pathlib.Path(o["path"]) for o in n.ctl("study", uid)["outputs"]]
        self.assertTrue(all(p.exists() for p in outputs))
        study = wait_until(lambda: (lambda s: s["instances_purged_at"] and s)(n.ctl("study", uid)), 30,
                           "the instances to be purged")
        self.assertEqual(study["instance_count"], 0)  # the same snapshot that says purged
        self.assertFalse((n.data / "instances" / uid).exists())
        self.assertTrue(all(p.exists() for p in outputs))  # results outlive the instances
        [e] = self.events(n, uid, "instances_purged")
        self.assertEqual((e["reason"], e["instances"]), ("age", 24))
        wait_until(lambda: uid not in [s["study_uid"] for s in n.ctl("studies")], 60, "the study to be purged")
        self.assertFalse(any(p.exists() for p in outputs))
        self.assertEqual(len(self.events(n, uid, "study_purged")), 1)
        self.assertTrue(self.events(n, uid, "study_completed"))  # the audit trail stays

    def test_nothing_pending_is_touched(self):
        n = self.start(bundle="", instances_days=1 / 86400, outputs_days=1 / 86400, high_water_percent=1)
        uid = phantom(self.tmp / "q", 52, "CHEST", "none", slices=6)
        self.assertEqual(storescu(n.port, [self.tmp / "q"]).returncode, 0)
        wait_until(lambda: job_state(n, uid) == "queued", 60, "the job to be queued")
        # Several retention passes (each logs that nothing settled is left), not a fixed sleep.
        wait_until(lambda: n.log().count("no settled study left to purge") >= 3, 30, "three retention passes")
        self.assertEqual(n.ctl("study", uid)["instance_count"], 6)
        self.assertEqual(self.events(n, uid, "instances_purged"), [])

    def test_a_disk_above_the_high_water_mark_purges_settled_studies_early(self):
        n = self.start(high_water_percent=1)  # any real disk is fuller than 1 %
        uid = self.analyzed(n, 53)
        wait_until(lambda: n.ctl("study", uid)["instances_purged_at"], 30, "the early purge")
        [e] = self.events(n, uid, "instances_purged")
        self.assertEqual(e["reason"], "disk_high_water")
        self.assertIn("no settled study left to purge", n.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
