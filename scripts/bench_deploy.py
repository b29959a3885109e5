#!/usr/bin/env python3
"""Deploy benchmark: median `ramburst up` / `down` wall time per device, daemon memory, and a
short `rados bench` through the pool. Prints a Markdown table (the README's results).

    .venv/bin/python scripts/bench_deploy.py [--runs 5] [--size 2G] [--seconds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAMBURST = str(Path(sys.executable).with_name("ramburst"))


def timed(cmd: list[str], env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def rados_bench(env: dict, pool: str, seconds: int, state: Path) -> tuple[float, float, dict]:
    """4 MiB writes then sequential reads; daemon memory is read while the objects are stored."""
    def bw(out: str) -> float:
        return float(re.search(r"Bandwidth \(MB/sec\):\s+([\d.]+)", out).group(1))
    w = subprocess.run(["rados", "-p", pool, "bench", str(seconds), "write", "-b", "4M", "-t", "16",
                        "--no-cleanup"], env=env, capture_output=True, text=True, check=True).stdout
    r = subprocess.run(["rados", "-p", pool, "bench", str(seconds), "seq", "-t", "16"],
                       env=env, capture_output=True, text=True, check=True).stdout
    rss = rss_by_daemon(state)
    subprocess.run(["rados", "-p", pool, "cleanup"], env=env, capture_output=True, check=True)
    return bw(w), bw(r), rss


def rss_by_daemon(state: Path) -> dict[str, int]:
    report = json.loads(subprocess.run([RAMBURST, "status", "--state-dir", str(state), "--json"],
                                       capture_output=True, text=True).stdout)
    return {d["name"]: psutil.Process(d["pid"]).memory_info().rss for d in report["daemons"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--devices", default="file,memstore")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rb-bench-deploy-") as tmp:
        for device in args.devices.split(","):
            state = Path(tmp) / f"benchdeploy-{device}"
            base = ["--name", f"benchdeploy-{device}", "--state-dir", str(state)]
            ups, downs = [], []
            for i in range(args.runs):
                ups.append(timed([RAMBURST, "up", *base, "--size", args.size, "--device", device]))
                if i == args.runs - 1:
                    env = {**os.environ, **json.loads(subprocess.run(
                        [RAMBURST, "env", "--state-dir", str(state), "--json"],
                        capture_output=True, text=True, check=True).stdout)}
                    write, read, rss = rados_bench(env, env["RAMBURST_POOL"], args.seconds, state)
                downs.append(timed([RAMBURST, "down", "--state-dir", str(state)]))
            rows.append((device, statistics.median(ups), statistics.median(downs), min(ups), max(ups),
                         write, read, rss))
    print("| device | up median (min-max) | down median | 4 MiB write MB/s | 4 MiB read MB/s | "
          "daemon RSS holding the written objects (MiB) |")
    print("|---|---|---|---|---|---|")
    for device, up, down, lo, hi, write, read, rss in rows:
        mem = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in rss.items())
        print(f"| {device} | {up:.2f} s ({lo:.2f}-{hi:.2f}) | {down:.2f} s | {write:.0f} | {read:.0f} | {mem} |")
    print(f"\n{args.runs} runs per device, --size {args.size}, rados bench {args.seconds} s, "
          f"-b 4M -t 16, {os.cpu_count()} cores", file=sys.stderr)


if __name__ == "__main__":
    main()
