"""The workloads, each run the same way against a tmpfs folder and a ramburst path.

Everything runs in this Python process with the same thread counts, so the ratio compares
the data paths, not two different clients.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIG = 4 * 2**20
SMALL = 4096
THREADS = 16


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


class Target:
    """Where data goes: put/get/delete of named blobs."""

    name = ""

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str, size: int) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def close(self) -> None: ...


class FolderTarget(Target):
    """Files in a folder. `drop_cache`: before each read, drop the kernel's cached pages of the
    file (clean after the fsync), so a read of a mounted filesystem reaches the filesystem
    instead of returning what the write left in the page cache. On tmpfs it drops nothing: the
    page cache is the storage."""

    def __init__(self, name: str, folder: Path, fsync: bool = True, drop_cache: bool = False):
        self.name, self.folder, self.fsync, self.drop_cache = name, folder, fsync, drop_cache

    def put(self, key, data):
        with open(self.folder / key, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())

    def get(self, key, size):
        with open(self.folder / key, "rb", buffering=0) as f:
            if self.drop_cache:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            return f.read(size)

    def delete(self, key):
        os.unlink(self.folder / key)


class PoolTarget(Target):
    name = "pool"

    def __init__(self, cluster):
        self.io = cluster.ioctx()

    def put(self, key, data):
        self.io.write_full(key, data)

    def get(self, key, size):
        return self.io.read(key, size)

    def delete(self, key):
        self.io.remove_object(key)

    def close(self):
        self.io.close()


class S3Target(Target):
    name = "s3"

    def __init__(self, cluster, bucket: str):
        self.s3 = cluster.s3_client()
        self.s3.meta.config.max_pool_connections = THREADS
        self.bucket = bucket
        self.s3.create_bucket(Bucket=bucket)

    def put(self, key, data):
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key, size):
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def delete(self, key):
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def close(self):
        self.s3.delete_bucket(Bucket=self.bucket)


def big_write_read(target: Target, total: int, prefix: str) -> tuple[float, float]:
    """4 MiB blobs, THREADS in flight: write MB/s, then read MB/s; removed afterwards."""
    data = os.urandom(BIG)
    keys = [f"{prefix}big{i}" for i in range(max(THREADS, total // BIG))]
    with ThreadPoolExecutor(THREADS) as ex:
        t = time.perf_counter()
        list(ex.map(lambda k: target.put(k, data), keys))
        w = _rate(len(keys) * BIG, time.perf_counter() - t)
        t = time.perf_counter()
        got = list(ex.map(lambda k: len(target.get(k, BIG)), keys))
        r = _rate(sum(got), time.perf_counter() - t)
        list(ex.map(target.delete, keys))
    return w, r


def tcp_stream(total: int) -> float:
    """MB/s of one TCP stream over loopback into fresh 4 MiB buffers, as a client reading 4 MiB
    objects receives them: the most any store reached through a socket can deliver here, before
    it does any work of its own. Ceph's reads cross such a socket once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    count = max(THREADS, total // BIG)
    data = os.urandom(BIG)

    def send():
        conn, _ = server.accept()
        with conn:
            for _ in range(count):
                conn.sendall(data)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    with socket.create_connection(server.getsockname()) as s:
        t = time.perf_counter()
        for _ in range(count):
            buf = bytearray(BIG)
            view, got = memoryview(buf), 0
            while got < BIG:
                n = s.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("loopback stream ended early")
                got += n
        rate = _rate(count * BIG, time.perf_counter() - t)
    sender.join(timeout=10)
    server.close()
    return rate


def small_ops(target: Target, seconds: float, prefix: str) -> float:
    """4 KiB writes per second with THREADS writers, for about `seconds`."""
    data = os.urandom(SMALL)
    deadline = time.perf_counter() + seconds
    counts = [0] * THREADS

    def writer(i):
        n = 0
        while time.perf_counter() < deadline:
            target.put(f"{prefix}s{i}-{n % 256}", data)
            n += 1
        counts[i] = n

    t = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(writer, range(THREADS)))
    rate = sum(counts) / (time.perf_counter() - t)
    with ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(target.delete, {f"{prefix}s{i}-{n % 256}" for i in range(THREADS)
                                    for n in range(min(counts[i], 256))}))
    return rate


def metadata_ops(folder: Path, count: int) -> float:
    """File create + stat + delete per second (one operation = all three), THREADS at once."""
    work = folder / "meta-bench"
    work.mkdir()

    def one(i):
        p = work / f"m{i}"
        with open(p, "wb"):
            pass
        os.stat(p)
        os.unlink(p)

    t = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(one, range(count)))
    rate = count / (time.perf_counter() - t)
    work.rmdir()
    return rate
