#!/usr/bin/python3
"""The HTTP API with real HTTP on loopback: the same JSON as triagectl, Prometheus metrics, health,
bearer tokens, and hostile clients (malformed requests, huge headers, a client that never finishes
its request) that must get a 4xx or be dropped without blocking anyone else."""
import json
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import TRIAGED, NodeTest, make_series, storescu, wait_until, write_config  # noqa: E402

TOKEN = "s3cret-token-0123456789"


class ApiTest(NodeTest):
    def api_node(self, **api):
        n = self.node(quiet=1)
        n.sections["api"] = {"listen": "127.0.0.1:0", "request_timeout_seconds": 1, **api}
        write_config(n.config, n.sections)
        n.start()
        n.api = int(wait_until(lambda: re.search(r"HTTP API on \S+ port (\d+)", n.log()), 10, "the API").group(1))
        return n

    def get(self, n, path, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{n.api}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def raw(self, n, data, wait=5.0):
        with socket.create_connection(("127.0.0.1", n.api), timeout=wait) as s:
            s.sendall(data)
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except socket.timeout:
                pass
            return b"".join(chunks).decode(errors="replace")

    def test_endpoints_answer_the_same_json_as_triagectl(self):
        n = self.api_node()
        study, _ = make_series(self.tmp / "s", 3)
        self.assertEqual(storescu(n.port, [self.tmp / "s"]).returncode, 0)
        wait_until(lambda: n.ctl("studies") and n.ctl("studies")[0]["state"] == "queued", 30, "completion")
        for path, args in [("/api/v1/studies", ["studies"]), ("/api/v1/worklist", ["worklist"]),
                           (f"/api/v1/studies/{study}", ["study", study])]:
            status, ctype, body = self.get(n, path)
            self.assertEqual((status, ctype), (200, "application/json"), path)
            self.assertEqual(json.loads(body), n.ctl(*args), path)
        status, _, body = self.get(n, "/api/v1/audit?since=2000-01-01T00:00:00Z")
        self.assertEqual(status, 200)
        events = json.loads(body)
        self.assertIn("instance_stored", [e["event"] for e in events])
        self.assertEqual([e["id"] for e in events][:5], [e["id"] for e in n.ctl("audit")][:5])
        self.assertEqual(self.get(n, "/api/v1/audit?since=yesterday")[0], 400)
        self.assertEqual(self.get(n, "/api/v1/studies/1.2.3.404")[0], 404)
        self.assertEqual(self.get(n, "/nothing")[0], 404)
        req = urllib.request.Request(f"http://127.0.0.1:{n.api}/api/v1/studies", data=b"{}", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(e.exception.code, 405)

    def test_health_and_metrics(self):
        n = self.api_node()
        status, _, body = self.get(n, "/healthz")
        self.assertEqual(status, 200, body)
        h = json.loads(body)
        self.assertEqual(h["status"], "ok")
        self.assertTrue(h["scp_listening"] and h["db_writable"] and h["disk_ok"])
        make_series(self.tmp / "s", 4)
        self.assertEqual(storescu(n.port, [self.tmp / "s"], aet="CT_ROOM_1").returncode, 0)
        wait_until(lambda: n.ctl("studies") and n.ctl("studies")[0]["state"] == "queued", 30, "completion")
        status, ctype, text = self.get(n, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain"))
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        self.assertEqual(samples['triage_instances_received_total{calling_ae="CT_ROOM_1",status="0000"}'], 4)
        self.assertGreaterEqual(samples['triage_associations_total{outcome="accepted"}'], 1)
        self.assertEqual(samples["triage_studies_completed_total"], 1)
        self.assertEqual(samples['triage_queue_jobs{state="queued"}'], 1)
        self.assertGreater(samples["triage_disk_free_bytes"], 0)
        self.assertIn("# TYPE triage_inference_seconds histogram", text)

    def test_a_token_is_required_when_configured(self):
        n = self.api_node(token=TOKEN)
        status, _, body = self.get(n, "/api/v1/studies")
        self.assertEqual(status, 401, body)
        self.assertEqual(self.get(n, "/api/v1/studies", {"Authorization": "Bearer wrong-token-0123456789"})[0], 401)
        self.assertEqual(self.get(n, "/api/v1/studies", {"Authorization": f"Bearer {TOKEN}"})[0], 200)

    def test_a_listener_beyond_loopback_needs_a_token(self):
        cfg = self.tmp / "open.toml"
        write_config(cfg, {"node": {"data_dir": str(self.tmp / "d")}, "api": {"listen": "0.0.0.0:8080"}})
        r = subprocess.run([str(TRIAGED), "--config", str(cfg), "--check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("api.token", r.stdout + r.stderr)

    def test_hostile_clients_get_4xx_or_are_dropped_and_never_block_others(self):
        n = self.api_node()
        self.assertIn(" 400 ", self.raw(n, b"THIS IS NOT HTTP\r\n\r\n").split("\r\n")[0] + " ")
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        self.assertIn(" 431 ", self.raw(n, huge).split("\r\n")[0] + " ")
        # A client that sends half a request and goes silent is dropped after the request timeout...
        slow = socket.create_connection(("127.0.0.1", n.api))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        # ...and meanwhile everyone else is served.
        for _ in range(5):
            self.assertEqual(self.get(n, "/healthz")[0], 200)
        slow.settimeout(10)
        self.assertEqual(slow.recv(100), b"")  # closed by the server
        self.assertLess(time.monotonic() - t0, 8)
        slow.close()
        self.assertEqual(self.get(n, "/healthz")[0], 200)
        self.assertIsNone(n.proc.poll())


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
