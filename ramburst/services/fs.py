"""The fs service: a CephFS (two small pools, one MDS) mounted with ceph-fuse on every host."""
from __future__ import annotations

import os
import time

from ..ceph.admin import AdminClient
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


def set_quota(mountpoint, max_bytes: int) -> None:
    """A CephFS quota at the usable size: ceph-fuse answers EDQUOT itself when it is reached,
    before the OSDs fill."""
    os.setxattr(str(mountpoint), "ceph.quota.max_bytes", str(max_bytes).encode())
