#!/usr/bin/env python3
"""End to end: `stage in` of one volume into a fresh RAM cluster's pool, plain and with `--codec` (issue 16).

The volume (made here, fixed seed): uint16, 256x512x512 (128 MiB), a smooth field (a sum of sinusoids
along each axis, amplitude 1000 around 3000) plus Gaussian noise of sigma 8: a stand-in for a
tomography or light-sheet stack. Each mode stages it in under a fresh prefix, with and without the
verify pass, then stages it out again to /dev/shm (verified); the pool is emptied between modes.
MB/s are of the original file's bytes, wall-clock, one run each.
Usage: .venv/bin/python scripts/bench_stage_codec.py [--shape 256,512,512] [--size 2G]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import ramburst
import ramburst.api
from ramburst.stage import stage_in, stage_out


def make_volume(shape, seed=1) -> np.ndarray:
    z, y, x = shape
    rng = np.random.default_rng(seed)
    g = (np.sin(np.linspace(0, 6, z))[:, None, None] + np.cos(np.linspace(0, 5, y))[None, :, None]
         + np.sin(np.linspace(0, 4, x))[None, None, :])
    return (g * 1000 + 3000 + 8 * rng.standard_normal(shape)).astype(np.uint16)


def wipe(cluster) -> None:
    """Remove every object of the pool (all namespaces) so that each mode starts from an empty store."""
    io = cluster.ioctx()
    io.set_namespace("\001")               # LIBRADOS_ALL_NSPACES
    objs = [(o.nspace, o.key) for o in io.list_objects()]
    rm = cluster.ioctx()
    for ns, key in objs:
        rm.set_namespace(ns)
        rm.remove_object(key)


def up_waiting(state_dir: Path, size: str):
    """ramburst.api.up, waiting (up to 10 minutes) while other instances on this shared machine hold the RAM."""
    deadline = time.monotonic() + 600
    while True:
        try:
            return ramburst.api.up(name="cbenchsc", state_dir=str(state_dir), size=size, services=("pool",))
        except ramburst.errors.UsageError as e:
            if "promised to other instances" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="256,512,512")
    ap.add_argument("--size", default="2G")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    work = Path(tempfile.mkdtemp(prefix="rb-bench-stage-codec-", dir="/dev/shm"))
    try:
        src = work / "vol.npy"
        np.save(src, make_volume(shape))
        size = src.stat().st_size
        rows = []
        cluster = up_waiting(work / "state", args.size)
        try:
            for i, (codec, verify) in enumerate([(None, True), (None, False), ("volume", True), ("volume", False),
                                                 ("zstd", True), ("zstd", False)]):
                prefix = f"pool:b{i}"
                t = time.perf_counter()
                s = stage_in(cluster, [src], prefix, codec=codec, verify=verify)
                t_in = time.perf_counter() - t
                stored = s["volumes"]["stored_bytes"] if codec else size
                t = time.perf_counter()
                stage_out(cluster, work / f"out{i}", prefix)
                t_out = time.perf_counter() - t
                assert (work / f"out{i}" / "vol.npy").read_bytes() == src.read_bytes()
                shutil.rmtree(work / f"out{i}")
                wipe(cluster)
                rows.append((codec or "none (plain stage)", "yes" if verify else "no", size / t_in / 1e6,
                             stored / 2**20, size / stored, size / t_out / 1e6))
        finally:
            cluster.down()
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\none volume, uint16 {'x'.join(map(str, shape))} ({size / 2**20:.0f} MiB), into the pool "
              f"(load average at the end {load}):\n")
        print("| --codec | verify | stage in MB/s | stored MiB | ratio | stage out MB/s (verified) |")
        print("|---|---|---:|---:|---:|---:|")
        for codec, verify, mbs_in, mib, ratio, mbs_out in rows:
            print(f"| {codec} | {verify} | {mbs_in:.0f} | {mib:.1f} | {ratio:.2f} | {mbs_out:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
