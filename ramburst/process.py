"""A started process recorded as (pid, start time, binary, conf), stopped only while it still
matches that record: a recycled pid is never signalled. Plain data, no Ceph knowledge."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import psutil

from .errors import DeployError
from .wait import Timeouts, wait_until


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # mon.a, osd.0, fuse.mount ...
    pid: int
    create_time: float
    exe: str
    conf: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ProcessRecord:
        return cls(**data)

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None if it has gone (or the pid was reused)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 0.05:
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            cmd = p.cmdline()
            if not cmd or os.path.basename(cmd[0]) != os.path.basename(self.exe) or self.conf not in cmd:
                return None
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None


def stop_processes(records: list[ProcessRecord], timeout: float = Timeouts.PROCESSES_GONE) -> list[str]:
    """Kill every recorded process that is still the one we started, and wait until it is gone.

    SIGKILL, not SIGTERM: the data lives in RAM and is thrown away, so a graceful stop only
    costs time (an OSD waits for the monitor, memstore would write its objects out first).
    Returns the names of the processes that were still running.
    """
    live = [(r, p) for r in records if (p := r.process()) is not None]
    for _, p in live:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    # Not our children (they outlive `up`), so poll; a zombie counts as gone. One that is
    # still there after the timeout is left to the caller's own checks, as SIGKILL is all we have.
    try:
        wait_until(lambda: all(r.process() is None for r, _ in live), timeout, "killed processes to go",
                   interval=0.01)
    except DeployError:
        pass
    return [r.name for r, _ in live]
