"""ceph-fuse: mounts CephFS without root, one process per host, recorded like a daemon."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import UsageError
from ..layout import Layout
from .daemon import Daemon


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def check_mountpoint(path: Path) -> None:
    """Refuse a mountpoint that is mounted already, not a folder, or not empty."""
    if is_mounted(path) or os.path.ismount(path):
        raise UsageError(f"mountpoint {path} is already mounted")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"mountpoint {path} is not a folder")
        if any(path.iterdir()):
            raise UsageError(f"mountpoint {path} is not empty")
    else:
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"mountpoint {path} cannot be created (no write access to {parent})")


def fuse_allows_other(conf: str = "/etc/fuse.conf") -> bool:
    """Whether fusermount lets a plain user mount with allow_other."""
    try:
        with open(conf) as f:
            return any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        return False


def create_mountpoint(path: Path, mode: int = 0o700) -> list[str]:
    """Make the folder (`mode`: private unless the mount is shared) and any missing parents;
    return what was made, outermost first."""
    made = []
    for p in reversed([path, *path.parents]):
        if not p.exists():
            p.mkdir(mode=0o755)
            made.append(str(p))
    if made and made[-1] == str(path):
        os.chmod(path, mode)  # mkdir's mode is masked by the umask
    return made


def _try(cmd: list[str], path: Path, timeout: float) -> bool:
    """Run one unmount tool; a tool that hangs (stuck in the kernel on a fuse daemon that
    cannot answer) is abandoned after `timeout`, never waited for."""
    try:
        proc = subprocess.Popen([*cmd, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return False
    try:
        ok = proc.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        proc.kill()  # it ends once the fuse connection is aborted (the caller kills ceph-fuse)
        return False
    return ok and not is_mounted(path)


def unmount(path: Path, timeout: float = 5, abort=None) -> str:
    """Unmount. If a process holds a file open there, detach lazily; if the unmount hangs
    (ceph-fuse flushing to a store that is full or gone), call `abort` (kill ceph-fuse, which
    ends the fuse connection) and detach lazily. Returns how it went."""
    root = os.geteuid() == 0
    plain = ["umount"] if root else ["fusermount", "-u"]
    lazy = [["umount", "-l"], ["fusermount", "-uz"]] if root else [["fusermount", "-uz"], ["umount", "-l"]]
    if _try(plain, path, timeout):
        return "unmounted"
    how = "busy: lazily detached"
    if abort is not None and is_mounted(path):
        abort()
        how = "stuck: ceph-fuse stopped, lazily detached"
    if any(_try(cmd, path, timeout) for cmd in lazy) or not is_mounted(path):
        return how
    return "failed"


def fuse_admin_socket(ram_dir: Path | str, host_label: str) -> Path:
    """Where a host's ceph-fuse answers admin commands: in that host's RAM folder."""
    return Layout.asok(ram_dir, f"fuse.{host_label}")


class FuseMount(Daemon):
    """The ceph-fuse process of one host; its id is the host label."""

    kind = "fuse"

    def __init__(self, ident: str, binary: str, conf: Path, log_dir: Path, mountpoint: Path,
                 ram_dir: Path, shared: bool = False):
        super().__init__(ident, binary, conf, log_dir)
        self.mountpoint = mountpoint
        self.ram_dir = ram_dir
        self.shared = shared

    def base_args(self) -> list[str]:
        # The kernel checks every access against mode, owner and sticky bit as on any local
        # filesystem. Ceph's default leaves it to ceph-fuse, which lets some through and
        # refuses others POSIX allows (ftruncate on an fd opened for writing, a file created
        # with mode 0): docs/conformance.md. allow_other only when asked: without it only the
        # user who mounted reaches the files, and a plain user needs no user_allow_other.
        return [self.binary, "-c", str(self.conf), "--id", "admin",
                "--fuse_default_permissions=true", "--client_permissions=false",
                f"--fuse_allow_other={'true' if self.shared else 'false'}"]

    def run_args(self) -> list[str]:
        # An admin socket of its own (the [client] section has none), so the watchdog can see
        # requests that wait too long (objecter_requests, mds_requests).
        return self.base_args() + ["--admin-socket", str(self.admin_socket), "-f", str(self.mountpoint)]

    @property
    def admin_socket(self) -> Path:
        return fuse_admin_socket(self.ram_dir, self.id)
