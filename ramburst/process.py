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
        """The live process this record names, or None if it has gone (or the pid was reused).

        Gone means every thread has ended, so its sockets and RAM files are closed. A killed
        daemon's main thread often ends first: it then reads as a zombie with no command line
        while its other threads still hold the listening port; the start time alone names it."""
        try:
            p = started(self.pid, self.create_time)
            if p is None:
                return None
            try:
                cmd = p.cmdline()
            except psutil.ZombieProcess:
                cmd = []  # the main thread has ended, others have not: ours, still exiting
            if cmd and (os.path.basename(cmd[0]) != os.path.basename(self.exe) or self.conf not in cmd):
                return None
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None


def started(pid: int, create_time: float) -> psutil.Process | None:
    """The process `pid` if it is the one started at `create_time` and not all its threads have ended."""
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - create_time) > 0.05 or not threads_running(pid):
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def threads_running(pid: int) -> bool:
    """Whether any thread of `pid` has not ended yet (a thread ends, closing what it shares
    with the others only when it is the last, before it turns zombie)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


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
