#!/usr/bin/python3
"""Ingest benchmark: triaged (durability os and fsync) side by side with DCMTK storescp,
storescp --ignore (receive-only ceiling) and Orthanc, interleaved in the same run.

Scenarios: one 300-slice 512x512 CT study over one association; 10 studies x 100 slices over 10
parallel associations; and the single study again from an unmodified storescu (Nagle on at the
sender). Prints the median instances/s and MB/s of N rounds and the ratios of triaged to each peer.

usage: bench/ingest.py [--build build] [--rounds 5] [--scenarios single,parallel,nagle]
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from harness import Node, free_port, make_series, wait_until  # noqa: E402


def wait_port(port, timeout=60):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, timeout, f"port {port}")


class Peer:
    def __init__(self, name, work):
        self.name, self.work, self.proc = name, pathlib.Path(work) / name, None

    def start(self):
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.port = free_port()
        self.launch()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.work, ignore_errors=True)


class Triaged(Peer):
    def __init__(self, work, build, durability):
        super().__init__(f"triaged-{durability}", work)
        self.build, self.durability = build, durability

    def launch(self):
        self.node = Node(self.work, quiet=3600, durability=durability_key(self.durability), max_associations=16)
        os.environ["TRIAGE_BUILD"] = str(self.build)
        import harness
        harness.TRIAGED = pathlib.Path(self.build).resolve() / "triaged"  # nodes run in their own folder
        self.node.start()
        self.port, self.proc = self.node.port, self.node.proc


def durability_key(d):
    return d


class StoreScp(Peer):
    def __init__(self, work, ignore=False):
        super().__init__("storescp-ignore" if ignore else "storescp", work)
        self.ignore = ignore

    def launch(self):
        args = ["storescp", "--fork", "-aet", "TRIAGE", "-od", str(self.work)]
        if self.ignore:
            args.append("--ignore")
        self.proc = subprocess.Popen(args + [str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=dict(os.environ, TCP_NODELAY="1"))
        wait_port(self.port)


class Orthanc(Peer):
    def __init__(self, work):
        super().__init__("orthanc", work)

    def launch(self):
        cfg = {"Name": "bench", "StorageDirectory": str(self.work / "db"), "IndexDirectory": str(self.work / "db"),
               "DicomAet": "TRIAGE", "DicomPort": self.port, "HttpPort": free_port(), "RemoteAccessAllowed": False,
               "HttpServerEnabled": True, "DicomCheckCalledAet": False, "Plugins": [], "StableAge": 3600,
               "DicomThreadsCount": 16}
        (self.work / "orthanc.json").write_text(json.dumps(cfg))
        self.proc = subprocess.Popen(["Orthanc", str(self.work / "orthanc.json")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=dict(os.environ, TCP_NODELAY="1"))
        wait_port(self.port)


def send(port, folders, nagle=False):
    env = dict(os.environ)
    if nagle:
        env.pop("TCP_NODELAY", None)
    else:
        env["TCP_NODELAY"] = "1"
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aet", "BENCH", "-aec", "TRIAGE", "+sd", "127.0.0.1", str(port), str(f)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for f in folders]
    errs = [p.communicate()[1] for p in procs]
    dt = time.perf_counter() - t0
    if any(p.returncode for p in procs) or any(b"E:" in e for e in errs):
        raise RuntimeError(f"storescu failed: {errs[0][-500:]}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scenarios", default="single,parallel,nagle")
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="triage-bench-"))
    try:
        data = work / "data"
        print("generating test data ...", flush=True)
        single = [make_series(data / "single", 300)[1][0].parent]
        parallel = [make_series(data / f"par{i}", 100)[1][0].parent for i in range(10)]
        nbytes = lambda fs: sum(p.stat().st_size for f in fs for p in f.iterdir())
        scenarios = {"single": (single, False), "parallel": (parallel, False), "nagle": (single, True)}
        peers = [Triaged(work, a.build, "os"), Triaged(work, a.build, "fsync"), StoreScp(work),
                 StoreScp(work, ignore=True), Orthanc(work)]
        results = {}
        for sc in a.scenarios.split(","):
            folders, nagle = scenarios[sc]
            count = sum(len(list(f.iterdir())) for f in folders)
            for r in range(a.rounds):
                for peer in peers:
                    if nagle and peer.name not in ("triaged-os", "storescp"):
                        continue
                    peer.start()
                    try:
                        dt = send(peer.port, folders, nagle)
                    finally:
                        peer.stop()
                    results.setdefault((sc, peer.name), []).append(dt)
                    print(f"  {sc:8} round {r + 1} {peer.name:16} {count / dt:8.1f} inst/s", flush=True)
            print(f"\n{sc}: {count} instances, {nbytes(folders) / 1e6:.0f} MB, median of {a.rounds} rounds")
            med = {p: statistics.median(ts) for (s, p), ts in results.items() if s == sc}
            for p, t in med.items():
                print(f"  {p:16} {count / t:8.1f} inst/s {nbytes(folders) / 1e6 / t:8.1f} MB/s")
            for mine in ("triaged-os", "triaged-fsync"):
                if mine in med:
                    ratios = ", ".join(f"{(med[p] / med[mine]):.2f}x {p}" for p in med if not p.startswith("triaged"))
                    print(f"  {mine}: {ratios}")
            print(flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
