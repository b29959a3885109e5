"""The fs service: a CephFS (two small pools, one MDS) mounted with ceph-fuse on every host."""
from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import time
from pathlib import Path

from ..ceph.admin import _SYSTEM_DIRS, AdminClient, client_variables_hidden, load_rados
from ..errors import DeployError
from ..plan import Plan

FS_NAME = "ramburst"


def create_filesystem(admin: AdminClient, plan: Plan) -> None:
    meta, data = f"cephfs.{FS_NAME}.meta", f"cephfs.{FS_NAME}.data"
    admin.command("osd pool create", pool=meta, pg_num=8, pgp_num=8, pool_type="replicated")
    admin.command("osd pool create", pool=data, pg_num=plan.pg_num, pgp_num=plan.pg_num,
                  pool_type="replicated")
    admin.command("fs new", fs_name=FS_NAME, metadata=meta, data=data)


def wait_mds_active(admin: AdminClient, timeout: float, check=None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        fsmap = admin.command("fs dump")
        for fs in fsmap.get("filesystems", []):
            info = fs["mdsmap"].get("info", {})
            if any(i.get("state") == "up:active" for i in info.values()):
                return
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise DeployError(f"no MDS became active within {timeout:.0f} s")
        time.sleep(0.05)


def load_cephfs():
    """Import the `cephfs` binding (python3-cephfs), found like `rados` (admin.load_rados)."""
    if "cephfs" in sys.modules:
        return sys.modules["cephfs"]
    load_rados()
    try:
        import cephfs  # noqa: F401

        return cephfs
    except ImportError:
        pass
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for pattern in _SYSTEM_DIRS:
        for folder in glob.glob(pattern):
            path = Path(folder) / f"cephfs{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader("cephfs", str(path))
                spec = importlib.util.spec_from_file_location("cephfs", path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                sys.modules["cephfs"] = module
                return module
    raise DeployError(f"the python 'cephfs' module for this Python ({suffix}) is missing: "
                      "sudo apt-get install python3-cephfs")


def prepare_root(conf: Path, max_bytes: int, shared: bool, uid: int | None = None,
                 gid: int | None = None) -> None:
    """Give the filesystem's root to the deploying user and set the quota, before any mount.

    CephFS makes its root root:root 0755, so a plain user could neither write there nor set
    the quota through the mount. client.admin may act as any uid (its MDS caps have no uid
    limit), so libcephfs does both as uid 0. The root is 0700 unless the mount is shared.
    """
    cephfs = load_cephfs()
    keyring = Path(conf).parent / "keys" / "client.admin.keyring"
    with client_variables_hidden():  # a loaded client environment must not pick the cluster
        fs = cephfs.LibCephFS(conffile=str(conf), auth_id="admin", conf={"keyring": str(keyring)})
    try:
        fs.conf_set("client_mount_uid", "0")
        fs.conf_set("client_mount_gid", "0")
        fs.mount(filesystem_name=FS_NAME.encode())
        fs.chown("/", os.getuid() if uid is None else uid, os.getgid() if gid is None else gid)
        fs.chmod("/", 0o755 if shared else 0o700)
        # A CephFS quota at the fs share: ceph-fuse answers EDQUOT itself when it is reached,
        # before the OSDs fill. It counts file sizes, so a sparse extend past it is refused
        # too; a pool quota (bytes stored) reacted too late at RAM speed (docs/conformance.md).
        fs.setxattr("/", "ceph.quota.max_bytes", str(max_bytes).encode(), 0)
        fs.unmount()
    except cephfs.Error as e:
        raise DeployError(f"cannot prepare the filesystem root: {e}") from None
    finally:
        fs.shutdown()
