#!/usr/bin/env python3
"""Measure the dashboard (issue 15) on a real instance, in one run:

- start: `ramburst.dashboard.serve(...)` until it answers with a first snapshot, and the
  `ramburst dashboard` command from exec until its printed URL answers;
- page load: navigation to the token URL until the load event, in headless chromium;
- staleness: age of the newest snapshot the open page shows, sampled every 0.25 s;
- slice: HTTP GET of a plane of a 64x512x512 float32 zarr array in RADOS (chunks 16x128x128:
  any plane reads 16 chunks, 16 MiB): 512x512 along axis 0, 64x512 along axis 2; cold (the
  slab cache emptied first) and while scrubbing through every index in turn;
- overhead: `ramburst bench` on the same instance with the dashboard closed and open (a page
  streaming it), alternated `--rounds` times; medians.

    .venv/bin/python scripts/bench_dashboard.py [--size 1G] [--rounds 2] [--mib 256]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import ramburst
import ramburst.dashboard

RAMBURST = str(Path(sys.executable).with_name("ramburst"))
CHROMIUM = "/usr/bin/chromium"


def ms(values):
    values = sorted(values)
    return (f"median {1000 * statistics.median(values):.1f} ms, p95 {1000 * values[int(0.95 * (len(values) - 1))]:.1f}"
            f" ms, max {1000 * values[-1]:.1f} ms (n={len(values)})")


def get(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
    return time.perf_counter() - t


def bench_rows(state: Path, mib: int) -> dict:
    out = subprocess.run([RAMBURST, "bench", "--state-dir", str(state), "--mib", str(mib), "--seconds", "2",
                          "--passes", "3", "--json"], capture_output=True, text=True, check=True)
    return {(r["path"], r["workload"]): r["value"] for r in json.loads(out.stdout)["rows"] if r["path"] == "pool"}


def dashboard_cpu(state: Path, seconds: float = 30) -> tuple[float, float]:
    """The dashboard's own cost, which a shared machine's noise does not hide: CPU seconds of a
    `ramburst dashboard` process per wall second, idle and with one page open."""
    import psutil
    from playwright.sync_api import sync_playwright

    proc = subprocess.Popen([RAMBURST, "dashboard", "--state-dir", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        ps = psutil.Process(proc.pid)
        time.sleep(2)

        def cpu_over(secs: float) -> float:
            before = sum(ps.cpu_times()[:2])
            time.sleep(secs)
            return 100 * (sum(ps.cpu_times()[:2]) - before) / secs

        idle = cpu_over(seconds)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(url)
                time.sleep(2)
                busy = cpu_over(seconds)
            finally:
                browser.close()
        return idle, busy
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp, \
            ramburst.deploy(name=f"ebd{os.getpid()}", state_dir=f"{tmp}/st", size=args.size) as cluster:
        import zarr

        root = zarr.open_group(cluster.zarr_store(namespace="arrays"), mode="a")
        vol = root.create_array("bench/volume", shape=(64, 512, 512), chunks=(16, 128, 128), dtype="float32")
        vol[:] = np.random.default_rng(1).normal(size=(64, 512, 512)).astype("float32")

        starts = []
        for _ in range(5):
            t = time.perf_counter()
            h = ramburst.dashboard.serve(cluster, port=0)
            starts.append(time.perf_counter() - t)
            h.stop()
        print(f"start, Python API (serve() until it answers with data): {ms(starts)}")
        starts = []
        for _ in range(3):
            t = time.perf_counter()
            proc = subprocess.Popen([RAMBURST, "dashboard", "--state-dir", str(cluster.state_dir)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            url = proc.stdout.readline().strip()
            get(url)
            starts.append(time.perf_counter() - t)
            proc.terminate()
            proc.wait(20)
        print(f"start, CLI (`ramburst dashboard` started until its URL answers): {ms(starts)}")
        cpu_closed, cpu_open = dashboard_cpu(cluster.state_dir)
        print(f"CPU of the `ramburst dashboard` process: {cpu_closed:.1f} % of one core with no page open, "
              f"{cpu_open:.1f} % with one page streaming (30 s each)")

        handle = ramburst.dashboard.serve(cluster, port=0)
        base = handle.url.split("/?")[0]
        tok = "token=" + handle.token
        try:
            for axis in (0, 2):
                slice_url = f"{base}/api/arrays/slice.png?path=bench/volume&axis={axis}&{tok}&index="
                cold = []
                for i in range(0, 64, 4):
                    get(f"{base}/api/arrays?{tok}")  # empties the slab cache
                    cold.append(get(slice_url + str(i)))
                scrub = [get(slice_url + str(i)) for i in range(64)]
                shape = "x".join(str(n) for d, n in enumerate(vol.shape) if d != axis)
                print(f"{shape} float32 plane along axis {axis}, PNG over HTTP: cold (chunks read from RADOS) "
                      f"{ms(cold)}; scrubbing planes 0..63 in turn {ms(scrub)}")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    loads = []
                    for _ in range(5):
                        ctx = browser.new_context()
                        page = ctx.new_page()
                        page.goto(handle.url, wait_until="load")
                        loads.append(page.evaluate("() => performance.getEntriesByType('navigation')[0].duration")
                                     / 1000)
                        ctx.close()
                    print(f"page load (navigation start to load event): {ms(loads)}")
                    ctx = browser.new_context()
                    page = ctx.new_page()
                    page.goto(handle.url)
                    page.wait_for_function("() => window.dashboard && window.dashboard.last")
                    ages = []
                    for _ in range(40):
                        ages.append(page.evaluate("() => Date.now() / 1000 - window.dashboard.last.t"))
                        time.sleep(0.25)
                    print(f"staleness (age of the newest data on the open page): {ms(ages)}")
                    ctx.close()

                    runs: dict[str, list[dict]] = {"closed": [], "open": []}
                    for _ in range(args.rounds):
                        runs["closed"].append(bench_rows(cluster.state_dir, args.mib))
                        ctx = browser.new_context()
                        page = ctx.new_page()
                        page.goto(handle.url)
                        runs["open"].append(bench_rows(cluster.state_dir, args.mib))
                        ctx.close()
                finally:
                    browser.close()
        finally:
            handle.stop()
        print(f"`ramburst bench --state-dir ... --mib {args.mib} --seconds 2 --passes 3`, pool rows, "
              f"medians of {args.rounds} alternated runs each:")
        for key in runs["closed"][0]:
            closed = statistics.median(r[key] for r in runs["closed"])
            opened = statistics.median(r[key] for r in runs["open"])
            print(f"  {key[1]:<14} closed {closed:9.1f}  open {opened:9.1f}  ({100 * (opened / closed - 1):+.1f} %)")


if __name__ == "__main__":
    main()
