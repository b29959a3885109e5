#!/usr/bin/env python3
"""Where the CPU goes per path: CPU milliseconds per MiB moved, for each process involved
(the client, which is this Python process, and each kind of Ceph daemon), for 4 MiB writes
and reads through the pool, S3, the CephFS mount and plain tmpfs. On a host where the client
and the daemons share the cores, CPU per MiB is what sets the throughput; this explains the
gap between the services and the pool that `ramburst bench` reports.

    .venv/bin/python scripts/bench_cpu.py [--mib 512] [--size 3G] [--passes 3] [--checksums]
                                          [--plain-malloc] [--service pool ...]

--checksums and --plain-malloc undo one of ramburst's RAM tunings (docs/tuning.md), to
measure what it saves.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ramburst  # noqa: E402
from ramburst.bench import workloads as w  # noqa: E402
from ramburst.instance import InstanceState  # noqa: E402

KINDS = ("client", "osd", "rgw", "fuse", "mds", "mon+mgr")


def cpu_seconds(state_dir: Path) -> dict[str, float]:
    """CPU seconds so far of this process and of each kind of daemon of the instance."""
    me = psutil.Process().cpu_times()
    out = dict.fromkeys(KINDS, 0.0)
    out["client"] = me.user + me.system
    for rec in InstanceState(state_dir).processes():
        p = rec.process()
        if p is None:
            continue
        t = p.cpu_times()
        kind = rec.name.split(".")[0]
        kind = "mon+mgr" if kind in ("mon", "mgr") else kind
        out[kind] = out.get(kind, 0.0) + t.user + t.system
    return out


def measure(target: w.Target, total: int, state_dir: Path) -> list[tuple[str, float, dict[str, float]]]:
    """(direction, MB/s, CPU ms per MiB by kind) for a write pass and a read pass."""
    rows = []
    data = os.urandom(w.BIG)
    keys = [f"cpu{i}" for i in range(total // w.BIG)]
    with ThreadPoolExecutor(w.THREADS) as ex:
        for direction in ("write", "read"):
            before, t = cpu_seconds(state_dir), time.perf_counter()
            if direction == "write":
                list(ex.map(lambda k: target.put(k, data), keys))
            else:
                list(ex.map(lambda k: len(target.get(k, w.BIG)), keys))
            wall, after = time.perf_counter() - t, cpu_seconds(state_dir)
            mib = len(keys) * w.BIG / 2**20
            per = {k: (after[k] - before[k]) * 1000 / mib for k in KINDS}
            rows.append((direction, mib * 2**20 / wall / 1e6, per))
        list(ex.map(target.delete, keys))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--size", default="3G")
    ap.add_argument("--passes", type=int, default=3, help="measured passes; medians are printed")
    ap.add_argument("--checksums", action="store_true", help="deploy with BlueStore checksums and data digests")
    ap.add_argument("--plain-malloc", action="store_true", help="start the daemons without the malloc tunables")
    ap.add_argument("--service", action="append", choices=("pool", "s3", "fs"), help="default: all three")
    args = ap.parse_args()
    services = tuple(args.service or ("pool", "s3", "fs"))
    if args.plain_malloc:
        from ramburst.ceph import daemon

        daemon.MALLOC_TUNABLES = ""
    total = args.mib * 2**20
    mount_root = Path(tempfile.mkdtemp(prefix="ramburst-cpu-"))
    shm = Path(tempfile.mkdtemp(prefix="ramburst-cpu-", dir="/dev/shm"))
    name = f"cpu{os.getpid()}"
    try:
        with ramburst.deploy(name=name, size=args.size, services=services, checksums=args.checksums,
                             mount=str(mount_root / "mnt") if "fs" in services else None) as cluster:
            state = cluster.state_dir
            targets: list[w.Target] = [w.FolderTarget("tmpfs", shm)]
            if "pool" in services:
                targets.append(w.PoolTarget(cluster))
            if "s3" in services:
                targets.append(w.S3Target(cluster, "cpu"))
            if "fs" in services:
                folder = cluster.mount / "cpu"
                folder.mkdir()
                targets.append(w.FolderTarget("fs", folder, drop_cache=True))
            for t in targets:  # warm-up
                measure(t, total, state)
            results: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
            for _ in range(args.passes):  # the paths take turns, as in `ramburst bench`
                for t in targets:
                    for direction, rate, per in measure(t, total, state):
                        results.setdefault((t.name, direction), []).append((rate, per))
            for t in targets:
                t.close()
        print(f"| path | op | MB/s | {' | '.join(KINDS)} | total CPU ms/MiB |")
        print("|---|---|---|" + "---|" * (len(KINDS) + 1))
        for (path, direction), runs in results.items():
            rate = statistics.median(r for r, _ in runs)
            per = {k: statistics.median(p[k] for _, p in runs) for k in KINDS}
            cells = " | ".join(f"{per[k]:.2f}" if per[k] >= 0.005 else "-" for k in KINDS)
            print(f"| {path} | 4 MiB {direction} | {rate:,.0f} | {cells} | {sum(per.values()):.2f} |")
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(mount_root, ignore_errors=True)


if __name__ == "__main__":
    main()
