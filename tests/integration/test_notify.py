#!/usr/bin/python3
"""[notify]: a webhook receives one JSON POST per study that reaches a configured priority level,
retried when the receiver fails, never with the patient's name; studies below the levels send
nothing. The receiver is a real HTTP server on loopback."""
import http.server
import json
import pathlib
import sys
import threading
import unittest

import pydicom

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, NodeTest, job_state, phantom, storescu, wait_until, write_config  # noqa: E402


class Receiver(http.server.BaseHTTPRequestHandler):
    fail_first = 0
    posts = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.headers.get("Authorization"), body.decode()))
        status = 500 if len(Receiver.posts) <= Receiver.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class NotifyTest(NodeTest):
    def test_urgent_studies_are_posted_with_retries_and_without_patient_names(self):
        Receiver.posts, Receiver.fail_first = [], 1
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            n = self.node(quiet=1, bundle=MINI)
            n.sections["notify"] = {"url": f"http://127.0.0.1:{server.server_port}/hook", "token": "hook-secret"}
            write_config(n.config, n.sections)
            n.start()
            tumor = phantom(self.tmp / "tumor", 8, "CHEST", "lung tumor", slices=40)
            clean = phantom(self.tmp / "clean", 22, "CHEST", "none", slices=30)
            for d in ("tumor", "clean"):
                self.assertEqual(storescu(n.port, [self.tmp / d]).returncode, 0)
            for uid in (tumor, clean):
                wait_until(lambda: job_state(n, uid) == "done", 300, "the analyses")
            wait_until(lambda: [e for e in n.ctl("audit") if e["event"] == "notification_sent"], 30, "the webhook")
            self.assertEqual(len(Receiver.posts), 2)  # one failure (500), one retry that succeeded
            auth, body = Receiver.posts[-1]
            self.assertEqual(auth, "Bearer hook-secret")
            doc = json.loads(body)
            self.assertEqual(doc["study_uid"], tumor)
            self.assertIn(doc["priority_level"], ("critical", "urgent"))
            self.assertIn("lung tumor", doc["findings"])
            name = str(pydicom.dcmread(next((self.tmp / "tumor").iterdir()), stop_before_pixels=True).PatientName)
            self.assertNotIn(name, body)
            self.assertNotIn("PatientName", body)
            [sent] = [e for e in n.ctl("audit") if e["event"] == "notification_sent"]
            self.assertEqual((sent["study_uid"], sent["attempts"]), (tumor, 2))
            self.assertEqual(n.ctl("study", clean)["priority_level"], "normal")  # below the levels: no POST
        finally:
            server.shutdown()


if __name__ == "__main__":
    unittest.main(verbosity=2)
