#!/usr/bin/env python3
"""`up` time against host count on simulated hosts (network namespaces + mpirun; needs root).

    sudo .venv/bin/python scripts/bench_hosts.py [--hosts 1,2,4,8] [--runs 3]

Reports ramburst's own `up` time (rank 0, from start to a pool that stores and returns
data) and the wall time of the whole `mpirun ... ramburst up --mpi` (MPI start-up included).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import netns  # noqa: E402

RAMBURST = str(Path(sys.executable).with_name("ramburst"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", default="1,2,4,8")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="1G")
    args = ap.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    if why := netns.available():
        sys.exit(f"bench_hosts: {why}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rb-bench-hosts-") as tmp:
        h = netns.Hosts(max(counts), Path(tmp)).create()
        try:
            for n in counts:
                inner, wall, down = [], [], []
                for i in range(args.runs):
                    state = Path(tmp) / f"benchhosts{n}-{i}"
                    t = time.perf_counter()
                    r = h.mpirun(RAMBURST, "up", "--mpi", "--interface", "eth0", "--size", args.size,
                                 "--name", f"benchhosts{n}", "--state-dir", str(state), hosts=n)
                    wall.append(time.perf_counter() - t)
                    if r.returncode != 0:
                        sys.exit(f"up on {n} hosts failed: {r.stderr[-500:]}")
                    inner.append(float(re.search(r"up in ([\d.]+) s", r.stderr).group(1)))
                    t = time.perf_counter()
                    h.mpirun(RAMBURST, "down", "--mpi", "--state-dir", str(state), hosts=n)
                    down.append(time.perf_counter() - t)
                rows.append((n, statistics.median(inner), statistics.median(wall), statistics.median(down)))
                print(f"{n} hosts: up {rows[-1][1]:.2f} s", file=sys.stderr)
        finally:
            netns.cleanup()
    base = rows[0][1]
    print("| hosts | `up` (ramburst, median) | vs 1 host | `mpirun ... up` wall | `mpirun ... down` wall |")
    print("|---|---|---|---|---|")
    for n, inner, wall, down in rows:
        print(f"| {n} | {inner:.2f} s | {inner / base:.2f} | {wall:.2f} s | {down:.2f} s |")


if __name__ == "__main__":
    main()
