"""Handing out work: rank 0 gives items one at a time to whichever rank asks, every rank runs its items.

A large file is split across ranks and no rank runs far ahead of an equal byte share; within a
rank a thread pool keeps `threads` requests in flight. MPI calls stay on each rank's main thread.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .rank import Rank

TAG_ASK, TAG_GIVE = 7301, 7302
BALANCE = 1.03  # no rank takes more than 3 % over an equal byte share while another could take it


class Dispatcher:
    """Rank 0's main thread hands out item numbers, one at a time, to whichever rank asks first
    (so a faster rank takes more, and a large file's extents spread over the ranks), and sums
    the progress each request carries. Plain point-to-point messages polled by rank 0: an MPI
    RMA counter (Win.Fetch_and_op) was tried first, but passive-target RMA only progresses when
    the target enters MPI, and with Open MPI 4.1 over TCP osc/rdma failed (MPI_ERR_WIN), osc/ucx
    hung and osc/pt2pt starved the other ranks (rank 0 did 80 % of the work)."""

    def __init__(self, comm, sizes: list[int]):
        self.comm, self.sizes = comm, sizes
        self.next = 0
        self.bytes = self.files = 0
        self.finished = 0          # other ranks that are done
        self.aborted = False
        self.taken = [0] * comm.size
        self.stopped = [False] * comm.size
        self.cap = BALANCE * sum(sizes) / comm.size

    def take(self, who: int = 0) -> int | None:
        """The next item for rank `who`, unless it already holds its byte share (plus BALANCE)
        and another rank still working could take the item within its own share."""
        if self.aborted or self.next >= len(self.sizes):
            self.stopped[who] = True
            return None
        size = self.sizes[self.next]
        if self.comm.size > 1 and self.taken[who] + size > self.cap and any(
                not self.stopped[r] and self.taken[r] + size <= self.cap for r in range(self.comm.size) if r != who):
            self.stopped[who] = True
            return None
        self.taken[who] += size
        self.next += 1
        return self.next - 1

    def serve(self) -> None:
        if self.comm.size == 1:
            return
        from mpi4py import MPI

        c, status = self.comm.comm, MPI.Status()
        while c.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_ASK, status=status):
            ask, nbytes, files, fatal, done = c.recv(source=status.Get_source(), tag=TAG_ASK)
            self.bytes += nbytes
            self.files += files
            self.aborted = self.aborted or fatal
            if done:
                self.finished += 1
                self.stopped[status.Get_source()] = True
            else:
                c.send(self.take(status.Get_source()) if ask else None, dest=status.Get_source(), tag=TAG_GIVE)

    def drain(self, rank, tick) -> None:
        """Rank 0, its own share done: serve the others until every rank is done."""
        last = 0.0
        while self.finished < self.comm.size - 1:
            self.serve()
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                _report(self, rank, tick)
            time.sleep(0.002)
        _report(self, rank, tick)


class Asker:
    """A rank other than 0: ask rank 0 for the next item, reporting progress on the way."""

    def __init__(self, comm, rank):
        self.comm, self.rank = comm, rank

    def take(self) -> int | None:
        nbytes, files = self.rank.take_unsent()
        self.comm.comm.send((True, nbytes, files, self.rank.fatal is not None, False), dest=0, tag=TAG_ASK)
        return self.comm.comm.recv(source=0, tag=TAG_GIVE)

    def done(self) -> None:
        nbytes, files = self.rank.take_unsent()
        self.comm.comm.send((False, nbytes, files, self.rank.fatal is not None, True), dest=0, tag=TAG_ASK)


def run_phase(items: list, sizes: list[int], fn, comm, rank: Rank, threads: int, tick=None) -> None:
    """Run items until none is left on any rank; `tick(bytes, files)` runs about twice a second on rank 0."""
    boss = Dispatcher(comm, sizes) if comm.rank == 0 else None
    source = boss if boss is not None else Asker(comm, rank)
    inflight: set = set()
    exhausted, last = False, 0.0
    try:
        with ThreadPoolExecutor(threads) as pool:
            while True:
                while not exhausted and rank.fatal is None and len(inflight) < threads:
                    i = source.take()
                    if i is None:
                        exhausted = True
                    else:
                        inflight.add(pool.submit(fn, items[i]))
                if boss is not None:
                    boss.serve()
                    if rank.fatal is not None:
                        boss.aborted = True
                if not inflight:
                    break
                finished, inflight = wait(inflight, timeout=0.002 if boss is not None else 0.25,
                                          return_when=FIRST_COMPLETED)
                rank.check(finished)
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    rank.flush()
                    _report(boss, rank, tick)
        rank.flush()
        if boss is None:
            source.done()
            return
        boss.drain(rank, tick)
    finally:
        rank.flush()


def _report(boss, rank: Rank, tick) -> None:
    if boss is None:
        return
    nbytes, files = rank.take_unsent()
    boss.bytes += nbytes
    boss.files += files
    if tick is not None:
        tick(boss.bytes, boss.files)
