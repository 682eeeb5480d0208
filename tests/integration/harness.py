"""Shared helpers for integration tests: a real triaged on a temp data dir and an OS-chosen port,
triagectl, DCMTK senders, and waiting on conditions with deadlines (never fixed sleeps)."""
import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

BUILD = pathlib.Path(os.environ.get("TRIAGE_BUILD", pathlib.Path(__file__).resolve().parents[2] / "build"))
SHARED = pathlib.Path(os.environ.get("TRIAGE_SHARED", pathlib.Path(__file__).resolve().parents[3] / "shared"))
CORPUS = SHARED / "data" / "dicom"
TRIAGED = BUILD / "triaged"
TRIAGECTL = BUILD / "triagectl"
ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_BUNDLE = BUILD / "test-bundle"
MINI = ROOT / "models" / "unibiomed-mini"
PHANTOM = ROOT / "tools" / "phantoms" / "write_study.py"


def phantom(out, seed, region, lesions="", slices=40):
    """Writes a PHANTOMS.md study with tools/phantoms; returns its Study Instance UID."""
    args = ["/usr/bin/python3", str(PHANTOM), str(out), "--seed", str(seed), "--region", region, "--slices", str(slices)]
    if lesions:
        args += ["--lesions", lesions]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return r.stdout.split()[0]


def bundle_copy(src, dest, edit):
    """A copy of a model bundle in dest (its weights linked) whose model.json edit(manifest) changed."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in pathlib.Path(src).iterdir():
        if f.name != "model.json":
            (dest / f.name).symlink_to(f)
    manifest = json.loads((pathlib.Path(src) / "model.json").read_text())
    edit(manifest)
    (dest / "model.json").write_text(json.dumps(manifest))
    return dest


def job_state(node, study):
    jobs = node.ctl("study", study)["jobs"]
    return jobs[-1]["state"] if jobs else None


def wait_until(predicate, timeout=30.0, what="condition", interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_config(path, sections, destinations=()):
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    for d in destinations:
        lines.append("[[destination]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in d.items()]
    path.write_text("\n".join(lines) + "\n")


class Node:
    """One triaged process on a temp data dir."""

    def __init__(self, workdir, ae="TRIAGE", callers=("*",), quiet=2, bundle="", destinations=(), delivery=None,
                 **ingest):
        self.dir = pathlib.Path(workdir)
        self.data = self.dir / "data"
        self.config = self.dir / "triage.toml"
        self.ae = ae
        ing = {"allowed_callers": list(callers), "study_quiet_seconds": quiet, "min_free_mb": 1}
        ing.update(ingest)
        self.sections = {"node": {"ae_title": ae, "bind": "127.0.0.1", "port": 0, "data_dir": "data"},
                         "ingest": ing, "model": {"bundle": str(bundle), "batch_size": 8}, "api": {"listen": ""}}
        if delivery:
            self.sections["delivery"] = delivery
        self.destinations = list(destinations)
        write_config(self.config, self.sections, self.destinations)
        self.proc = None
        self.port = None
        self.log_path = self.dir / "triaged.log"

    def start(self, timeout=30):
        self._log = open(self.log_path, "ab")
        start_len = self.log_path.stat().st_size
        self.proc = subprocess.Popen([str(TRIAGED), "--config", str(self.config)], stderr=self._log,
                                     stdout=self._log, cwd=self.dir)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"triaged exited with {self.proc.returncode}:\n{self.log()}")
            m = re.search(r"triaged ready: AE \S+ port (\d+)", self.log()[start_len:])
            return m and int(m.group(1))
        self.port = wait_until(ready, timeout, "triaged to listen")
        return self

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def ctl(self, *args, expect=0):
        r = subprocess.run([str(TRIAGECTL), "--config", str(self.config), *args, "--json"],
                           capture_output=True, text=True, timeout=60)
        if expect is not None and r.returncode != expect:
            raise AssertionError(f"triagectl {args} -> {r.returncode}: {r.stderr}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def db(self):
        con = sqlite3.connect(self.data / "triage.db", timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def query(self, sql, *params):
        con = self.db()
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def study_state(self, uid):
        s = [x for x in self.ctl("studies") if x["study_uid"] == uid]
        return s[0]["state"] if s else None


def dump_attrs(path, *tags):
    """Top-level attribute values as DCMTK's dcmdump reads them, {tag: value or None}."""
    out = subprocess.run(["dcmdump", "-q", "+L", "-M", "-Un", str(path)], capture_output=True,
                         text=True, errors="replace").stdout
    values = {t: None for t in tags}
    for line in out.splitlines():
        m = re.match(r"\(([0-9a-f]{4},[0-9a-f]{4})\) \w\w (.*?)\s+#", line)  # column 0 = top level
        if m and m.group(1) in values:
            v = m.group(2)
            values[m.group(1)] = v[1:-1] if v.startswith("[") and v.endswith("]") else v
    return values


def storescu_profile(path, files):
    """Writes a storescu association profile proposing each file's own SOP class and transfer
    syntax (storescu proposes neither SEG nor compressed syntaxes by default)."""
    pairs = set()
    for f in files:
        a = dump_attrs_uid(f)
        if a:
            pairs.add(a)
    ts_names, lines_ts, lines_pc = {}, ["[[TransferSyntaxes]]"], ["[[PresentationContexts]]", "[Contexts]"]
    for n, (sop, ts) in enumerate(sorted(pairs), 1):
        if ts not in ts_names:
            ts_names[ts] = f"TS{len(ts_names) + 1}"
            lines_ts += [f"[{ts_names[ts]}]", f"TransferSyntax1 = {ts}"]
        lines_pc.append(f"PresentationContext{n} = {sop}\\{ts_names[ts]}")
    assert len(pairs) <= 128, "too many presentation contexts for one profile"
    pathlib.Path(path).write_text("\n".join(lines_ts + lines_pc + ["[[Profiles]]", "[Generated]",
                                                                   "PresentationContexts = Contexts"]) + "\n")
    return path


def dump_attrs_uid(f):
    r = subprocess.run(["dcmdump", "-q", "-Un", "+P", "0002,0010", "+P", "0008,0016", str(f)],
                       capture_output=True, text=True)
    vals = re.findall(r"UI \[([^\]]*)\]", r.stdout)
    if len(vals) < 2:
        return None
    return vals[1], vals[0]  # (sop class, transfer syntax)


def storescu(port, paths, aet="MODALITY", aec="TRIAGE", profile=None, extra=()):
    args = ["storescu", "-aet", aet, "-aec", aec, "+sd", "+r", "-nh"]
    if profile:
        args += ["-xf", str(profile), "Generated"]
    args += list(extra) + ["127.0.0.1", str(port)] + [str(p) for p in paths]
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """A real Orthanc (Debian package) on loopback ports of its own, as the PACS. With
    `known_callers`, only those AE titles may store (others are rejected: calling AE not recognized)."""

    def __init__(self, workdir, aet="ORTHANC", known_callers=None, port=None):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aet, self.port, self.http = aet, port or free_port(), free_port()
        cfg = {"Name": "triage-test", "StorageDirectory": str(self.dir / "db"), "IndexDirectory": str(self.dir / "db"),
               "DicomAet": aet, "DicomPort": self.port, "HttpPort": self.http, "RemoteAccessAllowed": False,
               "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "Plugins": [], "StableAge": 3600}
        if known_callers is not None:
            cfg.update({"DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False,
                        "DicomModalities": {ae.lower(): [ae, "127.0.0.1", 104] for ae in known_callers}})
        (self.dir / "orthanc.json").write_text(json.dumps(cfg))
        self.proc = None

    def start(self):
        self._log = open(self.dir / "orthanc.log", "ab")
        self.proc = subprocess.Popen(["Orthanc", str(self.dir / "orthanc.json")], stdout=self._log, stderr=self._log)
        wait_until(lambda: self._get("/system") is not None, 30, "Orthanc to answer")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
            self._log.close()

    def _get(self, path):
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def get(self, path):
        value = self._get(path)
        if value is None:
            raise AssertionError(f"Orthanc GET {path} failed")
        return value

    def instances(self):
        """{SOP Instance UID: {study, series, sop_class, frames}} of everything Orthanc holds."""
        out = {}
        for iid in self.get("/instances"):
            tags = self.get(f"/instances/{iid}/simplified-tags")
            out[tags["SOPInstanceUID"]] = {"study": tags.get("StudyInstanceUID"), "sop_class": tags.get("SOPClassUID"),
                                           "frames": int(tags.get("NumberOfFrames", 1) or 1), "id": iid}
        return out


class NodeTest(unittest.TestCase):
    """Gives each test a temp dir and stops every node it started."""

    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="triage-it-"))
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.kill()
        if not os.environ.get("TRIAGE_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def node(self, sub="node", **kw):
        d = self.tmp / sub
        d.mkdir(exist_ok=True)
        n = Node(d, **kw)
        self.nodes.append(n)
        return n


def make_series(out_dir, count, template=None, study_uid=None, patient="P-TEST", accession="A-TEST"):
    """Writes `count` single-frame CT slices of one new series (new UIDs) from a corpus slice."""
    import pydicom
    from pydicom.uid import generate_uid
    template = template or CORPUS / "ts/ct-ge-hispeed-chest/CTImage.dcm"
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(template)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for i in range(count):
        ds = base.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.AccessionNumber = patient, accession
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i) * 2.5]
        p = out_dir / f"{i:04d}.dcm"
        ds.save_as(p)
        paths.append(p)
    return study_uid, paths


def index_and_files_agree(test, node):
    """Every indexed instance has its file (same size); every stored file is indexed; nothing
    half-written is left; SQLite reports no corruption."""
    rows = node.query("SELECT file_path, file_size FROM instances")
    indexed = {r["file_path"]: r["file_size"] for r in rows}
    on_disk = {str(p.relative_to(node.data)): p.stat().st_size
               for p in (node.data / "instances").rglob("*.dcm")} if (node.data / "instances").exists() else {}
    test.assertEqual(indexed, on_disk)
    test.assertEqual(list((node.data / "incoming").glob("*")), [])
    test.assertEqual(node.query("PRAGMA integrity_check")[0]["integrity_check"], "ok")
    return indexed
