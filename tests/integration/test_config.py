#!/usr/bin/python3
"""triaged --check, bad configs, SIGHUP reload, a second node on the same data dir, and a real
disk-full file system (tmpfs; skipped where mounting is not permitted)."""
import os
import pathlib
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import rawscu  # noqa: E402
from harness import CORPUS, TRIAGED, Node, NodeTest, make_series, wait_until, write_config  # noqa: E402
from test_receive import send_raw  # noqa: E402

CT_SLICE = CORPUS / "ts/ct-ge-hispeed-chest/CTImage.dcm"


def check(path):
    return subprocess.run([str(TRIAGED), "--config", str(path), "--check"], capture_output=True, text=True)


class ConfigTest(NodeTest):
    def test_check_accepts_a_valid_config_and_names_every_bad_key(self):
        good = self.tmp / "good.toml"
        write_config(good, {"node": {"data_dir": "d"}, "ingest": {"allowed_callers": ["*"]}, "model": {"bundle": ""}})
        r = check(good)
        self.assertEqual(r.returncode, 0, r.stderr)
        no_model = self.tmp / "no-model.toml"  # the default bundle path does not exist beside it
        write_config(no_model, {"node": {"data_dir": "d"}})
        r = check(no_model)
        self.assertEqual(r.returncode, 2)
        self.assertIn("model.bundle", r.stderr)
        bad = self.tmp / "bad.toml"
        write_config(bad, {"node": {"data_dir": "d", "prot": 104}, "ingest": {"durability": "maybe"}},
                     destinations=[{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 0}])
        r = check(bad)
        self.assertEqual(r.returncode, 2)
        for key in ["node.prot", "ingest.durability", "destination[0].port"]:
            self.assertIn(key, r.stderr)
        self.assertEqual(check(self.tmp / "missing.toml").returncode, 2)
        (self.tmp / "syntax.toml").write_text("[node\n")
        self.assertEqual(check(self.tmp / "syntax.toml").returncode, 2)
        r = subprocess.run([str(TRIAGED), "--config", str(bad)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)  # the daemon refuses to start on an invalid config

    def test_sighup_reloads_allowed_callers(self):
        n = self.node(callers=["OLD"]).start()
        self.assertEqual(send_raw(n.port, CT_SLICE, calling="OLD"), 0)
        n.sections["ingest"]["allowed_callers"] = ["NEW"]
        write_config(n.config, n.sections)
        n.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: reloaded" in n.log(), 10, "the reload")
        with self.assertRaises(rawscu.Rejected):
            send_raw(n.port, CT_SLICE, calling="OLD")
        self.assertEqual(send_raw(n.port, CT_SLICE, calling="NEW"), 0)
        (n.config).write_text("[node\n")  # a broken file keeps the running config
        n.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the running one" in n.log(), 10, "the refused reload")
        self.assertEqual(send_raw(n.port, CT_SLICE, calling="NEW"), 0)

    def test_one_node_per_data_dir(self):
        n = self.node().start()
        twin = Node(n.dir)
        twin.log_path = n.dir / "twin.log"
        with open(twin.log_path, "wb") as log:
            r = subprocess.run([str(TRIAGED), "--config", str(n.config)], stderr=log, cwd=n.dir, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another triaged uses data_dir", twin.log())

    def test_real_disk_full_answers_a700_and_leaves_nothing_behind(self):
        mnt = self.tmp / "small"
        mnt.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                               capture_output=True).returncode != 0:
            self.skipTest("cannot mount a small tmpfs here")
        try:
            n = Node(mnt, quiet=3600, min_free_mb=0)
            self.nodes.append(n)
            n.start()
            _, paths = make_series(self.tmp / "series", 12)
            statuses = [send_raw(n.port, p) for p in paths]
            self.assertIn(0xA700, statuses, statuses)
            self.assertEqual(statuses[0], 0)
            stored = n.query("SELECT file_path, file_size FROM instances")
            self.assertEqual(len(stored), statuses.count(0))
            for row in stored:
                self.assertEqual((n.data / row["file_path"]).stat().st_size, row["file_size"])
            self.assertEqual(list((n.data / "incoming").iterdir()), [])
            self.assertEqual(n.stop(), 0)
        finally:
            subprocess.run(["umount", "-l", str(mnt)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
