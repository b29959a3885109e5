"""Take an instance down from its records alone: unmount on every host, then stop and remove."""
from __future__ import annotations

import os
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from .. import host as hostmod
from ..ceph.fuse import is_mounted, unmount
from ..config import default_state_root
from ..errors import RamburstError
from ..files import failure_log_path, remove_folders, remove_ram_dir, remove_tree
from ..instance import HostRecord, InstanceLock, InstanceState
from ..mpi import LocalComm
from ..process import stop_processes
from ..progress import Steps

DOWN_LOCK_WAIT = 60.0  # seconds a `down` waits for another host's `down` of the same instance


def up_still_running(meta: dict) -> bool:
    """The `up` that wrote this record still runs (not finished, not this process)."""
    pid = meta.get("up_pid")
    if not pid or meta.get("state") == "up" or pid == os.getpid():
        return False
    try:
        import psutil

        p = psutil.Process(pid)
        return p.create_time() <= meta.get("created", 0) + 1 and "ramburst" in " ".join(p.cmdline())
    except Exception:
        return False


def down(state_dir: Path, steps: Steps | None = None, quiet: bool = False, comm=None) -> bool:
    """Remove everything the instance in `state_dir` made on this host. Idempotent.

    Works from the records alone, so a half-made, crashed or killed instance goes too. Each
    host removes what its own record lists (recognised by its addresses); the shared state
    folder goes once no host record is left. With an MPI `comm`, every rank does its host and
    rank 0 then removes the state folder. Returns False when there was nothing to remove.
    """
    comm = comm or LocalComm()
    steps = steps or Steps(not quiet and comm.rank == 0)
    state = InstanceState(state_dir)
    existed = any(comm.allgather(state.exists()))
    if not existed:
        return False
    with ExitStack() as locks:
        def check():
            if comm.rank == 0:
                # Another `down` (each node's epilog removes its own part, all at once) is
                # waited for; an `up` still deploying is refused at once.
                deploying = state.exists() and up_still_running(state.meta() or {})
                locks.enter_context(InstanceLock(state_dir).acquire(wait=0 if deploying else DOWN_LOCK_WAIT))
            if state.exists():
                state.check_instance()

        comm.agree("instance check", check)
        return _down_checked(state_dir, state, steps, quiet, comm)


def _down_checked(state_dir: Path, state: InstanceState, steps: Steps, quiet: bool, comm) -> bool:
    mine = local_hosts(state.hosts())
    comm.agree("unmount", lambda: unmount_hosts(mine, steps))  # every host, before any daemon stops
    comm.agree("down", lambda: remove_hosts(mine, steps))
    comm.barrier()
    if comm.rank == 0:
        left = state.hosts()
        if left:
            names = ", ".join(f"{h.label} ({h.address})" for h in left)
            raise RamburstError(f"removed this host's part; still up elsewhere: {names}. Run "
                                f"`ramburst down` there, or all at once with `mpirun ... ramburst down --mpi`")
        remove_tree(state_dir)
        log = failure_log_path(Path(state_dir))
        try:
            if os.lstat(log).st_uid == os.geteuid():
                log.unlink()
        except FileNotFoundError:
            pass
        if Path(state_dir).parent == default_state_root():
            try:
                default_state_root().rmdir()  # only when no other instance or log is left in it
            except OSError:
                pass
        if not quiet:
            steps.info(f"down in {steps.elapsed():.2f} s")
    return True


def local_hosts(hosts: list[HostRecord]) -> list[HostRecord]:
    """The host records that belong to this machine (by address; a single-host instance on
    loopback is always local)."""
    addresses = hostmod.local_addresses()
    return [h for h in hosts if h.address in addresses]


def unmount_hosts(hosts: list[HostRecord], steps: Steps) -> None:
    """First step of down: unmount while every daemon still runs, so ceph-fuse can finish."""
    for h in hosts:
        fuses = [p for p in h.processes if p.name.startswith("fuse.")]
        for m in h.mounts:
            if is_mounted(Path(m["path"])):
                how = unmount(Path(m["path"]), abort=partial(stop_processes, fuses))
                steps.info(f"{m['path']}: {how}")
                if how == "failed":
                    raise RamburstError(f"cannot unmount {m['path']}; processes using it: "
                                        f"fuser -vm {m['path']}; then run down again")


def remove_hosts(hosts: list[HostRecord], steps: Steps) -> None:
    stopped = stop_processes([p for h in hosts for p in h.processes])
    steps.info(f"stopped {', '.join(stopped) or 'no running daemons'}")
    for h in hosts:
        remove_ram_dir(Path(h.ram_dir))
        for m in h.mounts:
            remove_folders(m["created"])
        h.path.unlink(missing_ok=True)
