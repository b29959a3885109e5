#!/usr/bin/env python3
"""Application-level figure: an I/O-heavy pipeline on a stand-in for the site's shared filesystem,
directly and after `ramburst stage in` (needs root: a network namespace and `tc`).

    sudo .venv/bin/python scripts/bench_pipeline.py [--data 256M] [--volumes 4] [--rate 1gbit]

The model. The site's shared filesystem is a CephFS on a storage host: a `ramburst up` run inside
its own network namespace (the test harness's simulated host rbmh1, 10.77.0.1, tests/netns.py),
mounted on the compute node (the root namespace) by a plain `ceph-fuse`, so every byte the job
reads or writes on it crosses one veth link limited by `tc tbf` to --rate in each direction. That
mount keeps no client cache (`client_oc=false`, `fuse_disable_pagecache=true`): it models a
working set larger than the node's page cache, where every pass reads the data over the network
again. There is no added latency: this kernel has no netem qdisc (only tbf and htb), so the link's
latency is the veth's own (tens of microseconds; a real site adds its network and server queues).

The pipeline (the same code both ways): pass 1 reads every raw volume (float32) for its mean and
spread; pass 2 reads it again and writes a normalized intermediate; pass 3 reads the raw volume and
the intermediate and writes a small result (a histogram and a correlation). The raw input is
read three times and an intermediate as large as the input is written and read once.
  direct: input, intermediates and results on the shared filesystem.
  staged: `ramburst stage in` the input into a RAM instance's fs (one read over the link), the
          pipeline on the instance's mount, `ramburst stage out` the results.
Reported: the job's I/O seconds (time inside read/write calls, plus the stage-in and stage-out),
total seconds, and the bytes that crossed the link (the veth's counters).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import netns  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ramburst.config import parse_size  # noqa: E402

RAMBURST = str(Path(sys.executable).with_name("ramburst"))
HOST = "rbmh1"
LINK = "rbmh1a"   # the storage host's veth, root-namespace end: rx = bytes from storage, tx = to it


def sh(*args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"bench_pipeline: failed: {' '.join(map(str, args))}: {r.stderr.strip()[-400:]}")
    return r


def link_bytes() -> tuple[int, int]:
    base = Path("/sys/class/net") / LINK / "statistics"
    return int((base / "rx_bytes").read_text()), int((base / "tx_bytes").read_text())


class Timer:
    """Seconds spent inside I/O calls."""

    def __init__(self):
        self.io = 0.0

    def read(self, path: Path) -> np.ndarray:
        t = time.perf_counter()
        with open(path, "rb") as f:
            data = f.read()
        self.io += time.perf_counter() - t
        return np.frombuffer(data, dtype=np.float32)

    def write(self, path: Path, data: bytes) -> None:
        t = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        self.io += time.perf_counter() - t


def pipeline(inp: Path, work: Path, out: Path, timer: Timer) -> None:
    vols = sorted(p.name for p in inp.iterdir())
    stats = {}
    for v in vols:                                   # pass 1: statistics
        x = timer.read(inp / v)
        stats[v] = (float(x.mean()), float(x.std()) or 1.0)
    for v in vols:                                   # pass 2: normalized intermediate
        x = timer.read(inp / v)
        timer.write(work / v, ((x - stats[v][0]) / stats[v][1]).astype(np.float32).tobytes())
    for v in vols:                                   # pass 3: raw + intermediate -> result
        x, z = timer.read(inp / v), timer.read(work / v)
        hist, _ = np.histogram(z, bins=64, range=(-4, 4))
        corr = float(np.dot(x[:: 64], z[:: 64]) / max(1, len(z[:: 64])))
        timer.write(out / f"{v}.json", json.dumps({"hist": hist.tolist(), "corr": corr}).encode())


def run_mode(mode: str, shared: Path, rb_state: Path, rb_mnt: Path) -> dict:
    for p in (shared / "work", shared / "results", rb_mnt / "in", rb_mnt / "work", rb_mnt / "results"):
        shutil.rmtree(p, ignore_errors=True)
    rx0, tx0 = link_bytes()
    timer = Timer()
    t0 = time.perf_counter()
    stage = 0.0
    if mode == "direct":
        pipeline(shared / "input", shared / "work", shared / "results", timer)
    else:
        t = time.perf_counter()
        sh(RAMBURST, "stage", "in", shared / "input", "--to", "fs:/in", "--state-dir", rb_state)
        stage += time.perf_counter() - t
        pipeline(rb_mnt / "in" / "input", rb_mnt / "work", rb_mnt / "results", timer)
        t = time.perf_counter()
        sh(RAMBURST, "stage", "out", shared / "results", "--from", "fs:/results", "--state-dir", rb_state)
        stage += time.perf_counter() - t
    total = time.perf_counter() - t0
    rx1, tx1 = link_bytes()
    results = sorted((shared / "results").glob("*.json"))
    return {"mode": mode, "total_s": round(total, 2), "io_s": round(timer.io + stage, 2),
            "stage_s": round(stage, 2), "compute_s": round(total - timer.io - stage, 2),
            "link_read_MB": round((rx1 - rx0) / 1e6, 1), "link_write_MB": round((tx1 - tx0) / 1e6, 1),
            "results": len(results)}


def make_input(folder: Path, total: int, volumes: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(13)
    for i in range(volumes):
        vol = rng.normal(100 + i, 15, size=total // volumes // 4).astype(np.float32)
        (folder / f"vol{i:02d}.raw").write_bytes(vol.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="256M", help="raw input bytes (a RAM instance of --size must hold it twice)")
    ap.add_argument("--volumes", type=int, default=4)
    ap.add_argument("--rate", default="1gbit", help="the link's rate each way (tc tbf)")
    ap.add_argument("--size", default="2G", help="RAM of the storage host's store and of the job's instance")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if why := netns.available():
        sys.exit(f"bench_pipeline: {why}")
    work = Path(tempfile.mkdtemp(prefix="ramburst-bench-pipeline-"))
    store, rb = work / "store", work / "rb"
    shared, store_local = work / "shared", work / "store-local"
    names = (f"apipestore{os.getpid()}", f"apipejob{os.getpid()}")
    rows, mounted = [], False
    try:
        with netns.exclusive("multihost"):
            try:
                netns.Hosts(1, work).create()
                ns = ["nsenter", f"--net=/var/run/netns/{HOST}"]
                sh(*ns, RAMBURST, "up", "--name", names[0], "--state-dir", store, "--size", a.size,
                   "--service", "fs", "--interface", "eth0", "--mount", store_local)
                burst = "1mb"
                sh("tc", "-n", HOST, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", a.rate, "burst", burst,
                   "latency", "20ms")
                sh("tc", "qdisc", "add", "dev", LINK, "root", "tbf", "rate", a.rate, "burst", burst, "latency", "20ms")
                make_input(store_local / "input", parse_size(a.data), a.volumes)   # on the storage host itself
                shared.mkdir()
                sh("ceph-fuse", "-c", store / "ceph.conf", "--id", "admin", "--client_oc=false",
                   "--fuse_disable_pagecache=true", "--client_mountpoint=/", shared)
                mounted = True
                sh(RAMBURST, "up", "--name", names[1], "--state-dir", rb, "--size", a.size, "--service", "fs",
                   "--mount", work / "rb-mnt")
                for mode in ("direct", "staged", "direct", "staged"):
                    rows.append(run_mode(mode, shared, rb, work / "rb-mnt"))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            finally:
                if mounted:
                    subprocess.run(["fusermount", "-u", str(shared)], capture_output=True)
                subprocess.run([RAMBURST, "down", "--state-dir", str(rb)], capture_output=True)
                subprocess.run(["nsenter", f"--net=/var/run/netns/{HOST}", RAMBURST, "down", "--state-dir",
                                str(store)], capture_output=True)
                netns.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps({"rate": a.rate, "data": a.data, "rows": rows}, indent=1))
        return
    print(f"pipeline on {a.data} of raw input in {a.volumes} volumes; shared filesystem behind a {a.rate} link "
          "(tc tbf, each way)\n")
    print("| run | total s | I/O s | of which stage in+out s | compute s | MB read over link | MB written over link |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['total_s']} | {r['io_s']} | {r['stage_s']} | {r['compute_s']} | "
              f"{r['link_read_MB']} | {r['link_write_MB']} |")


if __name__ == "__main__":
    main()
