"""Collective array helpers over MPI ranks (DosNa's engines, done with zarr).

Every helper is called by all ranks of the communicator with the same arguments. Metadata is
written by rank 0 only, then all ranks agree; the write units (shards, or chunks when
unsharded) are dealt round-robin across ranks, so no two ranks ever write the same object.
Each phase ends with `agree`: an error on any rank is raised on every rank, naming the rank,
and no rank is left waiting for one that failed.

    from ramburst.arrays import mpi as amp
    comm = amp.as_comm(MPI.COMM_WORLD)
    root = ramburst.arrays.open(state_dir=..., mode="a")
    a = amp.load(comm, root, "vol", "input.h5", dataset="data", chunks=(64, 64, 64))
    amp.apply(comm, a, lambda block: block * 2)                  # in place
    b = amp.map_blocks(comm, a, np.sqrt, root, "vol_sqrt")       # into a new array
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..mpi import Comm, LocalComm
from . import transfer


def as_comm(comm: Any = None):
    """ramburst's Comm (rank, size, agree) for an mpi4py communicator; LocalComm for None."""
    if comm is None:
        return LocalComm()
    if hasattr(comm, "agree"):
        return comm
    wrapped = Comm.__new__(Comm)
    wrapped.comm, wrapped.rank, wrapped.size = comm, comm.Get_rank(), comm.Get_size()
    return wrapped


def mine(comm) -> Callable[[int], bool]:
    return lambda i: i % comm.size == comm.rank


def create(comm, group, name: str, shape, dtype, chunks=None, shards=None, overwrite: bool = False,
           **options: Any):
    """Create array `name` on rank 0; every rank returns it once all agree it exists."""
    comm = as_comm(comm)
    if comm.rank == 0:
        comm.agree(f"create {name}", lambda: transfer.new_array(group, name, tuple(shape), np.dtype(dtype),
                                                               chunks, shards, overwrite=overwrite, **options))
    else:
        comm.agree(f"create {name}")
    return comm.agree(f"open {name}", lambda: _reopen(group, name))


def _reopen(group, name: str):
    import zarr

    return zarr.open_array(group.store, path=f"{group.path}/{name}".lstrip("/"), mode="r+" if not
                           group.store.read_only else "r")


def load(comm, group, name: str, source: Any, dataset: str | None = None, chunks=None, shards=None,
         overwrite: bool = False, jobs: int = transfer.JOBS, **options: Any) -> tuple[Any, dict[str, int]]:
    """Copy `source` (a numpy-like array on every rank, or a path to a .npy / HDF5 / zarr that
    every rank can read) into new array `name`, each rank its share of the units. Resumable like
    `ramburst array import`. Returns the array and the summed counts (written, skipped, bytes)."""
    comm = as_comm(comm)
    opened = comm.agree(f"open {source}", lambda: transfer.open_source(Path(source), dataset)
                        if isinstance(source, (str, Path)) else (source, None))
    src, closer = opened
    try:
        exists = comm.allgather(name in group if comm.rank == 0 else None)[0]  # one answer for all ranks
        if exists and not overwrite:
            target = comm.agree(f"open {name}", lambda: _reopen(group, name))
        else:
            target = create(comm, group, name, src.shape, src.dtype, chunks, shards, overwrite=overwrite, **options)
        counts = comm.agree(f"load {name}", lambda: transfer.import_into(target, src, jobs=jobs, only=mine(comm)))
    finally:
        if closer is not None:
            closer.close()
    total = {k: sum(c[k] for c in comm.allgather(counts)) for k in counts}
    return target, total


def _each_unit(comm, array, what: str, work: Callable[[tuple[slice, ...]], None], jobs: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    todo = [sel for i, (_c, sel) in enumerate(transfer.units(array.shape, transfer.write_unit(array)))
            if mine(comm)(i)]

    def run() -> int:
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(work, todo))
        return len(todo)

    return comm.agree(what, run)


def apply(comm, array, fn: Callable[[np.ndarray], np.ndarray], jobs: int = transfer.JOBS) -> int:
    """array[unit] = fn(array[unit]) for every write unit, split across ranks; returns the number
    of units this rank did."""
    comm = as_comm(comm)

    def work(sel) -> None:
        array[sel] = fn(np.asarray(array[sel]))

    return _each_unit(comm, array, f"apply on {array.path}", work, jobs)


def map_blocks(comm, array, fn: Callable[[np.ndarray], np.ndarray], group, name: str, dtype=None,
               overwrite: bool = False, jobs: int = transfer.JOBS):
    """A new array `name` in `group`, same shape and chunking, holding fn(block) of every unit."""
    comm = as_comm(comm)
    out = create(comm, group, name, array.shape, dtype or array.dtype, tuple(array.chunks),
                 tuple(array.shards) if array.shards else None, overwrite=overwrite,
                 compressors=array.compressors or None)

    def work(sel) -> None:
        out[sel] = fn(np.asarray(array[sel]))

    _each_unit(comm, array, f"map_blocks into {name}", work, jobs)
    return out
