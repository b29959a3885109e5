"""What `up` checks before it makes anything: binaries, memory, and the instance's folder."""
from __future__ import annotations

import os
import shlex
import stat
import time

from .. import host as hostmod
from ..config import Config
from ..errors import UsageError
from ..instance import InstanceLock, InstanceState
from ..plan import FULL_HEADROOM
from ..progress import Steps
from ..services import selected, wants
from .teardown import down
from .teardown import up_still_running as _up_still_running


def validate(config: Config, host_label: str = "h0") -> tuple[dict[str, str], str]:
    """Everything that can be checked before anything is made: each service's own checks
    (the fs mountpoint, /dev/fuse; boto3 for s3), binaries, interface, memory."""
    units = selected(config.services)
    for unit in units:
        unit.check(config, host_label)
    binaries = hostmod.check_binaries(["mon", "mgr", "osd", *(b for u in units for b in u.binaries)])
    address = hostmod.interface_address(config.interface)
    check_memory(config)
    return binaries, address


def daemon_counts(config: Config) -> dict[str, int]:
    counts = {"mon": 1, "mgr": 1, "osd": config.osds}
    for want in wants(config.services):  # per host at most: the primary's share
        counts[want.kind] = counts.get(want.kind, 0) + 1
    return counts


def memory_promise(config: Config) -> int:
    """What one host of this instance may grow to (written into its RAM folder's name)."""
    # memstore holds each object in the OSD's heap at about twice its size (docs/tuning.md).
    data = config.size * (2 if config.device == "memstore" else 1)
    return hostmod.memory_needed(data, FULL_HEADROOM * config.osds, daemon_counts(config))


def check_memory(config: Config, own_prefix: str | None = None) -> None:
    data = config.size * (2 if config.device == "memstore" else 1)
    hostmod.check_memory(data, FULL_HEADROOM * config.osds, daemon_counts(config), config.ram_dir,
                         own_prefix=own_prefix)


def prepare_instance_dir(config: Config, steps: Steps) -> None:
    """Refuse a name that is up or a folder that is no instance; clear away the remains of
    an instance that died (killed `up`, crash)."""
    state = InstanceState(config.instance_dir)
    if not state.exists():
        return
    with InstanceLock(config.instance_dir, config.name):
        if _being_created(state):
            raise UsageError(f"instance {config.name!r} is being deployed by another process; nothing was touched")
        state.check_instance()
        _clear_dead_instance(config, state, steps)


def _being_created(state: InstanceState) -> bool:
    """A folder of ours made in the last seconds and still without its record: another `up`
    between its mkdir and its first write."""
    try:
        st = os.lstat(state.dir)
    except FileNotFoundError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not os.path.lexists(state.meta_path)
            and time.time() - st.st_mtime < 5
            and all(n.startswith(f".{state.meta_path.name}.") for n in os.listdir(state.dir)))


def _clear_dead_instance(config: Config, state: InstanceState, steps: Steps) -> None:
    meta = state.meta() or {}
    how = (f"ramburst down --name {config.name}" if config.state_dir is None
           else f"ramburst down --state-dir {shlex.quote(str(config.instance_dir))}")
    if _up_still_running(meta):
        raise UsageError(f"instance {config.name!r} is being deployed right now by process {meta['up_pid']}")
    if meta.get("state") == "up" and state.live_processes():
        raise UsageError(f"instance {config.name!r} is already up; take it down with: {how}")
    steps.info(f"removing the remains of a dead instance {config.name!r}")
    down(config.instance_dir, steps=steps, quiet=True)
