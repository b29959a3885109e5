#!/usr/bin/env python3
"""Arrays benchmark (issue 14): zarr v3 write/read of a 3-D float32 array through RadosStore,
against the raw pool (4 MiB objects, same number in flight) measured in the same run; chunk-size
sensitivity; the same array through S3 (radosgw), through zarr's LocalStore on the fs mount and
on /dev/shm; latency and bytes of one 2-D slice, sharded vs not.

    .venv/bin/python scripts/bench_arrays.py [--mib 512] [--size 3G] [--passes 2] [--json out.json]

Uncompressed random data (the transport is measured, not a codec); best of --passes.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

import ramburst  # noqa: E402
import ramburst.arrays as ra  # noqa: E402

RAMBURST = str(Path(sys.executable).with_name("ramburst"))
MiB = 2**20
IN_FLIGHT = 16
# chunk shapes of a (N, 512, 512) float32 array, by chunk bytes
CHUNKS = {"256 KiB": (16, 64, 64), "1 MiB": (16, 128, 128), "4 MiB": (64, 128, 128), "16 MiB": (64, 256, 256)}


CPU: list[float] = []  # client CPU seconds (all threads of this process) of the last timed() call


def timed(fn) -> float:
    c, t = time.process_time(), time.perf_counter()
    fn()
    CPU.append(time.process_time() - c)
    return time.perf_counter() - t


def raw_pool(cluster, total: int) -> tuple[float, float]:
    """write_full/read of 4 MiB objects, IN_FLIGHT threads: the pool's own figure."""
    data = os.urandom(4 * MiB)
    n = total // (4 * MiB)
    io = cluster.ioctx()
    io.set_namespace("bench-raw")
    with ThreadPoolExecutor(IN_FLIGHT) as ex:
        w = timed(lambda: list(ex.map(lambda i: io.write_full(f"b{i}", data), range(n))))
        wc = CPU[-1]
        r = timed(lambda: list(ex.map(lambda i: io.read(f"b{i}", 4 * MiB), range(n))))
        rc = CPU[-1]
        list(ex.map(lambda i: io.remove_object(f"b{i}"), range(n)))
    io.close()
    return total / w / 1e6, total / r / 1e6, wc * 1e3 / (total / MiB), rc * 1e3 / (total / MiB)


def zarr_rw(store, data: np.ndarray, chunks, shards=None) -> tuple[float, float]:
    a = zarr.create_array(store, name="bench", shape=data.shape, chunks=chunks, shards=shards, dtype=data.dtype,
                          compressors=None, overwrite=True)
    w = timed(lambda: a.__setitem__(Ellipsis, data))
    wc = CPU[-1]
    back = {}
    r = timed(lambda: back.setdefault("v", a[...]))
    rc = CPU[-1]
    assert np.array_equal(back["v"][:2], data[:2])
    sync(store.delete_dir("bench"))
    mib = data.nbytes / MiB
    return data.nbytes / w / 1e6, data.nbytes / r / 1e6, wc * 1e3 / mib, rc * 1e3 / mib


def best(fn, passes: int) -> tuple[float, float, float, float]:
    """Best MB/s of the passes; the median client CPU ms per MiB (steadier under load)."""
    runs = [fn() for _ in range(passes)]
    return (max(r[0] for r in runs), max(r[1] for r in runs), statistics.median(r[2] for r in runs),
            statistics.median(r[3] for r in runs))


def slice_reads(store, data: np.ndarray, chunks, shards, count: int = 10) -> tuple[float, float]:
    """Median latency (ms) and mean bytes read of one 2-D slice a[k] at random depths."""
    a = zarr.create_array(store, name="slice", shape=data.shape, chunks=chunks, shards=shards, dtype=data.dtype,
                          compressors=None, overwrite=True)
    a[...] = data
    ro = zarr.open_array(store.with_read_only(True), path="slice", mode="r")
    rng = np.random.default_rng(0)
    lat, nbytes = [], []
    for k in rng.integers(0, data.shape[0], count):
        ro.store.stats.update(bytes_read=0)
        lat.append(timed(lambda k=k: ro[int(k)]) * 1e3)
        nbytes.append(ro.store.stats["bytes_read"])
    sync(store.delete_dir("slice"))
    return statistics.median(lat), statistics.mean(nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=512, help="array size (MiB); a multiple of 64")
    ap.add_argument("--size", default="3G", help="the cluster's RAM")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    total = args.mib * MiB
    zarr.config.set({"async.concurrency": IN_FLIGHT})
    data = np.random.default_rng(1).random((args.mib, 512, 512), dtype="f4")
    rows: list[dict] = []

    def row(path: str, layout: str, w: float, r: float, wcpu: float, rcpu: float) -> None:
        rows.append({"path": path, "layout": layout, "write_MBps": round(w), "read_MBps": round(r),
                     "write_cpu_ms_per_MiB": round(wcpu, 2), "read_cpu_ms_per_MiB": round(rcpu, 2)})
        print(f"{path:28} {layout:34} write {w:6.0f} MB/s  read {r:6.0f} MB/s  client CPU ms/MiB "
              f"{wcpu:.2f} / {rcpu:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="rb-bench-arrays-") as tmp:
        state, mount = Path(tmp) / "cbencharr", Path(tmp) / "mnt"
        subprocess.run([RAMBURST, "up", "--name", "cbencharr", "--state-dir", str(state), "--size", args.size,
                        "--service", "pool", "--service", "s3", "--service", "fs", "--mount", str(mount)],
                       check=True, stdout=subprocess.DEVNULL)
        shm = Path(tempfile.mkdtemp(prefix="rb-bench-arrays-", dir="/dev/shm"))
        try:
            cluster = ramburst.attach(state_dir=state)
            rados = cluster.zarr_store(namespace="bench")
            row("pool (raw librados)", f"4 MiB objects, {IN_FLIGHT} in flight", *best(lambda: raw_pool(cluster, total),
                                                                                     args.passes))
            layouts = [("1 MiB chunks in 4 MiB shards", CHUNKS["1 MiB"], CHUNKS["4 MiB"]),
                       ("4 MiB chunks, unsharded", CHUNKS["4 MiB"], None)]
            for label, chunks, shards in layouts:
                row("RadosStore", label, *best(lambda c=chunks, s=shards: zarr_rw(rados, data, c, s), args.passes))
            for label, chunks in CHUNKS.items():
                if label != "4 MiB":
                    row("RadosStore", f"{label} chunks, unsharded",
                        *best(lambda c=chunks: zarr_rw(rados, data, c), args.passes))
            s3 = ra.s3_store(cluster, bucket="bench")
            fs = zarr.storage.LocalStore(mount / "bench.zarr")
            local = zarr.storage.LocalStore(shm / "bench.zarr")
            for path, store in (("S3 (obstore on radosgw)", s3), ("LocalStore on the fs mount", fs),
                                ("LocalStore on /dev/shm", local)):
                for label, chunks, shards in layouts:
                    row(path, label, *best(lambda st=store, c=chunks, s=shards: zarr_rw(st, data, c, s), args.passes))
            slices = []
            for label, chunks, shards in [("sharded: 1 MiB chunks (16,128,128) in 4 MiB shards", CHUNKS["1 MiB"],
                                           CHUNKS["4 MiB"]),
                                          ("unsharded: 4 MiB chunks (64,128,128)", CHUNKS["4 MiB"], None),
                                          ("sharded: 256 KiB chunks (4,128,128) in 4 MiB shards", (4, 128, 128),
                                           CHUNKS["4 MiB"]),
                                          ("sharded: 1 MiB chunks (1,512,512) in 16 MiB shards", (1, 512, 512),
                                           (16, 512, 512))]:
                ms, nbytes = slice_reads(rados, data, chunks, shards)
                slices.append({"layout": label, "median_ms": round(ms, 1), "bytes_read": int(nbytes)})
                print(f"one 512x512 slice, {label}: {ms:.1f} ms, {nbytes / MiB:.2f} MiB read", flush=True)
            cluster.close()
        finally:
            subprocess.run(["rm", "-rf", str(shm)])
            subprocess.run([RAMBURST, "down", "--state-dir", str(state)], stderr=subprocess.DEVNULL)
    raw_w, raw_r = rows[0]["write_MBps"], rows[0]["read_MBps"]
    print(f"\narray {data.shape} float32 = {args.mib} MiB, uncompressed, {IN_FLIGHT} requests in flight, "
          f"best of {args.passes} (CPU: median); load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| path | layout | write MB/s | read MB/s | write / raw pool | read / raw pool "
          "| client CPU ms/MiB write / read |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['layout']} | {r['write_MBps']} | {r['read_MBps']} | "
              f"{r['write_MBps'] / raw_w:.2f} | {r['read_MBps'] / raw_r:.2f} | "
              f"{r['write_cpu_ms_per_MiB']:.2f} / {r['read_cpu_ms_per_MiB']:.2f} |")
    print("\n| one 2-D slice (512x512 float32 = 1 MiB) | median latency ms | bytes read |")
    print("|---|---|---|")
    for s in slices:
        print(f"| {s['layout']} | {s['median_ms']} | {s['bytes_read'] / MiB:.2f} MiB |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "slices": slices, "mib": args.mib}, indent=1))


if __name__ == "__main__":
    main()
