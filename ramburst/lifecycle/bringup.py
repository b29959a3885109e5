"""Bring an instance up: `up` acts out a plan step by step.

Each step that makes something pushes its undo onto an ExitStack; if a later step fails, or a
signal arrives, the stack unwinds and removes it all. Slow steps overlap: OSD stores are made
while the monitor starts.
"""
from __future__ import annotations

import os
import signal
import threading
import uuid
from contextlib import ExitStack, contextmanager

from .. import host as hostmod
from ..config import Config
from ..errors import DeployError, Interrupted, RamburstError, UsageError
from ..files import failure_log_path
from ..mpi import LocalComm
from ..plan import new_ram_token, plan_cluster
from ..progress import Steps
from ..services import quota_shares, selected, wants
from .admission import memory_promise, prepare_instance_dir, validate
from .deployment import Deployment, role_of
from .phases import run_phases


@contextmanager
def signals_raise(cancel: threading.Event):
    """Turn SIGINT and SIGTERM into an exception in the main thread, so undo runs. Off the
    main thread (a web server deploying in a worker) Python allows no handler: the process's
    own handling stays, and the caller stops this deployment through its `cancel` event."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        # Ignore further signals while the first one unwinds the stack.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        cancel.set()
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def up(config: Config, show_progress: bool = True, comm=None, cancel: threading.Event | None = None) -> dict:
    """Deploy the instance `config` describes; with an MPI `comm`, each rank is one host.

    Rank 0 makes the shared files and runs mon, mgr (mds, radosgw); every rank makes its OSD
    stores at the same time, starts its OSDs and mounts the fs. Each phase ends with
    comm.agree, so a failure on any rank rolls back every rank. Setting `cancel` (from any
    thread) stops this deployment at its next step and rolls it back.
    """
    comm = comm or LocalComm()
    first = comm.rank == 0
    steps = Steps(show_progress and (first or os.environ.get("RAMBURST_ALL_RANKS_PROGRESS") == "1"),
                  prefix=f"rank {comm.rank}: " if comm.size > 1 else "", cancel=cancel)
    binaries, address = comm.agree("checks", lambda: validate(config, f"h{comm.rank}"))
    addresses = comm.allgather(address)
    if len(set(addresses)) != len(addresses):
        raise UsageError(f"two ranks share the address {address} of --interface {config.interface}: "
                         "start one rank per host (e.g. mpirun --map-by ppr:1:node)")
    want = wants(config.services)
    ids = comm.bcast((str(uuid.uuid4()), hostmod.free_port(address),
                      hostmod.free_port(address) if any(w.kind == "rgw" for w in want) else None,
                      new_ram_token(),
                      {u.name: hostmod.free_port(address) for u in selected(config.services) if u.ports})
                     if first else None)
    plan = comm.agree("planning", lambda: plan_cluster(config, addresses, *ids[:4], promise=memory_promise(config),
                                                       ports=ids[4], wants=want,
                                                       quota_shares=quota_shares(config.services)))
    with signals_raise(steps.cancel), ExitStack() as locks:
        comm.agree("instance check", (lambda: prepare_instance_dir(config, steps)) if first else None)
        try:
            with ExitStack() as undo:
                dep = Deployment(plan, f"h{comm.rank}", binaries, steps, undo, locks, role_of(comm.rank), config)
                with dep.workers():
                    run_phases(comm, dep)
                meta = dep.final_meta or dep.meta("up")
                undo.pop_all()
                if dep.admin is not None:
                    dep.admin.close()
        except (UsageError, Interrupted):
            raise
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None
        except Exception as e:  # a step failed, or a Ceph binding error: one line, rolled back
            log = failure_log_path(plan.state_dir)
            cause = getattr(e, "message", str(e)) if isinstance(e, RamburstError) else f"{type(e).__name__}: {e}"
            raise DeployError(f"{cause}; rolled back", str(log) if log.exists() else None) from None
    steps.info(f"up in {steps.elapsed():.2f} s" + (f" on {comm.size} hosts" if comm.size > 1 else ""))
    return meta
