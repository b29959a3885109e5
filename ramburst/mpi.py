"""The ranks of an MPI job as the hosts of one instance (mpi4py, optional).

Every phase ends with `agree`: each rank reports success or its error, all ranks learn the
outcome together, and a failure anywhere raises on every rank, naming the rank and cause.
No rank is left waiting at a barrier for a rank that failed.
"""
from __future__ import annotations

from typing import Any, Callable

from .errors import DeployError, RamburstError, UsageError


class LocalComm:
    """One host, no MPI: every collective is trivial and errors pass through unchanged."""

    rank = 0
    size = 1

    def allgather(self, value: Any) -> list:
        return [value]

    def bcast(self, value: Any, root: int = 0) -> Any:
        return value

    def barrier(self) -> None:
        pass

    def agree(self, what: str, fn: Callable[[], Any] | None = None) -> Any:
        return fn() if fn is not None else None


class Comm:
    """What ramburst needs of MPI: rank, size, allgather, bcast."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise UsageError("--mpi needs mpi4py: pip install 'ramburst[mpi]' "
                             "(built against the system MPI: apt-get install libopenmpi-dev)") from None
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allgather(self, value: Any) -> list:
        return self.comm.allgather(value)

    def bcast(self, value: Any, root: int = 0) -> Any:
        return self.comm.bcast(value, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def agree(self, what: str, fn: Callable[[], Any] | None = None) -> Any:
        """Run fn here; raise on every rank if it failed on any. Returns fn's result."""
        result, error = None, None
        try:
            if fn is not None:
                result = fn()
        except RamburstError as e:
            error = (type(e).__name__, getattr(e, "message", str(e)))
        except Exception as e:  # noqa: BLE001 - reported to every rank, then raised here too
            error = (type(e).__name__, f"{type(e).__name__}: {e}")
        errors = self.allgather(error)
        failed = [(r, err) for r, err in enumerate(errors) if err is not None]
        if failed:
            rank, (kind, message) = failed[0]
            text = f"{what} failed on rank {rank}: {message}"
            raise (UsageError if kind == "UsageError" else DeployError)(text)
        return result
