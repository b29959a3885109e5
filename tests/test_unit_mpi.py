"""Comm.agree without MPI: a scripted fake stands in for mpi4py's COMM_WORLD (no daemons)."""
from __future__ import annotations

import pytest

from ramburst.errors import DeployError, UsageError
from ramburst.mpi import Comm, LocalComm


class FakeWorld:
    """allgather returns this rank's value at its place and the scripted values of the others."""

    def __init__(self, rank: int, others: dict[int, object], size: int):
        self.rank, self.others, self.size = rank, others, size
        self.calls: list[tuple[str, object]] = []

    def allgather(self, value):
        self.calls.append(("allgather", value))
        return [value if r == self.rank else self.others.get(r) for r in range(self.size)]


def fake_comm(rank=0, size=3, others=None) -> tuple[Comm, FakeWorld]:
    comm = Comm.__new__(Comm)  # no mpi4py: set what __init__ would
    comm.comm = FakeWorld(rank, others or {}, size)
    comm.rank, comm.size = rank, size
    return comm, comm.comm


def test_agree_raises_on_every_rank_naming_the_first():
    comm, _ = fake_comm(rank=0, others={1: None, 2: ("DeployError", "disk on fire")})
    with pytest.raises(DeployError) as e:
        comm.agree("OSD start", lambda: "fine here")
    assert str(e.value) == "OSD start failed on rank 2: disk on fire"
    assert not isinstance(e.value, UsageError)


def test_agree_names_the_lowest_failing_rank_and_reports_its_own_error():
    comm, world = fake_comm(rank=1, others={0: None, 2: ("DeployError", "later")})

    def boom():
        raise ValueError("bad value")

    with pytest.raises(DeployError) as e:
        comm.agree("planning", boom)
    assert str(e.value) == "planning failed on rank 1: ValueError: bad value"
    assert world.calls == [("allgather", ("ValueError", "ValueError: bad value"))]


def test_agree_keeps_usage_errors_as_usage():
    comm, _ = fake_comm(others={1: ("UsageError", "replicas 3 needs 3 hosts")})
    with pytest.raises(UsageError) as e:
        comm.agree("checks")
    assert str(e.value) == "checks failed on rank 1: replicas 3 needs 3 hosts"
    assert e.value.exit_code == 2


def test_agree_returns_the_local_result():
    comm, world = fake_comm()
    assert comm.agree("monitor and OSD stores", lambda: {0: "uuid"}) == {0: "uuid"}
    assert world.calls == [("allgather", None)]


def test_agree_without_fn_still_joins():
    comm, world = fake_comm(rank=2)
    assert comm.agree("state folder") is None
    assert world.calls == [("allgather", None)]  # a rank with nothing to do still joins the collective


def test_local_comm_passes_errors_through_unchanged():
    def boom():
        raise DeployError("as it was")

    with pytest.raises(DeployError) as e:
        LocalComm().agree("services", boom)
    assert str(e.value) == "as it was"
