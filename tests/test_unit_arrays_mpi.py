"""Issue 14: the collective array helpers without daemons (zarr MemoryStore), over ranks played by
threads: units dealt round-robin, metadata by rank 0, an error on one rank raised on all."""
from __future__ import annotations

import threading

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from ramburst.arrays import mpi as amp  # noqa: E402
from ramburst.errors import RamburstError  # noqa: E402
from ramburst.mpi import Comm  # noqa: E402


class ThreadComm(Comm):
    """`size` ranks as threads sharing one exchange; allgather is the only collective Comm.agree uses."""

    def __init__(self, rank: int, shared: dict):
        self.rank, self.size, self.shared = rank, shared["size"], shared

    def allgather(self, value):
        s = self.shared
        s["slots"][self.rank] = value
        s["barrier"].wait()
        got = list(s["slots"])
        s["barrier"].wait()
        return got

    def barrier(self) -> None:
        self.shared["barrier"].wait()


def run_ranks(size: int, body):
    shared = {"size": size, "slots": [None] * size, "barrier": threading.Barrier(size, timeout=30)}
    results, errors = [None] * size, [None] * size

    def one(rank):
        try:
            results[rank] = body(ThreadComm(rank, shared))
        except Exception as e:  # noqa: BLE001 - checked by the test
            errors[rank] = e

    threads = [threading.Thread(target=one, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def test_item_engines_deal_units_round_robin_and_agree_on_errors():
    store = zarr.storage.MemoryStore()
    root = zarr.open_group(store, mode="w")
    data = np.arange(100 * 8, dtype="i4").reshape(100, 8)

    def body(comm):
        a, counts = amp.load(comm, root, "v", data, chunks=(10, 8))
        did = amp.apply(comm, a, lambda b: b * 3)
        out = amp.map_blocks(comm, a, lambda b: b - 1, root, "w", dtype="i8")
        try:
            amp.apply(comm, out, lambda b: 1 / 0 if comm.rank == 2 else b)
        except RamburstError as e:
            return counts, did, str(e)
        return counts, did, None

    results, errors = run_ranks(3, body)
    assert errors == [None, None, None]
    assert [r[1] for r in results] == [4, 3, 3]  # 10 chunks over 3 ranks
    assert all(r[0] == {"written": 10, "skipped": 0, "bytes": data.nbytes} for r in results)
    assert all("failed on rank 2" in r[2] and "ZeroDivisionError" in r[2] for r in results)
    np.testing.assert_array_equal(root["w"][...], data * 3 - 1)
    assert root["w"].dtype == np.dtype("i8")


def test_item_engines_resume_a_load():
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    data = np.random.default_rng(0).random((40, 4))
    results, errors = run_ranks(2, lambda comm: amp.load(comm, root, "v", data, chunks=(10, 4))[1])
    assert errors == [None, None] and results[0]["written"] == 4
    root["v"][0:10] = 0
    results, errors = run_ranks(2, lambda comm: amp.load(comm, root, "v", data)[1])
    assert errors == [None, None] and results[0] == {"written": 1, "skipped": 3, "bytes": data.nbytes}
    np.testing.assert_array_equal(root["v"][...], data)
