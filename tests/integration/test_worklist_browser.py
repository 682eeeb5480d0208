#!/usr/bin/python3
"""The worklist page in a real browser: Debian's Chromium headless (or Firefox ESR with
TRIAGE_BROWSER=firefox), driven over the DevTools protocol (Firefox: WebDriver BiDi) by tests/js/worklist_browser.js (puppeteer-core; nothing downloads a browser), against a
real triaged with the mini model, a token and an Orthanc destination, that has analyzed three
phantom studies (a CHEST lung tumor, an ABDOMEN liver tumor, a CHEST without lesions). Checks what
reaches the screen: the rows in the worklist's priority order, the mask overlay on the key slice in
the pixels of a screenshot (yellow with the overlay on, none with it off), a study sent while the
page is open appearing without a reload, and a browser without the token refused (401, no data).

TRIAGE_SCREENSHOTS=DIR also saves worklist.png and worklist-study.png (1280x800) there, as in
docs/img; TRIAGE_KEEP_TMP=1 keeps the temp dir with the debugging screenshots and logs."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import MINI, ROOT, Node, Orthanc, phantom, storescu, wait_until, write_config  # noqa: E402

# TRIAGE_BROWSER=firefox runs the same test in Debian's Firefox ESR (WebDriver BiDi); ctest runs both.
BROWSER = os.environ.get("TRIAGE_BROWSER", "chromium")
BINARY = pathlib.Path({"chromium": "/usr/bin/chromium", "firefox": "/usr/bin/firefox-esr"}[BROWSER])
JS = ROOT / "tests" / "js"
TOKEN = "browser-test-token-0123456789"
SLICES = 24  # short phantoms: three analyses on a loaded 2-core machine stay well inside the timeout


def http_status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@unittest.skipUnless(BINARY.exists(), f"no {BINARY} (scripts/install-deps.sh installs Debian's chromium and firefox-esr)")
class WorklistBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.tmp = pathlib.Path(tempfile.mkdtemp(prefix="triage-browser-"))
        cls.pacs = Orthanc(cls.tmp / "pacs").start()
        (cls.tmp / "node").mkdir()
        cls.node = Node(cls.tmp / "node", quiet=1, bundle=MINI,
                        destinations=[{"name": "pacs", "ae_title": cls.pacs.aet, "host": "127.0.0.1",
                                       "port": cls.pacs.port, "send": ["seg", "sr", "keyimages", "kos"]}])
        cls.node.sections["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
        write_config(cls.node.config, cls.node.sections, cls.node.destinations)
        try:
            cls._run(t0)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _run(cls, t0):
        n = cls.node.start()
        m = wait_until(lambda: re.search(r"HTTP API on \S+ port (\d+)", n.log()), 10, "the API")
        cls.url = f"http://127.0.0.1:{m.group(1)}"
        inputs = {"lung": (31, "CHEST", "lung tumor"), "liver": (32, "ABDOMEN", "liver tumor"),
                  "clean": (33, "CHEST", "none"), "late": (34, "ABDOMEN", "liver tumor")}
        cls.uids = {k: phantom(cls.tmp / "in" / k, seed, region, lesions, slices=SLICES)
                    for k, (seed, region, lesions) in inputs.items()}
        for k in ("lung", "liver", "clean"):
            r = storescu(n.port, [cls.tmp / "in" / k], aet="CT_ROOM_1")
            assert r.returncode == 0, r.stderr

        def analyzed():
            assert n.proc.poll() is None, f"triaged exited with {n.proc.returncode}:\n{n.log()[-3000:]}"
            states = {s["study_uid"]: s["state"] for s in n.ctl("studies")}
            assert "failed" not in states.values(), (states, n.log()[-3000:])
            return all(states.get(cls.uids[k]) == "done" for k in ("lung", "liver", "clean"))
        wait_until(analyzed, 600, "the three studies to be analyzed", interval=0.5)
        cls.setup_seconds = time.monotonic() - t0
        cls.worklist = n.ctl("worklist")
        cls.docs = {k: n.ctl("study", cls.uids[k]) for k in ("lung", "liver", "clean")}
        # The study to open: the highest-priority one with findings.
        with_findings = [s["study_uid"] for s in cls.worklist if cls.docs_by_uid().get(s["study_uid"], {}).get("findings")]
        assert with_findings, [d["report"] for d in cls.docs.values()]
        cls.opened = with_findings[0]
        known = [u for u in cls.uids.values()] + [d["patient_id"] for d in cls.docs.values()]
        late_cmd = ["storescu", "-aet", "CT_ROOM_2", "-aec", "TRIAGE", "+sd", "+r", "-nh", "127.0.0.1",
                    str(n.port), str(cls.tmp / "in" / "late")]
        args = ["node", str(JS / "worklist_browser.js"), "--url", cls.url, "--token", TOKEN, "--study", cls.opened,
                "--late-uid", cls.uids["late"], "--late-cmd", json.dumps(late_cmd), "--known", json.dumps(known),
                "--out", str(cls.tmp / "screens"), "--timeout", "60", f"--{BROWSER}", str(BINARY)]
        if os.environ.get("TRIAGE_SCREENSHOTS"):
            args += ["--screenshots", str(pathlib.Path(os.environ["TRIAGE_SCREENSHOTS"]).resolve())]
        t1 = time.monotonic()
        r = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=JS,
                           env=dict(os.environ, TCP_NODELAY="1"))
        cls.browser_seconds = time.monotonic() - t1
        assert r.returncode == 0, f"worklist_browser.js exited {r.returncode}:\n{r.stderr[-4000:]}"
        cls.seen = json.loads(r.stdout)
        (cls.tmp / "seen.json").write_text(r.stdout)
        print(f"\nbrowser test: set-up (3 studies analyzed) {cls.setup_seconds:.0f} s, browser {cls.browser_seconds:.0f} s"
              f" ({cls.seen.get('browser')})", file=sys.stderr)

    @classmethod
    def docs_by_uid(cls):
        return {d["study_uid"]: d for d in cls.docs.values()}

    @classmethod
    def tearDownClass(cls):
        node = getattr(cls, "node", None)
        if node and node.proc and node.proc.poll() is None:
            node.stop()
        if getattr(cls, "pacs", None):
            cls.pacs.stop()
        if os.environ.get("TRIAGE_KEEP_TMP"):
            print(f"kept {cls.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def seen_in(self, name):
        """What the browser saw in one phase of worklist_browser.js, or the failure of that phase."""
        if name not in self.seen:
            self.fail(f"the browser could not go through '{name}': {self.seen['errors'].get(name, 'not reached')}\n"
                      + "\n".join(self.seen.get("log", [])[-40:]))
        return self.seen[name]

    def test_the_token_link_sets_an_http_only_cookie_and_redirects_to_the_page(self):
        login = self.seen_in("login")
        self.assertEqual([h["status"] for h in login["chain"]], [303], login)
        self.assertEqual(login["final_url"], self.url + "/", login)
        self.assertEqual(login["status"], 200, login)
        [cookie] = [c for c in login["cookies"] if c["name"] == "triage_token"]
        self.assertTrue(cookie["httpOnly"], cookie)
        self.assertEqual(cookie["sameSite"], "Strict", cookie)
        self.assertEqual(cookie["path"], "/", cookie)

    def test_the_list_shows_the_studies_in_priority_order(self):
        rows = [r["uid"] for r in self.seen_in("list")["rows"]]
        api = [s["study_uid"] for s in self.seen_in("list")["api"]["body"]]
        self.assertEqual(rows, api, "the rows are in the order of GET /api/v1/worklist")
        self.assertEqual(api, [s["study_uid"] for s in self.worklist], "the page's API agrees with triagectl")
        self.assertEqual(set(rows), {self.uids[k] for k in ("lung", "liver", "clean")})
        clean = rows.index(self.uids["clean"])
        for k in ("lung", "liver"):
            if self.docs[k]["findings"]:
                self.assertLess(rows.index(self.uids[k]), clean, f"the {k} study with findings is above the clean one")
        self.assertTrue(self.docs["lung"]["findings"] or self.docs["liver"]["findings"])
        self.assertEqual(rows[0], self.opened)

    def test_studies_with_key_images_have_a_loaded_thumbnail(self):
        rows = {r["uid"]: r for r in self.seen_in("list")["rows"]}
        for k, d in self.docs.items():
            with self.subTest(study=k):
                has_keys = any(o["kind"] == "keyimage" for o in d["outputs"])
                thumb = rows[self.uids[k]]["thumb"]
                if has_keys:
                    self.assertIsNotNone(thumb, "img.thumb")
                    self.assertTrue(thumb["loaded"], thumb)
                else:
                    self.assertIsNone(thumb, "no key image, no thumbnail")

    def test_the_study_page_opens_on_the_key_slice_with_the_overlay_in_the_pixels(self):
        v = self.seen_in("study")
        self.assertEqual(v["hash"], f"#/study/{self.opened}")
        finding = self.docs_by_uid()[self.opened]["findings"][0]
        self.assertEqual(v["on"]["slice"], finding["key_slice"], (v["on"]["src"], finding))
        self.assertTrue(v["on"]["overlay_checked"], "the overlay is on by default")
        self.assertEqual(v["on"]["range_value"], finding["key_slice"])
        self.assertIn(str(finding["key_slice"]), v["on"]["slice_index_text"] or "")
        self.assertGreaterEqual(v["on"]["image"]["width"], 256, "the slice is shown at a readable size")
        on, off = v["on"]["pixels"], v["off"]["pixels"]
        self.assertGreater(on["yellowish"], 20, f"the mask outline is yellow on the screen: {on}")
        self.assertEqual(off["yellowish"], 0, f"no yellow with the overlay off: {off}")
        self.assertGreater(off["grey"], 0.5 * off["width"] * off["height"], off)
        self.assertEqual(v["off"]["slice"], v["on"]["slice"], "the overlay switch keeps the slice")
        self.assertFalse(v["off"]["overlay_checked"])
        self.assertGreater(v["on_again"]["pixels"]["yellowish"], 20, "back on")

    def test_the_study_page_shows_report_outputs_and_audit(self):
        panels = self.seen_in("study")["panels"]
        for sel in ("#report", "#outputs", "#audit", "a#back"):
            self.assertIsNotNone(panels[sel], sel)
            self.assertTrue(panels[sel]["visible"], sel)
        doc = self.docs_by_uid()[self.opened]
        self.assertIn(doc["report"].strip().splitlines()[0][:40], panels["#report"]["text"])
        for kind in ("seg", "sr"):
            self.assertIn(kind.upper(), panels["#outputs"]["text"].upper(), panels["#outputs"]["text"])
        self.assertIn("analysis", panels["#audit"]["text"].lower(), panels["#audit"]["text"][:500])

    def test_a_direct_link_opens_the_study_view(self):
        finding = self.docs_by_uid()[self.opened]["findings"][0]
        self.assertEqual(self.seen_in("direct_link")["slice"], finding["key_slice"], self.seen_in("direct_link"))

    def test_a_study_sent_while_the_page_is_open_appears_without_reload(self):
        late = self.seen_in("late")
        self.assertEqual(late["send_status"], 0, late["send_output"][-2000:])
        self.assertIsNotNone(late["appeared_after_s"], late.get("error"))
        self.assertEqual(late["marker"], 42, "the page was not reloaded")
        self.assertIn(self.uids["late"], [r["uid"] for r in late["rows"]])

    def test_a_browser_without_the_token_is_refused_and_sees_no_data(self):
        refused = self.seen_in("refused")
        for what in ("root", "study_link", "api", "slice", "wrong_token"):
            with self.subTest(what=what):
                self.assertEqual(refused[what]["status"], 401, refused[what])
                self.assertEqual(refused[what]["rows"], 0)
                self.assertEqual(refused[what]["leaked"], [], refused[what]["text"])
        self.assertNotIn("triage_token", refused["cookies"], "a wrong token sets no cookie")

    def test_plain_http_clients_get_the_same_token_rules(self):
        self.assertEqual(http_status(self.url + "/")[0], 401)
        self.assertEqual(http_status(self.url + "/api/v1/changes")[0], 401)
        self.assertEqual(http_status(self.url + "/", {"Authorization": f"Bearer {TOKEN}"})[0], 200)
        self.assertEqual(http_status(self.url + "/", {"Cookie": f"triage_token={TOKEN}"})[0], 200)
        status, body = http_status(self.url + "/api/v1/changes", {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(status, 200)
        self.assertIsInstance(json.loads(body)["version"], int)


if __name__ == "__main__":
    unittest.main(verbosity=2)
