#!/usr/bin/python3
"""The worklist page's HTTP side with a real triaged, a token and one phantom study analyzed by the
mini model: every endpoint refused without the token (401; the page answers a token form with no
data), the cookie login (GET /?token= -> 303 + HttpOnly SameSite=Strict cookie -> 200), the page and
its assets served by the node, slice and key-image PNGs decoded here (the mask outline in yellow
on the key slice with overlay=1 and no yellow with overlay=0), the study audit filter and
/api/v1/changes moving when a new study arrives. The browser itself: test_worklist_browser.py."""
import http.client
import json
import pathlib
import re
import struct
import sys
import time
import unittest
import zlib

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, NodeTest, make_series, phantom, storescu, wait_until, write_config  # noqa: E402

TOKEN = "worklist-http-token-0123456789"


def decode_png(data):
    """8-bit RGB, non-interlaced PNG (what the node writes) -> rows x columns x 3 uint8 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (8, 2, 0), header
    raw = zlib.decompress(idat)
    stride = width * 3
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        cur = bytearray(stride)
        for x in range(stride):
            a = cur[x - 3] if x >= 3 else 0
            b = prev[x]
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) >> 1
            else:
                c = prev[x - 3] if x >= 3 else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[x] = (line[x] + p) & 0xFF
        out[y * stride:(y + 1) * stride] = cur
        prev = cur
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(height, width, 3)


def yellow(img):
    return int(((img[..., 0] == 255) & (img[..., 1] == 255) & (img[..., 2] == 0)).sum())


class WorklistHttpTest(NodeTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = NodeTest("run")
        cls.shared.setUp()
        n = cls.node = cls.shared.node(quiet=1, bundle=MINI)
        n.sections["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
        write_config(n.config, n.sections)
        n.start()
        cls.api = int(wait_until(lambda: re.search(r"HTTP API on \S+ port (\d+)", n.log()), 10, "the API").group(1))
        cls.study = phantom(cls.shared.tmp / "liver", 32, "ABDOMEN", "liver tumor", slices=24)
        assert storescu(n.port, [cls.shared.tmp / "liver"]).returncode == 0
        wait_until(lambda: n.ctl("studies") and n.ctl("studies")[0]["state"] in ("done", "failed"), 600,
                   "the analysis", interval=0.5)
        cls.doc = n.ctl("study", cls.study)
        assert cls.doc["state"] == "done", cls.doc
        assert cls.doc["findings"], cls.doc["report"]

    @classmethod
    def tearDownClass(cls):
        cls.shared.tearDown()

    def request(self, path, headers=None, auth=True):
        c = http.client.HTTPConnection("127.0.0.1", self.api, timeout=20)
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"Bearer {TOKEN}"
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, r.getheader("Content-Type"), body, r

    def get_json(self, path):
        status, ctype, body, _ = self.request(path)
        self.assertEqual((status, ctype), (200, "application/json"), (path, body[:300]))
        return json.loads(body)

    def png(self, path):
        t0 = time.monotonic()
        status, ctype, body, _ = self.request(path)
        seconds = time.monotonic() - t0
        self.assertEqual((status, ctype), (200, "image/png"), (path, body[:300]))
        return decode_png(body), seconds

    def test_everything_is_refused_without_the_token(self):
        s = self.study
        paths = ["/", "/ui/app.js", "/api/v1/worklist", f"/api/v1/studies/{s}", "/api/v1/changes",
                 f"/api/v1/audit?study={s}", f"/api/v1/studies/{s}/slices/0.png?overlay=1",
                 f"/api/v1/studies/{s}/keyimages/0.png", "/metrics"]
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                            {"Cookie": "triage_token=wrong-token-0123456789"}):
                with self.subTest(path=path, headers=headers):
                    status, _, body, _ = self.request(path, headers, auth=False)
                    self.assertEqual(status, 401, body[:200])
                    self.assertNotIn(s.encode(), body)
                    self.assertNotIn(self.doc["patient_id"].encode(), body)
        status, ctype, body, _ = self.request("/", auth=False)
        self.assertTrue(ctype.startswith("text/html"), ctype)
        self.assertIn(b'name="token"', body)
        status, _, body, r = self.request(f"/?token=x{TOKEN}", auth=False)
        self.assertEqual(status, 401)
        self.assertIsNone(r.getheader("Set-Cookie"))
        self.assertIn(b"not the right one", body)

    def test_the_token_link_sets_a_cookie_that_opens_the_page_and_the_api(self):
        status, _, _, r = self.request(f"/?token={TOKEN}", auth=False)
        self.assertEqual(status, 303)
        self.assertEqual(r.getheader("Location"), "/")
        cookie = r.getheader("Set-Cookie")
        self.assertEqual(cookie, f"triage_token={TOKEN}; HttpOnly; SameSite=Strict; Path=/")
        jar = {"Cookie": "other=1; " + cookie.split(";")[0]}
        status, ctype, body, r = self.request("/", jar, auth=False)
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/html"), ctype)
        self.assertIn(b'id="worklist"', body)
        self.assertIn("default-src 'self'", r.getheader("Content-Security-Policy"))
        for asset, kind in (("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
            status, ctype, body, _ = self.request(asset, jar, auth=False)
            self.assertEqual(status, 200, asset)
            self.assertTrue(ctype.startswith(kind), ctype)
            self.assertNotIn(b"http://", body.replace(b"http://127", b""), "nothing fetched from elsewhere")
            self.assertNotIn(b"https://", body)
        self.assertEqual(self.request("/api/v1/worklist", jar, auth=False)[0], 200)
        self.assertEqual(self.request(f"/api/v1/studies/{self.study}/slices/0.png", jar, auth=False)[0], 200)
        self.assertNotIn(TOKEN, self.node.log(), "the token is never logged")

    def test_the_study_document_says_what_the_page_needs(self):
        d = self.doc
        self.assertEqual(self.get_json(f"/api/v1/studies/{self.study}"), d)
        series = d["analyzed_series_uid"]
        self.assertIn(series, [s["series_uid"] for s in d["series"] if s["analyzed"]])
        self.assertEqual(d["slice_count"], 24)
        self.assertEqual(d["key_image_count"], sum(o["kind"] == "keyimage" for o in d["outputs"]))
        self.assertGreater(d["key_image_count"], 0)
        [entry] = [s for s in self.get_json("/api/v1/worklist") if s["study_uid"] == self.study]
        self.assertEqual(entry["key_image_count"], d["key_image_count"])
        events = self.get_json(f"/api/v1/audit?study={self.study}")
        self.assertTrue(events)
        self.assertEqual({e.get("study_uid") for e in events}, {self.study})
        self.assertIn("analysis_saved", [e["event"] for e in events])
        self.assertEqual(self.get_json(f"/api/v1/audit?study={self.study}&since=2999-01-01T00:00:00Z"), [])

    def test_the_key_slice_shows_the_outline_only_with_the_overlay(self):
        f = self.doc["findings"][0]
        base = f"/api/v1/studies/{self.study}/slices/{f['key_slice']}.png"
        on, seconds = self.png(base + "?overlay=1")
        off, _ = self.png(base + "?overlay=0")
        self.assertEqual(on.shape, off.shape)
        self.assertGreaterEqual(on.shape[1], 256)
        self.assertGreater(yellow(on), 20, "the outline is drawn in (255,255,0)")
        self.assertEqual(yellow(off), 0)
        self.assertTrue((off[..., 0] == off[..., 1]).all() and (off[..., 1] == off[..., 2]).all(), "grey without overlay")
        self.assertGreater(off.std(), 5, "not a blank image")
        changed = (on != off).any(axis=2)
        self.assertTrue((on[changed] == [255, 255, 0]).all(), "the overlay changes only outline pixels")
        self.assertLess(seconds, 2.0)
        covered = {z for g in self.doc["findings"] for z in range(g["first_slice"] - 1, g["last_slice"] + 2)}
        far = [z for z in range(self.doc["slice_count"]) if z not in covered]
        if far:
            self.assertEqual(yellow(self.png(f"/api/v1/studies/{self.study}/slices/{far[0]}.png?overlay=1")[0]), 0,
                             "no outline where there is no finding")
        series = self.doc["analyzed_series_uid"]
        same, _ = self.png(base + f"?overlay=1&series={series}")
        self.assertTrue((same == on).all())

    def test_key_images_are_served_as_png(self):
        for k in range(self.doc["key_image_count"]):
            img, _ = self.png(f"/api/v1/studies/{self.study}/keyimages/{k}.png")
            self.assertGreater(yellow(img), 20)
        k = self.doc["key_image_count"]
        self.assertEqual(self.request(f"/api/v1/studies/{self.study}/keyimages/{k}.png")[0], 404)

    def test_missing_images_are_404_json(self):
        s, n = self.study, self.doc["slice_count"]
        for path in (f"/api/v1/studies/{s}/slices/{n}.png", "/api/v1/studies/1.2.3.404/slices/0.png",
                     f"/api/v1/studies/{s}/slices/x.png", f"/api/v1/studies/{s}/slices/0.png?series=1.2.3.404",
                     f"/api/v1/studies/{s}/other/0.png", f"/api/v1/studies/{s}/slices/-1.png"):
            with self.subTest(path=path):
                status, ctype, body, _ = self.request(path)
                self.assertEqual((status, ctype), (404, "application/json"), body[:200])
                self.assertIn("error", json.loads(body))

    def test_changes_move_when_a_study_arrives(self):
        v1 = self.get_json("/api/v1/changes")["version"]
        self.assertIsInstance(v1, int)
        self.assertEqual(self.get_json("/api/v1/changes")["version"], v1, "stable while nothing happens")
        make_series(self.shared.tmp / "new", 2)
        self.assertEqual(storescu(self.node.port, [self.shared.tmp / "new"]).returncode, 0)
        wait_until(lambda: self.get_json("/api/v1/changes")["version"] > v1, 10, "a new version")


if __name__ == "__main__":
    unittest.main()
