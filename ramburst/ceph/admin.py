"""Talking to the cluster as client.admin through librados: one connection, no CLI start-up cost."""
from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DeployError, RamburstError
from ..layout import Layout
from ..wait import wait_until

_LOAD_LOCK = threading.RLock()
_SYSTEM_DIRS = ("/usr/lib/python3/dist-packages", "/usr/lib64/python3*/site-packages",
                "/usr/local/lib/python3*/dist-packages")


def load_binding(name: str, package: str):
    """Import a Ceph Python binding (`rados`, `cephfs`) that only the distribution ships.

    A virtualenv does not see system packages, so look for the extension module built for
    this interpreter's ABI in the system folders and load that file alone. Under a lock: two
    threads loading the same extension at once left one of them a half-made module.
    """
    with _LOAD_LOCK:
        return _load_binding(name, package)


def _load_binding(name: str, package: str):
    if name in sys.modules:
        return sys.modules[name]
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for pattern in _SYSTEM_DIRS:
        for folder in glob.glob(pattern):
            path = Path(folder) / f"{name}{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader(name, str(path))
                spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                sys.modules[name] = module
                return module
    raise RamburstError(f"the python '{name}' module for this Python ({suffix}) is missing: "
                        f"sudo apt-get install {package}, and use the system's python3")


def load_rados():
    """The `rados` binding (python3-rados)."""
    return load_binding("rados", "python3-rados")


def open_rados(conf: Path, name: str = "client.admin", settings: dict[str, str] | None = None):
    """A rados.Rados handle (not connected) on the instance whose ceph.conf is `conf`, and on
    no other: librados reads CEPH_KEYRING and CEPH_ARGS from the environment over the conf
    file, so a client environment loaded for another instance would lend it that instance's
    keys. Those variables are hidden while the handle reads its configuration, and the
    keyring is named explicitly."""
    rados = load_rados()
    keyring = Layout.of_conf(conf).keyring(name)
    settings = {"keyring": str(keyring), **(settings or {})}
    with client_variables_hidden():
        return rados.Rados(conffile=str(conf), name=name, conf=settings)


@contextmanager
def client_variables_hidden():
    """Hide a client's Ceph variables (CEPH_ARGS, CEPH_KEYRING, ...) from this process's
    environment while a Ceph binding (librados, libcephfs) reads its configuration."""
    from .daemon import ENV_LOCK, is_client_variable

    with ENV_LOCK:
        hidden = {k: os.environ.pop(k) for k in list(os.environ) if is_client_variable(k)}
        try:
            yield
        finally:
            os.environ.update(hidden)


class AdminClient:
    """A librados handle as client.admin, with the few cluster commands ramburst needs."""

    def __init__(self, conf: Path, timeout: float = 30):
        rados = load_rados()
        self.rados = rados
        self.cluster = open_rados(conf, settings={"client_mount_timeout": str(int(timeout)),
                                                  "rados_mon_op_timeout": str(int(timeout))})
        try:
            self.cluster.connect(timeout=int(timeout))
        except rados.Error as e:
            self.cluster.shutdown()
            raise DeployError(f"cannot reach the monitor: {e}") from None

    def close(self) -> None:
        self.cluster.shutdown()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def command(self, prefix: str, timeout: float = 30, inbuf: bytes = b"", **args: Any) -> Any:
        """A mon command; returns parsed JSON output (or the text), raises with Ceph's message."""
        cmd = {"prefix": prefix, "format": "json", **args}
        rc, out, err = self.cluster.mon_command(json.dumps(cmd), inbuf, timeout=int(timeout))
        if rc != 0:
            raise DeployError(f"ceph {prefix} failed: {err.strip() or rc}")
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return out.decode(errors="replace")

    def mgr_command(self, prefix: str, timeout: float = 10, **args: Any) -> Any:
        cmd = {"prefix": prefix, "format": "json", **args}
        rc, out, err = self.cluster.mgr_command(json.dumps(cmd), b"", timeout=int(timeout))
        if rc != 0:
            raise DeployError(f"ceph {prefix} failed: {err.strip() or rc}")
        return json.loads(out) if out else None

    def osd_new(self, osd_uuid: str, osd_id: int) -> None:
        self.command("osd new", uuid=osd_uuid, id=osd_id)

    def create_pool(self, name: str, pg_num: int, application: str = "rados") -> None:
        self.command("osd pool create", pool=name, pg_num=pg_num, pgp_num=pg_num,
                     pool_type="replicated")
        self.command("osd pool application enable", pool=name, app=application,
                     yes_i_really_mean_it=True)

    def wait_osds_up(self, count: int, timeout: float, check=None, cancel=None) -> None:
        up = [0]

        def all_up() -> bool:
            up[0] = self.command("osd stat").get("num_up_osds", 0)
            return up[0] >= count

        wait_until(all_up, timeout, "the OSDs", check=check, cancel=cancel,
                   failure=lambda: f"only {up[0]} of {count} OSDs came up within {timeout:.0f} s")

    def ioctx(self, pool: str):
        return self.cluster.open_ioctx(pool)
