"""The Python API: a RAM Ceph cluster as a context manager, like a test database fixture.

    import ramburst
    with ramburst.deploy(size="2G") as cluster:
        cluster.ioctx().write_full("obj", b"data")
"""
from __future__ import annotations

import atexit
import errno
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import lifecycle
from . import status as status_mod
from .ceph.admin import load_rados, open_rados
from .ceph.fullmark import Marks
from .config import Config, build_config, check_name, default_state_root
from .errors import RamburstError
from .instance import InstanceState
from .layout import Layout
from .services import s3 as s3_service

_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Shut down every connection a Cluster still holds before the interpreter exits: a process
    that ends with a connected librados handle can abort in librados's own teardown (seen as
    "terminate called ..." and exit 134 after every test had passed)."""
    for cluster in list(_OPEN):
        try:
            cluster.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class Cluster:
    """A running instance: its connection details as data, and handles to use it."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.env: dict[str, str] = status_mod.environment(self.state_dir)
        self.name = self.env["RAMBURST_NAME"]
        self.pool = self.env.get("RAMBURST_POOL")
        self.conf = Path(self.env["CEPH_CONF"])
        self.mount: Path | None = Path(self.env["RAMBURST_MOUNT"]) if "RAMBURST_MOUNT" in self.env else None
        self.s3: dict[str, str] | None = None
        if "AWS_ENDPOINT_URL" in self.env:
            self.s3 = {"endpoint": self.env["AWS_ENDPOINT_URL"], "access_key": self.env["AWS_ACCESS_KEY_ID"],
                       "secret_key": self.env["AWS_SECRET_ACCESS_KEY"],
                       "credentials_file": self.env["RAMBURST_S3_CREDENTIALS"]}
        self._rados = None
        self._connecting = threading.Lock()
        self._marks: Marks | None = None

    def __repr__(self) -> str:
        return (f"Cluster(name={self.name!r}, pool={self.pool!r}, s3={self.s3 and self.s3['endpoint']!r}, "
                f"mount={self.mount and str(self.mount)!r})")

    def s3_client(self):
        """A ready boto3 S3 client for the instance's endpoint and user (needs boto3)."""
        if self.s3 is None:
            raise RamburstError(f"instance {self.name!r} has no s3 service")
        return s3_service.client(s3_service.read_credentials(Path(self.s3["credentials_file"])))

    def rados(self):
        """A connected rados.Rados handle as client.admin (closed by `down`); safe to call first from
        several threads at once (before: all but one got RadosStateError "state configuring")."""
        with self._connecting:
            if self._rados is None:
                handle = open_rados(self.conf)
                handle.connect(timeout=30)
                self._rados = handle
                _OPEN.add(self)
        return self._rados

    def ioctx(self, pool: str | None = None):
        """A rados.Ioctx on the instance's pool (or on `pool`)."""
        return self.rados().open_ioctx(pool or self.pool)

    # Object helpers that fail fast on a full store. Plain librados pauses a write while the
    # cluster is full (until rados_osd_op_timeout); FULL_TRY makes the OSD answer ENOSPC
    # (rados.NoSpace) once the pool is flagged full (check_room: before that), and lets deletes
    # through so that room can be made.
    FULL_TRY = 64  # LIBRADOS_OPERATION_FULL_TRY

    def check_room(self) -> None:
        """Raise rados.NoSpace if a watchdog has stopped an OSD at the requested size. Call it
        before a FULL_TRY write: Ceph answers those ENOSPC only once the monitor has flagged the
        pool full, a second later, and lets them through meanwhile (ceph/fullmark.py)."""
        if self._marks is None:
            self._marks = Marks(Layout(self.state_dir).run)
        full = self._marks.full()
        if full:
            raise load_rados().NoSpace(f"{', '.join(full)} at the requested size of instance {self.name!r}",
                                       errno.ENOSPC)

    def put(self, name: str, data: bytes, pool: str | None = None) -> None:
        """Store `data` as object `name`, replacing it; raises rados.NoSpace when full."""
        rados = load_rados()
        self.check_room()
        with self.ioctx(pool) as io, rados.WriteOpCtx() as op:
            op.write_full(data)
            io.operate_write_op(op, name, flags=self.FULL_TRY)

    def get(self, name: str, pool: str | None = None) -> bytes:
        with self.ioctx(pool) as io:
            size, _ = io.stat(name)
            return io.read(name, size)

    def delete(self, name: str, pool: str | None = None) -> None:
        """Remove object `name`; works on a full store too."""
        rados = load_rados()
        with self.ioctx(pool) as io, rados.WriteOpCtx() as op:
            op.remove()
            io.operate_write_op(op, name, flags=self.FULL_TRY)

    def zarr_store(self, namespace: str = "arrays", read_only: bool = False, pool: str | None = None):
        """A zarr v3 store (ramburst.arrays.RadosStore) in RADOS namespace `namespace` of the
        pool; needs the `arrays` extra."""
        from .arrays.store import RadosStore

        return RadosStore(self, namespace, pool, read_only=read_only)

    def cephfs(self, settings: dict[str, str] | None = None):
        """A new libcephfs client mounted on the instance's filesystem, as client.admin acting as
        this process's user (ramburst.ceph.libcephfs.CephFS: paths absolute in the filesystem,
        the mount's root is "/"); `settings` are client options. Close it when done."""
        from .ceph.libcephfs import CephFS

        if self.mount is None:
            raise RamburstError(f"instance {self.name!r} has no fs service")
        layout = Layout.of_conf(self.conf)
        host = status_mod.local_label(InstanceState(self.state_dir))
        return CephFS(self.conf, layout.keyring("client.admin"), settings, register=layout.fs_clients(host))

    def status(self) -> dict:
        return status_mod.collect(self.state_dir)

    def close(self) -> None:
        if self._rados is not None:
            self._rados.shutdown()
            self._rados = None

    def down(self) -> None:
        self.close()
        lifecycle.down(self.state_dir, quiet=True)


def up(config: Config | None = None, progress: bool = False, config_file: str | Path | None = None,
       cancel: threading.Event | None = None, **options: Any) -> Cluster:
    """Deploy and return the running cluster; the caller must call `down()`. Works from any
    thread; setting `cancel` from another thread stops this deployment and rolls it back."""
    if config is None:
        config = build_config(Path(config_file) if config_file else None, **options)
    lifecycle.up(config, show_progress=progress, cancel=cancel)
    return Cluster(config.instance_dir)


@contextmanager
def deploy(config_file: str | Path | None = None, progress: bool = False, cancel: threading.Event | None = None,
           **options: Any) -> Iterator[Cluster]:
    """Deploy for the duration of a `with` block; everything is removed when it ends."""
    cluster = up(config_file=config_file, progress=progress, cancel=cancel, **options)
    try:
        yield cluster
    finally:
        cluster.down()


def attach(name: str = "default", state_dir: str | Path | None = None) -> Cluster:
    """A handle on an instance that is already up (e.g. made with `ramburst up`)."""
    path = Path(state_dir) if state_dir else default_state_root() / check_name(name)
    state = InstanceState(path)
    if state.exists():
        state.check_instance()  # a folder that is not one is never acted on (nor removed by down)
    return Cluster(path)
