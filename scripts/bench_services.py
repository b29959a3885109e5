#!/usr/bin/env python3
"""Services benchmark: time to ready with pool+s3+fs (median of several deploys), then
large-file write/read throughput through the pool, S3, the CephFS mount and plain tmpfs.

    .venv/bin/python scripts/bench_services.py [--runs 3] [--size 4G] [--mib 1024]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ramburst  # noqa: E402

RAMBURST = str(Path(sys.executable).with_name("ramburst"))
CHUNK = 4 * 2**20


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pool_rw(cluster, total: int, threads: int = 16) -> tuple[float, float]:
    data = os.urandom(CHUNK)
    n = total // CHUNK
    io = cluster.ioctx()
    with cf.ThreadPoolExecutor(threads) as ex:
        w = timed(lambda: list(ex.map(lambda i: io.write_full(f"b{i}", data), range(n))))
        r = timed(lambda: list(ex.map(lambda i: io.read(f"b{i}", CHUNK), range(n))))
    for i in range(n):
        io.remove_object(f"b{i}")
    io.close()
    return total / w, total / r


def s3_rw(cluster, total: int, path: Path) -> tuple[float, float]:
    from boto3.s3.transfer import TransferConfig

    s3 = cluster.s3_client()
    s3.create_bucket(Bucket="bench")
    cfg = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=16)
    w = timed(lambda: s3.upload_file(str(path), "bench", "big", Config=cfg))
    r = timed(lambda: s3.download_file("bench", "big", str(path) + ".back", Config=cfg))
    os.unlink(str(path) + ".back")
    s3.delete_object(Bucket="bench", Key="big")
    s3.delete_bucket(Bucket="bench")
    return total / w, total / r


def file_rw(folder: Path, total: int) -> tuple[float, float]:
    """Write a file in 4 MiB blocks and fsync; drop it from the page cache view by reopening."""
    data = os.urandom(CHUNK)
    p = folder / "bench.bin"

    def write():
        with open(p, "wb") as f:
            for _ in range(total // CHUNK):
                f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read():
        with open(p, "rb", buffering=0) as f:
            while f.read(CHUNK):
                pass

    w = timed(write)
    r = timed(read)
    p.unlink()
    return total / w, total / r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="4G")
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    total = args.mib * 2**20
    with tempfile.TemporaryDirectory(prefix="rb-bench-services-") as tmp:
        state, mount = Path(tmp) / "benchsvc", Path(tmp) / "mnt"
        flags = ["--name", "benchsvc", "--state-dir", str(state), "--size", args.size,
                 "--service", "pool", "--service", "s3", "--service", "fs", "--mount", str(mount)]
        ups = []
        for _ in range(args.runs):
            ups.append(timed(lambda: subprocess.run([RAMBURST, "up", *flags], check=True,
                                                    stderr=subprocess.DEVNULL)))
            subprocess.run([RAMBURST, "down", "--state-dir", str(state)], check=True, stderr=subprocess.DEVNULL)
        subprocess.run([RAMBURST, "up", *flags], check=True, stderr=subprocess.DEVNULL)
        try:
            cluster = ramburst.attach(state_dir=state)
            shm = Path(tempfile.mkdtemp(prefix="rb-bench-tmpfs-", dir="/dev/shm"))
            try:
                src = shm / "src.bin"
                with open(src, "wb") as f:
                    for _ in range(total // CHUNK):
                        f.write(os.urandom(CHUNK))
                rows = [("plain tmpfs (/dev/shm file)", *file_rw(shm, total)),
                        ("pool (librados, 16 x 4 MiB in flight)", *pool_rw(cluster, total)),
                        ("S3 (boto3 multipart, 16 x 16 MiB parts)", *s3_rw(cluster, total, src)),
                        ("fs (ceph-fuse mount, 4 MiB writes + fsync)", *file_rw(mount, total))]
            finally:
                subprocess.run(["rm", "-rf", str(shm)])
                cluster.close()
        finally:
            subprocess.run([RAMBURST, "down", "--state-dir", str(state)], stderr=subprocess.DEVNULL)
    print(f"time to ready with pool+s3+fs: median {statistics.median(ups):.2f} s "
          f"(min {min(ups):.2f}, max {max(ups):.2f}, {args.runs} runs)\n")
    base_w, base_r = rows[0][1], rows[0][2]
    print(f"| path ({args.mib} MiB) | write MB/s | read MB/s | write vs tmpfs | read vs tmpfs |")
    print("|---|---|---|---|---|")
    for name, w, r in rows:
        print(f"| {name} | {w / 1e6:.0f} | {r / 1e6:.0f} | {w / base_w:.2f} | {r / base_r:.2f} |")


if __name__ == "__main__":
    main()
