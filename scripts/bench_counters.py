#!/usr/bin/env python3
"""Ceph's own counters for 4 MiB writes and reads: where an OSD op spends its time.

Deploys a pool, resets the OSD's perf counters, runs 16 threads of 4 MiB write_full, then of
4 MiB reads, and prints the mean of each latency counter that matters for the data path
(`ceph daemon osd.N perf dump`), next to the client's own mean time per op.

    .venv/bin/python scripts/bench_counters.py [--mib 1024] [--size 3G] [--checksums] [--overwrite]

The measured writes go to new objects (as in `ramburst bench`), or with --overwrite replace
existing ones.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ramburst  # noqa: E402
from ramburst.bench.workloads import BIG, THREADS  # noqa: E402  (the bench's object size and threads)
from ramburst.instance import InstanceState  # noqa: E402
from ramburst.layout import Layout  # noqa: E402

# (section, counter, what it measures)
COUNTERS = [
    ("osd", "op_before_queue_op_lat", "message received -> queued for an op thread"),
    ("osd", "op_w_prepare_latency", "write: queued -> transaction prepared"),
    ("osd", "op_w_process_latency", "write: dequeued -> committed"),
    ("osd", "op_w_latency", "write: received -> reply sent"),
    ("bluestore", "state_prepare_lat", "BlueStore: transaction prepare (allocate, copy in)"),
    ("bluestore", "state_aio_wait_lat", "BlueStore: data write to the tmpfs file"),
    ("bluestore", "state_kv_queued_lat", "BlueStore: waiting for the metadata commit"),
    ("bluestore", "kv_sync_lat", "BlueStore: RocksDB commit of the metadata"),
    ("bluestore", "commit_lat", "BlueStore: transaction submitted -> committed"),
    ("osd", "op_r_process_latency", "read: dequeued -> data read"),
    ("osd", "op_r_latency", "read: received -> reply sent"),
    ("bluestore", "read_lat", "BlueStore: read from the tmpfs file"),
]


def perf(asok: Path, *args: str) -> dict:
    out = subprocess.run(["ceph", "--admin-daemon", str(asok), *args], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return json.loads(out) if out.strip() else {}


def mean_ms(dump: dict, section: str, name: str) -> tuple[int, float | None]:
    c = dump.get(section, {}).get(name)
    if not isinstance(c, dict) or not c.get("avgcount"):
        return 0, None
    return c["avgcount"], c["sum"] / c["avgcount"] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--size", default="3G")
    ap.add_argument("--checksums", action="store_true")
    ap.add_argument("--overwrite", action="store_true", help="measured writes replace the warm-up's objects")
    args = ap.parse_args()
    count = args.mib * 2**20 // BIG
    data = os.urandom(BIG)
    with ramburst.deploy(name=f"ctr{os.getpid()}", size=args.size, checksums=args.checksums) as cluster:
        asok = Layout.asok(InstanceState(cluster.state_dir).hosts()[0].ram_dir, "osd.0")
        io = cluster.ioctx()
        keys = [f"c{i}" for i in range(count)]
        with ThreadPoolExecutor(THREADS) as ex:
            list(ex.map(lambda k: io.write_full(k, data), keys))  # warm-up
            if not args.overwrite:
                list(ex.map(io.remove_object, keys))
            perf(asok, "perf", "reset", "all")
            client = {}
            for op in ("write", "read"):
                t = time.perf_counter()
                if op == "write":
                    list(ex.map(lambda k: io.write_full(k, data), keys))
                else:
                    list(ex.map(lambda k: len(io.read(k, BIG)), keys))
                wall = time.perf_counter() - t
                client[op] = (count * BIG / wall / 1e6, wall * THREADS / count * 1000)
            dump = perf(asok, "perf", "dump")
        io.close()
    for op, (rate, per_op) in client.items():
        print(f"client 4 MiB {op}: {rate:,.0f} MB/s, {per_op:.2f} ms per op as the client sees it "
              f"({THREADS} in flight)")
    print("| counter | ops | mean ms | what |")
    print("|---|---|---|---|")
    for section, name, what in COUNTERS:
        n, ms = mean_ms(dump, section, name)
        if ms is not None:
            print(f"| {section}.{name} | {n} | {ms:.3f} | {what} |")


if __name__ == "__main__":
    main()
