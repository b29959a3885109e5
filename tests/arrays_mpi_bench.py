"""Run under mpirun by tests/test_arrays_mpi.py when RAMBURST_BENCH_ARRAYS_MPI=<MiB> is set:
ranks write then read disjoint 4 MiB chunks of one float32 array (16 in flight per rank);
rank 0 prints the aggregate MB/s."""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from mpi4py import MPI

import ramburst.arrays as ra
from ramburst.arrays import mpi as amp
from ramburst.arrays.transfer import units, write_unit

state, mib = sys.argv[1], int(sys.argv[2])
comm = amp.as_comm(MPI.COMM_WORLD)
root = ra.open(state_dir=state, namespace="mpibench", mode="a") if comm.rank == 0 else None
comm.barrier()
root = root or ra.open(state_dir=state, namespace="mpibench", mode="r+")
a = amp.create(comm, root, f"b{comm.size}", (mib // 4, 1024, 1024), "f4", chunks=(1, 1024, 1024), overwrite=True,
               compressors=None)
todo = [sel for i, (_c, sel) in enumerate(units(a.shape, write_unit(a))) if i % comm.size == comm.rank]
block = np.random.default_rng(comm.rank).random((1, 1024, 1024), dtype="f4")
with ThreadPoolExecutor(16) as pool:
    comm.barrier()
    t0 = time.perf_counter()
    list(pool.map(lambda sel: a.__setitem__(sel, block), todo))
    comm.barrier()
    t1 = time.perf_counter()
    list(pool.map(lambda sel: a[sel], todo))
    comm.barrier()
    t2 = time.perf_counter()
if comm.rank == 0:
    print(json.dumps({"ranks": comm.size, "mib": mib, "write_MBps": round(mib * 2**20 / (t1 - t0) / 1e6),
                      "read_MBps": round(mib * 2**20 / (t2 - t1) / 1e6)}), flush=True)
