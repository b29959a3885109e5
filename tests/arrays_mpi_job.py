"""Run by tests/test_arrays_mpi.py under mpirun, one rank per simulated host: the collective
array helpers against the shared instance. Prints one JSON line per rank."""
import json
import sys

import numpy as np
from mpi4py import MPI

import ramburst.arrays as ra
from ramburst.arrays import mpi as amp
from ramburst.errors import RamburstError

state, source = sys.argv[1], sys.argv[2]
comm = amp.as_comm(MPI.COMM_WORLD)
root = ra.open(state_dir=state, namespace="mpi", mode="a") if comm.rank == 0 else None
comm.barrier()
root = root or ra.open(state_dir=state, namespace="mpi", mode="r+")
out = {"rank": comm.rank}
a, out["load"] = amp.load(comm, root, "vol", source, chunks=(10, 64))
out["apply_units"] = amp.apply(comm, a, lambda b: b * 2)
b = amp.map_blocks(comm, a, lambda x: x + 1, root, "plus1")


def fail_on_rank1(block):
    if comm.rank == 1:
        raise ValueError("bad block on purpose")
    return block


try:
    amp.apply(comm, b, fail_on_rank1)
    out["error"] = None
except RamburstError as e:
    out["error"] = str(e)
if comm.rank == 0:
    data = np.load(source)
    out["equal"] = bool(np.array_equal(b[...], data * 2 + 1))
print(json.dumps(out), flush=True)
