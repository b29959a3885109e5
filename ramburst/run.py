"""`ramburst run`: deploy, run the user's command, always tear down, exit with its status.

The storage must outlive every process of the job and nothing of the job may outlive the
storage. So:
- this process becomes a child subreaper: whatever CMD starts, even with `setsid` or a
  double fork, stays a descendant of ours, and is found and ended before `down`;
- with MPI, every rank takes SIGTERM/SIGINT (a scheduler's time limit signals all of them),
  the ranks poll each other instead of blocking on rank 0 (a collective every tick), so a
  signal on any rank brings all of them to the same collective teardown; rank 0 gives CMD
  `grace` seconds (its stage-out time) before killing what is left.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import psutil

from . import lifecycle
from . import status as status_mod
from .config import Config
from .mpi import LocalComm

PR_SET_CHILD_SUBREAPER = 36
TICK = 0.2  # seconds between the ranks' checks; bounds how late a signal is noticed


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class StopSignals:
    """Record the first SIGINT/SIGTERM (and when) instead of dying; restore on exit."""

    def __init__(self):
        self.signum: int | None = None  # received here
        self.when: float | None = None
        self.agreed: int | None = None  # received on any rank (set by `supervise`)
        self.previous: dict = {}

    def __enter__(self) -> StopSignals:
        for s in (signal.SIGINT, signal.SIGTERM):
            self.previous[s] = signal.signal(s, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum, self.when = signum, time.monotonic()

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


def ident(p: psutil.Process) -> tuple[int, float]:
    try:
        return p.pid, p.create_time()
    except psutil.Error:
        return p.pid, 0.0


def descendants(keep: set) -> list[psutil.Process]:
    """Every live descendant of this process except the ones in `keep` (the Ceph daemons)."""
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in procs if ident(p) not in keep]


def signal_all(procs, signum: int) -> None:
    for p in procs:
        try:
            p.send_signal(signum)
        except psutil.Error:
            pass


def sweep(keep: set, grace: float) -> list[str]:
    """End every descendant not in `keep`: SIGTERM, up to `grace` s, then SIGKILL; reap them.
    Returns the command lines of what had to be ended (for the log)."""
    ended: list[str] = []
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        procs = descendants(keep)
        live = []
        for p in procs:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    p.wait(0)  # reap: it is ours (child or re-parented orphan)
                    continue
                live.append(p)
                ended.append(" ".join(p.cmdline()) or p.name())
            except psutil.Error:
                pass
        if not live:
            return sorted(set(ended))
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        signal_all(live, sig)
        psutil.wait_procs(live, timeout=min(0.5, max(0.05, deadline - time.monotonic())))


def supervise(command: list[str], env: dict, grace: float, comm, keep: set,
              stop: StopSignals, log=None) -> int:
    """Run CMD on rank 0 until it exits; a stop signal on any rank stops it with `grace`.
    Every rank returns the same code: CMD's; 128+signal when a signal stopped the job; 137
    when CMD outlived its grace and was killed."""
    log = log or (lambda msg: None)
    child = None
    launch_error = None
    if comm.rank == 0:
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as e:
            launch_error = f"cannot run {command[0]}: {e.strerror}"
    stopping_since: float | None = None
    killed = False
    while True:
        mine = (stop.signum, (127 if launch_error else child.poll()) if comm.rank == 0 else None)
        states = comm.allgather(mine) if comm.size > 1 else [mine]
        signums = [s for s, _ in states if s is not None]
        code = states[0][1]
        if signums and stopping_since is None:
            stopping_since = time.monotonic()
            stop.agreed = signums[0]
            ranks = [r for r, (s, _) in enumerate(states) if s is not None]
            log(f"signal {signums[0]} on rank(s) {','.join(map(str, ranks))}: stopping CMD "
                f"(grace {grace:g} s), then tearing down")
            if child is not None and code is None:
                signal_all(descendants(keep), signal.SIGTERM)
        if code is not None:
            break
        if stopping_since is not None and not killed and time.monotonic() - stopping_since > grace:
            killed = True
            log(f"CMD still running {grace:g} s after the signal: killed")
            if child is not None:
                signal_all(descendants(keep), signal.SIGKILL)
        time.sleep(TICK)
    if launch_error and comm.rank == 0:
        print(f"ramburst: error: {launch_error}", file=sys.stderr, flush=True)
    if killed:
        return 128 + signal.SIGKILL  # stage-out was cut short: say so
    if signums:
        return 128 + signums[0]
    return 128 - code if code < 0 else code


def run(config: Config, command: list[str], grace: float = 10.0, comm=None, log=None, dashboard: bool = False,
        stage_in: list | None = None, stage_out=None, stage_to: str | None = None,
        stage_codec: str | None = None) -> int:
    """Deploy `config`, run `command` in the instance's environment (rank 0), end every process
    it started, tear down on every rank, and return the exit code for every rank. `dashboard`:
    rank 0 serves the live dashboard meanwhile (its URL in CMD's RAMBURST_DASHBOARD_URL). With
    `stage_in`/`stage_out` (ramburst.stage), data is copied in before CMD and out after it,
    also after a stop signal (inside the scheduler's grace), always before the teardown;
    `stage_codec`: stage-in compresses volumes (ramburst.stage.compress)."""
    comm = comm or LocalComm()
    log = log or (lambda msg: print(f"ramburst: {msg}", file=sys.stderr, flush=True))
    prefix = f"rank {comm.rank}: " if comm.size > 1 else ""
    become_subreaper()
    with StopSignals() as stop:  # installed before `up`, so no rank dies of an early signal
        lifecycle.up(config, comm=comm)
        keep = {ident(p) for p in descendants(set())}  # the daemons `up` started
        code = 1
        board = None
        try:
            env = {**os.environ, **status_mod.environment(config.instance_dir)}
            if dashboard and comm.rank == 0:
                from .dashboard import serve_instance

                board = serve_instance(config.instance_dir)
                env["RAMBURST_DASHBOARD_URL"] = board.url
                log(f"dashboard: {board.url}")
            if stage_in or stage_out:
                from .stage import for_job
            if not stage_in or for_job(config.instance_dir, "in", stage_in, stage_to, comm, log, stage_codec):
                code = supervise(command, env, grace, comm, keep, stop, lambda m: log(prefix + m))
                left = sweep(keep, grace if stop.agreed is None else 1.0)
                if left:
                    log(prefix + f"ended {len(left)} process(es) CMD left running: {'; '.join(left)[:300]}")
                if stage_out and not for_job(config.instance_dir, "out", stage_out, stage_to, comm, log):
                    code = code or 1
        finally:
            for s in (signal.SIGINT, signal.SIGTERM):  # the teardown is not interrupted
                signal.signal(s, signal.SIG_IGN)
            if board is not None:
                board.stop()
            lifecycle.down(config.instance_dir, comm=comm)
        if stop.agreed is not None:
            log(prefix + f"stopped by signal {stop.agreed}; everything removed, exit {code}")
    return code
