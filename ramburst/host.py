"""What this host offers: interface addresses, memory, free ports, Ceph binaries.

Memory promised to other instances: each instance's RAM folder on a host is named
`ramburst-<uid>-<name>-<token>-<label>-<promise>B`, where <token> is 16 random hex digits
(drawn once per instance, so the path cannot be guessed and pre-made by another user) and
<promise> is what that host's part of the instance may grow to, in bytes (memory_needed).
The folders are 0700, but /dev/shm lists them to everyone, so admission adds up the promises
of every other instance of any user before it accepts a new one. Counting promises in full
is conservative: what those instances already use is also missing from "available".
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from pathlib import Path

import psutil

from .config import format_size
from .errors import UsageError

CEPH_BINARIES = {
    "mon": "ceph-mon", "mgr": "ceph-mgr", "osd": "ceph-osd",
    "mds": "ceph-mds", "rgw": "radosgw", "fuse": "ceph-fuse", "rgw-admin": "radosgw-admin",
}
INSTALL_HINT = ("install Ceph: sudo apt-get install ceph-mon ceph-mgr ceph-osd ceph-mds radosgw "
                "ceph-fuse ceph-common python3-rados (or run scripts/install.sh)")


def interface_address(interface: str) -> str:
    """The IPv4 address the daemons bind on `interface` (e.g. 'lo' -> 127.0.0.1)."""
    addrs = psutil.net_if_addrs()
    if interface not in addrs:
        raise UsageError(f"interface {interface!r} does not exist here (have: {', '.join(sorted(addrs))})")
    for a in addrs[interface]:
        if a.family == socket.AF_INET:
            return a.address
    raise UsageError(f"interface {interface!r} has no IPv4 address")


def local_addresses() -> set[str]:
    """Every IPv4 address of this host (of its network namespace)."""
    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET}


def free_port(address: str) -> int:
    """A port nobody listens on at `address`, picked by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def port_is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def find_binary(kind: str) -> str:
    name = CEPH_BINARIES[kind]
    path = shutil.which(name)
    if path is None:
        raise UsageError(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


def check_binaries(kinds: list[str]) -> dict[str, str]:
    return {k: find_binary(k) for k in kinds}


# Measured resident memory per daemon with the generated configuration (see docs/memory.md),
# rounded up; used to refuse a deployment that would leave the host short of memory.
# "osd": up to 480 MiB measured with the malloc tunables that keep heap for reuse (docs/tuning.md).
DAEMON_RSS = {"mon": 96 * 2**20, "mgr": 320 * 2**20, "osd": 512 * 2**20,
              "mds": 128 * 2**20, "rgw": 160 * 2**20, "fuse": 96 * 2**20}
HEADROOM = 1 * 2**30
# The per-host watchdog (ceph/watchdog.py): a Python process, 24 MiB resident measured.
WATCHDOG_RSS = 32 * 2**20


def memory_needed(size: int, overshoot: int, daemons: dict[str, int]) -> int:
    """RAM one host may use: the data, writes in flight when it fills (the sparse headroom,
    plan.FULL_HEADROOM per OSD, that the watchdog keeps them inside), the daemons and the
    watchdog."""
    return size + overshoot + sum(DAEMON_RSS[k] * n for k, n in daemons.items()) + WATCHDOG_RSS


PROMISE_RE = re.compile(r"ramburst-[0-9]+-.+-[0-9a-f]{16}-h[0-9]+-([0-9]+)B")


def promise_of(folder_name: str) -> int:
    """The bytes a RAM folder's instance may grow to, from its name (0 if it says none)."""
    m = PROMISE_RE.fullmatch(folder_name)
    return int(m.group(1)) if m else 0


def promised_by_others(ram_dir: Path, own_prefix: str | None = None) -> int:
    """What the other instances with a RAM folder in `ram_dir` may still grow to."""
    try:
        names = os.listdir(ram_dir)
    except OSError:
        return 0
    return sum(promise_of(n) for n in names if not (own_prefix and n.startswith(own_prefix)))


def check_memory(size: int, overshoot: int, daemons: dict[str, int], ram_dir: Path,
                 own_prefix: str | None = None) -> None:
    """Refuse a size this host cannot hold in RAM, keeping headroom for the job itself and
    what other instances have been promised (`own_prefix`: this instance's folders)."""
    need = memory_needed(size, overshoot, daemons)
    available = psutil.virtual_memory().available
    others = promised_by_others(ram_dir, own_prefix)
    if others and need + HEADROOM + others > available:
        raise UsageError(
            f"size {format_size(size)} needs about {format_size(need + HEADROOM)} of RAM, but only "
            f"{format_size(max(0, available - others))} is available: {format_size(others)} of the "
            f"{format_size(available)} free is promised to other instances on this host "
            f"(see {ram_dir}/ramburst-*)"
        )
    if need + HEADROOM > available:
        raise UsageError(
            f"size {format_size(size)} needs about {format_size(need + HEADROOM)} of RAM "
            f"(data, {format_size(overshoot)} for writes in flight when full, daemons, "
            f"{format_size(HEADROOM)} for the job), but only {format_size(available)} is available"
        )
    try:
        free = shutil.disk_usage(ram_dir).free
    except FileNotFoundError:
        raise UsageError(f"RAM folder {ram_dir} does not exist") from None
    if size + overshoot > free:
        raise UsageError(f"size {format_size(size)} (+{format_size(overshoot)} headroom) is larger "
                         f"than the {format_size(free)} free in {ram_dir}")
