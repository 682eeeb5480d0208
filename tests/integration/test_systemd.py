#!/usr/bin/python3
"""The systemd pieces: the unit passes `systemd-analyze verify`, and triaged speaks the notify
protocol on a real $NOTIFY_SOCKET datagram socket (READY=1 with STATUS, WATCHDOG=1 at half the
watchdog period, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM, then exit 0)."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, ROOT, TRIAGED, NodeTest, job_state, phantom, storescu, wait_until, write_config  # noqa: E402


class SystemdTest(NodeTest):
    def test_unit_file_verifies(self):
        unit = (ROOT / "systemd" / "triaged.service").read_text().replace("/usr/bin/triaged", str(TRIAGED))
        path = self.tmp / "triaged.service"
        path.write_text(unit)
        r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("triaged.service", r.stderr)  # no warnings about our unit
        self.assertIn("Type=notify", unit)
        self.assertIn("WatchdogSec=", unit)

    def test_cmake_install_lays_out_binaries_config_units_and_model(self):
        prefix = self.tmp / "prefix"
        r = subprocess.run(["cmake", "--install", str(TRIAGED.parent), "--prefix", str(prefix)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for rel in ["bin/triaged", "bin/triagectl", "etc/triage-node/triage-node.toml",
                    "lib/systemd/system/triaged.service", "lib/sysusers.d/triage-node.conf",
                    "share/triage-node/models/unibiomed-mini/model.json", "share/doc/triage-node/operations.md"]:
            self.assertTrue((prefix / rel).exists(), rel)
        # The default config is valid once its absolute paths point into the prefix.
        cfg = (prefix / "etc/triage-node/triage-node.toml").read_text()
        cfg = cfg.replace("/usr/share/triage-node", str(prefix / "share/triage-node"))
        cfg = cfg.replace("/var/lib/triage-node", str(self.tmp / "var"))
        (self.tmp / "installed.toml").write_text(cfg)
        r = subprocess.run([str(prefix / "bin/triaged"), "--config", str(self.tmp / "installed.toml"), "--check"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_notify_protocol(self):
        sock_path = self.tmp / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        n = self.node()
        messages = []

        def wait_for(what, timeout=30):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    messages.append(sock.recv(4096).decode())
                except socket.timeout:
                    continue
                if what in messages[-1]:
                    return messages[-1]
            raise AssertionError(f"no {what} in {messages}")

        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="600000")
        log = open(n.log_path, "ab")
        proc = subprocess.Popen([str(TRIAGED), "--config", str(n.config)], stderr=log, stdout=log, env=env, cwd=n.dir)
        try:
            ready = wait_for("READY=1")
            self.assertIn("STATUS=AE TRIAGE port", ready)
            self.assertIn("triaged ready", n.log())  # READY only once the port listens
            t0 = time.monotonic()
            wait_for("WATCHDOG=1")
            wait_for("WATCHDOG=1")
            self.assertLess(time.monotonic() - t0, 2.0)
            proc.send_signal(signal.SIGHUP)
            wait_for("RELOADING=1")
            wait_for("READY=1")
            proc.send_signal(signal.SIGTERM)
            wait_for("STOPPING=1")
            self.assertEqual(proc.wait(30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            sock.close()


class DrainTest(NodeTest):
    def test_sigterm_and_sighup_right_after_start_are_handled_not_fatal(self):
        # OpenBLAS starts a thread before main() with signals unblocked; a signal that lands there
        # must still be a clean drain (exit 0) or a reload, never the default action.
        for k in range(4):
            n = self.node(f"n{k}").start()
            if k % 2:
                n.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: "SIGHUP: reloaded" in n.log(), 10, "the reload")
            self.assertEqual(n.stop(), 0, n.log())


    def test_sigterm_during_a_long_analysis_stops_within_the_deadline_and_the_job_resumes(self):
        n = self.node(quiet=1, bundle=MINI)
        n.sections["node"]["stop_timeout_seconds"] = 1
        n.sections["model"]["batch_size"] = 2  # slower batches: the analysis is surely still running
        write_config(n.config, n.sections)
        n.start()
        uid = phantom(self.tmp / "big", 41, "CHEST", "lung tumor", slices=120)
        self.assertEqual(storescu(n.port, [self.tmp / "big"]).returncode, 0)
        wait_until(lambda: job_state(n, uid) == "running", 60, "the analysis to start")
        t0 = time.monotonic()
        self.assertEqual(n.stop(), 0)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertIn("re-queued at the next start", n.log())
        self.assertEqual(len(n.query("SELECT * FROM instances WHERE study_uid=?", uid)), 120)
        n.start()
        wait_until(lambda: job_state(n, uid) == "done", 300, "the analysis after restart")
        self.assertEqual([j["state"] for j in n.ctl("study", uid)["jobs"]], ["done"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
